"""The load balancer's entries: VIP -> backend pool, return path, per-port source MACs.

Entries (names from p4/load_balance.p4info.txtpb):
  ecmp_group  VIP/32          -> set_ecmp_select(ecmp_base=1, ecmp_count=n)
  ecmp_group  client subnet   -> set_rewrite_src(VIP)        (replies leave as the VIP)
  ecmp_nhop   0               -> set_nhop(client mac, client ip, client port)
  ecmp_nhop   1..n            -> set_nhop(backend mac, backend ip, backend port)
  send_frame  port p          -> rewrite_mac(MAC of switch port p)
Index 0 is the client's next hop because `set_rewrite_src` leaves ecmp_select at 0
(the program's convention); backends occupy ecmp_base .. ecmp_base + n - 1.

Which existing connections move when the pool changes (the hash is CRC16 of the
5-tuple, taken modulo n):
  * `replace_backend`/`move_backend`/`move_slot` rewrite one slot in place (one MODIFY
    of an ecmp_nhop entry): n stays, so only the flows of that slot go to the new next
    hop; every other connection keeps its backend. Migration uses `move_slot` with the
    index `slot_index` found while planning, so its switch phase reads nothing.
  * `add_backend`/`remove_backend`/`set_pool` with a different n change the
    modulus: about (1 - 1/max(n, n')) of all flows, i.e. most, land on another slot,
    and those established connections break (the new backend has no socket for
    them). Growing writes the new slots before raising n; shrinking lowers n before
    deleting slots, so no packet ever hashes to a missing slot.
  * Removing a backend keeps the order of the rest (slot i+1 shifts to slot i);
    this is plain hash-mod-N, not consistent hashing, on purpose: it is what the
    P4 program does.

State lives in the switch: `state()` reads all three tables back (wildcard Read),
so a controller that reconnects (or another process) continues from what the
switch really holds rather than from memory. With an `IntentFile`, every write is also
recorded in the lab's state folder, so a switch that restarts gets the same entries back
(control/intent.py).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from p4cf_kit.control.connection import SwitchConnection
from p4cf_kit.control.entries import (
    as_int,
    clear_table,
    delete_key,
    ip_str,
    mac_str,
    make_entry,
    read_table,
    upsert,
    write,
)
from p4cf_kit.control.intent import IntentFile
from p4cf_kit.errors import ConfigError, SwitchError

ECMP_GROUP = "MyIngress.ecmp_group"
ECMP_NHOP = "MyIngress.ecmp_nhop"
SEND_FRAME = "MyEgress.send_frame"
BACKEND_BASE = 1
CLIENT_INDEX = 0


@dataclass(frozen=True)
class NextHop:
    """Where the switch sends a flow: destination MAC and IP, egress port."""

    mac: str
    ip: str
    port: int

    def params(self) -> dict[str, str]:
        return {"nhop_dmac": self.mac, "nhop_ipv4": self.ip, "port": str(self.port)}


@dataclass
class PoolState:
    """What the switch holds, read back from it."""

    vip: str | None = None
    base: int = BACKEND_BASE
    count: int = 0
    backends: list[NextHop] = field(default_factory=list)   # slot base+i -> backends[i]
    client: NextHop | None = None
    return_subnets: dict[str, str] = field(default_factory=dict)  # client subnet -> rewritten src
    port_macs: dict[int, str] = field(default_factory=dict)
    extra_slots: dict[int, NextHop] = field(default_factory=dict)  # nhop entries outside the pool


class LoadBalancer:
    """Programs and changes the VIP's backend pool over an open SwitchConnection."""

    def __init__(self, conn: SwitchConnection, vip: str | None = None,
                 intent: IntentFile | None = None) -> None:
        self.conn = conn
        self.vip = vip
        self.intent = intent

    # --- whole set-up ---------------------------------------------------------------------

    def install(self, vip: str, client_subnet: str, client: NextHop, backends: list[NextHop],
                port_macs: dict[int, str]) -> None:
        """Write every entry of a fresh lab (idempotent: existing keys are modified)."""
        self.conn.require()
        if not backends:
            raise ConfigError("the pool needs at least one backend")
        self.vip = vip
        for port, mac in sorted(port_macs.items()):
            upsert(make_entry(SEND_FRAME, {"standard_metadata.egress_port": str(port)},
                              "MyEgress.rewrite_mac", {"smac": mac}))
        upsert(make_entry(ECMP_NHOP, {"meta.ecmp_select": str(CLIENT_INDEX)}, "MyIngress.set_nhop",
                          client.params()))
        for i, nh in enumerate(backends):
            self._write_slot(BACKEND_BASE + i, nh)
        upsert(make_entry(ECMP_GROUP, {"hdr.ipv4.dstAddr": client_subnet}, "MyIngress.set_rewrite_src",
                          {"new_src": vip}))
        self._write_group(len(backends))
        if self.intent is not None:
            hop = self.intent.hop
            self.intent.installed(vip, client_subnet, hop(client.mac, client.ip, client.port),
                                  [hop(b.mac, b.ip, b.port) for b in backends], port_macs, BACKEND_BASE)

    def clear(self) -> int:
        """Delete every entry the load balancer writes (a switch the kit does not own is left as
        it was found, but for the pipeline); the VIP goes first so no flow meets a missing slot."""
        self.conn.require()
        return sum(clear_table(t) for t in (ECMP_GROUP, ECMP_NHOP, SEND_FRAME))

    # --- reading back -----------------------------------------------------------------------

    def state(self) -> PoolState:
        """Read the switch's entries (wildcard Read) into a PoolState."""
        self.conn.require()
        st = PoolState()
        slots: dict[int, NextHop] = {}
        for e in read_table(ECMP_NHOP):
            idx = as_int(e.match["meta.ecmp_select"].exact.value)
            if e.action == "set_nhop":
                slots[idx] = NextHop(mac_str(e.params["nhop_dmac"]), ip_str(e.params["nhop_ipv4"]),
                                     as_int(e.params["port"]))
        for e in read_table(ECMP_GROUP):
            lpm = e.match["hdr.ipv4.dstAddr"].lpm
            prefix = f"{ip_str(lpm.value)}/{lpm.prefix_len}"
            if e.action == "set_ecmp_select" and lpm.prefix_len == 32 and (self.vip is None or
                                                                           ip_str(lpm.value) == self.vip):
                st.vip = ip_str(lpm.value)
                st.base = as_int(e.params["ecmp_base"])
                st.count = as_int(e.params["ecmp_count"])
            elif e.action == "set_rewrite_src":
                st.return_subnets[prefix] = ip_str(e.params["new_src"])
        for e in read_table(SEND_FRAME):
            if e.action == "rewrite_mac":
                st.port_macs[as_int(e.match["standard_metadata.egress_port"].exact.value)] = \
                    mac_str(e.params["smac"])
        st.client = slots.pop(CLIENT_INDEX, None)
        for i in range(st.count):
            nh = slots.pop(st.base + i, None)
            if nh is None:
                raise SwitchError(f"the switch's pool is inconsistent: slot {st.base + i} of "
                                  f"{st.count} has no ecmp_nhop entry; re-run `p4cf pool set`")
            st.backends.append(nh)
        st.extra_slots = slots
        if self.vip is None:
            self.vip = st.vip
        return st

    # --- pool changes -----------------------------------------------------------------------

    def set_pool(self, backends: list[NextHop]) -> PoolState:
        """Make the pool exactly `backends` (in slot order); see the module docstring for which flows move."""
        if not backends:
            raise ConfigError("the pool needs at least one backend; to stop traffic, stop the client")
        st = self.state()
        self._require_vip(st)
        old_n, new_n = st.count, len(backends)
        for i, nh in enumerate(backends):  # rewrite/insert slots (only those that change)
            if i >= old_n or st.backends[i] != nh:
                self._write_slot(st.base + i, nh)
        if new_n != old_n:
            self._write_group(new_n, st.base)
        for i in range(new_n, old_n):  # shrinking: n is already lowered
            delete_key(ECMP_NHOP, {"meta.ecmp_select": str(st.base + i)})
        return self._recorded(self.state())

    def add_backend(self, nh: NextHop) -> PoolState:
        """Append `nh` to the pool (n grows by one: most existing flows are remapped)."""
        st = self.state()
        if nh in st.backends:
            raise ConfigError(f"{nh.ip} is already in the pool")
        return self.set_pool([*st.backends, nh])

    def remove_backend(self, which: str | int) -> PoolState:
        """Remove a backend (by IP or slot index); n shrinks: most existing flows are remapped."""
        st = self.state()
        i = self._slot_of(st, which)
        return self.set_pool([nh for j, nh in enumerate(st.backends) if j != i])

    def replace_backend(self, which: str | int, nh: NextHop) -> PoolState:
        """Put `nh` in the slot of `which` (IP or slot index): one MODIFY, only that slot's flows move."""
        st = self.state()
        i = self._slot_of(st, which)
        self._write_slot(st.base + i, nh)
        return self._recorded(self.state())

    def move_backend(self, which: str | int, mac: str, ip: str, port: int) -> int:
        """Point a backend's slot at its new location (live migration): exactly one MODIFY.

        `which` is the backend's current IP or its slot index (0-based within the pool);
        returns the ecmp_nhop index written. Reads the pool from the switch first, so it
        is correct after a reconnect.
        """
        return self.move_slot(self.slot_index(which), mac, ip, port)

    def slot_index(self, which: str | int) -> int:
        """The ecmp_nhop index of a backend (its current IP or 0-based slot), for `move_slot`.

        Reads the pool (three tables), so a migration calls it while planning, not in its timed
        switch phase."""
        st = self.state()
        return st.base + self._slot_of(st, which)

    def move_slot(self, index: int, mac: str, ip: str, port: int) -> int:
        """One MODIFY of ecmp_nhop entry `index` to the new location, with no read before it.

        Why: the reads of `move_backend` cost 10-40 ms of a migration's downtime. The caller
        vouches that `index` still holds the backend (found by `slot_index`); a missing entry
        fails (MODIFY never creates one). Returns `index`.
        """
        self.conn.require()
        write(make_entry(ECMP_NHOP, {"meta.ecmp_select": str(index)}, "MyIngress.set_nhop",
                         NextHop(mac, ip, port).params()), "modify")
        if self.intent is not None:  # a small local file write; the switch already has it
            self.intent.slot_set(index, self.intent.hop(mac, ip, port))
        return index

    # --- helpers ---------------------------------------------------------------------------

    def _recorded(self, st: PoolState) -> PoolState:
        """Record the pool the switch now holds (as read back) in the intent file."""
        if self.intent is not None:
            self.intent.pool_set([self.intent.hop(nh.mac, nh.ip, nh.port) for nh in st.backends], st.base)
        return st

    def _write_slot(self, index: int, nh: NextHop) -> None:
        upsert(make_entry(ECMP_NHOP, {"meta.ecmp_select": str(index)}, "MyIngress.set_nhop", nh.params()))

    def _write_group(self, count: int, base: int = BACKEND_BASE) -> None:
        if self.vip is None:
            raise SwitchError("no VIP known: install() the load balancer first")
        upsert(make_entry(ECMP_GROUP, {"hdr.ipv4.dstAddr": f"{self.vip}/32"}, "MyIngress.set_ecmp_select",
                          {"ecmp_base": str(base), "ecmp_count": str(count)}))

    def _require_vip(self, st: PoolState) -> None:
        if st.vip is None:
            raise SwitchError("the switch has no VIP entry; bring the lab up (`p4cf up`) first")

    @staticmethod
    def _slot_of(st: PoolState, which: str | int) -> int:
        if isinstance(which, int):
            if not 0 <= which < len(st.backends):
                raise ConfigError(f"backend slot {which} does not exist; the pool has {len(st.backends)}")
            return which
        try:
            ipaddress.IPv4Address(which)
        except ValueError:
            raise ConfigError(f"backend {which!r} must be an IPv4 address or a slot index") from None
        for i, nh in enumerate(st.backends):
            if nh.ip == which:
                return i
        raise ConfigError(f"{which} is not in the pool ({', '.join(nh.ip for nh in st.backends)})")
