"""Writing a figure as PNG, SVG and PDF beside the CSV data that made it.

`name.csv` holds the figure's main data and `name.<part>.csv` any extra data
(phase windows, markers). Those files are enough to draw the figure again
(`p4cf plot`), so a figure never exists without its numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from p4cf_kit.plots.style import agg_canvas

FORMATS: tuple[str, ...] = ("png", "svg", "pdf")
PNG_DPI = 150
MAIN_PART = ""
# No creation dates in SVG/PDF, so a regenerated figure is byte-comparable with the old one.
_METADATA: dict[str, dict[str, None]] = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}


@dataclass(frozen=True)
class FigureFiles:
    """The files of one figure: images and data."""

    name: str
    images: tuple[Path, ...]
    data: tuple[Path, ...]

    @property
    def png(self) -> Path:
        return next(p for p in self.images if p.suffix == ".png")

    @property
    def paths(self) -> tuple[Path, ...]:
        return self.images + self.data


def data_path(out_dir: Path, name: str, part: str = MAIN_PART) -> Path:
    """Where the CSV of `name` (or of one of its parts) lives."""
    return Path(out_dir) / (f"{name}.csv" if not part else f"{name}.{part}.csv")


def save_figure(fig: Figure, out_dir: str | Path, name: str,
                data: pd.DataFrame | Mapping[str, pd.DataFrame]) -> FigureFiles:
    """Write `fig` as name.png/.svg/.pdf and its data as CSV into `out_dir`, then close it.

    `data` is the main frame, or {"": main, "part": frame, ...}.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = {MAIN_PART: data} if isinstance(data, pd.DataFrame) else dict(data)
    csvs = []
    for part, frame in parts.items():
        path = data_path(out, name, part)
        frame.to_csv(path, index=False)
        csvs.append(path)
    # Lay out once: "tight" bounds (legends outside the axes included) computed a
    # single time and reused, instead of a second full draw for every format.
    bbox = fig.get_tightbbox(agg_canvas(fig).get_renderer()).padded(0.1)
    images = []
    for fmt in FORMATS:
        path = out / f"{name}.{fmt}"
        fig.savefig(path, format=fmt, dpi=PNG_DPI if fmt == "png" else None, bbox_inches=bbox,
                    metadata=_METADATA.get(fmt))
        images.append(path)
    plt.close(fig)  # a no-op for the kit's own figures (outside pyplot); frees a pyplot-made one
    return FigureFiles(name=name, images=tuple(images), data=tuple(csvs))


def read_parts(out_dir: str | Path, name: str, parts: tuple[str, ...] = ()) -> dict[str, pd.DataFrame]:
    """Read back the main CSV of `name` and the given parts (a missing part is an empty frame)."""
    frames = {MAIN_PART: pd.read_csv(data_path(Path(out_dir), name))}
    for part in parts:
        path = data_path(Path(out_dir), name, part)
        frames[part] = pd.read_csv(path) if path.exists() else pd.DataFrame()
    return frames
