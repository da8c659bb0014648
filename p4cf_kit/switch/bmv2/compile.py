"""Compile the P4 program for BMv2 with p4c: a BMv2 JSON (the device config) and its P4Info.

Why a module of its own: the BMv2 target needs the JSON that the embedded target does not, and
the command differs between a host p4c and the `p4lang/p4c` image (the image sees the source
and output folders only through bind mounts, at fixed paths). The P4Info is written in text
format with a `.txt` suffix, the one every p4c release accepts for `--p4runtime-files`.
Compilation is skipped when the outputs are newer than the program.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from p4cf_kit.errors import PodmanError, SwitchError
from p4cf_kit.labels import LABEL
from p4cf_kit.paths import P4_PROGRAM, P4INFO_TXT, REPO_ROOT
from p4cf_kit.podman.runner import podman
from p4cf_kit.switch.bmv2.toolchain import Tool, require_p4c

SRC_IN_IMAGE = "/p4cf/src"
OUT_IN_IMAGE = "/p4cf/out"
BUILD_DIR_ENV = "P4CF_P4_BUILD_DIR"
COMPILE_TIMEOUT = 300.0


@dataclass(frozen=True)
class CompiledProgram:
    """What p4c produced: the BMv2 JSON (P4Runtime p4_device_config) and the P4Info (text)."""

    json: Path
    p4info: Path


def default_build_dir() -> Path:
    """Where compiled programs go: `P4CF_P4_BUILD_DIR`, else build/p4 in the checkout."""
    return Path(os.environ.get(BUILD_DIR_ENV) or REPO_ROOT / "build" / "p4")


def outputs_for(program: Path, out_dir: Path) -> CompiledProgram:
    """The file names p4c writes for `program` into `out_dir` (`<stem>.json`, `<stem>.p4info.txt`)."""
    return CompiledProgram(json=out_dir / f"{program.stem}.json",
                           p4info=out_dir / f"{program.stem}.p4info.txt")


def p4c_flags(program: str, out_dir: str, p4info: str) -> list[str]:
    """p4c's options for the BMv2 simple_switch back end (v1model, P4-16), P4Info in text."""
    return ["--target", "bmv2", "--arch", "v1model", "--std", "p4-16",
            "-o", out_dir, "--p4runtime-files", p4info, program]


def p4c_command(tool: Tool, program: Path, out_dir: Path) -> list[str]:
    """The argv that compiles `program` into `out_dir` (absolute paths); argv[0] is `podman` for an image."""
    program, out_dir = program.resolve(), out_dir.resolve()
    out = outputs_for(program, out_dir)
    if not tool.in_image:
        return [str(tool.binary), *p4c_flags(str(program), str(out_dir), str(out.p4info))]
    src = f"{SRC_IN_IMAGE}/{program.name}"
    return ["podman", "run", "--rm", "--pull=never", "--network=none", "--label", LABEL,
            "-v", f"{program.parent}:{SRC_IN_IMAGE}:ro", "-v", f"{out_dir}:{OUT_IN_IMAGE}",
            "-w", OUT_IN_IMAGE, str(tool.image), tool.program,
            *p4c_flags(src, OUT_IN_IMAGE, f"{OUT_IN_IMAGE}/{out.p4info.name}")]


def _run(argv: list[str]) -> tuple[int, str]:
    """Run a compile argv (through the kit's Podman configuration for an image); (status, output)."""
    if argv[0] == "podman":
        try:
            proc = podman(*argv[1:], check=False, timeout=COMPILE_TIMEOUT)
        except PodmanError as exc:  # timeout
            return 1, str(exc)
    else:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=COMPILE_TIMEOUT)
        except subprocess.TimeoutExpired:
            return 1, f"p4c did not finish within {COMPILE_TIMEOUT:.0f} s"
    return proc.returncode, (proc.stderr or "") + (proc.stdout or "")


def is_up_to_date(program: Path, out_dir: Path) -> bool:
    """True when both outputs exist and are not older than the program."""
    out = outputs_for(program, out_dir)
    try:
        built = min(out.json.stat().st_mtime, out.p4info.stat().st_mtime)
    except FileNotFoundError:
        return False
    return built >= program.stat().st_mtime


def compile_program(program: Path = P4_PROGRAM, out_dir: Path | None = None,
                    tool: Tool | None = None) -> CompiledProgram:
    """Compile `program` with p4c (found with `require_p4c` unless given); SwitchError on failure."""
    out_dir = (out_dir or default_build_dir()).resolve()
    if not program.is_file():
        raise SwitchError(f"P4 program {program} does not exist")
    tool = tool or require_p4c()
    out_dir.mkdir(parents=True, exist_ok=True)
    argv = p4c_command(tool, program, out_dir)
    status, output = _run(argv)
    out = outputs_for(program.resolve(), out_dir)
    if status != 0 or not out.json.is_file() or not out.p4info.is_file():
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise SwitchError(f"p4c ({tool.describe()}) failed to compile {program.name} "
                          f"(exit {status}); command: {' '.join(argv)}\n{tail}")
    return out


def ensure_compiled(program: Path = P4_PROGRAM, out_dir: Path | None = None,
                    tool: Tool | None = None) -> CompiledProgram:
    """The compiled program, compiling only when the outputs are missing or older than the source."""
    out_dir = (out_dir or default_build_dir()).resolve()
    if is_up_to_date(program, out_dir):
        return outputs_for(program.resolve(), out_dir)
    return compile_program(program, out_dir, tool)


def p4info_difference(compiled_p4info: Path, shipped: Path = P4INFO_TXT) -> str | None:
    """None when p4c's P4Info equals the shipped one in substance (ids, widths), else the first difference.

    The kit's control plane and the embedded target use the shipped file; a difference means
    the program changed without `p4/load_balance.p4info.txtpb` being regenerated."""
    from p4cf_kit.switch.embedded.p4info import P4Schema, load_p4info, substance_difference
    return substance_difference(P4Schema(load_p4info(shipped)), P4Schema(load_p4info(compiled_p4info)))
