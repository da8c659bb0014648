"""The P4Runtime v1 gRPC service of the embedded switch.

One `P4RuntimeService` serves one device. It checks requests (device, arbitration, pipeline)
and translates between gRPC and the modules that hold the rules: `arbitration.Arbiter` for
primaries and backups, `entries.EntryStore` for the tables, `p4info` for what pipeline is
acceptable. The data plane is injected (`pipeline`), so the same server runs with the real
program logic or control-plane only.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from concurrent import futures
from importlib import metadata
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, status_pb2
from p4.config.v1 import p4info_pb2
from p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc

from p4cf_kit.errors import P4RuntimeError
from p4cf_kit.switch.embedded.arbitration import Arbiter, Controller, election_id_of
from p4cf_kit.switch.embedded.entries import DataPlaneTables, EntryStore, Undo
from p4cf_kit.switch.embedded.p4info import P4Schema, shipped_p4info, substance_difference
from p4cf_kit.switch.embedded.write_wire import Update, WriteFields, parse_write

log = logging.getLogger("p4cf.switch.p4runtime")
Code = grpc.StatusCode
SetAction = p4runtime_pb2.SetForwardingPipelineConfigRequest
GetType = p4runtime_pb2.GetForwardingPipelineConfigRequest
CONTINUE_ON_ERROR = p4runtime_pb2.WriteRequest.CONTINUE_ON_ERROR
ROLLBACK_ON_ERROR = p4runtime_pb2.WriteRequest.ROLLBACK_ON_ERROR
DATAPLANE_ATOMIC = p4runtime_pb2.WriteRequest.DATAPLANE_ATOMIC
SERVICE_NAME = "p4.v1.P4Runtime"
# Worded as BMv2 words it: controllers (finsy, for one) recognise a switch that awaits its
# first pipeline by this text, and push one instead of giving up.
NO_PIPELINE = "no forwarding pipeline config is set for this device"


def api_version() -> str:
    """The P4Runtime API version we implement: that of the installed p4runtime protos."""
    try:
        return metadata.version("p4runtime")
    except metadata.PackageNotFoundError:
        return "1.4.1"


class P4RuntimeService(p4runtime_pb2_grpc.P4RuntimeServicer):
    """P4Runtime for one device running the load balancer program."""

    def __init__(self, device_id: int = 1, pipeline: DataPlaneTables | None = None,
                 accepted_p4info: p4info_pb2.P4Info | None = None) -> None:
        self.device_id = device_id
        self.pipeline = pipeline
        self.arbiter = Arbiter(device_id)
        self._accepted = P4Schema(accepted_p4info or shipped_p4info())
        self._lock = threading.Lock()  # one Write/Read/pipeline change at a time
        self._config: p4runtime_pb2.ForwardingPipelineConfig | None = None
        self._saved: p4runtime_pb2.ForwardingPipelineConfig | None = None
        self._store: EntryStore | None = None
        self._version = api_version()

    # --- pipeline ----------------------------------------------------------------------------

    def load_pipeline(self, config: p4runtime_pb2.ForwardingPipelineConfig) -> None:
        """Commit a pipeline without a controller (the `--p4info` preload of the CLI)."""
        self._verify(config)
        with self._lock:
            self._commit(config)

    def _verify(self, config: p4runtime_pb2.ForwardingPipelineConfig) -> P4Schema:
        if not config.HasField("p4info"):
            raise P4RuntimeError(Code.INVALID_ARGUMENT, "the config has no p4info")
        offered = P4Schema(config.p4info)
        diff = substance_difference(self._accepted, offered)
        if diff is not None:
            raise P4RuntimeError(Code.INVALID_ARGUMENT,
                                 "the embedded switch runs only p4/load_balance.p4 and this "
                                 f"P4Info differs from it: {diff}")
        return offered

    def _commit(self, config: p4runtime_pb2.ForwardingPipelineConfig) -> None:
        self._config = p4runtime_pb2.ForwardingPipelineConfig()
        self._config.CopyFrom(config)
        self._store = EntryStore(P4Schema(self._config.p4info), self.pipeline)
        log.info("pipeline committed (cookie %d)", config.cookie.cookie)

    def SetForwardingPipelineConfig(self, request: p4runtime_pb2.SetForwardingPipelineConfigRequest,
                                    context: grpc.ServicerContext) -> p4runtime_pb2.SetForwardingPipelineConfigResponse:
        try:
            self._check_device(request.device_id)
            self.arbiter.check_primary(request.role, self._election(request))
            action = request.action
            if action == SetAction.UNSPECIFIED:
                raise P4RuntimeError(Code.INVALID_ARGUMENT, "action is UNSPECIFIED")
            if action == SetAction.COMMIT:
                with self._lock:
                    if self._saved is None:
                        raise P4RuntimeError(Code.NOT_FOUND,  # spec 14: no saved config
                                             "COMMIT without a config saved by VERIFY_AND_SAVE")
                    self._commit(self._saved)
                    self._saved = None
                return p4runtime_pb2.SetForwardingPipelineConfigResponse()
            self._verify(request.config)
            with self._lock:
                if action == SetAction.VERIFY_AND_SAVE:
                    self._saved = p4runtime_pb2.ForwardingPipelineConfig()
                    self._saved.CopyFrom(request.config)
                elif action == SetAction.VERIFY_AND_COMMIT:
                    self._commit(request.config)
                elif action == SetAction.RECONCILE_AND_COMMIT:
                    # Same program (the only one accepted): keep the entries, take the new config.
                    if self._store is None:
                        self._commit(request.config)
                    else:
                        self._config = p4runtime_pb2.ForwardingPipelineConfig()
                        self._config.CopyFrom(request.config)
                elif action != SetAction.VERIFY:
                    raise P4RuntimeError(Code.INVALID_ARGUMENT, f"unknown action {action}")
            return p4runtime_pb2.SetForwardingPipelineConfigResponse()
        except P4RuntimeError as exc:
            context.abort(exc.code, exc.message)

    def GetForwardingPipelineConfig(self, request: p4runtime_pb2.GetForwardingPipelineConfigRequest,
                                    context: grpc.ServicerContext) -> p4runtime_pb2.GetForwardingPipelineConfigResponse:
        try:
            self._check_device(request.device_id)
            with self._lock:
                reply = p4runtime_pb2.GetForwardingPipelineConfigResponse()
                if self._config is None:  # spec 15: no config known, so `config` stays unset
                    return reply
                config = self._config
                out = reply.config
                out.cookie.CopyFrom(config.cookie)
                kind = request.response_type
                if kind in (GetType.ALL, GetType.P4INFO_AND_COOKIE):
                    out.p4info.CopyFrom(config.p4info)
                if kind in (GetType.ALL, GetType.DEVICE_CONFIG_AND_COOKIE):
                    out.p4_device_config = config.p4_device_config
                if kind not in (GetType.ALL, GetType.COOKIE_ONLY, GetType.P4INFO_AND_COOKIE,
                                GetType.DEVICE_CONFIG_AND_COOKIE):
                    raise P4RuntimeError(Code.INVALID_ARGUMENT, f"unknown response_type {kind}")
            return reply
        except P4RuntimeError as exc:
            context.abort(exc.code, exc.message)

    # --- Write / Read ------------------------------------------------------------------------

    def Write(self, request: p4runtime_pb2.WriteRequest,
              context: grpc.ServicerContext) -> p4runtime_pb2.WriteResponse:
        """Write from a WriteRequest message (the generated servicer's signature)."""
        self._write(WriteFields.from_message(request), context)
        return p4runtime_pb2.WriteResponse()

    def write_wire(self, data: bytes, context: grpc.ServicerContext) -> bytes:
        """Write as the gRPC server calls it: request and response as bytes.

        Parsing a WriteRequest with pure-Python protobuf costs more than the rest of the RPC
        on the server, so the usual request (table entries only) is decoded by `parse_write`;
        anything else goes through protobuf, with gRPC's own error if that fails too.
        """
        request = parse_write(data)
        if request is None:
            try:
                message = p4runtime_pb2.WriteRequest.FromString(data)
            except Exception:  # what gRPC answers when a request deserializer fails
                context.abort(Code.INTERNAL, "Exception deserializing request!")
            request = WriteFields.from_message(message)
        self._write(request, context)
        return b""  # a WriteResponse has no fields: serialised, it is empty

    def _write(self, request: WriteFields, context: grpc.ServicerContext) -> None:
        try:
            self._check_device(request.device_id)
            self.arbiter.check_primary(request.role, request.election_id)
            atomicity = request.atomicity
            if atomicity == DATAPLANE_ATOMIC:
                raise P4RuntimeError(Code.UNIMPLEMENTED, "DATAPLANE_ATOMIC is not supported")
            if atomicity != CONTINUE_ON_ERROR and atomicity != ROLLBACK_ON_ERROR:
                raise P4RuntimeError(Code.INVALID_ARGUMENT, f"unknown atomicity {atomicity}")
            with self._lock:
                store = self._require_store()
                errors = self._apply(store, request.updates, rollback=atomicity == ROLLBACK_ON_ERROR)
        except P4RuntimeError as exc:
            context.abort(exc.code, exc.message)
        if errors is not None:
            self._abort_with_update_errors(context, errors)

    @staticmethod
    def _apply(store: EntryStore, updates: list[Update],
               rollback: bool) -> list[P4RuntimeError | None] | None:
        """Apply a batch; None if all succeeded, else one error (or None) per update."""
        results: list[P4RuntimeError | None] = []
        undo: list[Undo] = []
        failed = False
        for update_type, entity in updates:
            if failed and rollback:
                results.append(P4RuntimeError(Code.ABORTED, "not applied: an earlier update failed"))
                continue
            try:
                store.write(update_type, entity, undo)
                results.append(None)
            except P4RuntimeError as exc:
                results.append(exc)
                failed = True
            except Exception as exc:  # a data plane bug must not take the server down
                log.exception("update %d failed inside the switch", len(results))
                results.append(P4RuntimeError(Code.INTERNAL, f"switch error: {exc!r}"))
                failed = True
        if not failed:
            return None
        if rollback:
            store.rollback(undo)
            results = [r if r is not None else
                       P4RuntimeError(Code.ABORTED, "rolled back: another update failed")
                       for r in results]
        return results

    @staticmethod
    def _abort_with_update_errors(context: grpc.ServicerContext, errors: list[P4RuntimeError | None]) -> None:
        """Report per-update results as the spec says: UNKNOWN + google.rpc.Status details."""
        status = status_pb2.Status(code=code_pb2.UNKNOWN)
        failures = [e for e in errors if e is not None]
        status.message = f"{len(failures)} of {len(errors)} updates failed: {failures[0].message}"
        for err in errors:
            p4err = p4runtime_pb2.Error(canonical_code=code_pb2.OK)
            if err is not None:
                p4err.canonical_code = err.code.value[0]
                p4err.message = err.message
            detail = any_pb2.Any()
            detail.Pack(p4err)
            status.details.append(detail)
        context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
        context.abort(Code.UNKNOWN, status.message)

    def Read(self, request: p4runtime_pb2.ReadRequest,
             context: grpc.ServicerContext) -> Iterator[p4runtime_pb2.ReadResponse]:
        try:
            self._check_device(request.device_id)
            with self._lock:
                store = self._require_store()
                reply = p4runtime_pb2.ReadResponse()
                for entity in request.entities:
                    reply.entities.extend(store.read(entity))
        except P4RuntimeError as exc:
            context.abort(exc.code, exc.message)
        yield reply

    def Capabilities(self, request: p4runtime_pb2.CapabilitiesRequest,
                     context: grpc.ServicerContext) -> p4runtime_pb2.CapabilitiesResponse:
        return p4runtime_pb2.CapabilitiesResponse(p4runtime_api_version=self._version)

    # --- StreamChannel -----------------------------------------------------------------------

    def StreamChannel(self, request_iterator: Iterator[p4runtime_pb2.StreamMessageRequest],
                      context: grpc.ServicerContext) -> Iterator[p4runtime_pb2.StreamMessageResponse]:
        """Arbitration over the stream; replies come from a queue so others can notify us."""
        outbox: queue.Queue[Any] = queue.Queue()  # replies, an exception to raise, or `done`
        ctl = Controller(send=outbox.put, peer=context.peer())
        done = object()

        def reader() -> None:
            try:
                for msg in request_iterator:
                    kind = msg.WhichOneof("update")
                    if kind == "arbitration":
                        self.arbiter.arbitrate(ctl, msg.arbitration)
                    elif not ctl.arbitrated:
                        raise P4RuntimeError(Code.FAILED_PRECONDITION,
                                             "the first stream message must be an arbitration update")
                    else:
                        outbox.put(self._stream_error(msg, kind))
            except P4RuntimeError as exc:
                outbox.put(exc)
            except Exception:  # the client went away mid-read
                pass
            finally:
                self.arbiter.disconnect(ctl)
                outbox.put(done)

        context.add_callback(lambda: outbox.put(done))
        threading.Thread(target=reader, name=f"p4rt-stream-{ctl.peer}", daemon=True).start()
        try:
            while True:
                item = outbox.get()
                if item is done:
                    return
                if isinstance(item, P4RuntimeError):
                    context.abort(item.code, item.message)
                yield item
        finally:
            self.arbiter.disconnect(ctl)

    @staticmethod
    def _stream_error(msg: p4runtime_pb2.StreamMessageRequest, kind: str | None) -> p4runtime_pb2.StreamMessageResponse:
        """The program has no packet I/O or digests: answer such messages with a StreamError."""
        reply = p4runtime_pb2.StreamMessageResponse()
        reply.error.canonical_code = code_pb2.UNIMPLEMENTED
        reply.error.message = f"{kind} is not supported: the program has no controller packet metadata"
        if kind == "packet":
            reply.error.packet_out.packet_out.CopyFrom(msg.packet)
        return reply

    # --- helpers -----------------------------------------------------------------------------

    def _check_device(self, device_id: int) -> None:
        if device_id != self.device_id:
            raise P4RuntimeError(Code.NOT_FOUND,
                                 f"this switch is device {self.device_id}, not {device_id}")

    @staticmethod
    def _election(request: Any) -> int | None:  # any request with an election_id
        return election_id_of(request.election_id) if request.HasField("election_id") else None

    def _require_store(self) -> EntryStore:
        if self._store is None:
            raise P4RuntimeError(Code.FAILED_PRECONDITION,
                                 f"{NO_PIPELINE}: SetForwardingPipelineConfig first")
        return self._store


def method_handlers(service: P4RuntimeService) -> dict[str, grpc.RpcMethodHandler]:
    """The P4Runtime methods of `service`, as the generated code registers them except Write,
    which takes and returns bytes (see `P4RuntimeService.write_wire`)."""
    pb = p4runtime_pb2
    return {
        "Write": grpc.unary_unary_rpc_method_handler(service.write_wire),
        "Read": grpc.unary_stream_rpc_method_handler(
            service.Read, request_deserializer=pb.ReadRequest.FromString,
            response_serializer=pb.ReadResponse.SerializeToString),
        "SetForwardingPipelineConfig": grpc.unary_unary_rpc_method_handler(
            service.SetForwardingPipelineConfig,
            request_deserializer=pb.SetForwardingPipelineConfigRequest.FromString,
            response_serializer=pb.SetForwardingPipelineConfigResponse.SerializeToString),
        "GetForwardingPipelineConfig": grpc.unary_unary_rpc_method_handler(
            service.GetForwardingPipelineConfig,
            request_deserializer=pb.GetForwardingPipelineConfigRequest.FromString,
            response_serializer=pb.GetForwardingPipelineConfigResponse.SerializeToString),
        "StreamChannel": grpc.stream_stream_rpc_method_handler(
            service.StreamChannel, request_deserializer=pb.StreamMessageRequest.FromString,
            response_serializer=pb.StreamMessageResponse.SerializeToString),
        "Capabilities": grpc.unary_unary_rpc_method_handler(
            service.Capabilities, request_deserializer=pb.CapabilitiesRequest.FromString,
            response_serializer=pb.CapabilitiesResponse.SerializeToString),
    }


def start_server(service: P4RuntimeService, address: str = "127.0.0.1:9559",
                 max_workers: int = 32) -> tuple[grpc.Server, int]:
    """Serve `service` on `address`; returns the started server and the bound port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers,
                                                    thread_name_prefix="p4rt"))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        SERVICE_NAME, method_handlers(service)),))
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    server.start()
    log.info("P4Runtime server for device %d on %s", service.device_id, address)
    return server, port

