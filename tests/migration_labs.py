"""The four-host lab the migration tests move a backend in (h2 <-> h4), made one way."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from p4cf_kit.config import parse_config
from p4cf_kit.lab import Lab
from p4cf_kit.migration.experiment import tune_routes


@contextmanager
def migration_lab(name: str, octet: int, **sections: dict[str, Any]) -> Iterator[Lab]:
    """Lab `name` on 10.OCTET.N.0/24 with the client's routes tuned for migrations (RTO min
    5 ms); extra config sections as keyword arguments; down at the end whatever happened."""
    cfg = parse_config({"lab": {"name": name, "hosts": 4, "vip": f"10.{octet}.0.100",
                                "subnet_pattern": f"10.{octet}.{{n}}.0/24"}, **sections})
    lab = Lab(cfg)
    lab.up()
    try:
        tune_routes(lab, 5)
        yield lab
    finally:
        lab.down()


def home(lab: Lab) -> tuple[str, str]:
    """(where the moving backend is now, where it goes next): h2 <-> h4."""
    return ("h2", "h4") if "h2" in lab.pool() else ("h4", "h2")
