"""Figures: every family writes PNG/SVG/PDF + CSV; `p4cf plot` redraws them from a results folder."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from p4cf_kit import analysis as an
from p4cf_kit import results
from p4cf_kit.analysis import synthetic
from p4cf_kit.cli import main as p4cf
from p4cf_kit.plots import catalog, style
from p4cf_kit.plots.export import FORMATS, FigureFiles
from p4cf_kit.plots.report import figures_from_frames, figures_from_raw

EXPECTED = {"distribution", "throughput", "downtime-connections-m1", "timeline-m1", "downtime-cdf", "phases",
            "survival", "summary"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[results.ResultsFolder, list[FigureFiles]]:
    """A results folder holding a small synthetic run (one migration, one connection broken): raw data and
    every figure, drawn from raw/ as `p4cf plot --from-raw` does."""
    exp = synthetic.generate(synthetic.SyntheticExperiment(connections=4, duration_s=8,
                                                           migration_starts_s=(3.0,), broken={1: 1}))
    folder = results.ResultsFolder.create("synthetic plots", {"workload": {"connections": 4, "rate": 50.0}},
                                          parent=tmp_path_factory.mktemp("results"),
                                          versions={"python": "test"})
    exp.log.to_csv(folder.raw(results.CLIENT_LOG), index=False)
    exp.counters.to_csv(folder.raw(results.SWITCH_COUNTERS), index=False)
    folder.write_migrations(exp.migrations)
    written = figures_from_raw(folder)
    folder.finish()
    return folder, written


def assert_complete(files: FigureFiles) -> None:
    assert {p.suffix[1:] for p in files.images} == set(FORMATS)
    for path in files.paths:
        assert path.exists() and path.stat().st_size > 0, path
    assert files.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert files.data and files.data[0].name == f"{files.name}.csv"


def test_every_figure_is_written_with_its_data(run: tuple[results.ResultsFolder, list[FigureFiles]]) -> None:
    folder, written = run
    assert {f.name for f in written} == EXPECTED
    for files in written:
        assert_complete(files)
        assert files.png.parent == folder.figures_dir
    timeline = next(f for f in written if f.name == "timeline-m1")
    assert {p.name for p in timeline.data} == {"timeline-m1.csv", "timeline-m1.phases.csv", "timeline-m1.errors.csv"}
    errors = pd.read_csv(folder.figures_dir / "timeline-m1.errors.csv")
    assert errors["event"].tolist() == ["error:reset"]


def test_results_folder_describes_itself(run: tuple[results.ResultsFolder, list[FigureFiles]]) -> None:
    folder, _ = run
    assert folder.path.name.endswith("-synthetic-plots")
    assert "[workload]" in (folder.path / results.CONFIG_FILE).read_text()
    meta = folder.meta()
    assert meta["what"] == "synthetic plots" and meta["finished_ns"] >= meta["started_ns"]
    assert folder.finish() is False and folder.meta() == meta  # re-running a last cell re-dates nothing
    assert json.loads((folder.path / results.VERSIONS_FILE).read_text()) == {"python": "test"}
    assert an.load_phases(folder.raw(results.MIGRATIONS))["migration"].tolist() == [1]
    copied = folder.add_raw(folder.raw(results.CLIENT_LOG), "client-copy.csv")
    assert copied.read_bytes() == folder.raw(results.CLIENT_LOG).read_bytes()
    copied.unlink()


def test_p4cf_plot_regenerates_every_figure_from_csv(run: tuple[results.ResultsFolder, list[FigureFiles]],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    folder, written = run
    for files in written:
        for image in files.images:
            image.unlink()
    assert p4cf(["plot", str(folder.path)]) == 0
    assert f"{len(EXPECTED)} figures" in capsys.readouterr().out
    for files in written:
        for image in files.images:
            assert image.exists() and image.stat().st_size > 0, image


def test_figures_without_migrations_or_switch_counters(tmp_path: Path) -> None:
    """A run that only measured distribution still gets its figures (those that make sense)."""
    exp = synthetic.generate(synthetic.SyntheticExperiment(connections=2, duration_s=4, migration_starts_s=(),
                                                           broken={}))
    written = figures_from_frames(exp.log, tmp_path)
    assert {f.name for f in written} == {"distribution", "throughput", "summary"}
    for files in written:
        assert_complete(files)


def test_p4cf_plot_on_a_wrong_folder_says_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert p4cf(["plot", str(tmp_path)]) == 1
    assert "not a results folder" in capsys.readouterr().err


def test_family_names() -> None:
    assert catalog.family_of("timeline-m12").name == "timeline"
    assert catalog.family_of("downtime-cdf").name == "downtime-cdf"
    assert catalog.family_of("timeline-x") is None
    assert catalog.family_of("topology").name == "topology"


def test_host_colours_are_fixed_and_distinct() -> None:
    assert style.host_color("h2") == style.HOST_COLORS["h2"]
    assert len({style.host_color(h) for h in ("h1", "h2", "h3", "h4", "h5")}) == 5
    assert style.host_color("backend-17") == style.host_color("backend-17")
    assert sorted(["h10", "h2", "h3"], key=style.host_sort_key) == ["h2", "h3", "h10"]


def test_toml_writer_round_trips() -> None:
    import tomllib

    config = {"name": "x \"quoted\"", "n": 3, "rate": 50.0, "on": True, "hosts": ["h2", "h3"],
              "lab": {"vip": "10.0.0.100", "switch": {"target": "embedded"}}}
    assert tomllib.loads(results.dump_toml(config)) == config


def test_throughput_of_a_single_bin_draws(tmp_path: Path) -> None:
    """A run shorter than two bins (one t_s for every host) still draws, in 1 s steps."""
    from p4cf_kit.plots.throughput import plot_throughput
    data = pd.DataFrame({"t_s": [0.0, 0.0], "host": ["h2", "h3"], "messages_per_s": [10.0, 12.0]})
    out = plot_throughput(data, None, tmp_path)
    assert out.images[0].exists()
