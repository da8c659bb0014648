"""The embedded switch's kernel fast path: an eBPF program at each port's tc ingress forwards
the flows the user-space pipeline has decided, so established TCP connections stay in the
kernel (see program.py for what it does, offload.py for how it is kept in step)."""
