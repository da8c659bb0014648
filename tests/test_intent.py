"""The lab's record of its switch entries (control/intent.py): what a restart reinstalls."""

from __future__ import annotations

import json
from pathlib import Path

from p4cf_kit.control.intent import INTENT_FILE, Hop, IntentFile


def test_record_follows_install_pool_and_slot_changes(tmp_path: Path) -> None:
    names = {"10.0.2.2": "h2", "10.0.3.2": "h3", "10.0.4.2": "h4"}
    f = IntentFile(tmp_path, lambda ip: names.get(ip, ""))
    assert f.load() is None
    f.slot_set(1, f.hop("02:00:00:00:04:02", "10.0.4.2", 4))  # nothing installed yet: ignored
    assert f.load() is None
    f.pipeline_set("embedded", "/p4/lb.p4info.txtpb", None)
    client = f.hop("02:00:00:00:01:02", "10.0.1.2", 1)
    f.installed("10.0.0.100", "10.0.1.0/24", client,
                [f.hop("02:00:00:00:02:02", "10.0.2.2", 2), f.hop("02:00:00:00:03:02", "10.0.3.2", 3)],
                {1: "02:aa:00:00:00:01", 2: "02:aa:00:00:00:02"}, base=1)
    got = f.load()
    assert got is not None and got.hosts() == ["h2", "h3"] and got.pipeline["target"] == "embedded"
    f.slot_set(1, f.hop("02:00:00:00:04:02", "10.0.4.2", 4))  # a migration: h2's slot -> h4
    assert f.load().hosts() == ["h4", "h3"]
    f.slot_set(9, f.hop("02:00:00:00:04:02", "10.0.4.2", 4))  # outside the pool: ignored
    f.pool_set([Hop("02:00:00:00:03:02", "10.0.3.2", 3, "h3")], base=1)
    again = IntentFile(tmp_path).load()
    assert again is not None and again.hosts() == ["h3"] and again.port_macs == {1: "02:aa:00:00:00:01",
                                                                                  2: "02:aa:00:00:00:02"}
    assert again.client == client and again.vip == "10.0.0.100"
    assert json.loads((tmp_path / INTENT_FILE).read_text())["backends"][0]["host"] == "h3"
    assert not list(tmp_path.glob("*.tmp"))  # replaced atomically, nothing left over
