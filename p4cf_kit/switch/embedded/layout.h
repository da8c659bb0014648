/* Frame layout and flow entry layout shared by the embedded switch's C code: the user-space
 * fast path (_fastpath.c), the kernel fast path's eBPF program (ebpf/forward.bpf.c) and its
 * loader (ebpf/_loader.c). The Python side of the same layout is packet.py; a test checks
 * that every P4CF_ constant below has the value packet.py gives it.
 *
 * Offsets are from the start of an untagged Ethernet frame whose IPv4 header has no options
 * (the only frames either fast path rewrites): Ethernet 14 bytes, IPv4 20, TCP 20.
 */
#ifndef P4CF_LAYOUT_H
#define P4CF_LAYOUT_H

#include <linux/types.h>

/* ---- frame layout ------------------------------------------------------------------- */
#define P4CF_ETH_LEN 14
#define P4CF_IPV4_LEN 20
#define P4CF_TCP_LEN 20
#define P4CF_UDP_LEN 8
#define P4CF_OFF_ETHERTYPE 12
#define P4CF_OFF_IP_VIHL 14
#define P4CF_OFF_IP_TOTLEN 16
#define P4CF_OFF_IP_FRAG 20      /* flags (reserved, DF, MF) and fragment offset, 16 bits */
#define P4CF_OFF_IP_TTL 22
#define P4CF_OFF_IP_PROTO 23
#define P4CF_OFF_IP_CSUM 24
#define P4CF_OFF_IP_SRC 26
#define P4CF_OFF_IP_DST 30
#define P4CF_OFF_L4 34           /* TCP or UDP header; its ports come first */
#define P4CF_OFF_L4_DPORT 36
#define P4CF_OFF_TCP_DOFF 46     /* data offset (high nibble, in 32-bit words) */
#define P4CF_OFF_TCP_CSUM 50
#define P4CF_MIN_IPV4_FRAME 34   /* Ethernet + IPv4: shorter frames have no IPv4 header */
#define P4CF_MIN_KEY_FRAME 38    /* ... + the L4 ports: what a flow key reads */
#define P4CF_MIN_TCP_FRAME 54    /* ... + a whole TCP header */

#define P4CF_ETHERTYPE_IPV4 0x0800
#define P4CF_IPV4_NO_OPTIONS 0x45   /* version 4, header length 5 words */
#define P4CF_PROTO_TCP 6
#define P4CF_PROTO_UDP 17
/* Masks of the first byte at P4CF_OFF_IP_FRAG (the second holds the offset's low 8 bits).
 * A later fragment (offset != 0) has no L4 header: P4's parser reads TCP unless the offset
 * is set. A first fragment (MF set, offset 0) has one, but its L4 checksum covers bytes in
 * other fragments, so the kernel path takes only whole datagrams (neither MF nor offset). */
#define P4CF_FRAG_OFFSET_HI 0x1F
#define P4CF_FRAG_MF_OFFSET_HI 0x3F

/* ---- sizes of the program's fields the fast paths index by -------------------------- */
#define P4CF_SELECT_SLOTS (1 << 14)  /* ecmp_select is bit<14>: ecmp_nhop entries, counters */
#define P4CF_PORT_SLOTS 512          /* egress ports are bit<9> */
#define P4CF_DROP_PORT 511           /* v1model's drop port; also "drop" in an action below */
#define P4CF_NO_SELECT 0xFFFF        /* an action whose flow no counter counts */

/* ---- a flow's action: what the pipeline decided, as both fast paths apply it -------- */
#define P4CF_F_TTL_DEC 1   /* decrement TTL */
#define P4CF_F_SRC 2       /* the IPv4 source changes */
#define P4CF_F_DST 4       /* the IPv4 destination changes */
#define P4CF_F_TCP 8       /* TCP was parsed: its checksum covers the addresses */

struct p4cf_action {
    __u8 macs[12];     /* destination and source MAC, written as they are */
    __u8 addrs[8];     /* IPv4 source and destination, written as they are */
    __u16 egress;      /* P4 egress port; P4CF_DROP_PORT: the frame is dropped */
    __u16 select;      /* the ecmp_nhop entry whose counter counts the flow, or P4CF_NO_SELECT */
    __u8 flags;        /* P4CF_F_* */
    __u8 pad[3];
};

/* ---- the kernel path's flow map ---------------------------------------------------- */
#define P4CF_KERNEL_FLOWS (1 << 16)  /* LRU: the least recently used flows make room */

/* Key: the 5-tuple. The other fields a decision reads are fixed for every frame the kernel
 * takes (IPv4 without options, whole datagram, TTL >= 2). */
struct p4cf_flow_key {
    __u8 addrs[8];     /* frame[P4CF_OFF_IP_SRC:+8] */
    __u8 ports[4];     /* frame[P4CF_OFF_L4:+4] */
    __u8 proto;
    __u8 pad[3];
};

struct p4cf_kernel_flow {
    __u64 epoch;        /* the `gen` map's value when learnt: any other table write voids it */
    __u32 ifindex;      /* the egress port's interface */
    __u16 lookup;       /* the ecmp_nhop key the decision looked up (hit or miss) ... */
    __u16 pad;
    __u32 lookup_gen;   /* ... and that key's `slot_gens` value when learnt */
    __u32 pad2;
    struct p4cf_action act;
};

struct p4cf_counter {         /* per CPU, per ecmp_nhop entry */
    __u64 packets, bytes;
};

struct p4cf_port_counts {     /* per CPU, per P4 port: frames the kernel path handled */
    __u64 rx, tx, dropped;
};

/* The key of `frame` (at least P4CF_MIN_KEY_FRAME bytes). */
static inline void p4cf_flow_key_of(const __u8 *frame, struct p4cf_flow_key *key)
{
    __builtin_memcpy(key->addrs, frame + P4CF_OFF_IP_SRC, 8);
    __builtin_memcpy(key->ports, frame + P4CF_OFF_L4, 4);
    key->proto = frame[P4CF_OFF_IP_PROTO];
    key->pad[0] = key->pad[1] = key->pad[2] = 0;
}

#endif
