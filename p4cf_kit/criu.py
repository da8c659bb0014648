"""CRIU as the rest of the kit uses it: one import for the binary checks and the live
checkpoint/restore round trip (`p4cf doctor --deep`). The pieces live in `p4cf_kit.checkpoint`."""

from __future__ import annotations

from p4cf_kit.checkpoint.criu import MIN_VERSION, CriuCheck, criu_check, criu_version, find_criu, require_criu
from p4cf_kit.checkpoint.roundtrip import RoundtripResult, tcp_checkpoint_roundtrip

__all__ = ["MIN_VERSION", "CriuCheck", "RoundtripResult", "criu_check", "criu_version", "find_criu",
           "require_criu", "tcp_checkpoint_roundtrip"]
