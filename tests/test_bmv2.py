"""The BMv2 target: tool lookup, the p4c and simple_switch_grpc command lines, the registry.

BMv2 and p4c cannot be installed on the kit's machines, so the command lines are built for
both variants (host binary, p4lang image) and checked argument by argument against what
simple_switch_grpc's and p4c's option parsers expect. What needs the real programs (compiling,
a running BMv2 programmed over P4Runtime) runs where they are found and is skipped, with the
reason, elsewhere. Tool lookup, Podman image lookup and process handling run for real.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from google.protobuf import text_format
from p4.config.v1 import p4info_pb2

from p4cf_kit.config import default_config
from p4cf_kit.errors import ConfigError, PrerequisiteError, SwitchError
from p4cf_kit.labels import LABEL
from p4cf_kit.paths import P4_PROGRAM, P4INFO_TXT
from p4cf_kit.switch import pids, targets
from p4cf_kit.switch.bmv2 import compile as p4compile
from p4cf_kit.switch.bmv2 import process as bmv2_process
from p4cf_kit.switch.bmv2 import toolchain
from p4cf_kit.switch.bmv2.command import Bmv2Options, switch_args, switch_command
from p4cf_kit.switch.bmv2.toolchain import Tool
from p4cf_kit.switch.state import STATE_FILE, SwitchState, write_state
from p4cf_kit.topology.names import LabNames
from packet_io import packet_socket, receive_tcp_to
from targets import RunningSwitch, free_tcp_port

HOST_P4C = Tool("p4c", binary="/opt/p4c/bin/p4c")
IMAGE_P4C = Tool("p4c", image="docker.io/p4lang/p4c")
HOST_BMV2 = Tool("simple_switch_grpc", binary="/usr/local/bin/simple_switch_grpc")
IMAGE_BMV2 = Tool("simple_switch_grpc", image="docker.io/p4lang/behavioral-model")
P4C = toolchain.find_p4c()
BMV2 = toolchain.find_simple_switch_grpc()


def flag_value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


# --- toolchain ---------------------------------------------------------------------------------

def test_a_tool_is_either_a_binary_or_an_image() -> None:
    with pytest.raises(ValueError):
        Tool("p4c")
    with pytest.raises(ValueError):
        Tool("p4c", binary="/usr/bin/p4c", image="p4lang/p4c")
    assert not HOST_P4C.in_image and IMAGE_P4C.in_image
    assert IMAGE_P4C.describe() == "p4c in image docker.io/p4lang/p4c"


def test_binary_lookup_follows_the_environment_variable(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    true = shutil.which("true")
    assert true is not None
    monkeypatch.setenv("P4CF_TEST_TOOL", true)  # a path
    assert toolchain.find_binary("P4CF_TEST_TOOL", "p4cf-no-such-tool") == true
    monkeypatch.setenv("P4CF_TEST_TOOL", "true")  # a name on PATH
    assert toolchain.find_binary("P4CF_TEST_TOOL", "p4cf-no-such-tool") == true
    monkeypatch.setenv("P4CF_TEST_TOOL", str(tmp_path / "missing"))
    assert toolchain.find_binary("P4CF_TEST_TOOL", "true") is None
    not_executable = tmp_path / "plain"
    not_executable.write_text("")
    monkeypatch.setenv("P4CF_TEST_TOOL", str(not_executable))
    assert toolchain.find_binary("P4CF_TEST_TOOL", "true") is None
    monkeypatch.delenv("P4CF_TEST_TOOL")
    assert toolchain.find_binary("P4CF_TEST_TOOL", "true") == true
    assert toolchain.find_binary("P4CF_TEST_TOOL", "p4cf-no-such-tool") is None


def test_image_candidates_put_the_chosen_image_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(toolchain.P4C_IMAGE_ENV, raising=False)
    assert toolchain.image_candidates(toolchain.P4C_IMAGE_ENV, toolchain.P4C_IMAGES) == toolchain.P4C_IMAGES
    monkeypatch.setenv(toolchain.P4C_IMAGE_ENV, "registry.example/p4c:1.2")
    assert toolchain.image_candidates(toolchain.P4C_IMAGE_ENV, toolchain.P4C_IMAGES) == (
        "registry.example/p4c:1.2", "p4lang/p4c", "docker.io/p4lang/p4c")
    monkeypatch.setenv(toolchain.P4C_IMAGE_ENV, "p4lang/p4c")
    assert toolchain.image_candidates(toolchain.P4C_IMAGE_ENV, toolchain.P4C_IMAGES) == toolchain.P4C_IMAGES


def _local_image() -> str | None:
    if shutil.which("podman") is None:
        return None
    from p4cf_kit.podman.runner import podman
    refs = [r for r in podman("images", "--format", "{{.Repository}}:{{.Tag}}", check=False).stdout.split()
            if "<none>" not in r]
    return refs[0] if refs else None


@pytest.mark.podman
def test_image_lookup_asks_podman_and_never_pulls() -> None:
    existing = _local_image()
    if existing is None:
        pytest.skip("no local Podman image to look up (run `p4cf images build`)")
    missing = "localhost/p4cf-no-such-image:never"
    assert toolchain.find_image([missing, existing]) == existing
    assert toolchain.find_image([missing]) is None


def test_require_says_how_to_install() -> None:
    if P4C is None:
        with pytest.raises(PrerequisiteError, match="p4c not found: install p4c \\(README 'BMv2 target'\\)"):
            toolchain.require_p4c()
    else:
        assert toolchain.require_p4c() == P4C
    if BMV2 is None:
        with pytest.raises(PrerequisiteError, match="podman pull docker.io/p4lang/behavioral-model"):
            toolchain.require_simple_switch_grpc()
    else:
        assert toolchain.require_simple_switch_grpc() == BMV2


# --- p4c -----------------------------------------------------------------------------------------

def test_p4c_command_for_a_host_binary(tmp_path: Path) -> None:
    argv = p4compile.p4c_command(HOST_P4C, P4_PROGRAM, tmp_path)
    assert argv == ["/opt/p4c/bin/p4c", "--target", "bmv2", "--arch", "v1model", "--std", "p4-16",
                    "-o", str(tmp_path), "--p4runtime-files", str(tmp_path / "load_balance.p4info.txt"),
                    str(P4_PROGRAM)]


def test_p4c_command_for_the_image_mounts_source_and_output(tmp_path: Path) -> None:
    argv = p4compile.p4c_command(IMAGE_P4C, P4_PROGRAM, tmp_path)
    image_at = argv.index("docker.io/p4lang/p4c")
    podman_args, inside = argv[:image_at], argv[image_at + 1:]
    assert podman_args[:3] == ["podman", "run", "--rm"]
    assert "--pull=never" in podman_args and "--network=none" in podman_args
    assert flag_value(podman_args, "--label") == LABEL
    mounts = [podman_args[i + 1] for i, a in enumerate(podman_args) if a == "-v"]
    assert mounts == [f"{P4_PROGRAM.parent}:/p4cf/src:ro", f"{tmp_path}:/p4cf/out"]
    assert flag_value(podman_args, "-w") == "/p4cf/out"
    assert inside == ["p4c", "--target", "bmv2", "--arch", "v1model", "--std", "p4-16",
                      "-o", "/p4cf/out", "--p4runtime-files", "/p4cf/out/load_balance.p4info.txt",
                      "/p4cf/src/load_balance.p4"]


def test_outputs_and_staleness(tmp_path: Path) -> None:
    program = tmp_path / "prog.p4"
    program.write_text("// a program\n")
    out = p4compile.outputs_for(program, tmp_path / "out")
    assert (out.json.name, out.p4info.name) == ("prog.json", "prog.p4info.txt")
    assert not p4compile.is_up_to_date(program, tmp_path / "out")
    (tmp_path / "out").mkdir()
    out.json.write_text("{}")
    assert not p4compile.is_up_to_date(program, tmp_path / "out")  # P4Info missing
    out.p4info.write_text("")
    now = time.time()
    os.utime(program, (now - 10, now - 10))
    assert p4compile.is_up_to_date(program, tmp_path / "out")
    os.utime(program, (now + 10, now + 10))  # the program was edited after compiling
    assert not p4compile.is_up_to_date(program, tmp_path / "out")


def test_default_build_dir_can_be_moved(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(p4compile.BUILD_DIR_ENV, str(tmp_path))
    assert p4compile.default_build_dir() == tmp_path
    monkeypatch.delenv(p4compile.BUILD_DIR_ENV)
    assert p4compile.default_build_dir().parts[-2:] == ("build", "p4")


def test_missing_program_is_a_switch_error(tmp_path: Path) -> None:
    with pytest.raises(SwitchError, match="does not exist"):
        p4compile.compile_program(tmp_path / "nothing.p4", tmp_path, HOST_P4C)


def test_p4info_difference_names_what_changed(tmp_path: Path) -> None:
    assert p4compile.p4info_difference(P4INFO_TXT) is None
    info = p4info_pb2.P4Info()
    text_format.Parse(P4INFO_TXT.read_text(), info)
    info.actions[1].params[0].bitwidth += 1
    changed = tmp_path / "changed.p4info.txt"
    changed.write_text(text_format.MessageToString(info))
    diff = p4compile.p4info_difference(changed)
    assert diff is not None and info.actions[1].preamble.name in diff


@pytest.mark.slow
@pytest.mark.skipif(P4C is None, reason="p4c not found: install p4c (README 'BMv2 target'); "
                                        "the command-line tests above stand in for it")
def test_p4c_compiles_the_program_and_its_p4info_is_the_shipped_one(tmp_path: Path) -> None:
    out = p4compile.compile_program(P4_PROGRAM, tmp_path, P4C)
    bmv2_json = json.loads(out.json.read_text())
    assert {"pipelines", "parsers", "deparsers"} <= set(bmv2_json)
    assert {p["name"] for p in bmv2_json["pipelines"]} == {"ingress", "egress"}
    assert p4compile.p4info_difference(out.p4info) is None
    assert p4compile.ensure_compiled(P4_PROGRAM, tmp_path, P4C) == out  # up to date: no recompile


# --- simple_switch_grpc's command line -----------------------------------------------------------

def test_switch_args_from_the_labs_port_map() -> None:
    cfg = default_config(hosts=4)
    names = LabNames(cfg.name)
    ports = {h.port: names.switch_port(h.port) for h in reversed(cfg.hosts)}
    args = switch_args(Bmv2Options(ports=ports, grpc_addr="127.0.0.1:9559", device_id=cfg.switch.device_id))
    assert args == ["--device-id", "1",
                    "-i", "1@p4cf-1sw", "-i", "2@p4cf-2sw", "-i", "3@p4cf-3sw", "-i", "4@p4cf-4sw",
                    "--log-console", "--log-level", "warn", "--no-p4",
                    "--", "--grpc-server-addr", "127.0.0.1:9559"]


def test_switch_args_with_every_option(tmp_path: Path) -> None:
    opts = Bmv2Options(ports={7: "veth7"}, grpc_addr="unix:/run/p4cf/s1.sock", device_id=3,
                       json=tmp_path / "lb.json", log_console=False, log_file=tmp_path / "bmv2.log",
                       log_level="info", pcap_dir=tmp_path / "pcap", thrift_port=9091, cpu_port=255)
    args = switch_args(opts)
    assert args == ["--device-id", "3", "-i", "7@veth7", "--log-file", str(tmp_path / "bmv2.log"),
                    "--log-level", "info", f"--pcap={tmp_path / 'pcap'}", "--thrift-port", "9091",
                    str(tmp_path / "lb.json"),
                    "--", "--grpc-server-addr", "unix:/run/p4cf/s1.sock", "--cpu-port", "255"]
    # the JSON is BMv2's positional input config: before `--`, never after it
    assert args.index(str(tmp_path / "lb.json")) < args.index("--")


@pytest.mark.parametrize("opts, message", [
    (dict(log_file=Path("/tmp/x.log")), "--log-console together with --log-file"),
    (dict(ports={511: "veth1"}), "drop port"),
    (dict(ports={1: "an-interface-name-too-long"}), "not a Linux interface name"),
    (dict(ports={1: "a@b"}), "not a Linux interface name"),
    (dict(ports={1: "veth1", 2: "veth1"}), "attached twice"),
    (dict(cpu_port=1), "also a data port"),
    (dict(cpu_port=0), "cpu port 0"),
    (dict(log_level="verbose"), "log level"),
    (dict(grpc_addr=""), "gRPC address"),
    (dict(thrift_port=70000), "thrift port"),
])
def test_options_bmv2_would_refuse_are_refused_first(opts: dict, message: str) -> None:
    base = dict(ports={1: "veth1"}, grpc_addr="127.0.0.1:9559")
    with pytest.raises(ValueError, match=message):
        switch_args(Bmv2Options(**{**base, **opts}))


def test_host_binary_command_and_the_switch_netns() -> None:
    opts = Bmv2Options(ports={1: "p4cf-1sw"}, grpc_addr="127.0.0.1:9559")
    assert switch_command(HOST_BMV2, opts) == ["/usr/local/bin/simple_switch_grpc", *switch_args(opts)]
    in_ns = Bmv2Options(ports={1: "p4cf-1sw"}, grpc_addr="unix:/var/lib/p4cf/labs/default/s1.grpc.sock",
                        netns_path="/run/netns/p4cf-s1")
    assert switch_command(HOST_BMV2, in_ns) == ["nsenter", "--net=/run/netns/p4cf-s1",
                                                "/usr/local/bin/simple_switch_grpc", *switch_args(in_ns)]


def test_image_command_joins_the_network_and_mounts_its_files(tmp_path: Path) -> None:
    names = LabNames("default")
    label_args = names.labels("switch")
    opts = Bmv2Options(ports={1: "p4cf-1sw", 2: "p4cf-2sw"}, grpc_addr=f"unix:{tmp_path}/state/s1.grpc.sock",
                       json=tmp_path / "build" / "load_balance.json", pcap_dir=tmp_path / "pcap",
                       netns_path="/run/netns/p4cf-s1", container_name="p4cf-s1-bmv2",
                       labels=tuple(label_args[1::2]))
    argv = switch_command(IMAGE_BMV2, opts)
    image_at = argv.index("docker.io/p4lang/behavioral-model")
    podman_args, inside = argv[:image_at], argv[image_at + 1:]
    assert podman_args[:3] == ["podman", "run", "--rm"]
    assert {"--pull=never", "--privileged", "--network=ns:/run/netns/p4cf-s1"} <= set(podman_args)
    assert flag_value(podman_args, "--name") == "p4cf-s1-bmv2"
    assert [podman_args[i + 1] for i, a in enumerate(podman_args) if a == "--label"] == label_args[1::2]
    mounts = [podman_args[i + 1] for i, a in enumerate(podman_args) if a == "-v"]
    assert mounts == [f"{tmp_path}/state:{tmp_path}/state", f"{tmp_path}/build:{tmp_path}/build",
                      f"{tmp_path}/pcap:{tmp_path}/pcap"]
    assert inside == ["simple_switch_grpc", *switch_args(opts)]  # same arguments as on the host
    root_ns = Bmv2Options(ports={1: "p4cf-1sw"}, grpc_addr="127.0.0.1:9559")
    host_argv = switch_command(IMAGE_BMV2, root_ns)
    assert "--network=host" in host_argv and "-v" not in host_argv


# --- the registry ---------------------------------------------------------------------------------

def test_registry_names_and_pipelines() -> None:
    assert set(targets.TARGETS) == {"embedded", "bmv2"}
    with pytest.raises(ConfigError, match="embedded, bmv2"):
        targets.get_target("tofino")
    embedded = targets.get_target("embedded")
    assert embedded.unavailable() is None
    assert embedded.pipeline() == targets.PipelineFiles(P4INFO_TXT, None)
    assert embedded.pipeline().device_config_bytes() == b""
    why = targets.get_target("bmv2").unavailable()
    if BMV2 is None:
        assert why == toolchain.MISSING_BMV2
    elif P4C is None and why is not None:
        assert why.startswith(toolchain.MISSING_P4C)


def test_embedded_target_starts_and_stops_through_the_registry(tmp_path: Path) -> None:
    addr = f"127.0.0.1:{free_tcp_port()}"
    proc = targets.get_target("embedded").start(tmp_path, {}, addr, device_id=1)
    try:
        assert proc.grpc_addr == addr
        assert targets.running_pid(tmp_path) == proc.pid
        assert targets.running(tmp_path) == proc and proc.target == "embedded"
    finally:
        stopped = targets.stop_switch(tmp_path)
    assert stopped == proc.pid
    assert targets.running_pid(tmp_path) is None
    assert not (tmp_path / STATE_FILE).exists()


def test_bmv2_stop_never_signals_a_recycled_pid(tmp_path: Path) -> None:
    """A state file naming a process that is not simple_switch_grpc (its pid was reused) is only forgotten."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        write_state(tmp_path / STATE_FILE, SwitchState("bmv2", other.pid, "unix:/nowhere", bmv2_process.DATA_PATH))
        assert targets.running_pid(tmp_path) is None
        assert targets.stop_switch(tmp_path) is None
        assert other.poll() is None  # still running
        assert not (tmp_path / STATE_FILE).exists()
    finally:
        other.kill()
        other.wait()


# --- a real BMv2 ---------------------------------------------------------------------------------

def test_each_target_takes_its_pipeline_and_entries_from_the_kits_controller(switch_target: RunningSwitch) -> None:
    """The kit's own P4Runtime session pushes the target's pipeline (for BMv2: p4c's P4Info and
    the JSON), then writes and reads an entry."""
    import p4runtime_sh.shell as sh

    from p4cf_kit.control.connection import SwitchConnection
    sw = switch_target
    with SwitchConnection(sw.grpc_addr, sw.device_id, p4info=sw.pipeline.p4info,
                          device_config=sw.pipeline.device_config).connect(push_pipeline=True, timeout=20):
        nh = sh.TableEntry("MyIngress.ecmp_nhop")(action="MyIngress.set_nhop")
        nh.match["meta.ecmp_select"] = "1"
        nh.action["nhop_dmac"] = "02:cf:00:00:01:02"
        nh.action["nhop_ipv4"] = "10.0.2.10"
        nh.action["port"] = "2"
        nh.insert()
        (got,) = list(sh.TableEntry("MyIngress.ecmp_nhop").read())
        assert int.from_bytes(got.action["port"].value, "big") == 2
    if sw.target == "bmv2":
        assert sw.pid is not None and pids.runs(sw.pid, bmv2_process.MARKER)


# --- `p4cf p4 compile` -----------------------------------------------------------------------------

def test_p4_compile_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from p4cf_kit.cli import main
    status = main(["p4", "compile", "--out", str(tmp_path)])
    err = capsys.readouterr()
    if P4C is None:
        assert status == 1 and "p4c not found: install p4c (README 'BMv2 target')" in err.err
    else:
        assert status == 0 and "matches the shipped" in err.out
        assert (tmp_path / "load_balance.json").is_file()


# --- the same frames through each target, in kit-owned namespaces ----------------------------------

@pytest.mark.netns
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (kit-owned network namespaces)")
class TestEachTargetForwardsInItsNetns:
    """The fixture with a port map in a netns (how tests/test_dataplane.py can run on both targets):
    the kit's controller installs the load balancer, a TCP SYN to the VIP reaches the backend."""

    @pytest.fixture
    def topo(self):
        from p4cf_kit.netns import StarTopology
        with StarTopology(f"p4cf-t-{os.getpid() % 4096:03x}b-", 2) as topo:
            yield topo

    @pytest.fixture
    def switch_ports(self, topo) -> dict[int, str]:
        return {i: topo.switch_if(i) for i in range(1, topo.hosts + 1)}

    @pytest.fixture
    def switch_netns(self, topo) -> str:
        return topo.switch_ns

    def test_syn_to_the_vip_is_dnated_to_the_backend(self, switch_target: RunningSwitch, topo) -> None:
        import socket
        import struct

        from p4cf_kit.control.connection import SwitchConnection
        from p4cf_kit.control.loadbalancer import LoadBalancer, NextHop

        sw = switch_target
        nh = {i: NextHop(topo.host_mac(i), topo.host_ip(i), i) for i in (1, 2)}
        with SwitchConnection(sw.grpc_addr, sw.device_id, p4info=sw.pipeline.p4info,
                              device_config=sw.pipeline.device_config).connect(push_pipeline=True,
                                                                               timeout=20) as conn:
            LoadBalancer(conn).install("10.0.0.100", "10.0.1.0/24", nh[1], [nh[2]],
                                       {i: topo.SWITCH_MAC for i in (1, 2)})

            h1 = packet_socket(topo.host_ns(1), topo.HOST_IF)
            h2 = packet_socket(topo.host_ns(2), topo.HOST_IF)
            try:
                h2.settimeout(0.2)
                ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0,
                                 socket.inet_aton(topo.host_ip(1)), socket.inet_aton("10.0.0.100"))
                tcp = struct.pack("!HHIIBBHHH", 40001, 5001, 0, 0, 0x50, 0x02, 65535, 0, 0)
                h1.send(bytes.fromhex(topo.SWITCH_MAC.replace(":", "")) +
                        bytes.fromhex(topo.host_mac(1).replace(":", "")) + b"\x08\x00" + ip + tcp)
                got = receive_tcp_to(h2, 5001, timeout=5)
            finally:
                h1.close()
                h2.close()
        assert got is not None, f"the SYN did not reach the backend through {sw.target}"
        assert got[0:6] == bytes.fromhex(topo.host_mac(2).replace(":", ""))  # set_nhop's dmac
        assert got[6:12] == bytes.fromhex(topo.SWITCH_MAC.replace(":", ""))  # rewrite_mac
        assert got[30:34] == socket.inet_aton(topo.host_ip(2))  # DNAT to the backend
