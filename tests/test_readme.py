"""README is a contract: every `p4cf` command line in it parses, the cheap ones run for real, every
environment variable and config key it names is read by the code, its platform claim matches the
packaging, and every paragraph that calls numbers measured names the benchmark that reproduces them.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from p4cf_kit.cli import build_parser
from p4cf_kit.paths import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()
P4CF = [sys.executable, "-m", "p4cf_kit"]

#: README lines that are true only once another branch is merged (was: BMv2's `p4cf up --target`,
#: merged). The lead empties this list at the merge; a line in it may fail to parse until then.
EXPECTED_AFTER_MERGE: set[str] = set()

#: What README's placeholders stand for when a line is parsed.
PLACEHOLDERS = {"HOST": "h2", "SRC": "h2", "DST": "h4", "N": "3", "S": "1", "DIR": "/tmp/p4cf-readme",
                "RESULTS_DIR": "/tmp/p4cf-readme", "CONFIG": "p4cf_kit/configs/default.toml", "NAME": "readme",
                "NN": "02", "IMAGE": "docker.io/library/python:3.11-slim", "R": "10"}


def readme_commands() -> list[str]:
    """Every `p4cf ...` line of README: inline code spans and lines of code blocks."""
    found: list[str] = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if re.match(r"(\.venv/bin/)?p4cf\s", line):
                found.append(line)
    inline = re.sub(r"```.*?```", "", README, flags=re.S)
    found += [m for m in re.findall(r"`((?:\.venv/bin/)?p4cf [^`]+)`", inline)]
    return list(dict.fromkeys(" ".join(c.replace("\\|", "|").removeprefix(".venv/bin/").split()) for c in found))


def concrete(usage: str) -> list[list[str]]:
    """The argv lists a usage line stands for: optional parts included, each `a|b` alternative
    taken, placeholders filled in, `...` dropped."""
    words = [w for w in shlex.split(usage.replace("[", " ").replace("]", " "))[1:] if w != "..."]
    choices = [[PLACEHOLDERS.get(alt, alt) for alt in w.split("|")] for w in words]
    return [list(argv) for argv in itertools.product(*choices)]


def test_readme_shows_the_commands_it_is_about() -> None:
    commands = readme_commands()
    subcommands = {c.split()[1] for c in commands if len(c.split()) > 1}
    assert {"doctor", "images", "up", "down", "status", "pool", "traffic", "migrate", "experiment", "plot",
            "switch", "p4", "demo"} <= subcommands, subcommands


@pytest.mark.parametrize("line", readme_commands())
def test_every_readme_command_line_parses(line: str) -> None:
    parser = build_parser()
    for argv in concrete(line):
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            if line in EXPECTED_AFTER_MERGE:
                pytest.skip(f"{line!r}: true after the BMv2 branch is merged (EXPECTED_AFTER_MERGE)")
            raise AssertionError(f"README shows `{line}`, but `p4cf {' '.join(argv)}` does not parse") from None
        assert getattr(args, "func", None) is not None, f"`p4cf {' '.join(argv)}` names no command"


def test_every_readme_subcommand_answers_help() -> None:
    """`--help` through the real entry point, for each subcommand README shows."""
    for sub in sorted({c.split()[1] for c in readme_commands() if len(c.split()) > 1}):
        proc = subprocess.run([*P4CF, sub, "--help"], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
        assert proc.returncode == 0 and proc.stdout.startswith("usage: p4cf"), (sub, proc.stderr)


def test_readme_says_which_commands_take_json() -> None:
    said = re.search(r"((?:`[a-z0-9]+`(?:,\s+|\s+and\s+))+`[a-z0-9]+`)\s+take\s+`--json`", README)
    assert said, "README must list the commands that take --json"
    claimed = set(re.findall(r"`([a-z0-9]+)`", said.group(1)))
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices  # noqa: SLF001
    takes = {name for name, sub in subparsers.items()
             if any("--json" in a.option_strings for a in sub._actions)}  # noqa: SLF001
    assert claimed == takes, f"README says {sorted(claimed)} take --json; the parser: {sorted(takes)}"


@pytest.mark.podman
@pytest.mark.skipif(os.geteuid() != 0, reason="doctor's checks need root")
def test_cheap_readme_commands_run_for_real(tmp_path: Path) -> None:
    """`p4cf doctor --json` and `p4cf plot RESULTS_DIR` as README shows them (run under the test lock)."""
    assert "p4cf doctor [--json] [--deep]" in readme_commands() and "p4cf plot RESULTS_DIR" in readme_commands()
    doctor = subprocess.run([*P4CF, "doctor", "--json"], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    report = json.loads(doctor.stdout)
    assert report["checks"] and doctor.returncode == (0 if report["ok"] else 1)
    from p4cf_kit import results
    from p4cf_kit.analysis import synthetic
    exp = synthetic.generate(synthetic.SyntheticExperiment(connections=2, duration_s=4, migration_starts_s=(2.0,)))
    folder = results.ResultsFolder.create("readme", {}, parent=tmp_path, versions={"python": "test"})
    exp.log.to_csv(folder.raw(results.CLIENT_LOG), index=False)
    exp.counters.to_csv(folder.raw(results.SWITCH_COUNTERS), index=False)
    folder.write_migrations(exp.migrations)
    plot = subprocess.run([*P4CF, "plot", "--from-raw", str(folder.path)], capture_output=True, text=True,
                          timeout=300, cwd=REPO_ROOT)
    assert plot.returncode == 0, plot.stderr
    plot = subprocess.run([*P4CF, "plot", str(folder.path)], capture_output=True, text=True, timeout=300,
                          cwd=REPO_ROOT)
    assert plot.returncode == 0, plot.stderr
    assert (folder.figures_dir / "timeline-m1.png").exists()


def code_text() -> str:
    """Everything that can read a setting: the kit, its scripts, benchmarks, tests (the test
    settings) and Makefile; not this file."""
    paths = [*(REPO_ROOT / "p4cf_kit").rglob("*.py"), *(REPO_ROOT / "scripts").glob("*.sh"),
             *(REPO_ROOT / "benchmarks").glob("*.py"), REPO_ROOT / "Makefile",
             *(p for p in (REPO_ROOT / "tests").glob("*.py") if p.name != Path(__file__).name)]
    return "\n".join(p.read_text(errors="replace") for p in paths)


def test_every_environment_variable_readme_names_is_read() -> None:
    code = code_text()
    names = sorted(set(re.findall(r"\b(P4CF_[A-Z0-9_]+|CONTAINERS_CONF)\b", README)))
    assert "P4CF_CONFIG" in names
    unread = [n for n in names if not re.search(rf"\b{n}\b", code)]
    assert not unread, f"README names environment variables no code reads: {unread}"


def test_demo_honours_p4cf_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """README: `P4CF_CONFIG` points the notebooks *and* `p4cf demo` at another lab."""
    from p4cf_kit.commands import demo
    seen: dict[str, Any] = {}
    monkeypatch.setenv("P4CF_CONFIG", "/tmp/p4cf-readme-lab.toml")
    monkeypatch.setattr(demo, "notebook_paths", lambda: [])
    args = build_parser().parse_args(["demo"])
    with pytest.raises(Exception, match="no notebook to run"):
        demo._run(args)  # noqa: SLF001
    seen["config"] = args.config
    assert seen["config"] == "/tmp/p4cf-readme-lab.toml"


def default_document() -> dict[str, Any]:
    return tomllib.loads((REPO_ROOT / "p4cf_kit" / "configs" / "default.toml").read_text())


def _with_files(doc: dict[str, Any], where: Path) -> dict[str, Any]:
    """README's remote-switch example names the user's files relative to the config file: make
    empty stand-ins under `where` so the parse judges the keys, not a missing certificate."""
    switch = doc.get("switch", {})
    named = [(switch, k) for k in ("p4info", "device_config")] + \
        [(switch.get("tls", {}), k) for k in ("ca", "cert", "key")]
    for section, key in named:
        if isinstance(section.get(key), str) and not Path(section[key]).is_absolute():
            path = where / section[key]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")
            section[key] = str(path)
    return doc


def test_every_config_key_readme_names_is_accepted(tmp_path: Path) -> None:
    from p4cf_kit.config import parse_config
    default = default_document()
    files = {"log", "py", "json", "toml", "txt", "csv", "img"}  # `switch.log` is a file, not a key
    sections = r"`(lab|switch|images|backend|migration)\.([a-z_]+)`"
    dotted = {(s, k) for s, k in re.findall(sections, README) if k not in files}
    assert len(dotted) >= 10, dotted
    for section, key in sorted(dotted):
        assert key in default.get(section, {}), f"README names `{section}.{key}`, which the config does not have"
        parse_config({**default, section: {**default[section], key: default[section][key]}})
    inline = re.findall(r"`(\[[a-z]+\] [a-z_]+ = [^`]+)`", README)
    blocks = re.findall(r"```toml\n(.*?)```", README, flags=re.S)
    assert inline or blocks
    docs = [tomllib.loads(re.sub(r"^(\[[a-z]+\]) ", r"\1\n", text)) for text in [*inline, *blocks]]
    # README's snippets build one lab: the machines and host placements one names, another uses
    # (an example that runs the switch on another machine is whole by itself: its machines and hosts stay its own)
    shared = [d for d in docs if "machine" not in d.get("switch", {})]
    placed = {k: {n: v for d in shared for n, v in d.get(k, {}).items()} for k in ("machines", "hosts")}
    for doc in docs:
        ports = doc.get("switch", {}).get("ports", {}).values()
        if any(":" in str(v) for v in ports):  # a port map naming machines needs them
            doc = {**placed, **doc}
        doc = _with_files(doc, tmp_path)
        merged = {k: {**default.get(k, {}), **v} for k, v in doc.items()}
        parse_config({**default, **merged})  # raises ConfigError naming any key it does not know


def test_platform_claims_match_the_packaging() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["requires-python"] == ">=3.11"
    assert "Python (>= 3.11" in README and sys.version_info >= (3, 11)
    assert "Ubuntu 22.04+" not in README  # its Python 3.10 cannot run the kit


def test_numbers_called_measured_name_their_benchmark() -> None:
    paragraphs = re.split(r"\n\s*\n", re.sub(r"```.*?```", "", README, flags=re.S))
    unnamed = [p.strip()[:120] for p in paragraphs
               if re.search(r"\bmeasured\b", p, flags=re.I) and "benchmarks/" not in p]
    assert not unnamed, f"paragraphs call something measured without naming its benchmark: {unnamed}"
