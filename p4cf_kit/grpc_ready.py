"""Waiting until a P4Runtime server answers on a gRPC channel, without background threads.

Why not `grpc.channel_ready_future`: it polls from a thread of its own, and when the channel
is closed while that thread is between two polls, the thread dies with "Channel closed!"
(seen as an unhandled-thread warning in the tests). A Capabilities call with
wait_for_ready does the same waiting in the caller's thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
from p4.v1 import p4runtime_pb2, p4runtime_pb2_grpc

from p4cf_kit.errors import SwitchError


def wait_until_serving(channel: grpc.Channel, timeout: float, step: float = 0.2) -> bool:
    """True once a Capabilities RPC on `channel` succeeds within `timeout` seconds, else False.
    Any answer (even an error status other than UNAVAILABLE/DEADLINE_EXCEEDED) means a server."""
    stub = p4runtime_pb2_grpc.P4RuntimeStub(channel)
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            stub.Capabilities(p4runtime_pb2.CapabilitiesRequest(), timeout=min(step, remaining),
                              wait_for_ready=True)
            return True
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return True


def wait_grpc_ready(grpc_addr: str, timeout: float, alive: Callable[[], bool] | None = None) -> None:
    """Poll until a P4Runtime server answers on `grpc_addr`; SwitchError after `timeout` s, or as
    soon as `alive()` says the switch process has exited."""
    deadline = time.monotonic() + timeout
    channel = grpc.insecure_channel(grpc_addr)
    try:
        while True:
            if alive is not None and not alive():
                raise SwitchError("the switch process exited during start-up")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SwitchError(f"no P4Runtime server answers on {grpc_addr} after {timeout:.0f} s")
            if wait_until_serving(channel, min(0.2, remaining)):
                return
    finally:
        channel.close()
