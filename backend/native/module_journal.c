/* backend._nbdcore.JournalCore: the native part of a journal, as Python's Journal uses it. */
#include "module.h"

#include <errno.h>

static int JournalCore_init(JournalCoreObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"capacity", NULL};
    unsigned long long capacity;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "K", kwlist, &capacity)) return -1;
    if (self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "a JournalCore is initialised once");
        return -1;
    }
    if (journal_init(&self->core, capacity) != 0) {
        PyErr_SetString(PyExc_OSError, "cannot initialise the journal's lock");
        return -1;
    }
    self->ready = 1;
    return 0;
}

static void JournalCore_dealloc(JournalCoreObject *self) {
    if (self->ready) journal_destroy(&self->core);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Take the journal's lock from Python: a thread that holds it may need the interpreter to go
 * on (Python's write path, trimming, retiring segments), so the wait must not hold the GIL. */
static void lock_from_python(struct journal_core *j) {
    if (journal_lock_timed(j, 0)) return;
    Py_BEGIN_ALLOW_THREADS
    journal_lock(j);
    Py_END_ALLOW_THREADS
}

/* -- the lock, as threading.RLock (with what threading.Condition asks of one) ---------------- */
static PyObject *JournalCore_acquire(JournalCoreObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"blocking", "timeout", NULL};
    int blocking = 1;
    double timeout = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|pd", kwlist, &blocking, &timeout)) return NULL;
    int taken = journal_lock_timed(&self->core, 0);
    if (!taken && blocking) {
        Py_BEGIN_ALLOW_THREADS
        taken = journal_lock_timed(&self->core, timeout);
        Py_END_ALLOW_THREADS
    }
    return PyBool_FromLong(taken);
}

static PyObject *JournalCore_release(JournalCoreObject *self, PyObject *unused) {
    (void)unused;
    if (!journal_is_owned(&self->core)) {
        PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
        return NULL;
    }
    journal_unlock(&self->core);
    Py_RETURN_NONE;
}

static PyObject *JournalCore_enter(JournalCoreObject *self, PyObject *unused) {
    (void)unused;
    lock_from_python(&self->core);
    Py_RETURN_TRUE;
}

static PyObject *JournalCore_exit(JournalCoreObject *self, PyObject *args) {
    (void)args;
    journal_unlock(&self->core);
    Py_RETURN_FALSE;
}

static PyObject *JournalCore_is_owned(JournalCoreObject *self, PyObject *unused) {
    (void)unused;
    return PyBool_FromLong(journal_is_owned(&self->core));
}

static PyObject *JournalCore_release_save(JournalCoreObject *self, PyObject *unused) {
    (void)unused;
    struct journal_core *j = &self->core;
    pthread_mutex_lock(&j->mu);
    if (!j->count || !pthread_equal(j->owner, pthread_self())) {
        pthread_mutex_unlock(&j->mu);
        PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
        return NULL;
    }
    unsigned long count = j->count;
    j->count = 0;
    pthread_cond_signal(&j->lock_free);
    pthread_mutex_unlock(&j->mu);
    return PyLong_FromUnsignedLong(count);
}

static PyObject *JournalCore_acquire_restore(JournalCoreObject *self, PyObject *state) {
    unsigned long count = PyLong_AsUnsignedLong(state);
    if (PyErr_Occurred()) return NULL;
    Py_BEGIN_ALLOW_THREADS
    journal_lock(&self->core);
    Py_END_ALLOW_THREADS
    pthread_mutex_lock(&self->core.mu);
    self->core.count = count;
    pthread_mutex_unlock(&self->core.mu);
    Py_RETURN_NONE;
}

/* -- appending ------------------------------------------------------------------------------ */
static PyObject *JournalCore_append(JournalCoreObject *self, PyObject *args) {
    int kind, keep_allocated, python_checked = 0;
    unsigned int ldev_id, length;
    unsigned long long offset;
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "iIKIy*p|p", &kind, &ldev_id, &offset, &length, &data, &keep_allocated,
                          &python_checked))
        return NULL;
    int64_t result;
    if (data.len > UINT32_MAX) {
        result = -EINVAL;
    } else {
        Py_BEGIN_ALLOW_THREADS
        result = journal_append(&self->core, kind, ldev_id, offset, length, keep_allocated, data.buf,
                                (uint32_t)data.len, python_checked);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&data);
    if (result < 0) {
        errno = (int)-result;
        return PyErr_SetFromErrno(result == -EINVAL ? PyExc_ValueError : PyExc_OSError);
    }
    return PyLong_FromLongLong(result);
}

/* -- the index of unconfirmed records ------------------------------------------------------- */
static PyObject *JournalCore_file(JournalCoreObject *self, PyObject *args) {
    unsigned long long seq, segment, offset;
    unsigned int size;
    long long stamp;
    if (!PyArg_ParseTuple(args, "KKKIL", &seq, &segment, &offset, &size, &stamp)) return NULL;
    lock_from_python(&self->core);
    int err = journal_index_file(&self->core.index, seq, segment, offset, size, stamp);
    journal_unlock(&self->core);
    if (err == -EINVAL) return PyErr_Format(PyExc_ValueError, "record %llu does not follow the index", seq);
    if (err) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

#define MAX_RUNS 64 /* segments one pull may span (a pull is a few MiB; segments are up to 64 MiB) */

static PyObject *JournalCore_runs(JournalCoreObject *self, PyObject *args) {
    unsigned long long from_seq, max_bytes;
    if (!PyArg_ParseTuple(args, "KK", &from_seq, &max_bytes)) return NULL;
    struct journal_run runs[MAX_RUNS];
    struct journal_core *j = &self->core;
    lock_from_python(j);
    pthread_mutex_lock(&j->mu);
    uint64_t until = journal_shippable_next(j);
    pthread_mutex_unlock(&j->mu);
    size_t n = journal_index_runs(&j->index, from_seq, until, max_bytes, runs, MAX_RUNS);
    journal_unlock(j);
    PyObject *out = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; out && i < n; i++) {
        PyObject *run = Py_BuildValue("(KKK)", (unsigned long long)runs[i].segment,
                                      (unsigned long long)runs[i].offset, (unsigned long long)runs[i].bytes);
        if (!run) Py_CLEAR(out);
        else PyList_SET_ITEM(out, (Py_ssize_t)i, run);
    }
    return out;
}

static PyObject *JournalCore_trim(JournalCoreObject *self, PyObject *arg) {
    unsigned long long seq = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred()) return NULL;
    struct journal_entry last;
    lock_from_python(&self->core);
    int dropped = journal_index_trim(&self->core.index, seq, &last);
    journal_unlock(&self->core);
    if (!dropped) Py_RETURN_NONE;
    return PyLong_FromLongLong(last.timestamp_ns);
}

static PyObject *JournalCore_after(JournalCoreObject *self, PyObject *arg) {
    unsigned long long seq = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred()) return NULL;
    uint64_t records, bytes;
    int64_t oldest;
    lock_from_python(&self->core);
    journal_index_after(&self->core.index, seq, &records, &bytes, &oldest);
    journal_unlock(&self->core);
    return Py_BuildValue("(KKL)", (unsigned long long)records, (unsigned long long)bytes, (long long)oldest);
}

static PyObject *JournalCore_entries(JournalCoreObject *self, PyObject *unused) {
    (void)unused;
    struct journal_index *x = &self->core.index;
    lock_from_python(&self->core);
    PyObject *out = PyList_New((Py_ssize_t)journal_index_count(x));
    for (size_t i = x->head; out && i < x->len; i++) {
        struct journal_entry *e = &x->entries[i];
        PyObject *item = Py_BuildValue("(KKKIL)", (unsigned long long)e->seq, (unsigned long long)e->segment,
                                       (unsigned long long)e->offset, e->size, (long long)e->timestamp_ns);
        if (!item) Py_CLEAR(out);
        else PyList_SET_ITEM(out, (Py_ssize_t)(i - x->head), item);
    }
    journal_unlock(&self->core);
    return out;
}

static PyObject *get_pending(JournalCoreObject *self, void *c) {
    (void)c;
    lock_from_python(&self->core);
    size_t count = journal_index_count(&self->core.index);
    journal_unlock(&self->core);
    return PyLong_FromSize_t(count);
}

static PyObject *JournalCore_set_active(JournalCoreObject *self, PyObject *args) {
    int fd;
    unsigned long long size, limit, segment = 0;
    if (!PyArg_ParseTuple(args, "iKK|K", &fd, &size, &limit, &segment)) return NULL;
    lock_from_python(&self->core);
    self->core.active_fd = fd;
    self->core.active_segment = segment;
    self->core.active_last_seq = 0; /* nothing appended to it yet */
    self->core.active_size = size;
    self->core.active_limit = limit;
    journal_unlock(&self->core);
    Py_RETURN_NONE;
}

static PyObject *JournalCore_wait_shippable(JournalCoreObject *self, PyObject *args) {
    unsigned long long seq;
    double timeout;
    if (!PyArg_ParseTuple(args, "Kd", &seq, &timeout)) return NULL;
    int ready;
    Py_BEGIN_ALLOW_THREADS
    ready = journal_wait_shippable(&self->core, seq, timeout);
    Py_END_ALLOW_THREADS
    return PyBool_FromLong(ready);
}

static PyObject *JournalCore_shippable_next(JournalCoreObject *self, PyObject *unused) {
    (void)unused;
    pthread_mutex_lock(&self->core.mu);
    uint64_t next = journal_shippable_next(&self->core);
    pthread_mutex_unlock(&self->core.mu);
    return PyLong_FromUnsignedLongLong(next);
}

/* -- state Python reads and sets (under the lock) -------------------------------------------- */
#define U64_FIELD(name)                                                                          \
    static PyObject *get_##name(JournalCoreObject *self, void *c) {                              \
        (void)c;                                                                                 \
        return PyLong_FromUnsignedLongLong(self->core.name);                                     \
    }                                                                                            \
    static int set_##name(JournalCoreObject *self, PyObject *value, void *c) {                   \
        (void)c;                                                                                 \
        unsigned long long v = PyLong_AsUnsignedLongLong(value);                                 \
        if (PyErr_Occurred()) return -1;                                                         \
        self->core.name = v;                                                                     \
        return 0;                                                                                \
    }
U64_FIELD(usage)
U64_FIELD(capacity)
U64_FIELD(active_size)
U64_FIELD(active_last_seq)

static PyObject *get_next_seq(JournalCoreObject *self, void *c) {
    (void)c;
    return PyLong_FromUnsignedLongLong(self->core.next_seq);
}

static int set_next_seq(JournalCoreObject *self, PyObject *value, void *c) {
    (void)c;
    unsigned long long v = PyLong_AsUnsignedLongLong(value);
    if (PyErr_Occurred()) return -1;
    journal_set_next_seq(&self->core, v);
    return 0;
}

static PyObject *get_pollers(JournalCoreObject *self, void *c) {
    (void)c;
    pthread_mutex_lock(&self->core.mu);
    unsigned long pollers = self->core.pollers;
    pthread_mutex_unlock(&self->core.mu);
    return PyLong_FromUnsignedLong(pollers);
}

static PyObject *get_held_after(JournalCoreObject *self, void *c) {
    (void)c;
    if (self->core.held_after == JOURNAL_NOT_HELD) Py_RETURN_NONE;
    return PyLong_FromUnsignedLongLong(self->core.held_after);
}

static int set_held_after(JournalCoreObject *self, PyObject *value, void *c) {
    (void)c;
    uint64_t v = JOURNAL_NOT_HELD;
    if (value != Py_None) {
        v = PyLong_AsUnsignedLongLong(value);
        if (PyErr_Occurred()) return -1;
    }
    journal_set_held_after(&self->core, v);
    return 0;
}

static PyObject *get_newest_write_ns(JournalCoreObject *self, void *c) {
    (void)c;
    return PyLong_FromLongLong(self->core.newest_write_ns);
}

static int set_newest_write_ns(JournalCoreObject *self, PyObject *value, void *c) {
    (void)c;
    long long v = PyLong_AsLongLong(value);
    if (PyErr_Occurred()) return -1;
    self->core.newest_write_ns = v;
    return 0;
}

#define FLAG_FIELD(name)                                                                         \
    static PyObject *get_##name(JournalCoreObject *self, void *c) {                              \
        (void)c;                                                                                 \
        return PyBool_FromLong(self->core.name);                                                 \
    }                                                                                            \
    static int set_##name(JournalCoreObject *self, PyObject *value, void *c) {                   \
        (void)c;                                                                                 \
        int v = PyObject_IsTrue(value);                                                          \
        if (v < 0) return -1;                                                                    \
        self->core.name = v;                                                                     \
        return 0;                                                                                \
    }
FLAG_FIELD(overflowed)
FLAG_FIELD(python_only)

static PyMethodDef JournalCore_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))JournalCore_acquire, METH_VARARGS | METH_KEYWORDS,
     "acquire(blocking=True, timeout=-1) -> bool: take the journal's lock (reentrant, as threading.RLock)"},
    {"release", (PyCFunction)JournalCore_release, METH_NOARGS, "release the journal's lock once"},
    {"__enter__", (PyCFunction)JournalCore_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)JournalCore_exit, METH_VARARGS, NULL},
    {"_is_owned", (PyCFunction)JournalCore_is_owned, METH_NOARGS, "threading.Condition's question"},
    {"_release_save", (PyCFunction)JournalCore_release_save, METH_NOARGS, "threading.Condition.wait's release"},
    {"_acquire_restore", (PyCFunction)JournalCore_acquire_restore, METH_O, "threading.Condition.wait's re-acquire"},
    {"append", (PyCFunction)JournalCore_append, METH_VARARGS,
     "append(kind, ldev_id, offset, length, data, keep_allocated, python_checked=False) -> seq, or 0 when Python "
     "must decide (python_checked: Python's rules for synchronous and inflow control were applied)"},
    {"file", (PyCFunction)JournalCore_file, METH_VARARGS,
     "file(seq, segment, offset, size, timestamp_ns): index a record found at recovery (the next sequence)"},
    {"runs", (PyCFunction)JournalCore_runs, METH_VARARGS,
     "runs(from_seq, max_bytes) -> [(segment, offset, bytes)]: where the shippable records from from_seq lie, "
     "at least one, then whole records within max_bytes"},
    {"trim", (PyCFunction)JournalCore_trim, METH_O,
     "trim(seq) -> timestamp_ns of the last record dropped from the index, None when none was"},
    {"after", (PyCFunction)JournalCore_after, METH_O,
     "after(seq) -> (records, bytes, oldest timestamp_ns or 0): the indexed records after seq"},
    {"entries", (PyCFunction)JournalCore_entries, METH_NOARGS,
     "[(seq, segment, offset, size, timestamp_ns)]: the indexed records, oldest first"},
    {"set_active", (PyCFunction)JournalCore_set_active, METH_VARARGS,
     "set_active(fd, size, limit, segment=0): the segment appends go to (fd -1: none), named by its first seq"},
    {"wait_shippable", (PyCFunction)JournalCore_wait_shippable, METH_VARARGS,
     "wait_shippable(seq, timeout) -> bool: record seq exists and may be shipped (waits without the lock)"},
    {"shippable_next", (PyCFunction)JournalCore_shippable_next, METH_NOARGS, "the first sequence not shipped now"},
    {NULL, NULL, 0, NULL},
};

#define GETSET(name, doc) {#name, (getter)get_##name, (setter)set_##name, doc, NULL}
static PyGetSetDef JournalCore_getset[] = {
    GETSET(next_seq, "the sequence the next record gets"),
    GETSET(held_after, "records after it are not shipped (None: all are)"),
    GETSET(usage, "bytes of records in the segments"),
    GETSET(capacity, "the journal's capacity in bytes"),
    GETSET(active_size, "bytes written into the active segment"),
    GETSET(active_last_seq, "the last sequence appended to the active segment (0: none yet)"),
    GETSET(newest_write_ns, "main-site time of the newest record"),
    GETSET(overflowed, "the journal took no more: sticky until reopened"),
    {"pollers", (getter)get_pollers, NULL, "long polls waiting now", NULL},
    {"pending", (getter)get_pending, NULL, "records in the index (appended, not yet confirmed)", NULL},
    GETSET(python_only, "every append takes Python's rules (synchronous, inflow control)"),
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject JournalCoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "backend._nbdcore.JournalCore",
    .tp_doc = "JournalCore(capacity): a journal's lock, sequence, space and active segment (backend/journal.py).",
    .tp_basicsize = sizeof(JournalCoreObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)JournalCore_init,
    .tp_dealloc = (destructor)JournalCore_dealloc,
    .tp_methods = JournalCore_methods,
    .tp_getset = JournalCore_getset,
};
