"""One frame layout: the C side's constants (layout.h: the C fast path, the eBPF program, its
loader) are the Python side's (packet.py, and the action flags the offload writes)."""

from __future__ import annotations

import re
from pathlib import Path

from p4cf_kit.switch.embedded import packet as pk
from p4cf_kit.switch.embedded.ebpf import offload

HEADER = Path(pk.__file__).with_name("layout.h")


def _defines() -> dict[str, int]:
    """layout.h's `#define P4CF_NAME value` lines, values evaluated (integers, shifts)."""
    out: dict[str, int] = {}
    for name, value in re.findall(r"^#define P4CF_(\w+) +([^/\n]+?)\s*(?:/\*.*)?$", HEADER.read_text(), re.MULTILINE):
        if name != "LAYOUT_H":
            out[name] = int(eval(value, {}))  # only literals and shifts of literals
    return out


def test_every_layout_constant_has_the_python_value() -> None:
    defines = _defines()
    assert len(defines) > 30
    for name, value in defines.items():
        owner = pk if hasattr(pk, name) else offload
        assert hasattr(owner, name), f"P4CF_{name} has no Python counterpart"
        assert getattr(owner, name) == value, f"P4CF_{name} = {value}, Python says {getattr(owner, name)}"


def test_the_two_fragment_tests_differ_only_on_first_fragments() -> None:
    """The parser reads TCP from a first fragment (offset 0, MF set); the kernel path takes
    only whole datagrams. Later fragments are neither."""
    def frame(flags_frag: int) -> bytes:
        return bytes(20) + flags_frag.to_bytes(2, "big") + bytes(40)
    whole, first, later, df = frame(0), frame(0x2000), frame(0x0001), frame(0x4000)
    assert [pk.starts_datagram(f) for f in (whole, first, later, df)] == [True, True, False, True]
    assert [pk.whole_datagram(f) for f in (whole, first, later, df)] == [True, False, False, True]
