"""The embedded switch's kernel data path: an eBPF program at each port's tc ingress forwards
the flows the user-space pipeline has decided, so established TCP connections stay in the
kernel. `forward.bpf.c` is the program (restricted C, built by clang at set-up), `_loader.c`
loads it through libbpf, `cls_bpf` attaches it where the kernel has no tcx, and `offload`
keeps it in step with the pipeline."""
