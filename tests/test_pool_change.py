"""What a pool change does to open connections: the hash's prediction and the client log's account.

Pure Python: the prediction is checked against the embedded switch's own pipeline (the program as
BMv2 runs it), the account against a client log written as the client writes it.
"""

from __future__ import annotations

import ipaddress

import pandas as pd

from p4cf_kit.analysis.client_log import typed_client_log
from p4cf_kit.analysis.pool_change import change_effect, describe_effect, open_connections
from p4cf_kit.control.flow_hash import pool_slot
from p4cf_kit.switch.embedded.pipeline import LoadBalancerPipeline

VIP, CLIENT, PORT = "10.0.0.100", "10.0.1.10", 8000


def frame_to_vip(sport: int) -> bytes:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:fe") / IP(src=CLIENT, dst=VIP, ttl=64)
                 / TCP(sport=sport, dport=PORT, flags="PA") / b"x")


def test_pool_slot_is_the_programs_choice() -> None:
    for count in (1, 2, 3, 5):
        p = LoadBalancerPipeline()
        p.set_ecmp_group(int(ipaddress.IPv4Address(VIP)), 32, "set_ecmp_select", {"ecmp_base": 1, "ecmp_count": count})
        for i in range(count):
            p.set_ecmp_nhop(i + 1, "set_nhop", {"nhop_dmac": 0x020000000002 + i,
                                                "nhop_ipv4": int(ipaddress.IPv4Address(f"10.0.{i + 2}.10")),
                                                "port": i + 2})
        for sport in range(40000, 40040):
            _, decision, _ = p.decision_for(frame_to_vip(sport))
            assert decision.lookup == 1 + pool_slot(CLIENT, sport, VIP, PORT, count), (count, sport)


def log(rows: list[tuple[int, str, int, str, str]]) -> pd.DataFrame:
    """(conn_id, event, t_ns, host, detail) rows of a client log."""
    return typed_client_log(pd.DataFrame([
        {"conn_id": c, "src_ip": CLIENT, "src_port": 40000 + c, "dst_ip": VIP, "dst_port": PORT, "event": e,
         "t_ns": t, "recv_ns": t if e == "reply" else None, "host": h, "detail": d} for c, e, t, h, d in rows]))


def test_the_client_log_says_what_a_change_did() -> None:
    events = log([(1, "open", 0, "", ""), (2, "open", 0, "", ""), (3, "open", 0, "", ""), (4, "open", 0, "", ""),
                  (1, "reply", 10, "h2", ""), (2, "reply", 10, "h3", ""), (3, "reply", 10, "h3", ""),
                  (4, "error:eof", 20, "", ""),  # ended before the change: not counted
                  (1, "reply", 110, "h2", ""), (2, "error:reset", 105, "", "unanswered=1"),
                  (3, "reply", 120, "h4", "")])
    assert open_connections(events, 100)["conn_id"].tolist() == [1, 2, 3]
    effect = change_effect(events, 100, {1: "h2", 2: "h4", 3: "h4"})
    assert effect.set_index("conn_id")["outcome"].to_dict() == {1: "kept", 2: "error:reset", 3: "moved"}
    text = describe_effect(effect)
    assert text.startswith("of 3 open connections: 1 kept their backend, 1 moved")
    assert "1 broke (1 reset; they were 1 on h3)" in text
