"""The BMv2 target: the same lab on p4lang's `simple_switch_grpc`, compiled with `p4c`.

Modules, one job each: `toolchain` (find p4c / simple_switch_grpc as host binaries or local
Podman images), `compile` (the p4c invocation: BMv2 JSON + P4Info), `command` (the
simple_switch_grpc command line from the kit's port map), `process` (start, find and stop the
switch process). The kit starts either target through `p4cf_kit.switch.targets`.
"""
