"""The kit's P4Runtime controller (over p4runtime-shell): connection and pipeline,
load-balancer entries and pool changes, direct counters. Knows P4Info names only."""
