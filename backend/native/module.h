/* What the binding's files share (module.c, module_journal.c). */
#ifndef CCOPY_MODULE_H
#define CCOPY_MODULE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "journal_core.h"

typedef struct {
    PyObject_HEAD
    struct journal_core core;
    int ready;
} JournalCoreObject;

extern PyTypeObject JournalCoreType;

#endif
