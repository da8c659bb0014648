"""Experiment options: the backend's route (a cycle of hosts) and its refusals, without a lab.

Pure Python: route_of reads only the lab config and the serving pool, so bad routes are refused
before any traffic or results folder exists."""

from __future__ import annotations

import pytest

from p4cf_kit.config import LabConfig, parse_config
from p4cf_kit.errors import ConfigError
from p4cf_kit.migration.experiment import ExperimentOptions, route_of


def five_hosts() -> LabConfig:
    """h1 client, h2 h3 backends, h4 idle here, h5 idle on another machine."""
    return parse_config({"lab": {"name": "tr", "hosts": 5},
                         "machines": {"far": {"emulated": True}}, "hosts": {"h5": {"machine": "far"}}})


def test_default_alternates_home_and_the_first_idle_host() -> None:
    cfg = five_hosts()
    assert route_of(cfg, ExperimentOptions(), ["h2", "h3"]) == ("h2", "h4")
    assert route_of(cfg, ExperimentOptions(), ["h4", "h3"]) == ("h4", "h2")   # left away from home


def test_route_starts_where_the_backend_runs() -> None:
    cfg = five_hosts()
    opts = ExperimentOptions(route=("h2", "h4", "h5", "h4"))
    assert route_of(cfg, opts, ["h2", "h3"]) == ("h2", "h4", "h5", "h4")
    assert route_of(cfg, opts, ["h5", "h3"]) == ("h5", "h4", "h2", "h4")
    assert route_of(cfg, ExperimentOptions(route=("h2", "h5", "h2", "h4")), ["h2", "h3"]) == ("h2", "h5", "h2", "h4")


@pytest.mark.parametrize(("route", "match"), [
    ((), r"has 0 host\(s\): name at least 2"),
    (("h2",), r"has 1 host\(s\): name at least 2"),
    (("h2", "h9"), r"unknown host 'h9': this lab has h1, h2, h3, h4, h5"),
    (("h2", "h1"), r"names h1, the client"),
    (("h2", "h4", "h4"), r"goes from h4 to h4"),
    (("h2", "h4", "h2"), r"goes from h2 to h2 \(it is a cycle"),
    (("h2", "h3"), r"host h3 is not free, it serves a backend as h2 does"),
    (("h4", "h5"), r"no host of route h4,h5 serves a backend .*start the route at the backend that moves, e.g. h2"),
])
def test_bad_routes_are_refused_naming_the_fix(route: tuple[str, ...], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        route_of(five_hosts(), ExperimentOptions(route=route), ["h2", "h3"])


def test_route_and_backend_spare_exclude_each_other() -> None:
    with pytest.raises(ConfigError, match="either route or backend/spare"):
        route_of(five_hosts(), ExperimentOptions(route=("h2", "h4"), spare="h5"), ["h2", "h3"])
