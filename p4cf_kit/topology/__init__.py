"""The lab's containers and wiring: Podman networks, pods and host containers, the
switch's veth ports on each network's bridge, isolation (the switch is the only path
between host networks), and cleanup by label and name prefix. One module per concept."""
