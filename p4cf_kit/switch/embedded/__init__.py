"""The embedded P4Runtime switch: a gRPC P4Runtime server in front of the load balancer program.

It stands in for BMv2's simple_switch_grpc on machines without BMv2/p4c. Modules, one job each:
`p4info` (the program's P4Info, indexed), `p4values` (P4Runtime bytestrings), `arbitration`
(primary/backup controllers), `entries` (the table-entry store), `server` (the gRPC service),
`target` (the switch: server, data plane and ports, and its command line), `process` (starting
it as a subprocess that writes its state file).
"""
