/* Python buffer helpers shared by the embedded switch's C extensions (_fastpath.c and
 * ebpf/_loader.c); include after Python.h. Not for the eBPF program, which has no Python. */
#ifndef P4CF_PYBUFFER_H
#define P4CF_PYBUFFER_H

/* Get a read-only view of `obj` that must be exactly `want` bytes; on any failure a Python
 * exception naming `what` is set, nothing is held, and -1 is returned. */
static inline int get_exact(PyObject *obj, Py_buffer *view, Py_ssize_t want, const char *what)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0)
        return -1;
    if (view->len != want) {
        PyErr_Format(PyExc_ValueError, "%s must be %zd bytes, not %zd", what, want, view->len);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

#endif
