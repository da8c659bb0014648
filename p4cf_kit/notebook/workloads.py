"""The workload dropdown of the cell that opens a lab: echo, redis, http (and custom when configured).

Why it remembers the pick: a notebook opens its lab in one cell; picking another workload
and running that cell again must open the lab with the pick, not with the default again.
"""

from __future__ import annotations

from typing import Any

from p4cf_kit.apps.settings import KINDS
from p4cf_kit.config import LabConfig

_picked: dict[str, str] = {}


def workload_choices(config: LabConfig) -> list[str]:
    """The kinds the dropdown offers: every kind but custom, which needs its table in the config."""
    return [k for k in KINDS if k != "custom" or config.workload.kind == "custom"]


def workload_picker(config: LabConfig | None = None) -> Any:
    """Show a dropdown of workloads (the config's own preselected, or the last pick) and return it;
    `open_lab(workload=picker.value)` in the same cell opens the lab with it."""
    import ipywidgets as widgets
    from IPython.display import display

    from p4cf_kit.notebook.session import notebook_config
    cfg = config or notebook_config()
    value = _picked.get(cfg.name, cfg.workload.kind)
    picker = widgets.Dropdown(options=workload_choices(cfg), value=value, description="workload",
                              tooltip="what the backends run; pick, then run this cell again")

    def remember(change: dict[str, Any]) -> None:
        _picked[cfg.name] = str(change["new"])

    picker.observe(remember, names="value")
    display(picker)
    return picker
