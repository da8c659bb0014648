/* The kernel fast path's loader: libbpf, for Python.
 *
 * Why a C extension and not ctypes into libbpf.so: libbpf's options are C structs that grow
 * between releases (the compiler checks them against the installed headers, ctypes would pack
 * them by hand again), its log arrives through a printf-style callback with a va_list (which
 * only C can format), and the map values are the structs of layout.h, which the eBPF program
 * uses too: packed here, they exist once. Built at set-up with the distribution's libbpf-dev.
 *
 * What it offers: load an object file built by clang (a verifier refusal carries libbpf's
 * log, whose BTF line info names the source lines), attach with a tcx link (Linux >= 6.6;
 * libbpf 1.1, Debian 12's, predates tcx, so through the low-level bpf_link_create with the
 * attach type's number), and read and write the program's maps in layout.h's terms.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "../layout.h"
#include "../pybuffer.h"

#define ATTACH_TCX_INGRESS 46   /* enum bpf_attach_type's BPF_TCX_INGRESS (Linux 6.6) */
#define LOG_MAX (1 << 20)

/* ---- libbpf's log ------------------------------------------------------------------ */

static char *log_text;      /* what libbpf printed since the last load began */
static size_t log_len;

static int keep_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    if (level == LIBBPF_DEBUG || log_text == NULL || log_len >= LOG_MAX - 1)
        return 0;
    int n = vsnprintf(log_text + log_len, LOG_MAX - log_len, fmt, ap);
    if (n > 0)
        log_len += (size_t)n < LOG_MAX - log_len ? (size_t)n : LOG_MAX - 1 - log_len;
    return 0;
}

static PyObject *os_error(int err, const char *what, int with_log)
{
    PyObject *msg = PyUnicode_FromFormat("%s: %s%s%s", what, strerror(err),
                                         with_log && log_len ? "\n" : "",
                                         with_log && log_len ? log_text : "");
    if (msg == NULL)
        return NULL;
    PyObject *exc = PyObject_CallFunction(PyExc_OSError, "iO", err, msg);
    Py_DECREF(msg);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

static int dup_fd(int fd)
{
    return fcntl(fd, F_DUPFD_CLOEXEC, 3);
}

/* ---- loading ----------------------------------------------------------------------- */

/* Set the 32-bit read-only global `name` (a `const volatile __u32`) before load. */
static int set_rodata_u32(struct bpf_object *obj, const char *name, __u32 value)
{
    struct btf *btf = bpf_object__btf(obj);
    struct bpf_map *map;
    if (btf == NULL)
        return -ENOENT;
    int sec = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
    if (sec < 0)
        return -ENOENT;
    const struct btf_type *t = btf__type_by_id(btf, (__u32)sec);
    const struct btf_var_secinfo *vars = btf_var_secinfos(t);
    bpf_object__for_each_map(map, obj) {
        const char *mname = bpf_map__name(map);
        size_t n = strlen(mname);
        if (!bpf_map__is_internal(map) || n < 7 || strcmp(mname + n - 7, ".rodata") != 0)
            continue;
        size_t size = 0;
        const void *init = bpf_map__initial_value(map, &size);
        for (int i = 0; i < btf_vlen(t); i++) {
            const struct btf_type *var = btf__type_by_id(btf, vars[i].type);
            if (strcmp(btf__name_by_offset(btf, var->name_off), name) != 0)
                continue;
            if (vars[i].size != sizeof(value) || vars[i].offset + sizeof(value) > size)
                return -EINVAL;
            char *data = malloc(size);
            if (data == NULL)
                return -ENOMEM;
            memcpy(data, init, size);
            memcpy(data + vars[i].offset, &value, sizeof(value));
            int err = bpf_map__set_initial_value(map, data, size);
            free(data);
            return err;
        }
    }
    return -ENOENT;
}

/* load(path, consts: {name: u32}, reuse: {map name: fd}) -> (program fd, {map name: fd})
 * Opens and loads the object's one program with its read-only globals set and the named
 * maps taken from `reuse` (so several instances share them); the fds returned are the
 * caller's (new maps are created here). OSError with libbpf's log when it fails. */
static PyObject *loader_load(PyObject *mod, PyObject *args)
{
    const char *path;
    PyObject *consts, *reuse;
    if (!PyArg_ParseTuple(args, "sO!O!", &path, &PyDict_Type, &consts, &PyDict_Type, &reuse))
        return NULL;
    log_len = 0;
    if (log_text == NULL && (log_text = PyMem_RawMalloc(LOG_MAX)) == NULL)
        return PyErr_NoMemory();
    log_text[0] = 0;
    struct bpf_object *obj = bpf_object__open_file(path, NULL);
    if (obj == NULL)
        return os_error(errno, path, 1);
    PyObject *key, *value, *maps = NULL, *out = NULL;
    Py_ssize_t pos = 0;
    int err = 0, prog_fd = -1;
    const char *what = "setting the program's constants";
    while (PyDict_Next(consts, &pos, &key, &value)) {
        const char *name = PyUnicode_AsUTF8(key);
        unsigned long v = name ? PyLong_AsUnsignedLong(value) : 0;
        if (name == NULL || PyErr_Occurred())
            goto done;
        if ((err = set_rodata_u32(obj, name, (__u32)v)) < 0)
            goto fail;
    }
    pos = 0;
    what = "sharing the maps";
    while (PyDict_Next(reuse, &pos, &key, &value)) {
        const char *name = PyUnicode_AsUTF8(key);
        int fd = name ? _PyLong_AsInt(value) : -1;
        if (name == NULL || PyErr_Occurred())
            goto done;
        struct bpf_map *map = bpf_object__find_map_by_name(obj, name);
        if (map == NULL) {
            err = -ENOENT;
            goto fail;
        }
        if ((err = bpf_map__reuse_fd(map, fd)) < 0)
            goto fail;
    }
    what = "loading the program (the verifier's reasons follow)";
    Py_BEGIN_ALLOW_THREADS
    err = bpf_object__load(obj);
    Py_END_ALLOW_THREADS
    if (err < 0)
        goto fail;
    struct bpf_program *prog = bpf_object__next_program(obj, NULL);
    what = "the object holds no program";
    if (prog == NULL) {
        err = -ENOENT;
        goto fail;
    }
    if ((maps = PyDict_New()) == NULL)
        goto done;
    struct bpf_map *map;
    bpf_object__for_each_map(map, obj) {
        if (bpf_map__is_internal(map))
            continue;
        int fd = dup_fd(bpf_map__fd(map));
        PyObject *fd_o = fd < 0 ? NULL : PyLong_FromLong(fd);
        if (fd_o == NULL || PyDict_SetItemString(maps, bpf_map__name(map), fd_o) < 0) {
            Py_XDECREF(fd_o);
            if (fd >= 0)
                close(fd);
            if (!PyErr_Occurred())
                os_error(errno, "dup", 0);
            goto done;
        }
        Py_DECREF(fd_o);
    }
    if ((prog_fd = dup_fd(bpf_program__fd(prog))) < 0) {
        os_error(errno, "dup", 0);
        goto done;
    }
    out = Py_BuildValue("(iO)", prog_fd, maps);
    goto done;
fail:
    {
        char buf[512];
        snprintf(buf, sizeof(buf), "%s: %s", path, what);
        os_error(-err, buf, 1);
    }
done:
    if (out == NULL && maps != NULL) {  /* close what we duplicated */
        pos = 0;
        while (PyDict_Next(maps, &pos, &key, &value))
            close((int)PyLong_AsLong(value));
        if (prog_fd >= 0)
            close(prog_fd);
    }
    Py_XDECREF(maps);
    bpf_object__close(obj);
    return out;
}

/* ---- tcx --------------------------------------------------------------------------- */

/* tcx_attach(prog_fd, ifindex) -> link fd: the program at the interface's tcx ingress, after
 * any others, until the link fd is closed (by us, or by the kernel when the process dies). */
static PyObject *loader_tcx_attach(PyObject *mod, PyObject *args)
{
    int prog_fd, ifindex;
    if (!PyArg_ParseTuple(args, "ii", &prog_fd, &ifindex))
        return NULL;
    int fd = bpf_link_create(prog_fd, ifindex, (enum bpf_attach_type)ATTACH_TCX_INGRESS, NULL);
    if (fd < 0)
        return os_error(-fd, "tcx attach", 0);
    return PyLong_FromLong(fd);
}

/* tcx_count(ifindex) -> programs attached at the interface's tcx ingress (this netns). */
static PyObject *loader_tcx_count(PyObject *mod, PyObject *arg)
{
    int ifindex = _PyLong_AsInt(arg);
    if (ifindex == -1 && PyErr_Occurred())
        return NULL;
    __u32 flags = 0, count = 0;
    int err = bpf_prog_query(ifindex, (enum bpf_attach_type)ATTACH_TCX_INGRESS, 0, &flags, NULL,
                             &count);
    if (err < 0)
        return os_error(-err, "tcx query", 0);
    return PyLong_FromUnsignedLong(count);
}

/* ---- the program's maps ------------------------------------------------------------ */

/* learn(flows_fd, frame, epoch, ifindex, lookup, lookup_gen, macs, addrs, egress, select,
 *       flags) -> None: the flow of `frame` (its 5-tuple) gets this entry. */
static PyObject *loader_learn(PyObject *mod, PyObject *args)
{
    int fd;
    Py_buffer frame, macs, addrs;
    PyObject *macs_o, *addrs_o;
    unsigned long long epoch;
    unsigned int ifindex, lookup, lookup_gen, egress, select, flags;
    if (!PyArg_ParseTuple(args, "iy*KIIIOOIII", &fd, &frame, &epoch, &ifindex, &lookup,
                          &lookup_gen, &macs_o, &addrs_o, &egress, &select, &flags))
        return NULL;
    struct p4cf_flow_key key;
    struct p4cf_kernel_flow value;
    memset(&value, 0, sizeof(value));
    if (frame.len < P4CF_MIN_KEY_FRAME) {
        PyBuffer_Release(&frame);
        PyErr_SetString(PyExc_ValueError, "frame too short for a flow key");
        return NULL;
    }
    p4cf_flow_key_of(frame.buf, &key);
    PyBuffer_Release(&frame);
    if (get_exact(macs_o, &macs, sizeof(value.act.macs), "macs") < 0)
        return NULL;
    memcpy(value.act.macs, macs.buf, sizeof(value.act.macs));
    PyBuffer_Release(&macs);
    if (get_exact(addrs_o, &addrs, sizeof(value.act.addrs), "addrs") < 0)
        return NULL;
    memcpy(value.act.addrs, addrs.buf, sizeof(value.act.addrs));
    PyBuffer_Release(&addrs);
    value.epoch = epoch;
    value.ifindex = ifindex;
    value.lookup = (__u16)lookup;
    value.lookup_gen = lookup_gen;
    value.act.egress = (__u16)egress;
    value.act.select = (__u16)select;
    value.act.flags = (__u8)flags;
    if (bpf_map_update_elem(fd, &key, &value, BPF_ANY) < 0)
        return os_error(errno, "flow map update", 0);
    Py_RETURN_NONE;
}

/* set_u32(fd, index, value), set_u64(fd, index, value): one element of an array map. */
static PyObject *loader_set_u32(PyObject *mod, PyObject *args)
{
    int fd;
    unsigned int index, value;
    if (!PyArg_ParseTuple(args, "iII", &fd, &index, &value))
        return NULL;
    __u32 k = index, v = value;
    if (bpf_map_update_elem(fd, &k, &v, BPF_ANY) < 0)
        return os_error(errno, "array map update", 0);
    Py_RETURN_NONE;
}

static PyObject *loader_set_u64(PyObject *mod, PyObject *args)
{
    int fd;
    unsigned int index;
    unsigned long long value;
    if (!PyArg_ParseTuple(args, "iIK", &fd, &index, &value))
        return NULL;
    __u32 k = index;
    __u64 v = value;
    if (bpf_map_update_elem(fd, &k, &v, BPF_ANY) < 0)
        return os_error(errno, "array map update", 0);
    Py_RETURN_NONE;
}

/* Sum the per-CPU u64 fields of element `index` of a per-CPU array map whose value is
 * `fields` u64s; NULL (ENOENT) or a tuple. */
static PyObject *percpu_sums(int fd, unsigned int index, int fields)
{
    int ncpu = libbpf_num_possible_cpus();
    if (ncpu < 0)
        return os_error(-ncpu, "possible CPUs", 0);
    __u64 *vals = PyMem_RawCalloc((size_t)ncpu * (size_t)fields, sizeof(__u64));
    if (vals == NULL)
        return PyErr_NoMemory();
    __u32 k = index;
    if (bpf_map_lookup_elem(fd, &k, vals) < 0) {
        int err = errno;
        PyMem_RawFree(vals);
        if (err == ENOENT)
            Py_RETURN_NONE;
        return os_error(err, "per-CPU map lookup", 0);
    }
    PyObject *out = PyTuple_New(fields);
    for (int f = 0; out != NULL && f < fields; f++) {
        unsigned long long sum = 0;
        for (int c = 0; c < ncpu; c++)
            sum += vals[(size_t)c * (size_t)fields + (size_t)f];
        PyObject *v = PyLong_FromUnsignedLongLong(sum);
        if (v == NULL)
            Py_CLEAR(out);
        else
            PyTuple_SET_ITEM(out, f, v);
    }
    PyMem_RawFree(vals);
    return out;
}

/* counter(fd, select) -> (packets, bytes) | None; port_counts(fd, port) -> (rx, tx, dropped). */
static PyObject *loader_counter(PyObject *mod, PyObject *args)
{
    int fd;
    unsigned int index;
    if (!PyArg_ParseTuple(args, "iI", &fd, &index))
        return NULL;
    return percpu_sums(fd, index, sizeof(struct p4cf_counter) / sizeof(__u64));
}

static PyObject *loader_port_counts(PyObject *mod, PyObject *args)
{
    int fd;
    unsigned int index;
    if (!PyArg_ParseTuple(args, "iI", &fd, &index))
        return NULL;
    return percpu_sums(fd, index, sizeof(struct p4cf_port_counts) / sizeof(__u64));
}

static PyMethodDef loader_methods[] = {
    {"load", loader_load, METH_VARARGS,
     "load(path, consts, reuse) -> (prog_fd, {map: fd}): load an eBPF object's program."},
    {"tcx_attach", loader_tcx_attach, METH_VARARGS,
     "tcx_attach(prog_fd, ifindex) -> link fd at the interface's tcx ingress."},
    {"tcx_count", loader_tcx_count, METH_O,
     "tcx_count(ifindex) -> how many programs are attached at its tcx ingress."},
    {"learn", loader_learn, METH_VARARGS,
     "learn(flows_fd, frame, epoch, ifindex, lookup, lookup_gen, macs, addrs, egress, select, "
     "flags): store the flow entry of frame's 5-tuple."},
    {"set_u32", loader_set_u32, METH_VARARGS, "set_u32(fd, index, value): array map element."},
    {"set_u64", loader_set_u64, METH_VARARGS, "set_u64(fd, index, value): array map element."},
    {"counter", loader_counter, METH_VARARGS,
     "counter(fd, select) -> (packets, bytes) summed over CPUs, or None."},
    {"port_counts", loader_port_counts, METH_VARARGS,
     "port_counts(fd, port) -> (rx, tx, dropped) summed over CPUs, or None."},
    {NULL}
};

static struct PyModuleDef loader_module = {
    PyModuleDef_HEAD_INIT, "_loader",
    "libbpf for the kernel fast path: load, attach with tcx, the program's maps.",
    -1, loader_methods,
};

PyMODINIT_FUNC PyInit__loader(void)
{
    libbpf_set_print(keep_log);
    PyObject *m = PyModule_Create(&loader_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "ATTACH_TCX_INGRESS", ATTACH_TCX_INGRESS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
