/* Optional C fast path of the embedded switch's data plane.
 *
 * Why: in Python every frame costs ~5 us of interpreter time plus one system call each way.
 * Here frames are received and sent in batches (recvmmsg/sendmmsg) and a flow table applies
 * the decisions the Python pipeline made, with the GIL released.
 *
 * What stays in Python: the program's semantics. The flow table holds, per flow key (the same
 * bytes as pipeline._flow_key), what `LoadBalancerPipeline._decide` computed: egress port (or
 * drop), the ecmp_nhop entry whose counter to bump, the MAC/address values to write, TTL
 * decrement and whether TCP is parsed. A miss, a frame shorter than the key, or an offload
 * request this file does not mirror is handed back ("punted") to Python unchanged, which
 * processes it and teaches the table the decision.
 *
 * Table writes: the pipeline bumps a generation number before every write (FlowTable.invalidate,
 * under this table's mutex), so every entry learnt before the write stops matching at once and
 * the next packet goes through Python with the new tables. invalidate() also hands back the
 * counts gathered since the last read, so they land on the entries they belong to.
 *
 * I/O: recvmmsg (or, with ring=True, a TPACKET_V2 receive ring) and sendmmsg per egress port,
 * in batches of up to 64 frames, with the GIL released; a frame is rewritten where it was
 * received and sent from there. `blast` is the benchmark's load generator (sendmmsg).
 * Not used, on purpose: a PACKET_TX_RING. It would save the send copy, but its slot is freed
 * when the skb is orphaned, which ip_rcv does on local delivery (the kit's hosts are veth
 * peers), while the slot's pages still sit in the receiver's socket queue.
 *
 * Checksums are computed exactly like pipeline._rewrite: one's-complement sums modulo 0xFFFF
 * of the header (and, without CHECKSUM_PARTIAL, the whole TCP segment), so the bytes that
 * leave are the ones BMv2 (and the Python path) produce, whatever checksum arrived.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <linux/if_packet.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>

#include "layout.h"
#include "pybuffer.h"

#define KEY_LEN 20                /* see make_key */
#define VNET_LEN 10
#define MIN_KEY_FRAME P4CF_MIN_KEY_FRAME
#define NSELECT P4CF_SELECT_SLOTS
#define NPORTNUM P4CF_PORT_SLOTS
#define BATCH 64
#define ROUNDS_PER_PORT 4         /* up to 256 frames from one port before the others */
#define MAX_FRAME (256 * 1024)
#define PROBE 8
#define F_NEEDS_CSUM 1
#define GSO_ECN 0x80

enum { R_PUNT = 0, R_DROP = 1, R_FORWARD = 2 };

/* ---- checksum arithmetic ------------------------------------------------------------- */

/* Sum of the big-endian 16-bit words of p[0:n] (odd length padded with a zero byte). Taken
 * modulo 0xFFFF it equals Python's int.from_bytes(..., "big") % 0xFFFF of the padded bytes. */
static uint64_t word_sum(const uint8_t *p, size_t n)
{
    uint64_t s = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        s += ((uint32_t)p[i] << 8 | p[i + 1]) + ((uint32_t)p[i + 2] << 8 | p[i + 3])
           + ((uint32_t)p[i + 4] << 8 | p[i + 5]) + ((uint32_t)p[i + 6] << 8 | p[i + 7]);
    for (; i + 2 <= n; i += 2)
        s += (uint32_t)p[i] << 8 | p[i + 1];
    if (i < n)
        s += (uint32_t)p[i] << 8;
    return s;
}

static inline void put16(uint8_t *p, unsigned v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline unsigned get16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }
static inline unsigned le16(const uint8_t *p) { return (unsigned)p[0] | (unsigned)p[1] << 8; }

/* dataplane.complete_checksum: fold from csum_start on, store the complement at the field. */
static void complete_checksum(uint8_t *f, size_t len, size_t start, size_t offset)
{
    size_t where = start + offset;
    if (start >= len || where + 2 > len)
        return;
    uint64_t sum = word_sum(f + start, len - start);
    unsigned s = (unsigned)(sum % 0xFFFF);
    if (s == 0 && sum != 0)
        s = 0xFFFF;
    put16(f + where, ~s & 0xFFFF);
}

/* dataplane.gso_segments: (segments, sum of segment frame lengths) of a GSO super-frame. */
static void gso_segments(const uint8_t *f, size_t len, unsigned gso_type, unsigned gso_size,
                         unsigned l4, uint64_t *segs, uint64_t *nbytes)
{
    unsigned kind = gso_type & ~GSO_ECN;
    long long hdr, payload;
    *segs = 1;
    *nbytes = len;
    if (kind == 0 || gso_size == 0 || l4 == 0 || l4 >= len)
        return;
    if (kind == 1 || kind == 4) {
        if (l4 + 13 > len)
            return;
        hdr = (long long)l4 + (f[l4 + 12] >> 4) * 4;
    } else if (kind == 5 || kind == 3) {
        hdr = (long long)l4 + 8;
    } else {
        return;
    }
    payload = (long long)len - hdr;
    if (payload <= (long long)gso_size)
        return;
    long long n = (payload + gso_size - 1) / gso_size;
    *segs = (uint64_t)n;
    *nbytes = (uint64_t)(payload + n * hdr);
}

/* ---- flow table ---------------------------------------------------------------------- */

typedef struct {
    uint64_t gen;            /* 0: never used */
    uint8_t key[KEY_LEN];
    struct p4cf_action act;  /* the decision, as the kernel path's flow map holds it too */
    uint32_t addr_sum;       /* word_sum(act.addrs) + PROTO_TCP, for the pseudo-header */
} Flow;

typedef struct {
    PyObject_HEAD
    pthread_mutex_t mu;
    uint64_t gen;
    size_t mask;
    Flow *flows;
    uint64_t (*counts)[2]; /* per ecmp_select: packets, bytes not yet folded into Python */
    uint16_t *dirty;       /* selects with non-zero counts */
    size_t ndirty;
    uint8_t *is_dirty;
} FlowTable;

static uint64_t key_hash(const uint8_t *k)
{
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < KEY_LEN; i++)
        h = (h ^ k[i]) * 1099511628211ULL;
    return h ^ (h >> 29);
}

/* pipeline._flow_key: etherType and version/ihl, flags/fragment offset to protocol, the
 * addresses and ports, and whether the frame holds a whole TCP header. */
static void make_key(const uint8_t *f, size_t len, uint8_t *k)
{
    memcpy(k, f + P4CF_OFF_ETHERTYPE, 3);
    memcpy(k + 3, f + P4CF_OFF_IP_FRAG, 4);
    memcpy(k + 7, f + P4CF_OFF_IP_SRC, 12);
    k[19] = len >= P4CF_MIN_TCP_FRAME;
}

static Flow *flow_find(FlowTable *t, const uint8_t *k)
{
    size_t i = (size_t)key_hash(k) & t->mask;
    for (int p = 0; p < PROBE; p++, i = (i + 1) & t->mask) {
        Flow *fl = &t->flows[i];
        if (fl->gen == t->gen && memcmp(fl->key, k, KEY_LEN) == 0)
            return fl;
    }
    return NULL;
}

static void count(FlowTable *t, int select, uint64_t packets, uint64_t nbytes)
{
    t->counts[select][0] += packets;
    t->counts[select][1] += nbytes;
    if (!t->is_dirty[select]) {
        t->is_dirty[select] = 1;
        t->dirty[t->ndirty++] = (uint16_t)select;
    }
}

/* pipeline._rewrite for a forwarded frame (len >= MIN_KEY_FRAME). */
static void rewrite(const Flow *fl, uint8_t *f, size_t len, int partial)
{
    const struct p4cf_action *a = &fl->act;
    memcpy(f, a->macs, sizeof(a->macs));
    if (a->flags & P4CF_F_TTL_DEC)
        f[P4CF_OFF_IP_TTL] -= 1;
    f[P4CF_OFF_IP_CSUM] = f[P4CF_OFF_IP_CSUM + 1] = 0;
    memcpy(f + P4CF_OFF_IP_SRC, a->addrs, sizeof(a->addrs));
    unsigned v = (unsigned)(word_sum(f + P4CF_ETH_LEN, P4CF_IPV4_LEN) % 0xFFFF);
    put16(f + P4CF_OFF_IP_CSUM, v ? 0xFFFF - v : 0);
    if (a->flags & P4CF_F_TCP) {
        unsigned tcp_len = (get16(f + P4CF_OFF_IP_TOTLEN) - P4CF_IPV4_LEN) & 0xFFFF;
        if (partial) {
            v = (unsigned)(((uint64_t)fl->addr_sum + tcp_len) % 0xFFFF);
            put16(f + P4CF_OFF_TCP_CSUM, v ? v : 0xFFFF);
        } else {
            f[P4CF_OFF_TCP_CSUM] = f[P4CF_OFF_TCP_CSUM + 1] = 0;
            v = (unsigned)((word_sum(f + P4CF_OFF_L4, len - P4CF_OFF_L4) + fl->addr_sum + tcp_len)
                           % 0xFFFF);
            put16(f + P4CF_OFF_TCP_CSUM, v ? 0xFFFF - v : 0);
        }
    }
}

/* Dataplane._handle for one frame, table mutex held: R_PUNT leaves vnet and frame untouched;
 * R_DROP/R_FORWARD have counted, and R_FORWARD has rewritten the frame (and zeroed vnet when
 * no offload is left to ask the kernel for) with the egress port in *egress. */
static int handle_frame(FlowTable *t, uint8_t *vnet, uint8_t *f, size_t len, int *egress)
{
    if (len < MIN_KEY_FRAME)
        return R_PUNT;
    uint8_t key[KEY_LEN];
    make_key(f, len, key);
    Flow *fl = flow_find(t, key);
    if (fl == NULL)
        return R_PUNT;
    int partial = 0, clear_vnet = 0, complete = 0;
    unsigned flags = vnet[0], gso_type = vnet[1], gso_size = le16(vnet + 4);
    unsigned start = le16(vnet + 6), offset = le16(vnet + 8);
    uint64_t segs = 1, nbytes = len;
    static const uint8_t zero[VNET_LEN];
    if (memcmp(vnet, zero, VNET_LEN) != 0) {
        if (flags & F_NEEDS_CSUM) {
            if (start == P4CF_OFF_L4 && start + offset == P4CF_OFF_TCP_CSUM) {
                partial = 1;
            } else if (gso_type == 0) {
                size_t where = (size_t)start + offset;
                if (start < len && where + 2 <= len && where < MIN_KEY_FRAME)
                    return R_PUNT;   /* would change key bytes: let Python do it in order */
                complete = 1;
                clear_vnet = 1;
            }
        } else if (gso_type == 0) {
            clear_vnet = 1;
        }
        if (gso_type != 0)
            gso_segments(f, len, gso_type, gso_size, start, &segs, &nbytes);
    }
    if (complete)
        complete_checksum(f, len, start, offset);
    if (clear_vnet)
        memset(vnet, 0, VNET_LEN);
    if (fl->act.select != P4CF_NO_SELECT)
        count(t, fl->act.select, segs, nbytes);
    if (fl->act.egress == P4CF_DROP_PORT)
        return R_DROP;
    rewrite(fl, f, len, partial);
    *egress = fl->act.egress;
    return R_FORWARD;
}

static int FlowTable_init(FlowTable *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"capacity", NULL};
    Py_ssize_t cap = 1 << 16;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|n", kwlist, &cap))
        return -1;
    size_t size = 16;
    while ((Py_ssize_t)size < cap * 2 && size < ((size_t)1 << 24))
        size <<= 1;
    if (self->flows != NULL)
        return 0;
    pthread_mutex_init(&self->mu, NULL);
    self->flows = PyMem_RawCalloc(size, sizeof(Flow));
    self->counts = PyMem_RawCalloc(NSELECT, sizeof(*self->counts));
    self->dirty = PyMem_RawCalloc(NSELECT, sizeof(uint16_t));
    self->is_dirty = PyMem_RawCalloc(NSELECT, 1);
    if (!self->flows || !self->counts || !self->dirty || !self->is_dirty) {
        PyErr_NoMemory();
        return -1;
    }
    self->mask = size - 1;
    self->gen = 1;
    return 0;
}

static void FlowTable_dealloc(FlowTable *self)
{
    if (self->flows != NULL)
        pthread_mutex_destroy(&self->mu);
    PyMem_RawFree(self->flows);
    PyMem_RawFree(self->counts);
    PyMem_RawFree(self->dirty);
    PyMem_RawFree(self->is_dirty);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static void lock_table(FlowTable *t)
{
    if (pthread_mutex_trylock(&t->mu) != 0) {
        Py_BEGIN_ALLOW_THREADS
        pthread_mutex_lock(&t->mu);
        Py_END_ALLOW_THREADS
    }
}

/* Counts gathered since the last call, as [(select, packets, bytes)], zeroed (mutex held). */
static PyObject *take_counts_locked(FlowTable *t)
{
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < t->ndirty; i++) {
        unsigned sel = t->dirty[i];
        PyObject *item = Py_BuildValue("(IKK)", sel, (unsigned long long)t->counts[sel][0],
                                       (unsigned long long)t->counts[sel][1]);
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(out);
            return NULL;  /* counts kept: nothing was zeroed yet */
        }
        Py_DECREF(item);
    }
    for (size_t i = 0; i < t->ndirty; i++) {
        unsigned sel = t->dirty[i];
        t->counts[sel][0] = t->counts[sel][1] = 0;
        t->is_dirty[sel] = 0;
    }
    t->ndirty = 0;
    return out;
}

static PyObject *FlowTable_take_counts(FlowTable *self, PyObject *unused)
{
    lock_table(self);
    PyObject *out = take_counts_locked(self);
    pthread_mutex_unlock(&self->mu);
    return out;
}

static PyObject *FlowTable_invalidate(FlowTable *self, PyObject *arg)
{
    unsigned long long gen = PyLong_AsUnsignedLongLong(arg);
    if (gen == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    lock_table(self);
    PyObject *out = take_counts_locked(self);
    if (out != NULL)
        self->gen = gen;
    pthread_mutex_unlock(&self->mu);
    return out;
}

static PyObject *FlowTable_generation(FlowTable *self, PyObject *unused)
{
    return PyLong_FromUnsignedLongLong(self->gen);
}

/* insert(key, generation, egress, select, mac12, addrs, ttl_dec, tcp) -> learnt? */
static PyObject *FlowTable_insert(FlowTable *self, PyObject *args)
{
    PyObject *key_o, *mac_o, *addrs_o;
    unsigned long long gen;
    int egress, select, ttl_dec, tcp;
    Py_buffer key, mac, addrs;
    if (!PyArg_ParseTuple(args, "OKiiOOpp", &key_o, &gen, &egress, &select, &mac_o, &addrs_o,
                          &ttl_dec, &tcp))
        return NULL;
    if (egress < -1 || egress >= P4CF_DROP_PORT || select < -1 || select >= NSELECT) {
        PyErr_SetString(PyExc_ValueError, "egress or select out of range");
        return NULL;
    }
    if (get_exact(key_o, &key, KEY_LEN, "key") < 0)
        return NULL;
    if (get_exact(mac_o, &mac, 12, "mac12") < 0) {
        PyBuffer_Release(&key);
        return NULL;
    }
    if (get_exact(addrs_o, &addrs, 8, "addrs") < 0) {
        PyBuffer_Release(&key);
        PyBuffer_Release(&mac);
        return NULL;
    }
    int learnt = 0;
    lock_table(self);
    if (gen == self->gen) {
        size_t i = (size_t)key_hash(key.buf) & self->mask, slot = i;
        for (int p = 0; p < PROBE; p++, i = (i + 1) & self->mask) {
            Flow *fl = &self->flows[i];
            if (fl->gen != self->gen || memcmp(fl->key, key.buf, KEY_LEN) == 0) {
                slot = i;
                break;
            }
        }   /* all probes live with other keys: the first one is evicted */
        Flow *fl = &self->flows[slot];
        memcpy(fl->key, key.buf, KEY_LEN);
        fl->act.egress = (uint16_t)(egress < 0 ? P4CF_DROP_PORT : egress);
        fl->act.select = (uint16_t)(select < 0 ? P4CF_NO_SELECT : select);
        fl->act.flags = (uint8_t)((ttl_dec ? P4CF_F_TTL_DEC : 0) | (tcp ? P4CF_F_TCP : 0));
        memcpy(fl->act.macs, mac.buf, sizeof(fl->act.macs));
        memcpy(fl->act.addrs, addrs.buf, sizeof(fl->act.addrs));
        fl->addr_sum = (uint32_t)(word_sum(fl->act.addrs, 8) + P4CF_PROTO_TCP);
        fl->gen = self->gen;
        learnt = 1;
    }
    pthread_mutex_unlock(&self->mu);
    PyBuffer_Release(&key);
    PyBuffer_Release(&mac);
    PyBuffer_Release(&addrs);
    return PyBool_FromLong(learnt);
}

/* handle(vnet: bytearray, frame: bytearray) -> None (punt) | -1 (drop) | egress port.
 * The per-frame work of the forwarding loop, on writable buffers rewritten in place. */
static PyObject *FlowTable_handle(FlowTable *self, PyObject *args)
{
    Py_buffer vnet, frame;
    if (!PyArg_ParseTuple(args, "w*w*", &vnet, &frame))
        return NULL;
    if (vnet.len != VNET_LEN) {
        PyBuffer_Release(&vnet);
        PyBuffer_Release(&frame);
        PyErr_SetString(PyExc_ValueError, "vnet must be 10 bytes");
        return NULL;
    }
    int egress = -1;
    lock_table(self);
    int r = handle_frame(self, vnet.buf, frame.buf, (size_t)frame.len, &egress);
    pthread_mutex_unlock(&self->mu);
    PyBuffer_Release(&vnet);
    PyBuffer_Release(&frame);
    if (r == R_PUNT)
        Py_RETURN_NONE;
    return PyLong_FromLong(r == R_DROP ? -1 : egress);
}

static PyMethodDef FlowTable_methods[] = {
    {"insert", (PyCFunction)FlowTable_insert, METH_VARARGS,
     "insert(key, generation, egress, select, mac12, addrs, ttl_dec, tcp) -> bool: learn a "
     "decision; refused (False) when the generation is no longer current."},
    {"invalidate", (PyCFunction)FlowTable_invalidate, METH_O,
     "invalidate(generation) -> [(select, packets, bytes)]: forget every flow, hand back counts."},
    {"take_counts", (PyCFunction)FlowTable_take_counts, METH_NOARGS,
     "take_counts() -> [(select, packets, bytes)] gathered since the last call."},
    {"generation", (PyCFunction)FlowTable_generation, METH_NOARGS, "Current generation."},
    {"handle", (PyCFunction)FlowTable_handle, METH_VARARGS,
     "handle(vnet, frame) -> None (punt) | -1 (drop) | egress: one frame, in place."},
    {NULL}
};

static PyTypeObject FlowTableType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "p4cf_kit.switch.embedded._fastpath.FlowTable",
    .tp_basicsize = sizeof(FlowTable),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Decisions learnt from the Python pipeline, keyed by flow, and their counts.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)FlowTable_init,
    .tp_dealloc = (destructor)FlowTable_dealloc,
    .tp_methods = FlowTable_methods,
};

/* ---- forwarding loop ----------------------------------------------------------------- */

/* TPACKET_V2 receive ring (ring=True): one slot per frame, so a frame is visible as soon as
 * it is written (no block retire timer, unlike TPACKET_V3), and the kernel copies it in the
 * sender's context instead of a recvmmsg here. Slots hold a whole 64 KiB GSO frame. */
#define RING_FRAME_SIZE (18 * 4096)
#define RING_FRAMES 256
#define RING_HDR TPACKET_ALIGN(sizeof(struct tpacket2_hdr))

typedef struct {
    int fd, number, see_outgoing, active;
    unsigned long long rx, tx, dropped, tx_errors;
    struct mmsghdr tx_msgs[BATCH];
    struct iovec tx_iov[BATCH];   /* virtio_net_hdr and frame, contiguous */
    int ntx;
    uint8_t *ring;          /* NULL: recvmmsg */
    unsigned head;          /* next ring slot to look at */
    unsigned held;          /* slots from head handed to Python, released after copying */
} Port;

typedef struct {
    uint8_t *vnet, *frame;
    size_t len;
} Punt;

typedef struct {
    PyObject_HEAD
    FlowTable *table;
    int wake_fd, nports;
    Port *ports;
    int slot_of[NPORTNUM];
    uint8_t *bufs;              /* recvmmsg only: BATCH * (VNET_LEN + MAX_FRAME) */
    struct mmsghdr rx_msgs[BATCH];
    struct iovec rx_iov[BATCH];
    struct sockaddr_ll rx_addr[BATCH];
    Punt punted[BATCH];
    int npunted, punt_slot;
    double t_recv, t_work, t_send;  /* seconds spent receiving, in the table, sending */
    unsigned long long batches, nframes;
} Forwarder;

static void Forwarder_dealloc(Forwarder *self)
{
    Py_XDECREF(self->table);
    for (int s = 0; self->ports != NULL && s < self->nports; s++)
        if (self->ports[s].ring != NULL)
            munmap(self->ports[s].ring, (size_t)RING_FRAME_SIZE * RING_FRAMES);
    PyMem_RawFree(self->ports);
    PyMem_RawFree(self->bufs);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Set up and map the TPACKET_V2 receive ring of `p` (PACKET_VNET_HDR already set). */
static int attach_ring(Port *p)
{
    int version = TPACKET_V2;
    struct tpacket_req req = {RING_FRAME_SIZE, RING_FRAMES, RING_FRAME_SIZE, RING_FRAMES};
    if (setsockopt(p->fd, SOL_PACKET, PACKET_VERSION, &version, sizeof(version)) < 0
        || setsockopt(p->fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) < 0)
        return -1;
    void *ring = mmap(NULL, (size_t)RING_FRAME_SIZE * RING_FRAMES, PROT_READ | PROT_WRITE,
                      MAP_SHARED, p->fd, 0);
    if (ring == MAP_FAILED)
        return -1;
    p->ring = ring;
    return 0;
}

/* Forwarder(table, ports: [(fd, number, see_outgoing)], wake_fd, ring=False) */
static int Forwarder_init(Forwarder *self, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"table", "ports", "wake_fd", "ring", NULL};
    PyObject *table, *ports;
    int wake_fd, ring = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!Oi|p", kwlist, &FlowTableType, &table, &ports,
                                     &wake_fd, &ring))
        return -1;
    if (self->ports != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Forwarder already initialised");
        return -1;
    }
    PyObject *seq = PySequence_Fast(ports, "ports must be a sequence");
    if (seq == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    self->ports = PyMem_RawCalloc(n ? n : 1, sizeof(Port));
    self->bufs = PyMem_RawMalloc(ring ? 1 : (size_t)BATCH * (VNET_LEN + MAX_FRAME));
    if (!self->ports || !self->bufs) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (int i = 0; i < NPORTNUM; i++)
        self->slot_of[i] = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        Port *p = &self->ports[i];
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "iip", &p->fd, &p->number,
                              &p->see_outgoing)) {
            Py_DECREF(seq);
            return -1;
        }
        if (p->number < 0 || p->number >= NPORTNUM) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_ValueError, "port number out of range");
            return -1;
        }
        self->nports = (int)i + 1;  /* so dealloc unmaps what was mapped */
        if (ring && attach_ring(p) < 0) {
            Py_DECREF(seq);
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        p->active = 1;
        self->slot_of[p->number] = (int)i;
    }
    Py_DECREF(seq);
    self->nports = (int)n;
    self->wake_fd = wake_fd;
    Py_INCREF(table);
    self->table = (FlowTable *)table;
    for (int i = 0; i < BATCH && !ring; i++) {
        self->rx_iov[i].iov_base = self->bufs + (size_t)i * (VNET_LEN + MAX_FRAME);
        self->rx_iov[i].iov_len = VNET_LEN + MAX_FRAME;
    }
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void flush_tx(Port *p)
{
    int done = 0;
    while (done < p->ntx) {
        int r = sendmmsg(p->fd, p->tx_msgs + done, (unsigned)(p->ntx - done), 0);
        if (r > 0) {
            p->tx += (unsigned)r;
            done += r;
        } else if (r < 0 && errno == EINTR) {
            continue;
        } else {
            p->tx_errors++;   /* this message failed; the next ones still go */
            done++;
        }
    }
    p->ntx = 0;
}

/* Handle `n` received frames of port `in` (table locked once), send the forwarded ones in
 * order per egress, remember the punted ones (left untouched where they lie). */
static void forward_frames(Forwarder *self, Port *in, int n, uint8_t **vnets, uint8_t **frames,
                           size_t *lens)
{
    FlowTable *t = self->table;
    double t1 = now_s();
    pthread_mutex_lock(&t->mu);
    for (int i = 0; i < n; i++) {
        uint8_t *f = frames[i];
        size_t len = lens[i];
        int egress = -1;
        int r = handle_frame(t, vnets[i], f, len, &egress);
        if (r == R_PUNT) {
            self->punted[self->npunted++] = (Punt){vnets[i], f, len};
            continue;
        }
        in->rx++;
        if (r == R_DROP) {
            in->dropped++;
            continue;
        }
        int slot = self->slot_of[egress];
        if (slot < 0) {
            in->dropped++;
            continue;
        }
        Port *out = &self->ports[slot];
        struct mmsghdr *m = &out->tx_msgs[out->ntx];
        memset(m, 0, sizeof(*m));
        out->tx_iov[out->ntx].iov_base = vnets[i];   /* == f - VNET_LEN */
        out->tx_iov[out->ntx].iov_len = VNET_LEN + len;
        m->msg_hdr.msg_iov = &out->tx_iov[out->ntx];
        m->msg_hdr.msg_iovlen = 1;
        out->ntx++;
    }
    pthread_mutex_unlock(&t->mu);
    double t2 = now_s();
    self->t_work += t2 - t1;
    for (int s = 0; s < self->nports; s++)
        if (self->ports[s].ntx)
            flush_tx(&self->ports[s]);
    self->t_send += now_s() - t2;
    self->batches++;
    self->nframes += (unsigned)n;
}

/* One recvmmsg batch from port `in`. Returns frames received, 0 when none, -1 on error.
 * Called without the GIL. */
static int recv_batch(Forwarder *self, Port *in)
{
    struct mmsghdr *msgs = self->rx_msgs;
    for (int i = 0; i < BATCH; i++) {
        memset(&msgs[i].msg_hdr, 0, sizeof(msgs[i].msg_hdr));
        msgs[i].msg_hdr.msg_iov = &self->rx_iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        if (in->see_outgoing) {
            msgs[i].msg_hdr.msg_name = &self->rx_addr[i];
            msgs[i].msg_hdr.msg_namelen = sizeof(self->rx_addr[i]);
        }
    }
    double t0 = now_s();
    int n = recvmmsg(in->fd, msgs, BATCH, MSG_DONTWAIT, NULL);
    self->t_recv += now_s() - t0;
    if (n < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
    uint8_t *vnets[BATCH], *frames[BATCH];
    size_t lens[BATCH];
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (in->see_outgoing && self->rx_addr[i].sll_pkttype == PACKET_OUTGOING)
            continue;
        if (msgs[i].msg_len <= VNET_LEN)
            continue;
        vnets[m] = self->rx_iov[i].iov_base;
        frames[m] = vnets[m] + VNET_LEN;
        lens[m++] = msgs[i].msg_len - VNET_LEN;
    }
    forward_frames(self, in, m, vnets, frames, lens);
    return n;
}

static inline struct tpacket2_hdr *ring_slot(Port *p, unsigned i)
{
    return (struct tpacket2_hdr *)(p->ring + (size_t)(i % RING_FRAMES) * RING_FRAME_SIZE);
}

/* Give the first `n` slots from head back to the kernel. */
static void release_slots(Port *p, unsigned n)
{
    for (unsigned k = 0; k < n; k++)
        __atomic_store_n(&ring_slot(p, p->head + k)->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
    p->head = (p->head + n) % RING_FRAMES;
}

/* Up to BATCH frames the kernel has put in `in`'s ring: forward them, then release their
 * slots (kept when some were punted, until Python has copied them). Returns frames seen. */
static int ring_batch(Forwarder *self, Port *in)
{
    uint8_t *vnets[BATCH], *frames[BATCH];
    size_t lens[BATCH];
    int n = 0, m = 0;
    double t0 = now_s();
    for (; n < BATCH; n++) {
        struct tpacket2_hdr *h = ring_slot(in, in->head + (unsigned)n);
        if (!(__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER))
            break;
        const struct sockaddr_ll *sll = (const void *)((uint8_t *)h + RING_HDR);
        if (sll->sll_pkttype == PACKET_OUTGOING || h->tp_mac < RING_HDR + VNET_LEN)
            continue;
        if (h->tp_snaplen != h->tp_len
            || (size_t)h->tp_mac + h->tp_snaplen > RING_FRAME_SIZE) {
            in->dropped++;   /* larger than a slot (BIG TCP): cannot be forwarded whole */
            continue;
        }
        frames[m] = (uint8_t *)h + h->tp_mac;
        vnets[m] = frames[m] - VNET_LEN;
        lens[m++] = h->tp_snaplen;
    }
    self->t_recv += now_s() - t0;
    if (n == 0)
        return 0;
    forward_frames(self, in, m, vnets, frames, lens);
    if (self->npunted)
        in->held = (unsigned)n;
    else
        release_slots(in, (unsigned)n);
    return n;
}

/* run(timeout_ms) -> [(port number, vnet bytes, frame bytearray)] of punted frames.
 * Forwards until a batch has punted frames, the wake fd is readable or the time is up. */
static PyObject *Forwarder_run(Forwarder *self, PyObject *arg)
{
    int timeout_ms = _PyLong_AsInt(arg);
    if (timeout_ms == -1 && PyErr_Occurred())
        return NULL;
    int np = self->nports;
    struct pollfd *pfds = PyMem_RawCalloc((size_t)np + 1, sizeof(struct pollfd));
    if (pfds == NULL)
        return PyErr_NoMemory();
    self->npunted = 0;
    self->punt_slot = -1;
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    double end = now_s() + timeout_ms / 1000.0;
    int stop = 0;
    while (!stop) {
        pfds[0].fd = self->wake_fd;
        pfds[0].events = POLLIN;
        pfds[0].revents = 0;
        for (int s = 0; s < np; s++) {
            pfds[s + 1].fd = self->ports[s].active ? self->ports[s].fd : -1;
            pfds[s + 1].events = POLLIN;
            pfds[s + 1].revents = 0;
        }
        int left = (int)((end - now_s()) * 1000.0);
        if (left < 0)
            left = 0;
        int r = poll(pfds, (nfds_t)np + 1, left);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            err = errno;
            break;
        }
        if (r == 0 || pfds[0].revents)
            break;
        for (int s = 0; s < np && !stop; s++) {
            Port *p = &self->ports[s];
            short ev = pfds[s + 1].revents;
            if (!ev)
                continue;
            if (ev & (POLLERR | POLLNVAL)) {
                int soerr = 0;
                socklen_t sl = sizeof(soerr);
                if ((ev & POLLNVAL) || getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) {
                    p->active = 0;   /* socket unusable (interface gone) */
                    continue;
                }
            }
            for (int round = 0; round < ROUNDS_PER_PORT; round++) {
                int n = p->ring ? ring_batch(self, p) : recv_batch(self, p);
                if (n < 0) {
                    p->dropped++;
                    break;
                }
                if (self->npunted) {
                    self->punt_slot = s;
                    stop = 1;
                    break;
                }
                if (n < BATCH)
                    break;
            }
        }
        if (now_s() >= end)
            break;
    }
    Py_END_ALLOW_THREADS
    PyMem_RawFree(pfds);
    if (err) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (self->npunted == 0)
        return PyList_New(0);
    Port *from = &self->ports[self->punt_slot];
    PyObject *out = PyList_New(self->npunted);
    for (int k = 0; out != NULL && k < self->npunted; k++) {
        Punt *pt = &self->punted[k];
        PyObject *item = Py_BuildValue("(iy#N)", from->number, (const char *)pt->vnet,
                                       (Py_ssize_t)VNET_LEN,
                                       PyByteArray_FromStringAndSize((const char *)pt->frame,
                                                                     (Py_ssize_t)pt->len));
        if (item == NULL)
            Py_CLEAR(out);
        else
            PyList_SET_ITEM(out, k, item);
    }
    if (from->ring != NULL && from->held) {  /* copied (or failed): the slots go back */
        release_slots(from, from->held);
        from->held = 0;
    }
    self->npunted = 0;
    return out;
}

/* stats() -> {port number: (rx, tx, dropped, tx_errors)} of the frames handled here. */
static PyObject *Forwarder_stats(Forwarder *self, PyObject *unused)
{
    PyObject *d = PyDict_New();
    for (int s = 0; d != NULL && s < self->nports; s++) {
        Port *p = &self->ports[s];
        PyObject *k = PyLong_FromLong(p->number);
        PyObject *v = Py_BuildValue("(KKKK)", p->rx, p->tx, p->dropped, p->tx_errors);
        if (k == NULL || v == NULL || PyDict_SetItem(d, k, v) < 0) {
            Py_XDECREF(k);
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(k);
        Py_DECREF(v);
    }
    return d;
}

/* timing() -> (recv s, table s, send s, batches, frames): where the loop's time goes. */
static PyObject *Forwarder_timing(Forwarder *self, PyObject *unused)
{
    return Py_BuildValue("(dddKK)", self->t_recv, self->t_work, self->t_send, self->batches,
                         self->nframes);
}

static PyMethodDef Forwarder_methods[] = {
    {"timing", (PyCFunction)Forwarder_timing, METH_NOARGS,
     "timing() -> (seconds in recvmmsg, in the flow table, in sendmmsg, batches, frames)."},
    {"run", (PyCFunction)Forwarder_run, METH_O,
     "run(timeout_ms) -> punted frames [(port, vnet, frame)]; forwards without the GIL."},
    {"stats", (PyCFunction)Forwarder_stats, METH_NOARGS,
     "stats() -> {port: (rx, tx, dropped, tx_errors)} of frames forwarded in C."},
    {NULL}
};

static PyTypeObject ForwarderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "p4cf_kit.switch.embedded._fastpath.Forwarder",
    .tp_basicsize = sizeof(Forwarder),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Batch receive, flow-table forwarding and batch send over packet sockets.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Forwarder_init,
    .tp_dealloc = (destructor)Forwarder_dealloc,
    .tp_methods = Forwarder_methods,
};

/* ---- load generator ------------------------------------------------------------------ */

/* blast(fd, frame, seconds, batch=64) -> (sent, errors): the benchmark's traffic source, the
 * same frame over and over with sendmmsg for a fixed time, so Python is not the bottleneck. */
static PyObject *fp_blast(PyObject *mod, PyObject *args)
{
    int fd, batch = 64;
    double seconds;
    Py_buffer frame;
    if (!PyArg_ParseTuple(args, "iy*d|i", &fd, &frame, &seconds, &batch))
        return NULL;
    if (batch < 1 || batch > 1024 || seconds < 0 || seconds > 3600) {
        PyBuffer_Release(&frame);
        PyErr_SetString(PyExc_ValueError, "batch 1..1024, seconds 0..3600");
        return NULL;
    }
    struct mmsghdr *msgs = PyMem_RawCalloc((size_t)batch, sizeof(*msgs));
    struct iovec iov = {frame.buf, (size_t)frame.len};
    if (msgs == NULL) {
        PyBuffer_Release(&frame);
        return PyErr_NoMemory();
    }
    for (int i = 0; i < batch; i++) {
        msgs[i].msg_hdr.msg_iov = &iov;
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    unsigned long long sent = 0, errors = 0;
    Py_BEGIN_ALLOW_THREADS
    double end = now_s() + seconds;
    while (now_s() < end) {
        int r = sendmmsg(fd, msgs, (unsigned)batch, 0);
        if (r > 0)
            sent += (unsigned)r;
        else
            errors++;
    }
    Py_END_ALLOW_THREADS
    PyMem_RawFree(msgs);
    PyBuffer_Release(&frame);
    return Py_BuildValue("(KK)", sent, errors);
}

static PyMethodDef module_methods[] = {
    {"blast", fp_blast, METH_VARARGS,
     "blast(fd, frame, seconds, batch=64) -> (sent, errors): sendmmsg load generator."},
    {NULL}
};

static struct PyModuleDef fastpath_module = {
    PyModuleDef_HEAD_INIT, "_fastpath",
    "C fast path of the embedded switch: flow table of learnt decisions, batch forwarding.",
    -1, module_methods,
};

PyMODINIT_FUNC PyInit__fastpath(void)
{
    if (PyType_Ready(&FlowTableType) < 0 || PyType_Ready(&ForwarderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fastpath_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&FlowTableType);
    Py_INCREF(&ForwarderType);
    if (PyModule_AddObject(m, "FlowTable", (PyObject *)&FlowTableType) < 0
        || PyModule_AddObject(m, "Forwarder", (PyObject *)&ForwarderType) < 0
        || PyModule_AddIntConstant(m, "KEY_LEN", KEY_LEN) < 0
        || PyModule_AddIntConstant(m, "MIN_KEY_FRAME", MIN_KEY_FRAME) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
