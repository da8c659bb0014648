"""`p4cf status`: what a lab runs (switch, hosts, containers) and the pool as the switch has it."""

from __future__ import annotations

import argparse

from p4cf_kit.commands._labargs import add_lab_options, emit, lab_name


def _run(args: argparse.Namespace) -> int:
    from p4cf_kit.lab import Lab
    lab = Lab.attach(lab_name(args))
    try:
        st = lab.status()
    finally:
        lab.close()
    sw = st["switch"]
    how = f"running (pid {sw['pid']})" if sw["running"] else "stopped"
    lines = [f"lab {st['lab']}: switch {sw.get('target', '')} {how} on {sw['grpc_addr']}"]
    if sw.get("data_plane"):
        lines.append(f"  data plane: {sw['data_plane']}")
    for name, h in st["hosts"].items():
        ctrs = ", ".join(f"{c} {s}" for c, s in h["containers"].items()) or "no containers"
        where = f"  on {h['machine']}" if h.get("machine", "local") != "local" else ""
        lines.append(f"  {name:3} {h['role']:8} {h['ip']:15} port {h['port']}{where}  {ctrs}")
    pool = st.get("pool") or {}
    if "backends" in pool:
        lines.append(f"  pool {pool['vip']}: " + ", ".join(b["host"] for b in pool["backends"]))
    elif pool:
        lines.append(f"  pool: {pool.get('error')}")
    emit(args, st, "\n".join(lines))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("status", help="show a running lab")
    add_lab_options(p)
    p.set_defaults(func=_run)
