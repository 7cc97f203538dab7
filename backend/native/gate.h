/* The gate of one open LDEV: what every writer of it, native or Python, goes through.
 *
 * - The LDEV's write lock. Python's write path, snapshot barriers, pair
 *   operations and the native connection threads all take this one lock
 *   (Python sees it as `LdevRuntime.lock`), so a native write and a snapshot
 *   barrier are ordered exactly as two Python writers were.
 * - The route of its writes: PLAIN (the data step only: no journal, no
 *   copy-on-write store, no differential bitmap, not fenced), JOURNAL (a
 *   P-VOL: a record in its group's journal, then the data) or PYTHON (the
 *   write path's other steps). Python sets it under the lock whenever one of
 *   those changes; a native thread reads it under the lock and either writes
 *   itself or hands the write to Python's write path.
 * - The LDEV's QoS token buckets (IOPS and bytes per second), shared by
 *   every session of the LDEV whichever thread serves it.
 * - Request statistics per NBD command: a latency histogram and error counts,
 *   kept here so the data path reports without the interpreter.
 */
#ifndef CCOPY_GATE_H
#define CCOPY_GATE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "journal_core.h"
#include "nbd_wire.h"

enum gate_route { ROUTE_PLAIN = 0, ROUTE_JOURNAL = 1, ROUTE_PYTHON = 2 };

/* Upper bounds of the latency histogram, seconds (backend/api/metrics.py names them too). */
#define GATE_LATENCY_BOUNDS 16
extern const double gate_latency_bounds[GATE_LATENCY_BOUNDS];

struct token_bucket {
    double rate; /* tokens per second; 0: unlimited */
    double tokens;
    double stamp;
};

struct qos {
    pthread_mutex_t mu;
    struct token_bucket iops;
    struct token_bucket bytes;
    long max_iops;
    long max_mbps;
};

struct command_stats {
    uint64_t buckets[GATE_LATENCY_BOUNDS + 1]; /* the last one: above every bound */
    uint64_t count;
    uint64_t errors;
    double seconds;
};

struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int locked;
    pthread_t owner;        /* who took the lock last (valid while locked) */
    int fd;                 /* the LDEV's backing file (owned by Python's LdevFile) */
    uint32_t ldev_id;
    _Atomic uint64_t size;  /* the LDEV's size now (grows on expansion) */
    int route;              /* under the lock */
    struct journal_core *journal; /* ROUTE_JOURNAL: the group's (the binding holds it alive) */
    struct qos *qos;        /* the LDEV's limiter (a QoS object the gate holds a reference to) */
    pthread_mutex_t stats_mu;
    struct command_stats stats[NBD_CMD_COUNT];
};

int gate_init(struct gate *g, int fd, uint32_t ldev_id, uint64_t size, struct qos *qos);
void gate_destroy(struct gate *g);
void gate_lock(struct gate *g);
/* 1 when taken, 0 when `timeout` seconds passed first (timeout < 0: wait for ever; 0: do not wait). */
int gate_lock_timed(struct gate *g, double timeout);
int gate_trylock(struct gate *g);
void gate_unlock(struct gate *g);
/* Whether the calling thread holds the lock. */
int gate_held_here(struct gate *g);
void gate_observe(struct gate *g, int command, double seconds, int failed);

void qos_init(struct qos *q);
void qos_destroy(struct qos *q);
int qos_update(struct qos *q, long max_iops, long max_mbps);
/* Seconds a request of `nbytes` must wait so the LDEV stays within its limits; debt is
 * allowed, so a request larger than the burst still goes, later. */
double qos_reserve(struct qos *q, uint64_t nbytes, double now);

double monotonic_seconds(void);

#endif
