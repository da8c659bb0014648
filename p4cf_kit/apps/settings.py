"""The `[workload]` table of a lab config: which application the backends run and how it is driven.

Why its own module: config.py holds the lab's topology; what runs on the backends (and the
client that drives it) is a choice of its own with its own validation, and every front end
(CLI, API, notebooks) passes the same `WorkloadConfig` down.

    [workload]
    kind = "echo"              # echo | redis | http | custom
    # custom (the user's application):
    image = "localhost/my-app:latest"
    port = 9000                # the app's TCP port (becomes the lab's port)
    command = ["my-app", "--port", "9000"]   # optional: the image's own command otherwise
    ready = ["sh", "-c", "test -e /tmp/ready"]  # optional: run in the server container, exit 0 = ready
    ready_timeout_s = 20
    protocol = "lines"         # lines | length | command
    request = "PING"           # lines/length: what the kit's client sends ({seq} {conn} {t} filled in)
    client_command = "..."     # protocol = command: the user's client, writes the per-request CSV
    client_image = "..."       # protocol = command: the image it runs in (default: the kit's client)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from p4cf_kit.errors import ConfigError

KINDS: tuple[str, ...] = ("echo", "redis", "http", "custom")
PROTOCOLS: tuple[str, ...] = ("lines", "length", "command")
DEFAULT_READY_TIMEOUT_S = 20.0
DEFAULT_VALUE_BYTES = 32
DEFAULT_REQUEST = "PING"
#: Placeholders the user's client command may use (filled in by the kit).
COMMAND_PLACEHOLDERS: tuple[str, ...] = ("vip", "port", "connections", "rate", "duration", "csv")

_KEYS = {"kind", "image", "port", "command", "ready", "ready_timeout_s", "protocol", "request",
         "client_command", "client_image", "value_bytes"}
_CUSTOM_REQUIRED = ("image", "port", "protocol")


@dataclass(frozen=True)
class WorkloadConfig:
    """What the backends run (`kind`) and, for `custom`, everything the kit must be told about it."""

    kind: str = "echo"
    image: str = ""                       # server image; "" = the kind's own
    port: int | None = None               # custom: the application's port (the lab's port)
    command: tuple[str, ...] = ()         # server command; () = the image's
    ready: tuple[str, ...] = ()           # readiness check in the server container; () = TCP port listens
    ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S
    protocol: str = ""                    # custom: lines | length | command
    request: str = DEFAULT_REQUEST        # custom lines/length: the request the kit's client sends
    client_command: str = ""              # custom command: the user's client
    client_image: str = ""                # custom command: its image; "" = the kit's client image
    value_bytes: int = DEFAULT_VALUE_BYTES  # redis: size of each value the client writes

    @property
    def verifies_data(self) -> bool:
        """True when the client checks every value it wrote (redis): migrations get a data check."""
        return self.kind == "redis"


def _strings(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return ("sh", "-c", value) if value else ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"workload.{key} must be a list of strings (argv) or one shell command string, "
                          f"got {value!r}")
    return tuple(value)


def _string(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"workload.{key} must be a string, got {value!r}")
    return value


def parse_workload(raw: Mapping[str, Any]) -> WorkloadConfig:
    """Validate the `[workload]` table; ConfigError names every missing or bad field and the fix."""
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise ConfigError(f"[workload] has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_KEYS))}")
    kind = raw.get("kind", "echo")
    if kind not in KINDS:
        raise ConfigError(f"workload.kind = {kind!r} is not one of {', '.join(KINDS)}")
    if kind == "custom":
        missing = [f"workload.{k}" for k in _CUSTOM_REQUIRED if k not in raw]
        if raw.get("protocol") == "command" and "client_command" not in raw:
            missing.append("workload.client_command")
        if missing:
            raise ConfigError(f"a custom workload needs {', '.join(missing)} (missing); e.g. image = "
                              "\"localhost/my-app:latest\", port = 9000, protocol = \"lines\" (or \"length\", or "
                              "\"command\" with client_command = \"my-client --csv {csv}\"); see README 'Workloads'")
    else:
        custom_only = sorted(set(raw) & {"port", "protocol", "request", "client_command", "client_image"})
        if custom_only:
            raise ConfigError(f"workload.{custom_only[0]} applies to kind = \"custom\" only (this is {kind!r}); "
                              "remove it or set kind = \"custom\"")
    protocol = _string("protocol", raw.get("protocol", ""))
    if kind == "custom" and protocol not in PROTOCOLS:
        raise ConfigError(f"workload.protocol = {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    port = raw.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
        raise ConfigError(f"workload.port = {port!r} must be a TCP port number (1..65535)")
    timeout = raw.get("ready_timeout_s", DEFAULT_READY_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ConfigError(f"workload.ready_timeout_s = {timeout!r} must be a positive number of seconds")
    value_bytes = raw.get("value_bytes", DEFAULT_VALUE_BYTES)
    if isinstance(value_bytes, bool) or not isinstance(value_bytes, int) or not 8 <= value_bytes <= 1 << 20:
        raise ConfigError(f"workload.value_bytes = {value_bytes!r} must be an integer in 8..1048576")
    client_command = _string("client_command", raw.get("client_command", ""))
    if protocol == "command" and "{csv}" not in client_command:
        raise ConfigError("workload.client_command must write its per-request CSV to {csv} (the kit fills in "
                          "the path), e.g. \"my-client --vip {vip} --port {port} --csv {csv}\"")
    return WorkloadConfig(kind=kind, image=_string("image", raw.get("image", "")), port=port,
                          command=_strings("command", raw.get("command", [])),
                          ready=_strings("ready", raw.get("ready", [])), ready_timeout_s=float(timeout),
                          protocol=protocol, request=_string("request", raw.get("request", DEFAULT_REQUEST)),
                          client_command=client_command,
                          client_image=_string("client_image", raw.get("client_image", "")),
                          value_bytes=value_bytes)


def workload_to_dict(wl: WorkloadConfig) -> dict[str, Any]:
    """The non-default fields of `wl` as a `[workload]` table (parse_workload reads it back)."""
    out: dict[str, Any] = {"kind": wl.kind}
    defaults = WorkloadConfig()
    for key in sorted(_KEYS - {"kind"}):
        value = getattr(wl, key)
        if value != getattr(defaults, key):
            out[key] = list(value) if isinstance(value, tuple) else value
    return out
