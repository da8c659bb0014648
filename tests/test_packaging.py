"""The package layout and the dependency pins the users asked for."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def test_top_level_layout_as_users_asked() -> None:
    for name in ["notebooks", "p4cf_kit", "p4", "images", "environment.yml", "requirements.txt",
                 "README.md", "pyproject.toml", "tests", "benchmarks", ".ci/run", "Makefile"]:
        assert (ROOT / name).exists(), f"missing top-level {name}"


def test_environment_yml_has_the_same_pins_as_requirements() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_pins = dict(p.lower().split("==") for p in pip_section)
    assert conda_pins == _requirements()


def test_requirements_carry_what_users_asked_for() -> None:
    pins = _requirements()
    for name in ["jupyterlab", "ipywidgets", "podman", "p4runtime-shell", "pandas", "matplotlib"]:
        assert name in pins, f"{name} missing from requirements.txt"
    major, minor = (int(x) for x in pins["protobuf"].split(".")[:2])
    assert (major, minor) < (3, 21), "p4runtime-shell 0.0.6 needs protobuf < 3.21"


def test_pins_are_what_is_installed() -> None:
    from importlib.metadata import version

    for name, pinned in _requirements().items():
        assert version(name) == pinned, f"{name}: installed {version(name)}, pinned {pinned}"


def test_p4cf_console_script_runs() -> None:
    exe = Path(sys.executable).parent / "p4cf"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, check=True).stdout
    assert "usage: p4cf" in out
    for command in ["switch", "p4"]:
        assert re.search(rf"^\s+{command}\s", out, re.M), f"subcommand {command} not registered"
