"""DataFrames from the kit's logs and counters: distribution, throughput, downtime, phases.

One module per concept:
  client_log    the client CSV log (schema, loading, replies/errors)
  distribution  traffic per backend from the client log and from switch counters
  throughput    replies per second per backend over time
  downtime      per-connection gaps around migrations, survival
  phases        migration phase records
  summary       n/median/p95/max table
  timeline      replies and phases on a time axis around one migration
  pool_change   what a pool change did to the open connections (kept, moved, broken)
  synthetic     a made-up realistic experiment for tests and previews
  latency       request latency per operation: per 100 ms around migrations, before/during/after
  custom_log    a custom workload's own per-request CSV turned into the client log
"""

from p4cf_kit.analysis.client_log import (
                                          CLIENT_LOG_COLUMNS,
                                          connection_hosts,
                                          error_events,
                                          load_client_log,
                                          replies,
                                          typed_client_log,
)
from p4cf_kit.analysis.distribution import (
                                          SWITCH_COUNTER_COLUMNS,
                                          client_distribution,
                                          compare_distributions,
                                          distribution_figure_data,
                                          distributions_agree,
                                          switch_counters_from_reads,
                                          switch_distribution,
)
from p4cf_kit.analysis.downtime import (
                                          DOWNTIME_COLUMNS,
                                          downtime_for_migrations,
                                          downtime_for_record,
                                          downtime_per_connection,
                                          migration_downtime_ms,
                                          reply_gaps,
                                          survival_per_migration,
)
from p4cf_kit.analysis.latency import latency_bins_around, latency_summary, latency_windows
from p4cf_kit.analysis.phases import (
                                          PHASE_COLUMNS,
                                          PHASE_RECORD_FIELDS,
                                          PHASES,
                                          load_phases,
                                          migration_label,
                                          migration_markers,
                                          phase_breakdown,
                                          phase_windows,
                                          phases_frame,
                                          record_window_ns,
                                          typed_phases,
)
from p4cf_kit.analysis.summary import SUMMARY_COLUMNS, describe, summary_table
from p4cf_kit.analysis.throughput import experiment_start_ns, throughput_per_backend
from p4cf_kit.analysis.timeline import timeline_errors, timeline_phases, timeline_points

__all__ = [
    "CLIENT_LOG_COLUMNS", "DOWNTIME_COLUMNS", "PHASES", "PHASE_COLUMNS", "PHASE_RECORD_FIELDS",
    "SUMMARY_COLUMNS", "SWITCH_COUNTER_COLUMNS", "client_distribution", "compare_distributions",
    "connection_hosts", "describe", "distribution_figure_data", "distributions_agree",
    "downtime_for_migrations", "downtime_for_record", "downtime_per_connection", "error_events",
    "experiment_start_ns", "latency_bins_around", "latency_summary", "latency_windows",
    "load_client_log", "load_phases", "migration_downtime_ms", "migration_label",
    "migration_markers", "phase_breakdown", "phase_windows", "phases_frame", "record_window_ns", "replies",
    "reply_gaps", "summary_table", "survival_per_migration", "switch_counters_from_reads",
    "switch_distribution", "throughput_per_backend", "timeline_errors", "timeline_phases", "timeline_points",
    "typed_client_log", "typed_phases",
]
