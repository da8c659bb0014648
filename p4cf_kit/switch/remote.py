"""The `remote` target: a P4Runtime switch the kit programs but does not run.

Why a target of its own: on a testbed the switch is a hardware box (its P4Runtime agent) or a
BMv2 someone else started; the kit must not start, stop or wire it, only reach it, push the
user's pipeline (their P4Info and device config: the load balancer compiled for that switch)
and program it as it programs its own switch. Reaching it is checked before anything is made,
and so is the pipeline: the user's P4Info must offer every table, action and counter the
controller writes, else the first write would fail halfway through bring-up.

Transport: TLS (with the switch's CA, and the kit's certificate and key for mutual TLS) or, only
where `config.py` allows it, plain text (p4cf_kit.grpc_transport).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from google.protobuf import text_format
from p4.config.v1 import p4info_pb2

from p4cf_kit.config import SwitchConfig
from p4cf_kit.errors import ConfigError, SwitchError
from p4cf_kit.grpc_ready import wait_until_serving
from p4cf_kit.grpc_transport import channel
from p4cf_kit.paths import P4INFO_TXT
from p4cf_kit.switch.state import SwitchState, state_file, write_state
from p4cf_kit.switch.targets import REMOTE, PipelineFiles

DATA_PATH = "a remote P4Runtime switch (not run by the kit)"


def read_p4info(path: str | Path) -> p4info_pb2.P4Info:
    """A P4Info file in text or binary protobuf form (switch vendors ship both)."""
    data = Path(path).read_bytes()
    message = p4info_pb2.P4Info()
    try:
        text_format.Parse(data.decode(), message)
        return message
    except (UnicodeDecodeError, text_format.ParseError):
        message.Clear()
    try:
        message.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError differs between implementations
        raise ConfigError(f"switch.p4info = {str(path)!r} is neither a text nor a binary P4Info: {exc}") from None
    return message


def _offered(p4info: p4info_pb2.P4Info) -> dict[str, dict[str, tuple[str, ...]]]:
    return {
        "table": {t.preamble.name: tuple(sorted(f.name for f in t.match_fields)) for t in p4info.tables},
        "action": {a.preamble.name: tuple(sorted(p.name for p in a.params)) for a in p4info.actions},
        "direct counter": {c.preamble.name: () for c in p4info.direct_counters},
    }


def missing_for_controller(user: p4info_pb2.P4Info, kit: p4info_pb2.P4Info | None = None) -> str | None:
    """None when `user` offers what the controller writes (by name; ids may differ), else what lacks."""
    if kit is None:
        kit = read_p4info(P4INFO_TXT)
    want, got = _offered(kit), _offered(user)
    for kind, items in want.items():
        for name, fields in sorted(items.items()):
            if name not in got[kind]:
                return f"{kind} {name} is missing"
            if got[kind][name] != fields:
                return f"{kind} {name} has {list(got[kind][name])}, the controller writes {list(fields)}"
    return None


class RemoteTarget:
    """A P4Runtime server at `switch.grpc_addr`, with the user's pipeline files and TLS settings."""

    name = REMOTE
    marker = ""  # no process of ours to recognise

    def __init__(self, switch: SwitchConfig | None = None) -> None:
        self.switch = switch

    def _config(self) -> SwitchConfig:
        if self.switch is None or not self.switch.remote:
            raise SwitchError("the remote target needs the lab's [switch] section (target = \"remote\")")
        return self.switch

    def unavailable(self) -> str | None:
        return None

    def pipeline(self) -> PipelineFiles:
        sw = self._config()
        return PipelineFiles(p4info=Path(sw.p4info), device_config=Path(sw.device_config) if sw.device_config else None)

    def check_pipeline(self) -> None:
        """The user's P4Info describes the kit's load balancer (ConfigError otherwise)."""
        sw = self._config()
        why = missing_for_controller(read_p4info(sw.p4info))
        if why is not None:
            raise ConfigError(f"switch.p4info = {sw.p4info!r} does not describe the kit's load balancer "
                              f"(p4/load_balance.p4): {why}; compile p4/load_balance.p4 for the switch and "
                              "give its P4Info and device config")

    def check_reachable(self, timeout: float = 10.0) -> None:
        """A P4Runtime server answers at the address, over the configured transport."""
        sw = self._config()
        ch = channel(sw.grpc_addr, sw.tls)
        try:
            if wait_until_serving(ch, timeout):
                return
        finally:
            ch.close()
        how = (f"over TLS (CA {sw.tls.ca}); a TLS handshake that fails looks the same: check that this CA "
               "signed the switch's certificate, that the certificate names the address's host, and, for "
               "mutual TLS, that the switch trusts [switch.tls] cert") if sw.tls else "in plain text"
        raise SwitchError(f"no P4Runtime server answers at {sw.grpc_addr} {how} within {timeout:.0f} s; is the "
                          "switch's P4Runtime agent running and reachable from this machine?")

    def start(self, state: Path, ports: Mapping[int, str], grpc_addr: str, device_id: int = 1,
              netns_path: str | None = None, timeout: float = 30.0,
              container_name: str | None = None, labels: tuple[str, ...] = (),
              datapath: str = "auto") -> SwitchState:
        """Nothing to start: check the pipeline files and the address, and write the lab's switch
        state (no pid: the switch is its owner's), so status, `down` and notebooks see it."""
        sw = self._config()
        self.check_pipeline()
        self.check_reachable(min(timeout, 10.0))
        state.mkdir(parents=True, exist_ok=True)
        written = SwitchState(target=REMOTE, pid=None, grpc_addr=sw.grpc_addr, data_path=DATA_PATH)
        write_state(state_file(state), written)
        return written

    def stop(self, running: SwitchState) -> bool:
        return False  # not ours: its life is its owner's (stop_switch forgets the state file)
