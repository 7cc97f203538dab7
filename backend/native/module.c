/* backend._nbdcore: the binding between the native data path and Python.
 *
 * Narrow on purpose (docs/native-core.md lists it): an LDEV's Gate (its write
 * lock, its route, its statistics), its QoS limiter, `serve` to hand a
 * negotiated NBD connection to a native thread, and the pure wire functions
 * for the tests that fuzz them. Python calls in only to set things up and to
 * change routes; the native side calls Python only for writes the write path
 * must take (a batch at a time) and once when a connection ends.
 */
#include "module.h"

#include <errno.h>
#include <unistd.h>

#include "conn.h"
#include "crc32c.h"
#include "gate.h"
#include "nbd_wire.h"

/* -- Qos ------------------------------------------------------------------------------ */
typedef struct {
    PyObject_HEAD
    struct qos qos;
} QosObject;

static int Qos_init(QosObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"max_iops", "max_mbps", NULL};
    long iops = 0, mbps = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|ll", kwlist, &iops, &mbps)) return -1;
    qos_init(&self->qos);
    if (qos_update(&self->qos, iops, mbps) != 0) {
        PyErr_SetString(PyExc_ValueError, "QoS limits cannot be negative");
        return -1;
    }
    return 0;
}

static void Qos_dealloc(QosObject *self) {
    qos_destroy(&self->qos);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Qos_update(QosObject *self, PyObject *args) {
    long iops, mbps;
    if (!PyArg_ParseTuple(args, "ll", &iops, &mbps)) return NULL;
    if (qos_update(&self->qos, iops, mbps) != 0) {
        PyErr_SetString(PyExc_ValueError, "QoS limits cannot be negative");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *Qos_reserve(QosObject *self, PyObject *args) {
    unsigned long long nbytes;
    double now;
    if (!PyArg_ParseTuple(args, "Kd", &nbytes, &now)) return NULL;
    return PyFloat_FromDouble(qos_reserve(&self->qos, nbytes, now));
}

static PyObject *Qos_get_limits(QosObject *self, void *closure) {
    (void)closure;
    return Py_BuildValue("(ll)", self->qos.max_iops, self->qos.max_mbps);
}

static PyMethodDef Qos_methods[] = {
    {"update", (PyCFunction)Qos_update, METH_VARARGS, "update(max_iops, max_mbps): new limits, with a full burst"},
    {"reserve", (PyCFunction)Qos_reserve, METH_VARARGS,
     "reserve(nbytes, now) -> seconds the request must wait (now: time.monotonic())"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Qos_getset[] = {
    {"limits", (getter)Qos_get_limits, NULL, "(max_iops, max_mbps)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject QosType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "backend._nbdcore.Qos",
    .tp_doc = "An LDEV's QoS limits (IOPS, MB/s) as token buckets, shared by every thread serving it.",
    .tp_basicsize = sizeof(QosObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Qos_init,
    .tp_dealloc = (destructor)Qos_dealloc,
    .tp_methods = Qos_methods,
    .tp_getset = Qos_getset,
};

/* -- Gate ----------------------------------------------------------------------------- */
typedef struct {
    PyObject_HEAD
    struct gate gate;
    QosObject *qos;
    JournalCoreObject *journal; /* ROUTE_JOURNAL's journal, kept alive while the gate names it */
    int ready;
} GateObject;

static int Gate_init(GateObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"fd", "size", "qos", "ldev_id", NULL};
    int fd;
    unsigned int ldev_id = 0;
    unsigned long long size;
    QosObject *qos;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iKO!|I", kwlist, &fd, &size, &QosType, &qos, &ldev_id)) return -1;
    if (self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "a Gate is initialised once");
        return -1;
    }
    if (gate_init(&self->gate, fd, ldev_id, size, &qos->qos) != 0) {
        PyErr_SetString(PyExc_OSError, "cannot initialise the gate's lock");
        return -1;
    }
    Py_INCREF(qos);
    self->qos = qos;
    self->ready = 1;
    return 0;
}

static void Gate_dealloc(GateObject *self) {
    if (self->ready) gate_destroy(&self->gate);
    Py_XDECREF(self->qos);
    Py_XDECREF(self->journal);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Gate_acquire(GateObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"blocking", "timeout", NULL};
    int blocking = 1;
    double timeout = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|pd", kwlist, &blocking, &timeout)) return NULL;
    int taken = gate_trylock(&self->gate);
    if (!taken && blocking) {
        Py_BEGIN_ALLOW_THREADS
        taken = gate_lock_timed(&self->gate, timeout);
        Py_END_ALLOW_THREADS
    }
    return PyBool_FromLong(taken);
}

static PyObject *Gate_release(GateObject *self, PyObject *unused) {
    (void)unused;
    pthread_mutex_lock(&self->gate.mu);
    int locked = self->gate.locked;
    pthread_mutex_unlock(&self->gate.mu);
    if (!locked) {
        PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
        return NULL;
    }
    gate_unlock(&self->gate);
    Py_RETURN_NONE;
}

static PyObject *Gate_locked(GateObject *self, PyObject *unused) {
    (void)unused;
    pthread_mutex_lock(&self->gate.mu);
    int locked = self->gate.locked;
    pthread_mutex_unlock(&self->gate.mu);
    return PyBool_FromLong(locked);
}

static PyObject *Gate_enter(GateObject *self, PyObject *unused) {
    (void)unused;
    if (!gate_trylock(&self->gate)) {
        Py_BEGIN_ALLOW_THREADS
        gate_lock(&self->gate);
        Py_END_ALLOW_THREADS
    }
    Py_INCREF(self);
    return (PyObject *)self;
}

static PyObject *Gate_exit(GateObject *self, PyObject *args) {
    (void)args;
    gate_unlock(&self->gate);
    Py_RETURN_FALSE;
}

static PyObject *Gate_observe(GateObject *self, PyObject *args) {
    int command, failed;
    double seconds;
    if (!PyArg_ParseTuple(args, "idp", &command, &seconds, &failed)) return NULL;
    gate_observe(&self->gate, command, seconds, failed);
    Py_RETURN_NONE;
}

static PyObject *Gate_stats(GateObject *self, PyObject *unused) {
    (void)unused;
    struct command_stats copy[NBD_CMD_COUNT];
    pthread_mutex_lock(&self->gate.stats_mu);
    memcpy(copy, self->gate.stats, sizeof copy);
    pthread_mutex_unlock(&self->gate.stats_mu);
    PyObject *out = PyDict_New();
    if (!out) return NULL;
    for (int command = 0; command < NBD_CMD_COUNT; command++) {
        struct command_stats *s = &copy[command];
        if (!s->count) continue;
        PyObject *buckets = PyList_New(GATE_LATENCY_BOUNDS + 1);
        if (!buckets) goto failed;
        for (int b = 0; b <= GATE_LATENCY_BOUNDS; b++)
            PyList_SET_ITEM(buckets, b, PyLong_FromUnsignedLongLong(s->buckets[b]));
        PyObject *entry = Py_BuildValue("(NdKK)", buckets, s->seconds, (unsigned long long)s->count,
                                        (unsigned long long)s->errors);
        PyObject *key = PyLong_FromLong(command);
        if (!entry || !key || PyDict_SetItem(out, key, entry) != 0) {
            Py_XDECREF(entry);
            Py_XDECREF(key);
            goto failed;
        }
        Py_DECREF(entry);
        Py_DECREF(key);
    }
    return out;
failed:
    Py_DECREF(out);
    return NULL;
}

static PyObject *Gate_set_route(GateObject *self, PyObject *args) {
    int route;
    PyObject *journal = Py_None;
    if (!PyArg_ParseTuple(args, "i|O", &route, &journal)) return NULL;
    if (route < ROUTE_PLAIN || route > ROUTE_PYTHON) {
        PyErr_SetString(PyExc_ValueError, "route is 0 (plain), 1 (journal) or 2 (python)");
        return NULL;
    }
    if ((route == ROUTE_JOURNAL) != (journal != Py_None) ||
        (journal != Py_None && !PyObject_TypeCheck(journal, &JournalCoreType))) {
        PyErr_SetString(PyExc_TypeError, "the journal route names a JournalCore, and only it does");
        return NULL;
    }
    /* Changed under the gate's lock, which native writers read them under: taken here
     * unless the caller holds it (the route's owners change it under the LDEV's lock). */
    int mine = gate_held_here(&self->gate);
    if (!mine) {
        Py_BEGIN_ALLOW_THREADS
        gate_lock(&self->gate);
        Py_END_ALLOW_THREADS
    }
    JournalCoreObject *old = self->journal;
    self->journal = journal == Py_None ? NULL : (JournalCoreObject *)Py_NewRef(journal);
    self->gate.journal = self->journal ? &self->journal->core : NULL;
    self->gate.route = route;
    if (!mine) gate_unlock(&self->gate);
    Py_XDECREF(old);
    Py_RETURN_NONE;
}

static PyObject *Gate_get_route(GateObject *self, void *closure) {
    (void)closure;
    return PyLong_FromLong(self->gate.route);
}

static PyObject *Gate_get_size(GateObject *self, void *closure) {
    (void)closure;
    return PyLong_FromUnsignedLongLong(atomic_load(&self->gate.size));
}

static int Gate_set_size(GateObject *self, PyObject *value, void *closure) {
    (void)closure;
    unsigned long long size = PyLong_AsUnsignedLongLong(value);
    if (PyErr_Occurred()) return -1;
    atomic_store(&self->gate.size, size);
    return 0;
}

static PyObject *Gate_get_qos(GateObject *self, void *closure) {
    (void)closure;
    Py_INCREF(self->qos);
    return (PyObject *)self->qos;
}

static PyMethodDef Gate_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))Gate_acquire, METH_VARARGS | METH_KEYWORDS,
     "acquire(blocking=True, timeout=-1) -> bool: take the LDEV's write lock (as threading.Lock)"},
    {"release", (PyCFunction)Gate_release, METH_NOARGS, "release the LDEV's write lock"},
    {"locked", (PyCFunction)Gate_locked, METH_NOARGS, "whether the write lock is held"},
    {"__enter__", (PyCFunction)Gate_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)Gate_exit, METH_VARARGS, NULL},
    {"set_route", (PyCFunction)Gate_set_route, METH_VARARGS,
     "set_route(route, journal=None): where the LDEV's writes go: 0 plain (data only), 1 journal (a record in "
     "the JournalCore, then the data), 2 python (the write path)"},
    {"observe", (PyCFunction)Gate_observe, METH_VARARGS,
     "observe(command, seconds, failed): count a request served elsewhere (Python's NBD server)"},
    {"stats", (PyCFunction)Gate_stats, METH_NOARGS,
     "{command: (bucket counts, seconds, count, errors)}: requests served since the gate opened"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Gate_getset[] = {
    {"size", (getter)Gate_get_size, (setter)Gate_set_size, "the LDEV's size now", NULL},
    {"route", (getter)Gate_get_route, NULL, "where the LDEV's writes go (set_route)", NULL},
    {"qos", (getter)Gate_get_qos, NULL, "the LDEV's QoS limiter", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject GateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "backend._nbdcore.Gate",
    .tp_doc = "Gate(fd, size, qos): an open LDEV's write lock, route and request statistics.",
    .tp_basicsize = sizeof(GateObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Gate_init,
    .tp_dealloc = (destructor)Gate_dealloc,
    .tp_methods = Gate_methods,
    .tp_getset = Gate_getset,
};

/* -- Connection ----------------------------------------------------------------------- */
struct callbacks {
    PyObject *write_batch;
    PyObject *closed;
    PyObject *gate;
};

typedef struct {
    PyObject_HEAD
    struct conn *conn;
} ConnectionObject;

static void Connection_dealloc(ConnectionObject *self) {
    if (self->conn) conn_release(self->conn);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Connection_abort(ConnectionObject *self, PyObject *unused) {
    (void)unused;
    if (self->conn) conn_abort(self->conn);
    Py_RETURN_NONE;
}

static PyMethodDef Connection_methods[] = {
    {"abort", (PyCFunction)Connection_abort, METH_NOARGS,
     "cut the connection (thread-safe): its thread ends and `closed` is called"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ConnectionType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "backend._nbdcore.Connection",
    .tp_doc = "An NBD connection served by a native thread (made by serve()).",
    .tp_basicsize = sizeof(ConnectionObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)Connection_dealloc,
    .tp_methods = Connection_methods,
};

static void call_write_batch(void *ctx, struct batch_entry *entries, size_t count) {
    struct callbacks *cb = ctx;
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *batch = PyList_New((Py_ssize_t)count);
    PyObject *result = NULL;
    if (batch) {
        for (size_t i = 0; i < count; i++) {
            struct batch_entry *e = &entries[i];
            PyObject *item = e->payload && e->req.command == NBD_CMD_WRITE
                ? Py_BuildValue("(iiKIy#)", e->req.command, e->req.flags, (unsigned long long)e->req.offset,
                                e->req.length, (const char *)e->payload, (Py_ssize_t)e->req.length)
                : Py_BuildValue("(iiKIO)", e->req.command, e->req.flags, (unsigned long long)e->req.offset,
                                e->req.length, Py_None);
            if (!item) {
                Py_CLEAR(batch);
                break;
            }
            PyList_SET_ITEM(batch, (Py_ssize_t)i, item);
        }
    }
    if (batch) result = PyObject_CallOneArg(cb->write_batch, batch);
    Py_XDECREF(batch);
    int ok = result && PyList_Check(result) && PyList_GET_SIZE(result) == (Py_ssize_t)count;
    for (size_t i = 0; i < count; i++) {
        long error = ok ? PyLong_AsLong(PyList_GET_ITEM(result, (Py_ssize_t)i)) : NBD_EIO;
        entries[i].error = error < 0 || error > 255 ? NBD_EIO : (int)error;
    }
    if (PyErr_Occurred()) PyErr_WriteUnraisable(cb->write_batch);
    else if (!ok) {
        PyErr_SetString(PyExc_TypeError, "write_batch must answer a list of errors, one per request");
        PyErr_WriteUnraisable(cb->write_batch);
    }
    Py_XDECREF(result);
    PyGILState_Release(gil);
}

static void call_closed(void *ctx, const char *reason) {
    struct callbacks *cb = ctx;
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *result = PyObject_CallFunction(cb->closed, "s", reason ? reason : "unknown");
    if (!result) PyErr_WriteUnraisable(cb->closed);
    Py_XDECREF(result);
    Py_DECREF(cb->write_batch);
    Py_DECREF(cb->closed);
    Py_DECREF(cb->gate);
    PyMem_RawFree(cb);
    PyGILState_Release(gil);
}

static const struct conn_ops python_ops = {call_write_batch, call_closed};

static PyObject *nbdcore_serve(PyObject *module, PyObject *args, PyObject *kwds) {
    (void)module;
    static char *kwlist[] = {"fd", "gate", "export_size", "read_only", "structured_replies", "meta_contexts",
                             "growable", "initial_out", "initial_in", "write_batch", "closed", NULL};
    int fd, read_only, structured, growable, meta_contexts;
    unsigned long long export_size;
    GateObject *gate;
    Py_buffer out, in;
    PyObject *write_batch, *closed;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "iO!Kppipy*y*OO", kwlist, &fd, &GateType, &gate, &export_size,
                                     &read_only, &structured, &meta_contexts, &growable, &out, &in, &write_batch,
                                     &closed))
        return NULL;
    PyObject *result = NULL;
    struct callbacks *cb = PyMem_RawMalloc(sizeof *cb);
    ConnectionObject *handle = PyObject_New(ConnectionObject, &ConnectionType);
    if (!cb || !handle) {
        PyErr_NoMemory();
        goto done;
    }
    handle->conn = NULL;
    cb->write_batch = Py_NewRef(write_batch);
    cb->closed = Py_NewRef(closed);
    cb->gate = Py_NewRef((PyObject *)gate);
    struct conn_config config = {
        .fd = fd,
        .gate = &gate->gate,
        .session = {export_size, read_only, structured, meta_contexts},
        .growable = growable,
        .initial_out = out.buf,
        .initial_out_len = (size_t)out.len,
        .initial_in = in.buf,
        .initial_in_len = (size_t)in.len,
        .ops = &python_ops,
        .ctx = cb,
    };
    handle->conn = conn_start(&config);
    if (!handle->conn) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(cb->write_batch);
        Py_DECREF(cb->closed);
        Py_DECREF(cb->gate);
        goto done;
    }
    cb = NULL; /* the connection's now */
    result = (PyObject *)handle;
    handle = NULL;
done:
    if (cb) PyMem_RawFree(cb);
    Py_XDECREF(handle);
    PyBuffer_Release(&out);
    PyBuffer_Release(&in);
    return result;
}

/* -- the pure wire functions, for the tests ------------------------------------------- */
static PyObject *nbdcore_parse_header(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer buf;
    if (!PyArg_ParseTuple(args, "y*", &buf)) return NULL;
    struct nbd_request req = {0};
    int parsed = nbd_parse_header(buf.buf, (size_t)buf.len, &req);
    PyBuffer_Release(&buf);
    return Py_BuildValue("(iHHKKI)", parsed, req.flags, req.command, (unsigned long long)req.cookie,
                         (unsigned long long)req.offset, req.length);
}

static PyObject *nbdcore_check_request(PyObject *module, PyObject *args) {
    (void)module;
    struct nbd_request req = {0};
    struct nbd_session session = {0};
    unsigned long long offset, size;
    if (!PyArg_ParseTuple(args, "HHKIKppi", &req.flags, &req.command, &offset, &req.length, &size,
                          &session.read_only, &session.structured_replies, &session.meta_contexts))
        return NULL;
    req.offset = offset;
    session.export_size = size;
    return PyLong_FromLong(nbd_check_request(&req, &session));
}

static PyObject *nbdcore_crc32c(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer buf;
    unsigned int crc = 0;
    if (!PyArg_ParseTuple(args, "y*|I", &buf, &crc)) return NULL;
    uint32_t out = crc32c_extend(crc, buf.buf, (size_t)buf.len);
    PyBuffer_Release(&buf);
    return PyLong_FromUnsignedLong(out);
}

static PyObject *nbdcore_latency_bounds(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    PyObject *out = PyTuple_New(GATE_LATENCY_BOUNDS);
    if (!out) return NULL;
    for (int i = 0; i < GATE_LATENCY_BOUNDS; i++) PyTuple_SET_ITEM(out, i, PyFloat_FromDouble(gate_latency_bounds[i]));
    return out;
}

static PyMethodDef nbdcore_methods[] = {
    {"serve", (PyCFunction)(void (*)(void))nbdcore_serve, METH_VARARGS | METH_KEYWORDS,
     "serve(fd, gate, export_size, read_only, structured_replies, meta_contexts, growable, initial_out, initial_in,"
     " write_batch, closed) -> Connection: serve a negotiated NBD connection on a native thread, which owns fd"},
    {"parse_header", nbdcore_parse_header, METH_VARARGS,
     "parse_header(bytes) -> (result, flags, command, cookie, offset, length): result 1 ok, 0 need more, "
     "-1 bad magic, -2 oversized write"},
    {"check_request", nbdcore_check_request, METH_VARARGS,
     "check_request(flags, command, offset, length, export_size, read_only, structured, meta_contexts) -> errno"},
    {"crc32c", nbdcore_crc32c, METH_VARARGS, "crc32c(data, crc=0) -> the CRC32C of data following crc"},
    {"latency_bounds", nbdcore_latency_bounds, METH_NOARGS, "upper bounds of the request latency histogram"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef nbdcore_module = {
    PyModuleDef_HEAD_INIT, "backend._nbdcore",
    "The native data path: NBD transmission on native threads, the LDEV gate, QoS (docs/native-core.md).", -1,
    nbdcore_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__nbdcore(void) {
    if (PyType_Ready(&QosType) < 0 || PyType_Ready(&GateType) < 0 || PyType_Ready(&ConnectionType) < 0 ||
        PyType_Ready(&JournalCoreType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&nbdcore_module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "Qos", (PyObject *)&QosType) < 0 ||
        PyModule_AddObjectRef(m, "Gate", (PyObject *)&GateType) < 0 ||
        PyModule_AddObjectRef(m, "Connection", (PyObject *)&ConnectionType) < 0 ||
        PyModule_AddObjectRef(m, "JournalCore", (PyObject *)&JournalCoreType) < 0 ||
        PyModule_AddIntConstant(m, "ROUTE_PLAIN", ROUTE_PLAIN) < 0 ||
        PyModule_AddIntConstant(m, "ROUTE_JOURNAL", ROUTE_JOURNAL) < 0 ||
        PyModule_AddIntConstant(m, "ROUTE_PYTHON", ROUTE_PYTHON) < 0 ||
        PyModule_AddIntConstant(m, "MAX_REQUEST_BYTES", NBD_MAX_REQUEST_BYTES) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
