// SPDX-License-Identifier: (GPL-2.0-only OR MIT)
/* The kernel fast path: forward a learnt flow at tc ingress, as the P4 program would.
 *
 * One instance per switch port (its P4 port number is `p4_port`, set before load), attached
 * with tcx to the port's ingress (a cls_bpf filter on kernels before 6.6). For a frame it can
 * take (untagged IPv4 without options, a whole datagram, TTL > 1, no Ethernet padding, a valid
 * header checksum, at least 54 bytes: packet.kernel_can_take in Python) it looks the flow up by
 * its 5-tuple. An entry of the current generation holds what the user-space pipeline decided
 * for that flow: the program bumps the `ecmp_nhop` direct counter (per CPU; packets = GSO
 * segments, bytes = the sum of the segments' frame lengths, as the user path counts),
 * decrements TTL, rewrites addresses and MACs with incremental checksum updates (RFC 1624; the
 * TCP one pseudo-header aware, so CHECKSUM_PARTIAL and GSO frames stay right) and redirects
 * the frame to the egress port. Everything else goes on unchanged (TC_ACT_OK) to the switch's
 * packet sockets, which are bound to ETH_P_IP and so see a frame only after this program let
 * it pass: each frame is handled exactly once, by one path or the other.
 *
 * Frames that are not IPv4 at all are only counted (received and dropped, as the P4 program
 * drops them); the kernel below does what it always did with them.
 *
 * Built at set-up with `clang -O2 -g -target bpf` (setup.py); -g gives the BTF line info that
 * makes a verifier refusal name the source line.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "../layout.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Set by the loader before the program is loaded: the P4 port this instance serves. */
const volatile __u32 p4_port = 0;

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, P4CF_KERNEL_FLOWS);
    __type(key, struct p4cf_flow_key);
    __type(value, struct p4cf_kernel_flow);
} p4cf_flows SEC(".maps");

struct {  /* [0]: the epoch; any table write but a lone ecmp_nhop one bumps it */
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} p4cf_gen SEC(".maps");

struct {  /* per ecmp_nhop key: bumped by a write of that entry alone */
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, P4CF_SELECT_SLOTS);
    __type(key, __u32);
    __type(value, __u32);
} p4cf_slot_gens SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, P4CF_SELECT_SLOTS);
    __type(key, __u32);
    __type(value, struct p4cf_counter);
} p4cf_counters SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, P4CF_PORT_SLOTS);
    __type(key, __u32);
    __type(value, struct p4cf_port_counts);
} p4cf_ports SEC(".maps");

/* TCP segments whose checksum the program verifies in full: up to SEG_CHUNKS * CHUNK +
 * CHUNK - 1 bytes, summed CHUNK bytes per bpf_csum_diff call. Longer ones (only GSO frames,
 * which carry a partial checksum, are longer here) pass to user space. */
#define CHUNK 256
#define SEG_CHUNKS 5
#define MAX_VERIFIED_SEGMENT (SEG_CHUNKS * CHUNK + CHUNK - 1)

/* The frame's first 54 bytes, copied to the stack. The 2 bytes in front put the IPv4 header
 * on a 4-byte boundary: the verifier wants aligned stack access. */
struct headers {
    __u16 align;
    __u8 f[P4CF_MIN_TCP_FRAME];
} __attribute__((aligned(8)));

#define U16_AT(h, off) (*(__u16 *)&(h)->f[off])
#define U32_AT(h, off) (*(__u32 *)&(h)->f[off])

/* Fold a sum of 16-bit words (below 2**32) to 16 bits with end-around carry. */
static __always_inline __u32 fold(__u64 sum)
{
    sum = (sum & 0xFFFF) + (sum >> 16);
    sum = (sum & 0xFFFF) + (sum >> 16);
    return (__u32)sum;
}

static __always_inline void count_port(__u32 port, int field)
{
    struct p4cf_port_counts *c = bpf_map_lookup_elem(&p4cf_ports, &port);
    if (!c)
        return;
    if (field == 0)
        c->rx++;
    else if (field == 1)
        c->tx++;
    else
        c->dropped++;
}

/* What packet.kernel_can_take says, plus a header checksum that verifies (the program
 * recomputes it; incremental updates keep only a valid one valid). */
static __always_inline int can_take(const struct headers *h, __u32 len)
{
    if (U16_AT(h, P4CF_OFF_ETHERTYPE) != bpf_htons(P4CF_ETHERTYPE_IPV4)
        || h->f[P4CF_OFF_IP_VIHL] != P4CF_IPV4_NO_OPTIONS
        || (h->f[P4CF_OFF_IP_FRAG] & P4CF_FRAG_MF_OFFSET_HI) || h->f[P4CF_OFF_IP_FRAG + 1]
        || h->f[P4CF_OFF_IP_TTL] < 2
        || bpf_ntohs(U16_AT(h, P4CF_OFF_IP_TOTLEN)) + P4CF_ETH_LEN != len)
        return 0;
    __u64 sum = 0;
#pragma unroll
    for (int i = 0; i < P4CF_IPV4_LEN; i += 2)
        sum += U16_AT(h, P4CF_ETH_LEN + i);
    return fold(sum) == 0xFFFF;
}

/* Whether the TCP checksum field is one the program's incremental updates keep what the P4
 * program computes: a CHECKSUM_PARTIAL pseudo-header sum (every GSO frame, and any frame whose
 * field equals the folded pseudo-header sum) or a full checksum that verifies. Anything else
 * (a corrupt checksum, which the P4 program would overwrite with a correct one) goes to user
 * space, which recomputes it as BMv2 does. Sums are of 16-bit words as they lie in memory: a
 * one's-complement sum is the same in either byte order, swapped. */
static __always_inline int tcp_checksum_kept(struct __sk_buff *skb, const struct headers *h,
                                             __u32 len)
{
    if (h->f[P4CF_OFF_IP_PROTO] != P4CF_PROTO_TCP || skb->gso_size)
        return 1;
    __u32 tcp_len = len - P4CF_OFF_L4;
    __u64 pseudo = bpf_htons(P4CF_PROTO_TCP) + bpf_htons((__u16)tcp_len);
#pragma unroll
    for (int i = 0; i < 8; i += 2)
        pseudo += U16_AT(h, P4CF_OFF_IP_SRC + i);
    pseudo = fold(pseudo);
    if (U16_AT(h, P4CF_OFF_TCP_CSUM) == pseudo)
        return 1;
    if (len > P4CF_OFF_L4 + MAX_VERIFIED_SEGMENT)
        return 0;
    __u8 seg[CHUNK + 8] __attribute__((aligned(8)));
    __s64 sum = 0;
    __u32 chunks = tcp_len / CHUNK;
#pragma unroll
    for (__u32 i = 0; i < SEG_CHUNKS; i++) {
        if (i < chunks) {
            if (bpf_skb_load_bytes(skb, P4CF_OFF_L4 + CHUNK * i, seg, CHUNK))
                return 0;
            sum = bpf_csum_diff(0, 0, (__be32 *)seg, CHUNK, (__wsum)sum);
            if (sum < 0)
                return 0;
        }
    }
    __u32 tail = tcp_len & (CHUNK - 1);
    if (tail) {
        __builtin_memset(seg, 0, sizeof(seg));
        if (bpf_skb_load_bytes(skb, P4CF_OFF_L4 + chunks * CHUNK, seg, tail))
            return 0;
        sum = bpf_csum_diff(0, 0, (__be32 *)seg, (tail + 3) & 0x1FC, (__wsum)sum);
        if (sum < 0)
            return 0;
    }
    return fold(fold((__u64)sum) + pseudo) == 0xFFFF;
}

/* Segments and bytes a frame counts as: a GSO super-frame is the segments it stands for,
 * each with a copy of the headers (dataplane.gso_segments in user space). */
static __always_inline void count_flow(struct __sk_buff *skb, const struct headers *h,
                                       __u32 len, struct p4cf_counter *c)
{
    __u64 segs = 1, bytes = len;
    __u32 gso = skb->gso_size;
    if (gso) {
        __u32 hdrs = 0;
        if (h->f[P4CF_OFF_IP_PROTO] == P4CF_PROTO_UDP)
            hdrs = P4CF_OFF_L4 + P4CF_UDP_LEN;
        else if (h->f[P4CF_OFF_IP_PROTO] == P4CF_PROTO_TCP)
            hdrs = P4CF_OFF_L4 + (h->f[P4CF_OFF_TCP_DOFF] >> 4) * 4;
        __u64 payload = len - hdrs;
        if (hdrs && len > hdrs && payload > gso) {
            segs = (payload + gso - 1) / gso;
            bytes = payload + segs * hdrs;
        }
    }
    c->packets += segs;
    c->bytes += bytes;
}

/* Rewrite one IPv4 address (at `off`) to `to`, with the header and (TCP) pseudo-header
 * checksum updates; non-zero when a helper failed mid-rewrite. */
static __always_inline int rewrite_addr(struct __sk_buff *skb, __u32 off, __u32 from, __u32 to,
                                        int tcp)
{
    if (bpf_l3_csum_replace(skb, P4CF_OFF_IP_CSUM, from, to, 4))
        return -1;
    if (tcp && bpf_l4_csum_replace(skb, P4CF_OFF_TCP_CSUM, from, to, BPF_F_PSEUDO_HDR | 4))
        return -1;
    return bpf_skb_store_bytes(skb, off, &to, 4, 0) ? -1 : 0;
}

SEC("tc")
int p4cf_forward(struct __sk_buff *skb)
{
    __u32 port = p4_port;
    if (skb->protocol != bpf_htons(ETH_P_IP)) {   /* the P4 program drops it */
        count_port(port, 0);
        count_port(port, 2);
        return TC_ACT_OK;
    }
    __u32 len = skb->len;
    struct headers h;
    if (skb->vlan_present || len < P4CF_MIN_TCP_FRAME
        || bpf_skb_load_bytes(skb, 0, h.f, P4CF_MIN_TCP_FRAME) || !can_take(&h, len))
        return TC_ACT_OK;

    /* the flow, learnt in the current epoch and the current generation of its ecmp_nhop key */
    struct p4cf_flow_key key;
    p4cf_flow_key_of(h.f, &key);
    struct p4cf_kernel_flow *fl = bpf_map_lookup_elem(&p4cf_flows, &key);
    if (!fl)
        return TC_ACT_OK;
    __u32 zero = 0;
    __u64 *epoch = bpf_map_lookup_elem(&p4cf_gen, &zero);
    if (!epoch || *epoch != fl->epoch)
        return TC_ACT_OK;
    __u32 lookup = fl->lookup;
    __u32 *lookup_gen = bpf_map_lookup_elem(&p4cf_slot_gens, &lookup);
    if (!lookup_gen || *lookup_gen != fl->lookup_gen)
        return TC_ACT_OK;
    if (!tcp_checksum_kept(skb, &h, len))
        return TC_ACT_OK;

    __u32 select = fl->act.select;
    if (select != P4CF_NO_SELECT) {
        struct p4cf_counter *c = bpf_map_lookup_elem(&p4cf_counters, &select);
        if (c)
            count_flow(skb, &h, len, c);
    }

    /* rewrites, each with its checksum updates; a failure leaves a half-rewritten frame,
     * which is dropped */
    __u8 flags = fl->act.flags;
    if (flags & P4CF_F_TTL_DEC) {
        __u16 old = U16_AT(&h, P4CF_OFF_IP_TTL);   /* TTL and protocol, as stored */
        h.f[P4CF_OFF_IP_TTL]--;                     /* >= 2 here */
        if (bpf_l3_csum_replace(skb, P4CF_OFF_IP_CSUM, old, U16_AT(&h, P4CF_OFF_IP_TTL), 2)
            || bpf_skb_store_bytes(skb, P4CF_OFF_IP_TTL, &h.f[P4CF_OFF_IP_TTL], 1, 0))
            goto fail;
    }
    int tcp = flags & P4CF_F_TCP;
    __u32 to;
    if (flags & P4CF_F_SRC) {
        __builtin_memcpy(&to, fl->act.addrs, 4);
        if (rewrite_addr(skb, P4CF_OFF_IP_SRC, U32_AT(&h, P4CF_OFF_IP_SRC), to, tcp))
            goto fail;
    }
    if (flags & P4CF_F_DST) {
        __builtin_memcpy(&to, fl->act.addrs + 4, 4);
        if (rewrite_addr(skb, P4CF_OFF_IP_DST, U32_AT(&h, P4CF_OFF_IP_DST), to, tcp))
            goto fail;
    }
    if (bpf_skb_store_bytes(skb, 0, fl->act.macs, sizeof(fl->act.macs), 0))
        goto fail;
    count_port(port, 0);
    count_port(fl->act.egress, 1);
    return bpf_redirect(fl->ifindex, 0);
fail:
    count_port(port, 2);
    return TC_ACT_SHOT;
}
