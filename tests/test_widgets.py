"""The ipywidgets panels driven from Python against a real lab: set values, `button.click()`, read back.

One lab (its own name and subnets, so it can run beside other labs) serves every test here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from p4cf_kit.config import default_config
from p4cf_kit.notebook import migration_unavailable_reason, restore_pool, serving_hosts
from p4cf_kit.widgets import MigrationPanel, PoolPanel

pytestmark = [pytest.mark.podman, pytest.mark.netns, pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def lab() -> Iterator[Any]:
    from p4cf_kit.lab import Lab
    lab = Lab(default_config(name="wdg", subnet_pattern="10.72.{n}.0/24", vip="10.72.0.100"))
    lab.up()
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture
def traffic(lab: Any) -> Iterator[Any]:
    run = lab.traffic(connections=8, rate=50, duration=0)
    run.wait_rows(40)
    yield run
    run.stop()


def watch_disabled(button: Any) -> list[bool]:
    seen: list[bool] = []
    button.observe(lambda change: seen.append(change["new"]), names="disabled")
    return seen


def wait_until(predicate: Any, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_pool_panel_apply_changes_the_switch_and_the_live_chart(lab: Any, traffic: Any) -> None:
    panel = PoolPanel(lab, interval_s=0.5, traffic=traffic)
    try:
        assert {h: b.value for h, b in panel.checkboxes.items()} == {"h2": True, "h3": True, "h4": False}
        assert "pool now (read from the switch): <b>h2 h3</b>" in panel.pool_line.value
        assert bytes(panel.chart.value).startswith(PNG)
        seen = watch_disabled(panel.apply_button)
        panel.checkboxes["h4"].value = True
        # said up front, from the program's hash over the open connections
        assert "h2 h3 → h2 h3 h4" in panel.hint.value and "open connections" in panel.hint.value, panel.hint.value
        panel.apply_button.click()
        assert panel.wait(60)
        assert seen[:1] == [True] and seen[-1] is False  # disabled while running, enabled after
        assert "pool is now h2 h3 h4 (was h2 h3)" in panel.status.value, panel.status.value
        assert "of 8 open connections" in panel.report, panel.report
        assert lab.pool() == ["h2", "h3", "h4"]
        # what the hint predicted is what the client log says happened
        effect = panel.effects[-1]
        assert len(effect) == 8
        for row in effect.itertuples():
            if row.predicted == row.host_before:
                assert row.outcome == "kept", effect
            else:
                assert row.outcome.startswith("error:"), effect
        # new connections spread onto h4: the live rates show it
        fresh = lab.traffic(connections=12, rate=50, duration=3)
        fresh.wait(30)
        assert wait_until(lambda: panel.sampler.rates.query("host == 'h4' and packets_per_s > 0").shape[0] > 0)
        assert panel.sampler.markers["label"].tolist()[-1] == "pool: h2 h3 h4"
        assert bytes(panel.chart.value).startswith(PNG)
        # a change made elsewhere (the notebook's last cell) shows after refresh()
        assert restore_pool(lab) == ["h2", "h3"]  # also stops the server Apply started on h4
        assert panel.refresh() == ["h2", "h3"] and not panel.checkboxes["h4"].value
        panel.stop()
        assert panel.apply_button.disabled and "live chart stopped" in panel.status.value
    finally:
        panel.stop()
        restore_pool(lab)


def test_pool_panel_errors_are_messages(lab: Any) -> None:
    panel = PoolPanel(lab, live=False)
    for box in panel.checkboxes.values():
        box.value = False
    assert "no host ticked" in panel.hint.value
    panel.apply_button.click()
    # refused: the error says so, the real pool stays visible and the boxes are as they were
    assert "no host was ticked" in panel.status.value and "the pool stays h2 h3" in panel.status.value
    assert "<b>h2 h3</b>" in panel.pool_line.value and panel.hint.value == ""
    assert {h: b.value for h, b in panel.checkboxes.items()} == {"h2": True, "h3": True, "h4": False}
    # a real error from the lab (the client cannot be a backend) ends as one line in the panel
    assert panel.runner.start(lambda: lab.pool(["h1"]), "trying")
    assert panel.wait(30)
    assert "h1 is the client" in panel.status.value and "Traceback" not in panel.status.value
    assert not panel.apply_button.disabled
    assert lab.pool() == ["h2", "h3"]


def test_migration_panel(lab: Any, traffic: Any, tmp_path: Any) -> None:
    assert serving_hosts(lab) == ["h2", "h3"]
    panel = MigrationPanel(lab, traffic=traffic, out_dir=tmp_path)
    assert list(panel.src.options) == ["h2", "h3"] and list(panel.dst.options) == ["h4"]
    assert panel.mode.value == "stop-and-copy" and "stop-and-copy" in panel.mode.options
    reason = migration_unavailable_reason()
    if reason is not None:
        assert "migration needs" in panel.status.value
        assert panel.migrate_button.disabled
        panel.migrate_button.click()  # a disabled button in the browser cannot be clicked; from Python it is a no-op
        assert not panel.runner.running and panel.records == []
        pytest.skip(reason)
    panel.src.value, panel.dst.value = "h2", "h4"
    seen = watch_disabled(panel.migrate_button)
    steps: list[int] = []
    panel.progress.bar.observe(lambda change: steps.append(change["new"]), names="value")
    panel.migrate_button.click()
    assert panel.wait(300)
    assert panel.runner.error is None, panel.runner.error
    assert True in seen
    assert len(set(steps)) >= 4, steps  # the bar followed the phases live (on_phase), then filled up
    assert "restore" in panel.progress.chips.value and " s<" in panel.progress.chips.value
    assert "migrated h2 → h4" in panel.status.value
    assert len(panel.results) == 1 and bool(panel.results["ok"].iloc[0])
    assert "Migrations" in panel.table.value and "h2 → h4" in panel.table.value
    assert bytes(panel.plot.value).startswith(PNG)
    assert (tmp_path / "timeline-m1.png").exists() and (tmp_path / "timeline-m1.csv").exists()
    assert list(panel.dst.options) == ["h2"]  # h2's network is free now


def test_panels_say_when_their_lab_is_gone(lab: Any, tmp_path: Any) -> None:
    """Last in this module: it takes the lab down. Both panels then say so, and how to bring it back."""
    from p4cf_kit.notebook import LabSession
    session = LabSession(lab, started=False)  # attached: Tear down lets go and leaves the lab up
    pool_panel = PoolPanel(lab, interval_s=0.5, session=session)
    pool_panel.teardown_button.click()
    assert pool_panel.wait(60)
    assert "let go of lab &#x27;wdg&#x27;" in pool_panel.status.value and pool_panel.apply_button.disabled
    assert lab.pool() == ["h2", "h3"]  # still up
    pool_panel = PoolPanel(lab, interval_s=0.5)
    migration_panel = MigrationPanel(lab, out_dir=tmp_path)
    lab.down()
    assert wait_until(lambda: "is gone" in pool_panel.status.value, 20), pool_panel.status.value
    assert wait_until(lambda: "is gone" in migration_panel.status.value, 20), migration_panel.status.value
    for panel in (pool_panel, migration_panel):
        assert "Run All" in panel.status.value and "p4cf up" in panel.status.value
    assert pool_panel.apply_button.disabled and migration_panel.migrate_button.disabled
    assert "unknown (the lab is gone)" in pool_panel.pool_line.value
