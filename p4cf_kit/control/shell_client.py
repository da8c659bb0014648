"""The lifetime of p4runtime-shell's client: threads that never hold the interpreter, a bounded close.

Why: p4runtime-shell 0.0.6 reads the StreamChannel in a plain `threading.Thread`, which is not
a daemon, so an open session kept a Python process (a Jupyter kernel) from exiting. Its
`tear_down` half-closes the stream and joins that thread without a timeout, so closing a
session to a switch that no longer answers hung as well; and a handshake that times out exits
inside the client's constructor, leaving a client nobody can close, its thread running.

Nothing in the library is patched. A thread inherits being a daemon from the thread that
creates it, so `start_in_daemon_thread` runs `shell.setup` in a short-lived daemon thread and
every thread the client starts is a daemon too. `end_stream` half-closes the stream as the
library does, and cancels the call when the switch does not end it within a grace period.
`client_of_failed_setup` finds the half-built client in the traceback of a failed handshake.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

END_GRACE_S = 1.0  # a live switch ends the stream within milliseconds of the half-close

_Result = TypeVar("_Result")


def start_in_daemon_thread(start: Callable[[], _Result]) -> _Result:
    """Return `start()`, run in a daemon thread so the threads it starts are daemons too.

    What `start` raises (SystemExit included: p4runtime-shell exits on a failed handshake) is
    raised here, in the caller's thread."""
    result: list[_Result] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(start())
        except BaseException as exc:  # re-raised in the caller's thread below
            error.append(exc)

    starter = threading.Thread(target=run, name="p4cf-p4runtime-setup", daemon=True)
    starter.start()
    starter.join()
    if error:
        raise error[0]
    return result[0]


def end_stream(client: Any, grace: float = END_GRACE_S) -> None:
    """Close `client`'s StreamChannel and gRPC channel, waiting at most about 2 x `grace` s.

    A half-close first, so a live switch sees a clean end of the session; a cancel of the call
    when the switch does not answer (stopped, hung, or gone without a reset)."""
    out_q = getattr(client, "stream_out_q", None)
    thread = getattr(client, "stream_recv_thread", None)
    if out_q is not None:
        out_q.put(None)  # ends the request iterator: the client half-closes the stream
    if thread is not None and thread.is_alive():
        thread.join(grace)
        stream = getattr(client, "stream", None)
        if thread.is_alive() and stream is not None:
            stream.cancel()  # the receiving loop ends with CANCELLED
            thread.join(grace)
    channel = getattr(client, "channel", None)
    if thread is not None and thread.is_alive():
        if channel is not None:  # not joinable: close the channel and let the daemon thread go
            channel.close()
        return
    if channel is not None:
        client.tear_down()  # the thread has ended, so its join returns at once


def client_of_failed_setup(exc: BaseException) -> Any | None:
    """The P4RuntimeClient whose constructor raised `exc` (its handshake failed), else None.

    `shell.setup` assigns its global client only after the constructor returns, so this is
    the only handle on a client whose stream is already open."""
    from p4runtime_sh.p4runtime import P4RuntimeClient

    tb = exc.__traceback__
    while tb is not None:
        candidate = tb.tb_frame.f_locals.get("self")
        if isinstance(candidate, P4RuntimeClient):
            return candidate
        tb = tb.tb_next
    return None
