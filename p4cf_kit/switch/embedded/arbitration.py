"""Client arbitration: which StreamChannel is the primary controller of a (device, role).

P4Runtime's rule, kept here independent of gRPC: per role the server remembers the highest
election id it ever accepted; a controller whose id is >= that becomes primary, and stays
primary while it is connected with that id. When the primary leaves or steps down there is
no primary until a controller arbitrates with an id >= the remembered one. Every change of
primary is announced to every controller of the role (status OK to the primary,
ALREADY_EXISTS to backups when a primary exists, NOT_FOUND when none does). Arbitration never
touches the tables: a dying stream leaves forwarding exactly as it was.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
from google.rpc import status_pb2
from p4.v1 import p4runtime_pb2

from p4cf_kit.errors import P4RuntimeError

Code = grpc.StatusCode
Send = Callable[[p4runtime_pb2.StreamMessageResponse], None]


def election_id_of(msg: p4runtime_pb2.Uint128) -> int:
    """A 128-bit election id as one int."""
    return (int(msg.high) << 64) | int(msg.low)


@dataclass(eq=False)
class Controller:
    """One StreamChannel: its role, its election id (None = backup by choice), its sender."""

    send: Send
    role: str = ""
    election_id: int | None = None
    arbitrated: bool = False
    peer: str = ""


@dataclass
class _RoleState:
    highest: int | None = None
    controllers: list[Controller] = field(default_factory=list)


class Arbiter:
    """Arbitration for one device; thread-safe (streams run in gRPC worker threads)."""

    def __init__(self, device_id: int) -> None:
        self.device_id = device_id
        self._lock = threading.Lock()
        self._roles: dict[str, _RoleState] = {}

    def arbitrate(self, ctl: Controller, update: p4runtime_pb2.MasterArbitrationUpdate) -> None:
        """Handle a MasterArbitrationUpdate from `ctl`; raises P4RuntimeError to end the stream."""
        if update.device_id != self.device_id:
            raise P4RuntimeError(Code.NOT_FOUND if not ctl.arbitrated else Code.FAILED_PRECONDITION,
                                 f"this switch is device {self.device_id}, not {update.device_id}")
        role = update.role.name if update.HasField("role") else ""
        if update.HasField("role") and update.role.HasField("config"):
            raise P4RuntimeError(Code.UNIMPLEMENTED, "role configs are not supported")
        new_id = election_id_of(update.election_id) if update.HasField("election_id") else None
        with self._lock:
            if ctl.arbitrated and role != ctl.role:
                raise P4RuntimeError(Code.FAILED_PRECONDITION,
                                     "a stream cannot change its role; open a new stream")
            state = self._roles.setdefault(role, _RoleState())
            if new_id is not None:
                for other in state.controllers:
                    if other is not ctl and other.election_id == new_id:
                        raise P4RuntimeError(Code.INVALID_ARGUMENT,
                                             f"election id {new_id} is already used by another "
                                             f"controller of role {role!r}")
            was_primary = ctl.arbitrated and self._is_primary(state, ctl)
            if not ctl.arbitrated:
                ctl.arbitrated = True
                ctl.role = role
                state.controllers.append(ctl)
            ctl.election_id = new_id
            becomes_primary = new_id is not None and (state.highest is None or new_id >= state.highest)
            if becomes_primary:
                state.highest = new_id
                self._announce(state, role)  # the spec asks for it even if the primary is unchanged
            elif was_primary:
                self._announce(state, role)  # the primary stepped down: nobody is primary now
            else:
                self._tell(state, role, ctl)

    def disconnect(self, ctl: Controller) -> None:
        """Forget a closed stream; if it was the primary, tell the others there is none now."""
        with self._lock:
            state = self._roles.get(ctl.role)
            if state is None or ctl not in state.controllers:
                return
            was_primary = self._is_primary(state, ctl)
            state.controllers.remove(ctl)
            if was_primary:
                self._announce(state, ctl.role)

    def check_primary(self, role: str, election_id: int | None) -> None:
        """Allow a Write/SetForwardingPipelineConfig only from the role's current primary."""
        with self._lock:
            state = self._roles.get(role)
            if election_id is None:
                raise P4RuntimeError(Code.PERMISSION_DENIED, "the request has no election_id")
            if state is None or state.highest is None:
                raise P4RuntimeError(Code.PERMISSION_DENIED,
                                     f"no primary controller for role {role!r}: arbitrate first")
            if election_id != state.highest or not any(
                    c.election_id == election_id for c in state.controllers):
                raise P4RuntimeError(Code.PERMISSION_DENIED,
                                     f"election id {election_id} is not the primary's of role {role!r}")

    def primary(self, role: str = "") -> Controller | None:
        with self._lock:
            state = self._roles.get(role)
            if state is None:
                return None
            return next((c for c in state.controllers if self._is_primary(state, c)), None)

    # --- internals (lock held) ---------------------------------------------------------------

    @staticmethod
    def _is_primary(state: _RoleState, ctl: Controller) -> bool:
        return ctl.election_id is not None and ctl.election_id == state.highest

    def _announce(self, state: _RoleState, role: str) -> None:
        for c in list(state.controllers):
            self._tell(state, role, c)

    def _tell(self, state: _RoleState, role: str, ctl: Controller) -> None:
        reply = p4runtime_pb2.StreamMessageResponse()
        arb = reply.arbitration
        arb.device_id = self.device_id
        if role:
            arb.role.name = role
        if state.highest is not None:
            arb.election_id.high = state.highest >> 64
            arb.election_id.low = state.highest & ((1 << 64) - 1)
        has_primary = any(self._is_primary(state, c) for c in state.controllers)
        if self._is_primary(state, ctl):
            status = status_pb2.Status(code=Code.OK.value[0], message="you are the primary")
        elif has_primary:
            status = status_pb2.Status(code=Code.ALREADY_EXISTS.value[0],
                                       message="you are a backup; a primary exists")
        else:
            status = status_pb2.Status(code=Code.NOT_FOUND.value[0],
                                       message="you are a backup; there is no primary")
        arb.status.CopyFrom(status)
        try:
            ctl.send(reply)
        except Exception:  # a closing stream must not break arbitration for the others
            pass
