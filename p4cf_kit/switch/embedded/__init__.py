"""The embedded P4Runtime switch: a gRPC P4Runtime server in front of the load balancer program.

It stands in for BMv2's simple_switch_grpc on machines without BMv2/p4c. Its four parts, and
where each lives (a frame goes down this list until one part takes it; P4Runtime writes go
from the first part to the second, which keeps the two fast paths in step):

- P4Runtime, what a controller sees: `server` (the gRPC service), `arbitration` (primary and
  backup controllers), `entries` (the table-entry store, with the specification's checks),
  `write_wire` (WriteRequest decoding), `p4info` and `p4values` (the P4Info, P4Runtime
  bytestrings), `replication` (multicast groups and clone sessions).
- The pipeline, the program's semantics, BMv2-exact: `pipeline` (parser, tables, actions,
  counters, rewrites; it decides each flow once), `packet` (the frame layout, its named tests
  and checksums; `layout.h` is the same layout for the C side), `crc16` (BMv2's hash).
- The user data path: `dataplane` (ports as AF_PACKET sockets with PACKET_VNET_HDR, in Python),
  `_fastpath.c` (its C fast path: batched I/O and a table of learnt decisions), `pcap`.
- The kernel data path, `ebpf/`: `forward.bpf.c` (the eBPF program at tc ingress that forwards
  learnt flows), `_loader.c` (libbpf: load, tcx attach, maps), `cls_bpf` (attaching on kernels
  without tcx), `offload` (teaching it the pipeline's decisions, keeping it in step).

The process that puts them together, with its CLI: `target` (and `cpu_affinity`, which CPU the
control plane runs on); `process` starts it as a subprocess that writes its state file.
"""
