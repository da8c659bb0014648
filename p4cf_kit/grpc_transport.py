"""How the kit's P4Runtime clients reach a switch: TLS with the lab's files, or plain text.

Why one place: the readiness check (a raw gRPC channel) and the controller (p4runtime-shell's
SSLOptions) must use the same transport with the same files, or a switch that answers one
would refuse the other. Plain text is used for the kit's own switches (loopback, a unix socket
in a kit netns) and for a remote switch only where the config allows it (config.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from p4cf_kit.config import TlsConfig


def _read(path: str) -> bytes | None:
    return Path(path).read_bytes() if path else None


def channel(grpc_addr: str, tls: TlsConfig | None) -> grpc.Channel:
    """A gRPC channel to the switch: secure with the config's TLS files, else plain."""
    if tls is None:
        return grpc.insecure_channel(grpc_addr)
    creds = grpc.ssl_channel_credentials(_read(tls.ca), _read(tls.key), _read(tls.cert))
    return grpc.secure_channel(grpc_addr, creds)


def ssl_options(tls: TlsConfig | None) -> Any:
    """p4runtime-shell's SSLOptions for the same files (None: plain text)."""
    if tls is None:
        return None
    from p4runtime_sh.p4runtime import SSLOptions
    return SSLOptions(False, tls.ca, tls.cert or None, tls.key or None)
