"""Fixtures every test module can take (pytest finds them here; no imports needed).

`switch_target`: a running switch of each target (embedded, bmv2), so a test written once runs
on both (tests/targets.py says how each is started). A module overrides `switch_ports` and
`switch_netns` to give the switch its ports and their namespace.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from targets import TARGET_NAMES, RunningSwitch, running_switch


@pytest.fixture
def switch_ports() -> dict[int, str]:
    """Port map of the switch under test (override in a module); none by default."""
    return {}


@pytest.fixture
def switch_netns() -> str | None:
    """The `ip netns` the switch's ports live in (override in a module); None: the root netns."""
    return None


@pytest.fixture(params=TARGET_NAMES)
def switch_target(request: pytest.FixtureRequest, switch_ports: dict[int, str],
                  switch_netns: str | None) -> Iterator[RunningSwitch]:
    """A running switch of target `request.param` on `switch_ports`, stopped after the test."""
    with running_switch(request.param, switch_ports, switch_netns) as sw:
        yield sw
