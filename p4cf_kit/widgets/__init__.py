"""ipywidgets panels for the notebooks: the backend pool and live migration.

  runner           background tasks for panels (controls disabled meanwhile, errors as messages)
  progress         phase progress of a migration (bar + chips)
  sampler, chart   live switch counters (only measured intervals) and their chart
  lab_watch        noticing that a panel's lab is gone, and saying how to bring it back
  pool_panel       PoolPanel: checkboxes per host, Apply -> lab.pool(...), what it does to connections
  migration_panel  MigrationPanel: backend + destination, Migrate -> lab.migrate(src, dst)
"""

from p4cf_kit.widgets.migration_panel import MigrationPanel
from p4cf_kit.widgets.pool_panel import PoolPanel

__all__ = ["MigrationPanel", "PoolPanel"]
