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


def _remote(tmp_path: Path, **switch: object) -> dict[str, object]:
    from p4cf_kit.paths import P4INFO_TXT
    (tmp_path / "ca.pem").write_text("x")
    return {"lab": {"hosts": 3},
            "switch": {"target": "remote", "grpc_addr": "192.0.2.10:9559", "p4info": str(P4INFO_TXT),
                       "tls": {"ca": str(tmp_path / "ca.pem")},
                       "ports": {"5": "local:eno1", "6": "local:eno2", "9": "local:eno3"}, **switch}}


def test_remote_switch_maps_hosts_to_its_ports(tmp_path: Path) -> None:
    cfg = parse_config(_remote(tmp_path))
    assert [(h.name, h.port, h.uplink) for h in cfg.hosts] == [("h1", 5, "eno1"), ("h2", 6, "eno2"),
                                                                ("h3", 9, "eno3")]
    assert cfg.switch.remote and cfg.switch.tls is not None and not cfg.switch.netns
    again = parse_config(config_to_dict_source(cfg))
    assert again.switch == cfg.switch and again.hosts == cfg.hosts


def test_remote_switch_files_are_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "lb.txt").write_text("")
    (tmp_path / "ca.pem").write_text("x")
    (tmp_path / "lab.toml").write_text(
        '[lab]\nhosts = 2\n[switch]\ntarget = "remote"\ngrpc_addr = "192.0.2.10:9559"\np4info = "lb.txt"\n'
        '[switch.tls]\nca = "ca.pem"\n[switch.ports]\n1 = "local:a"\n2 = "local:b"\n')
    cfg = load_config(tmp_path / "lab.toml")
    assert cfg.switch.p4info == str(tmp_path / "lb.txt") and cfg.switch.tls is not None
    assert cfg.switch.tls.ca == str(tmp_path / "ca.pem")


@pytest.mark.parametrize("change, words", [
    ({"tls": None}, "insecure = true"),                                   # plain text off loopback
    ({"tls": None, "grpc_addr": "127.0.0.1:9559"}, ""),                   # loopback: fine
    ({"tls": None, "insecure": True}, ""),                                # said so: fine
    ({"ports": {"5": "local:eno1"}}, "local:NIC"),                        # h2 has no cable
    ({"ports": {"5": "eno1"}}, "MACHINE:NIC"),
    ({"ports": {"5": "local:eno1", "6": "b:eno2", "7": "local:eno3"}}, "machine 'b'"),
    ({"p4info": "/nonexistent/lb.txt"}, "no such file"),
    ({"grpc_addr": ""}, "needs switch.grpc_addr"),
    ({"datapath": "ebpf"}, "kit's own switches"),
    ({"tls": {"ca": "/nonexistent/ca.pem"}}, "switch.tls.ca"),
])
def test_remote_switch_bad_input(tmp_path: Path, change: dict[str, object], words: str) -> None:
    doc = _remote(tmp_path)
    sw = {**doc["switch"], **change}  # type: ignore[dict-item]
    doc["switch"] = {k: v for k, v in sw.items() if v is not None}
    if not words:
        parse_config(doc)
        return
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace("*", r"\*")):
        parse_config(doc)


def test_remote_pipeline_must_describe_the_load_balancer(tmp_path: Path) -> None:
    from p4cf_kit.paths import P4INFO_TXT
    from p4cf_kit.switch.remote import RemoteTarget
    text = P4INFO_TXT.read_text().replace('name: "MyEgress.send_frame"', 'name: "MyEgress.other"')
    (tmp_path / "lb.txt").write_text(text)
    cfg = parse_config(_remote(tmp_path, p4info=str(tmp_path / "lb.txt")))
    with pytest.raises(ConfigError, match="table MyEgress.send_frame is missing"):
        RemoteTarget(cfg.switch).check_pipeline()
    RemoteTarget(parse_config(_remote(tmp_path)).switch).check_pipeline()  # the shipped one passes


REAL_B = {"podman": "ssh://root@192.0.2.2:22/run/podman/podman.sock", "identity": "/root/.ssh/id_ed25519",
          "uplinks": ["enp1s0"]}


def test_the_switch_on_another_machine_cables_every_other_host() -> None:
    """`[switch] machine = "b"`: hosts there get ports there; this machine's hosts reach it through
    their own NICs (`[hosts.hN] uplink`) cabled to the NICs `[switch.ports]` names there."""
    cfg = parse_config({"lab": {"hosts": 3},
                        "switch": {"target": "bmv2", "machine": "b", "ports": {"1": "enp2s0", "2": "enp3s0"}},
                        "machines": {"b": REAL_B},
                        "hosts": {"h1": {"uplink": "eth1"}, "h2": {"uplink": "eth2"}, "h3": {"machine": "b"}}})
    assert cfg.switch.elsewhere and cfg.switch.machine == "b"
    assert [(h.machine, h.uplink) for h in cfg.hosts] == [("local", "eth1"), ("local", "eth2"), ("b", "")]
    assert config_to_dict(cfg)["switch"]["machine"] == "b"


@pytest.mark.parametrize(("switch", "hosts", "words"), [
    ({"machine": "c"}, {}, "switch.machine = 'c' is not a machine of this lab"),
    ({"machine": "b", "netns": False}, {}, "needs switch.netns = true"),
    ({"machine": "b", "grpc_addr": "unix:/tmp/x.sock"}, {}, "remove grpc_addr"),
    ({"machine": "b", "ports": {"2": "enp2s0"}}, {"h2": {"uplink": "eth2"}}, "[hosts.h1] uplink"),
    ({"machine": "b", "ports": {"1": "a", "2": "b"}},
     {"h1": {"uplink": "e1"}, "h2": {"uplink": "e2", "machine": "b"}}, "remove uplink"),
    ({"machine": "b"}, {"h1": {"uplink": "e1"}, "h2": {"uplink": "e2"}}, "[switch.ports] 1 = "),
])
def test_the_switch_on_another_machine_bad_input(switch: dict, hosts: dict, words: str) -> None:
    doc = {"lab": {"hosts": 2}, "switch": {"target": "embedded", **switch}, "machines": {"b": REAL_B},
           "hosts": hosts}
    with pytest.raises(ConfigError) as err:
        parse_config(doc)
    assert words in str(err.value)


@pytest.mark.parametrize("transfer", ["ssh", "tcp", None])
def test_a_machines_transfer_way_survives_the_labs_saved_config(transfer: str | None) -> None:
    """tcp is the default way; a saved lab (config_to_dict_source) keeps an explicit ssh."""
    entry: dict[str, object] = {"emulated": True} | ({"transfer": transfer} if transfer else {})
    cfg = parse_config({"lab": {"name": "rt", "hosts": 4}, "machines": {"bx": entry},
                        "hosts": {"h4": {"machine": "bx"}}})
    assert cfg.machines["bx"].transfer == (transfer or "tcp")
    assert parse_config(config_to_dict_source(cfg)).machines["bx"].transfer == (transfer or "tcp")


def test_a_lab_with_its_switch_elsewhere_survives_its_saved_config() -> None:
    cfg = parse_config({"lab": {"hosts": 3},
                        "switch": {"target": "bmv2", "machine": "b", "ports": {"1": "enp2s0", "2": "enp3s0"}},
                        "machines": {"b": {**REAL_B, "simple_switch_grpc": "/opt/bmv2/bin/simple_switch_grpc"}},
                        "hosts": {"h1": {"uplink": "eth1"}, "h2": {"uplink": "eth2"}, "h3": {"machine": "b"}}})
    again = parse_config(config_to_dict_source(cfg))
    assert again.switch == cfg.switch and again.hosts == cfg.hosts and again.machines == cfg.machines
