"""Small helpers so the notebooks hold nothing but calls into the kit (`from p4cf_kit import notebook as nb`).

  session       open_lab / lab_session: attach or bring up, teardown also when a cell fails
  capabilities  can this machine migrate; TCP tuning as the experiment runner applies it
  lab_views     doctor, switch tables, counters, topology figure, pool helpers
  records       migration records as analysis rows
  figures       results folders, the notebooks' figures, showing them
  experiment    notebook 04's series of migrations
  machines      notebook 05's lab with a host on an emulated second machine
  kernel        the notebooks' kernel (no Python patch version: notebooks open unchanged)
  workloads     the workload dropdown of the cell that opens the lab
"""

from p4cf_kit.notebook.capabilities import (
                                            experiment_unavailable_reason,
                                            migration_unavailable_reason,
                                            tune_for_migration,
)
from p4cf_kit.notebook.experiment import run_experiment
from p4cf_kit.notebook.figures import (
                                            distribution_check,
                                            figures_in,
                                            load_balancing_figures,
                                            migration_figures,
                                            pool_change_figures,
                                            results_folder,
                                            show,
                                            summary,
)
from p4cf_kit.notebook.lab_views import (
                                            counter_reads,
                                            doctor_summary,
                                            restore_pool,
                                            serving_hosts,
                                            show_tables,
                                            switch_tables,
                                            topology_figure,
)
from p4cf_kit.notebook.machines import busiest_backend, machines_unavailable_reason, open_two_machine_lab
from p4cf_kit.notebook.records import phase_table, record_dict
from p4cf_kit.notebook.session import (
                                            ENV_CONFIG,
                                            LabSession,
                                            lab_is_up,
                                            lab_leftovers,
                                            lab_session,
                                            notebook_config,
                                            open_lab,
                                            wait_lab_gone,
)
from p4cf_kit.notebook.workloads import workload_choices, workload_picker

__all__ = [
    "ENV_CONFIG", "LabSession", "busiest_backend", "counter_reads", "distribution_check", "doctor_summary",
    "experiment_unavailable_reason", "figures_in", "lab_is_up", "lab_leftovers", "lab_session",
    "load_balancing_figures", "machines_unavailable_reason", "migration_figures",
    "migration_unavailable_reason", "notebook_config", "open_lab", "open_two_machine_lab", "phase_table",
    "pool_change_figures", "record_dict", "restore_pool", "results_folder",
    "run_experiment", "serving_hosts", "show", "show_tables", "summary", "switch_tables", "topology_figure",
    "tune_for_migration", "wait_lab_gone", "workload_choices", "workload_picker",
]
