"""One P4Runtime session to the switch through p4runtime-shell.

Why wrap it: p4runtime-shell keeps a single client in module globals and calls
`sys.exit` when the stream handshake fails (e.g. the switch is still starting).
`SwitchConnection` retries the handshake until a deadline (polling, no fixed
sleep), turns failures into SwitchError, pushes the pipeline (P4Info plus an
empty device config for the embedded target, BMv2 JSON for bmv2) only when asked,
and otherwise adopts the P4Info already on the device, so reconnecting never wipes
the switch's entries. Only one session per Python process can be open at a time.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import queue
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from p4cf_kit.control.shell_client import client_of_failed_setup, end_stream, start_in_daemon_thread
from p4cf_kit.errors import SwitchError
from p4cf_kit.grpc_ready import wait_until_serving
from p4cf_kit.grpc_transport import channel as open_channel
from p4cf_kit.grpc_transport import ssl_options
from p4cf_kit.paths import P4INFO_TXT, state_dir

if TYPE_CHECKING:
    from p4cf_kit.config import TlsConfig

_LOCK = threading.RLock()
_OPEN: SwitchConnection | None = None


def _close_open_session() -> None:
    """End a session still open at interpreter exit, so the switch sees the stream close
    cleanly. Exit never waits for it: the client's threads are daemons (`shell_client`)."""
    if _OPEN is not None:
        _OPEN.close()


atexit.register(_close_open_session)


def _shell() -> Any:  # p4runtime-shell has no types
    import p4runtime_sh.shell as sh  # imported late: it pulls in all of the protos
    return sh


def empty_device_config() -> Path:
    """An empty p4_device_config file (the embedded target needs none)."""
    path = state_dir() / "empty-device-config.bin"
    if not path.exists():
        path.write_bytes(b"")
    return path


class SwitchConnection:
    """A primary P4Runtime session. Use as a context manager or call connect()/close()."""

    def __init__(self, grpc_addr: str, device_id: int = 1, election_id: tuple[int, int] | None = None,
                 p4info: Path = P4INFO_TXT, device_config: Path | None = None,
                 tls: TlsConfig | None = None) -> None:
        self.grpc_addr = grpc_addr
        self.tls = tls  # None: plain text (the kit's own switch, or a remote one where config allows it)
        self.device_id = device_id
        # Default: milliseconds since the epoch, so the newest session always becomes primary
        # (servers remember the highest election id they saw; a fixed id can lose to an old one).
        self.election_id = election_id or (0, time.time_ns() // 1_000_000)
        self.p4info = Path(p4info)
        self.device_config = device_config
        self.connected = False
        self.primary = False

    def connect(self, push_pipeline: bool = False, timeout: float = 10.0,
                require_primary: bool = True) -> SwitchConnection:
        """Open the session (retrying until `timeout`); push the pipeline when `push_pipeline`.

        With `require_primary` a session that ends up as a backup (another controller holds
        a higher election id) is closed and reported; reads work as backup, writes do not.
        """
        global _OPEN
        sh = _shell()
        with _LOCK:
            if _OPEN is not None and _OPEN is not self:
                _OPEN.close()
            deadline = time.monotonic() + timeout
            config = None
            if push_pipeline:
                if not self.p4info.exists():
                    raise SwitchError(f"P4Info {self.p4info} is missing; run `p4cf p4 compile` or restore the file")
                config = sh.FwdPipeConfig(str(self.p4info), str(self.device_config or empty_device_config()))
            last = "no attempt"
            refusals = 0  # the server answered but refused: retry a little, not until the deadline
            while True:
                try:
                    self._wait_channel(max(0.1, deadline - time.monotonic()))
                    said = io.StringIO()
                    with contextlib.redirect_stdout(said):  # it prints "not the primary"
                        start_in_daemon_thread(lambda: sh.setup(
                            device_id=self.device_id, grpc_addr=self.grpc_addr,
                            election_id=self.election_id, config=config, verbose=False,
                            ssl_options=ssl_options(self.tls)))
                    self.primary = "not the primary" not in said.getvalue()
                    if require_primary and not self.primary:
                        self._drop_client()
                        raise SwitchError(
                            f"another controller is primary on {self.grpc_addr} (its election id is higher "
                            f"than {self.election_id}); close it or connect with a higher election id")
                    break
                except SystemExit as exc:
                    last = ("handshake or pipeline push refused (p4runtime-shell exited; its log says why, "
                            f"e.g. a newer primary than election id {self.election_id})")
                    self._drop_client(exc)
                    refusals += 1
                    if refusals >= 3:
                        raise SwitchError(f"P4Runtime session to {self.grpc_addr} refused: {last}") from None
                except SwitchError:
                    raise
                except Exception as exc:  # grpc and p4runtime-shell errors
                    last = str(exc).strip() or type(exc).__name__
                    self._drop_client(exc)
                if time.monotonic() >= deadline:
                    raise SwitchError(f"cannot open a P4Runtime session to {self.grpc_addr} "
                                      f"(device {self.device_id}) within {timeout:.0f} s: {last}; "
                                      "is the switch running (`p4cf status`)?")
                time.sleep(0.05)
            self.connected = True
            _OPEN = self
        return self

    def _wait_channel(self, timeout: float) -> None:
        channel = open_channel(self.grpc_addr, self.tls)
        try:
            if not wait_until_serving(channel, timeout):
                raise ConnectionError(f"{self.grpc_addr} not reachable")
        finally:
            channel.close()

    @staticmethod
    def _drop_client(failed: BaseException | None = None) -> None:
        """End the shell's client, and the half-built one a failed `setup` (`failed`) left behind."""
        sh = _shell()
        client = getattr(sh, "client", None)
        orphan = client_of_failed_setup(failed) if failed is not None else None
        for each in (orphan, client):  # ending one twice is harmless
            if each is not None:
                try:
                    end_stream(each)
                except Exception:
                    pass
        sh.client = None

    def close(self) -> None:
        """End the session (the switch keeps its entries); bounded even when the switch hangs."""
        global _OPEN
        with _LOCK:
            if self.connected:
                self._drop_client()
                self.connected = False
            if _OPEN is self:
                _OPEN = None

    def alive(self) -> bool:
        """True while the session's stream to the switch is up (False after the switch went away)."""
        client = getattr(_shell(), "client", None)
        thread = getattr(client, "stream_recv_thread", None)
        return bool(self.connected and thread is not None and thread.is_alive())

    def still_primary(self) -> bool:
        """False once the switch said another controller took the primary role (a newer session,
        e.g. `p4cf experiment` run beside a notebook): the arbitration updates the switch sends
        every controller when the primary changes, read without waiting."""
        client = getattr(_shell(), "client", None)
        updates = getattr(client, "stream_in_q", {}).get("arbitration") if client is not None else None
        while updates is not None:
            try:
                update = updates.get_nowait()
            except queue.Empty:
                break
            if update is None:         # the stream ended: alive() says so
                break
            self.primary = update.arbitration.status.code == 0
        return self.primary

    def require(self) -> None:
        if not self.connected:
            raise SwitchError("no P4Runtime session: call connect() first (or Lab.up())")

    def __enter__(self) -> SwitchConnection:
        if not self.connected:
            self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
