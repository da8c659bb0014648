"""Which pool slot the load balancer's hash gives a TCP connection, computed as the program does.

Why in the controller: before a pool change the kit can then say which open connections it
will move (and so break: the new backend knows nothing of them), instead of guessing "most".
The program (p4/load_balance.p4, `set_ecmp_select`) hashes srcAddr, dstAddr, protocol, srcPort
and dstPort with BMv2's crc16 and takes it modulo the pool size; both targets do exactly that.
"""

from __future__ import annotations

import ipaddress

from p4cf_kit.switch.embedded.crc16 import crc16

TCP = 6


def pool_slot(src_ip: str, src_port: int, vip: str, port: int, pool_size: int) -> int:
    """The 0-based pool slot of a TCP connection from `src_ip:src_port` to `vip:port`."""
    data = (ipaddress.IPv4Address(src_ip).packed + ipaddress.IPv4Address(vip).packed + bytes((TCP,))
            + int(src_port).to_bytes(2, "big") + int(port).to_bytes(2, "big"))
    return crc16(data) % max(pool_size, 1)
