"""Machines: where a lab's hosts (and its switch) run.

A lab spans one or more machines. The local machine is today's single-machine lab; a
remote machine is reached only the way a real server is: SSH for host commands
(`ip`, `nft`, `nsenter`) and Podman's REST API over SSH for containers. The kit installs no
agent of its own there. `Machine` is the one interface the topology and migration code use,
so another kind of machine (a Kubernetes node driven through the kubelet's checkpoint API)
would be one more implementation of it.
"""

from p4cf_kit.machines.machine import LOCAL, LocalMachine, Machine

__all__ = ["LOCAL", "LocalMachine", "Machine"]
