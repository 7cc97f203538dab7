/* The gate of one open LDEV (see gate.h). */
#include "gate.h"

#include "timing.h"

#include <errno.h>
#include <math.h>
#include <time.h>

const double gate_latency_bounds[GATE_LATENCY_BOUNDS] = {
    5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
};

#define BURST_SECONDS 0.1 /* how much unused allowance may pile up (backend/qos.py) */

double monotonic_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int gate_init(struct gate *g, int fd, uint32_t ldev_id, uint64_t size, struct qos *qos) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&g->cv, &attr);
    pthread_condattr_destroy(&attr);
    if (rc) return rc;
    pthread_mutex_init(&g->mu, NULL);
    pthread_mutex_init(&g->stats_mu, NULL);
    g->locked = 0;
    g->fd = fd;
    g->ldev_id = ldev_id;
    atomic_store(&g->size, size);
    g->route = ROUTE_PLAIN;
    g->journal = NULL;
    g->qos = qos;
    for (int i = 0; i < NBD_CMD_COUNT; i++) g->stats[i] = (struct command_stats){0};
    return 0;
}

void gate_destroy(struct gate *g) {
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    pthread_mutex_destroy(&g->stats_mu);
}

void gate_lock(struct gate *g) { gate_lock_timed(g, -1); }

int gate_held_here(struct gate *g) {
    pthread_mutex_lock(&g->mu);
    int mine = g->locked && pthread_equal(g->owner, pthread_self());
    pthread_mutex_unlock(&g->mu);
    return mine;
}

int gate_lock_timed(struct gate *g, double timeout) {
    struct timespec deadline;
    if (timeout > 0) monotonic_deadline(&deadline, timeout);
    pthread_mutex_lock(&g->mu);
    int rc = 0;
    while (g->locked && timeout != 0 && rc != ETIMEDOUT)
        rc = timeout < 0 ? pthread_cond_wait(&g->cv, &g->mu) : pthread_cond_timedwait(&g->cv, &g->mu, &deadline);
    int taken = !g->locked;
    if (taken) {
        g->locked = 1;
        g->owner = pthread_self();
    }
    pthread_mutex_unlock(&g->mu);
    return taken;
}

int gate_trylock(struct gate *g) { return gate_lock_timed(g, 0); }

void gate_unlock(struct gate *g) {
    pthread_mutex_lock(&g->mu);
    g->locked = 0;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

void gate_observe(struct gate *g, int command, double seconds, int failed) {
    if (command < 0 || command >= NBD_CMD_COUNT) return;
    int bucket = 0;
    while (bucket < GATE_LATENCY_BOUNDS && seconds > gate_latency_bounds[bucket]) bucket++;
    pthread_mutex_lock(&g->stats_mu);
    struct command_stats *s = &g->stats[command];
    s->buckets[bucket]++;
    s->count++;
    s->seconds += seconds;
    if (failed) s->errors++;
    pthread_mutex_unlock(&g->stats_mu);
}

static void bucket_set(struct token_bucket *b, double rate) {
    b->rate = rate;
    b->tokens = fmax(rate * BURST_SECONDS, 1.0); /* a new limit starts with its burst available */
    b->stamp = 0.0;
}

static double bucket_reserve(struct token_bucket *b, double amount, double now) {
    if (b->rate <= 0) return 0.0;
    double burst = fmax(b->rate * BURST_SECONDS, 1.0);
    b->tokens = fmin(burst, b->tokens + fmax(0.0, now - b->stamp) * b->rate);
    b->stamp = now;
    b->tokens -= amount;
    return b->tokens >= 0 ? 0.0 : -b->tokens / b->rate;
}

void qos_init(struct qos *q) {
    pthread_mutex_init(&q->mu, NULL);
    q->max_iops = q->max_mbps = 0;
    bucket_set(&q->iops, 0);
    bucket_set(&q->bytes, 0);
}

void qos_destroy(struct qos *q) { pthread_mutex_destroy(&q->mu); }

int qos_update(struct qos *q, long max_iops, long max_mbps) {
    if (max_iops < 0 || max_mbps < 0) return -1;
    pthread_mutex_lock(&q->mu);
    q->max_iops = max_iops;
    q->max_mbps = max_mbps;
    bucket_set(&q->iops, (double)max_iops);
    bucket_set(&q->bytes, (double)max_mbps * 1e6);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

double qos_reserve(struct qos *q, uint64_t nbytes, double now) {
    pthread_mutex_lock(&q->mu);
    double delay = 0.0;
    if (q->max_iops || q->max_mbps) {
        double by_iops = bucket_reserve(&q->iops, 1.0, now);
        double by_bytes = bucket_reserve(&q->bytes, (double)nbytes, now);
        delay = fmax(by_iops, by_bytes);
    }
    pthread_mutex_unlock(&q->mu);
    return delay;
}
