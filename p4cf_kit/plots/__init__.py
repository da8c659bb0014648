"""Figures of the kit: each made to be read, saved as PNG/SVG/PDF beside its CSV.

  style         colours per host and phase, fonts; new_figure (Agg canvas, outside pyplot)
  markers       vertical markers whose labels never overlap (migrations, pool changes)
  export        save_figure: images + data, FigureFiles
  distribution  traffic share per backend: client log beside switch counters
  throughput    replies/s per backend over time, migrations marked
  downtime      longest reply gap per connection; its CDF over migrations
  timeline      client view around one migration, phases shaded
  phases        phase durations per migration, stacked, with medians
  survival      connections kept/broken per migration
  summary       the summary table as a figure
  catalog       figure families; regenerate(figures_dir) from CSVs alone
  report        every figure from DataFrames or from a results folder's raw/
"""

from p4cf_kit.plots.export import FigureFiles, save_figure

__all__ = ["FigureFiles", "save_figure"]
