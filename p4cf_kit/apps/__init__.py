"""The applications a lab's backends run (echo, redis, http, custom) as the kit drives them.

  settings    the `[workload]` table of a lab config (WorkloadConfig), validated
  containers  each workload's server image and command, and its client's container arguments
  readiness   waiting for a backend to be ready: its own check, then its TCP port
  datacheck   asking the client to read back every value it wrote; the answer (DataCheck)
  bulk        redis loaded with backend.memory_mib of data at bring-up, read back after migrations
"""
