"""The lab as tables and a picture: doctor results, switch tables, counters, topology, pool.

Why: notebook 01 shows what the switch holds; these read it back over P4Runtime (never
from memory) and shape it as DataFrames a reader can scan.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from p4cf_kit import analysis as an
from p4cf_kit.config import config_to_dict
from p4cf_kit.plots.export import FigureFiles

if TYPE_CHECKING:
    from p4cf_kit.lab import Lab


def doctor_summary() -> pd.DataFrame:
    """`p4cf doctor` as a table: check, status, detail, fix (runs the real checks, ~5 s)."""
    from p4cf_kit.doctor import run_checks
    results_ = run_checks()
    rows = [{"check": r.name, "status": r.status, "detail": r.detail, "fix": r.fix if r.status != "OK" else ""}
            for r in results_]
    frame = pd.DataFrame(rows, columns=["check", "status", "detail", "fix"])
    counts = frame["status"].value_counts()
    ready = not (frame["status"] == "FAIL").any()
    print(f"{'ready' if ready else 'NOT ready (a required check failed; see fix)'}: {counts.get('OK', 0)} ok, "
          f"{counts.get('FAIL', 0)} failed, {counts.get('WARN', 0)} warnings (optional parts), "
          f"{counts.get('SKIP', 0)} skipped")
    return frame


def switch_tables(lab: Lab) -> dict[str, pd.DataFrame]:
    """The load balancer's three tables as the switch holds them now (read back over P4Runtime)."""
    lab.pool()  # connects when needed
    assert lab.lb is not None  # pool() connected it
    st = lab.lb.state()
    group = [{"match (dst prefix)": f"{st.vip}/32", "action": "set_ecmp_select",
              "params": f"ecmp_base={st.base}, ecmp_count={st.count}"}]
    group += [{"match (dst prefix)": subnet, "action": "set_rewrite_src", "params": f"new_src={src}"}
              for subnet, src in sorted(st.return_subnets.items())]
    nhop = lab.counters().rename(columns={"index": "ecmp_select"})
    frame = pd.DataFrame([{"egress port": p, "host": _host_on_port(lab, p), "action": "rewrite_mac",
                           "smac": mac} for p, mac in sorted(st.port_macs.items())])
    return {"MyIngress.ecmp_group": pd.DataFrame(group), "MyIngress.ecmp_nhop": nhop, "MyEgress.send_frame": frame}


def show_tables(tables: Mapping[str, pd.DataFrame]) -> None:
    """Display each table under its name."""
    from IPython.display import Markdown, display
    for name, table in tables.items():
        display(Markdown(f"**{name}** ({len(table)} entries)"))
        display(table)


def _host_on_port(lab: Lab, port: int) -> str:
    return next((h.name for h in lab.config.hosts if h.port == port), "")


def counter_reads(lab: Lab) -> pd.DataFrame:
    """One read of the switch's backend counters now, in the analysis schema
    (analysis.switch_counters_from_reads: t_ns, select, host, packets, bytes, location)."""
    return an.switch_counters_from_reads([(time.time_ns(), lab.counters())])


def topology_figure(lab: Lab, out_dir: str | Path) -> FigureFiles:
    """Draw the lab (plots.topology) with the pool as the switch holds it now."""
    from p4cf_kit.plots import topology
    cfg = lab.config
    data = topology.topology_frame(config_to_dict(cfg)["hosts"], str(cfg.vip), cfg.port, lab.pool(),
                                   {h.name: lab.names.network(h.name) for h in cfg.hosts})
    return topology.plot_topology(data, out_dir)


def serving_hosts(lab: Lab) -> list[str]:
    """Hosts with a running server container (in the pool or not), from Podman."""
    status = lab.status()["hosts"]
    return [h for h, info in status.items()
            if any(state == "running" and name == lab.names.server(h) for name, state in info["containers"].items())]


def restore_pool(lab: Lab) -> list[str]:
    """Put the configured backends back as the pool (after a notebook changed it), and stop the
    servers `lab.pool` started on the other hosts: a host still running one is no migration target."""
    from p4cf_kit.topology.hosts import stop_container
    pool: list[str] = lab.pool([b.name for b in lab.config.backends])
    for host in serving_hosts(lab):
        if host not in pool:
            stop_container(lab.names.server(host))
    return pool
