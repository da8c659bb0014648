"""A small eBPF assembler: instructions as Python calls, jumps to named labels.

Why not clang: the kernel fast path is one short program, and building it here means set-up
needs no BPF compiler and the loader needs no ELF relocation; the verifier still checks every
instruction at load time. Encoding follows the kernel's instruction-set document
(Documentation/bpf/standardization/instruction-set.rst): 8-byte slots of opcode, dst/src
registers, signed 16-bit offset and 32-bit immediate; a 64-bit immediate load takes two slots.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

# classes
LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
# sizes
W, H, B, DW = 0x00, 0x08, 0x10, 0x18
SIZES = {1: B, 2: H, 4: W, 8: DW}
# modes and sources
IMM, MEM = 0x00, 0x60
K, X = 0x00, 0x08
ALU_OPS = {"+": 0x00, "-": 0x10, "*": 0x20, "/": 0x30, "|": 0x40, "&": 0x50, "<<": 0x60,
           ">>": 0x70, "%": 0x90, "^": 0xA0, "=": 0xB0}
JMP_OPS = {"==": 0x10, ">": 0x20, ">=": 0x30, "&": 0x40, "!=": 0x50, "s>": 0x60, "s>=": 0x70,
           "<": 0xA0, "<=": 0xB0, "s<": 0xC0, "s<=": 0xD0}
JA, CALL, EXIT = 0x00, 0x80, 0x90
PSEUDO_MAP_FD = 1

R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, FP = range(11)

_INSN = struct.Struct("<BBhi")


@dataclass
class Program:
    """Instructions being assembled; `link()` resolves labels into the kernel's byte form."""

    slots: list[tuple[int, int, int, int, int, str | None]] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)

    def _emit(self, code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0,
              target: str | None = None) -> None:
        self.slots.append((code, dst, src, off, imm, target))

    def label(self, name: str) -> None:
        if name in self.labels:
            raise ValueError(f"label {name!r} defined twice")
        self.labels[name] = len(self.slots)

    # ---- arithmetic (64-bit) -------------------------------------------------------------
    def alu(self, dst: int, op: str, value: int, reg: bool = False) -> None:
        """dst = dst OP value (a register when `reg`, else a 32-bit immediate)."""
        self._emit(ALU64 | ALU_OPS[op] | (X if reg else K), dst, value if reg else 0,
                   imm=0 if reg else value)

    def mov(self, dst: int, value: int, reg: bool = False) -> None:
        self.alu(dst, "=", value, reg)

    def load_map_fd(self, dst: int, fd: int) -> None:
        """dst = the map behind file descriptor `fd` (a two-slot 64-bit immediate)."""
        self._emit(LD | DW | IMM, dst, PSEUDO_MAP_FD, imm=fd)
        self._emit(0, 0, 0, imm=0)

    # ---- memory --------------------------------------------------------------------------
    def load(self, dst: int, base: int, off: int, size: int) -> None:
        """dst = *(uSIZE *)(base + off)."""
        self._emit(LDX | MEM | SIZES[size], dst, base, off)

    def store(self, base: int, off: int, src: int, size: int) -> None:
        """*(uSIZE *)(base + off) = src (a register)."""
        self._emit(STX | MEM | SIZES[size], base, src, off)

    def store_imm(self, base: int, off: int, value: int, size: int) -> None:
        self._emit(ST | MEM | SIZES[size], base, 0, off, value)

    # ---- control flow --------------------------------------------------------------------
    def jump_if(self, reg: int, op: str, value: int, target: str, reg_value: bool = False) -> None:
        """if reg OP value goto target (value a register when `reg_value`)."""
        self._emit(JMP | JMP_OPS[op] | (X if reg_value else K), reg, value if reg_value else 0,
                   imm=0 if reg_value else value, target=target)

    def goto(self, target: str) -> None:
        self._emit(JMP | JA, target=target)

    def call(self, helper: int) -> None:
        self._emit(JMP | CALL, imm=helper)

    def exit(self) -> None:
        self._emit(JMP | EXIT)

    def ret(self, value: int) -> None:
        self.mov(R0, value)
        self.exit()

    # ---- output --------------------------------------------------------------------------
    def link(self) -> bytes:
        """The program as the kernel takes it; a jump to an unknown label is an error."""
        out = bytearray()
        for i, (code, dst, src, off, imm, target) in enumerate(self.slots):
            if target is not None:
                if target not in self.labels:
                    raise ValueError(f"jump to undefined label {target!r}")
                off = self.labels[target] - i - 1
                if not -0x8000 <= off <= 0x7FFF:
                    raise ValueError(f"jump to {target!r} too far")
            out += _INSN.pack(code, (src << 4) | dst, off, imm)
        return bytes(out)

    def __len__(self) -> int:
        return len(self.slots)
