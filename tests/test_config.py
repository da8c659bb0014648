"""Lab config: defaults give the classic layout; bad values fail naming the field and the fix."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from p4cf_kit.config import config_to_dict, default_config, load_config, parse_config
from p4cf_kit.errors import ConfigError
from p4cf_kit.lab import config_to_dict_source


def test_packaged_default_is_the_classic_lab() -> None:
    cfg = load_config()
    assert [h.name for h in cfg.hosts] == ["h1", "h2", "h3", "h4"]
    assert cfg.client.name == "h1"
    assert [b.name for b in cfg.backends] == ["h2", "h3"]
    assert [h.name for h in cfg.idle] == ["h4"]
    h3 = cfg.host("h3")
    assert h3.subnet == ipaddress.IPv4Network("10.0.3.0/24")
    assert str(h3.ip) == "10.0.3.10" and str(h3.gateway) == "10.0.3.254" and h3.port == 3
    assert all(cfg.vip not in h.subnet for h in cfg.hosts)
    assert cfg.switch.target == "embedded" and cfg.switch.netns
    assert cfg.prefix == "p4cf-"


@pytest.mark.parametrize("n", range(2, 9))
def test_any_host_count_2_to_8(n: int) -> None:
    cfg = default_config(n)
    assert len(cfg.hosts) == n
    assert len({h.mac for h in cfg.hosts} | {h.switch_mac for h in cfg.hosts}) == 2 * n
    assert cfg.backends  # h2 at least


def test_yaml_and_toml_give_the_same_lab(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('[lab]\nname = "x1"\nhosts = 3\nbackends = ["h2", "h3"]\nport = 9000\n')
    (tmp_path / "a.yaml").write_text("lab:\n  name: x1\n  hosts: 3\n  backends: [h2, h3]\n  port: 9000\n")
    a, b = load_config(tmp_path / "a.toml"), load_config(tmp_path / "a.yaml")
    assert config_to_dict(a) == config_to_dict(b)
    assert a.prefix == "p4cf-x1-"


def test_round_trip_through_saved_source() -> None:
    cfg = default_config(5, name="rt", backends=["h2", "h5"])
    assert config_to_dict(parse_config(config_to_dict_source(cfg))) == config_to_dict(cfg)


@pytest.mark.parametrize("raw, field", [
    ({"lab": {"hosts": 1}}, "lab.hosts"),
    ({"lab": {"hosts": 9}}, "lab.hosts"),
    ({"lab": {"hosts": "four"}}, "lab.hosts"),
    ({"lab": {"client": "h9"}}, "lab.client"),
    ({"lab": {"backends": ["h1"]}}, "lab.backends"),
    ({"lab": {"backends": ["h7"]}}, "lab.backends"),
    ({"lab": {"backends": []}}, "lab.backends"),
    ({"lab": {"vip": "10.0.2.100"}}, "lab.vip"),
    ({"lab": {"vip": "not-an-ip"}}, "lab.vip"),
    ({"lab": {"port": 70000}}, "lab.port"),
    ({"lab": {"name": "Bad Name"}}, "lab.name"),
    ({"lab": {"name": "waytoolong"}}, "lab.name"),
    ({"lab": {"subnet_pattern": "10.0.0.0/24"}}, "lab.subnet_pattern"),
    ({"lab": {"subnet_pattern": "10.0.{n}.0/28"}}, "lab.subnet_pattern"),
    ({"lab": {"colour": "red"}}, "[lab]"),
    ({"switch": {"target": "tofino"}}, "switch.target"),
    ({"switch": {"grpc_addr": "127.0.0.1:9559"}}, "switch.grpc_addr"),
    ({"switch": {"grpc_addr": "nohost"}}, "switch.grpc_addr"),
    ({"switch": {"netns": "yes"}}, "switch.netns"),
    ({"switch": {"datapath": "fast"}}, "switch.datapath"),
    ({"switch": {"target": "bmv2", "datapath": "user"}}, "switch.datapath"),
    ({"switch": {"target": "bmv2", "netns": False}}, "switch.netns"),
    ({"images": {"server": ""}}, "images.server"),
    ({"extra": {}}, "top level"),
])
def test_bad_values_name_the_field(raw: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert field in str(err.value)


def test_datapath_names_are_the_switch_options() -> None:
    from p4cf_kit.config import SWITCH_DATAPATHS
    from p4cf_kit.switch.embedded.target import DATAPATHS
    assert SWITCH_DATAPATHS == tuple(DATAPATHS)
    assert parse_config({"switch": {"datapath": "user"}}).switch.datapath == "user"


def test_loopback_grpc_is_fine_without_netns() -> None:
    cfg = parse_config({"switch": {"grpc_addr": "127.0.0.1:9559", "netns": False}})
    assert cfg.switch.grpc_addr == "127.0.0.1:9559"


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "broken.toml").write_text("[lab\n")
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(tmp_path / "broken.toml")


def test_unknown_host_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="h1, h2, h3, h4"):
        default_config().host("h7")
