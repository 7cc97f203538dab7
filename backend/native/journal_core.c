/* The native part of one journal group's journal (see journal_core.h). */
#define _GNU_SOURCE
#include "journal_core.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "crc32c.h"
#include "nbd_wire.h"
#include "timing.h"

int journal_init(struct journal_core *j, uint64_t capacity) {
    memset(j, 0, sizeof *j);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&j->lock_free, &attr) || pthread_cond_init(&j->appended, &attr);
    pthread_condattr_destroy(&attr);
    if (rc) return -1;
    pthread_mutex_init(&j->mu, NULL);
    j->next_seq = 1;
    j->held_after = JOURNAL_NOT_HELD;
    j->capacity = capacity;
    j->active_fd = -1;
    return 0;
}

void journal_destroy(struct journal_core *j) {
    pthread_cond_destroy(&j->lock_free);
    pthread_cond_destroy(&j->appended);
    pthread_mutex_destroy(&j->mu);
    journal_index_destroy(&j->index);
}

int journal_lock_timed(struct journal_core *j, double timeout) {
    pthread_t self = pthread_self();
    struct timespec deadline;
    if (timeout >= 0) monotonic_deadline(&deadline, timeout);
    pthread_mutex_lock(&j->mu);
    int rc = 0;
    while (j->count && !pthread_equal(j->owner, self) && rc != ETIMEDOUT)
        rc = timeout < 0 ? pthread_cond_wait(&j->lock_free, &j->mu)
                         : pthread_cond_timedwait(&j->lock_free, &j->mu, &deadline);
    int taken = !j->count || pthread_equal(j->owner, self);
    if (taken) {
        j->owner = self;
        j->count++;
    }
    pthread_mutex_unlock(&j->mu);
    return taken;
}

void journal_lock(struct journal_core *j) { journal_lock_timed(j, -1); }

void journal_unlock(struct journal_core *j) {
    pthread_mutex_lock(&j->mu);
    if (j->count && --j->count == 0) pthread_cond_signal(&j->lock_free);
    pthread_mutex_unlock(&j->mu);
}

int journal_is_owned(struct journal_core *j) {
    pthread_mutex_lock(&j->mu);
    int owned = j->count && pthread_equal(j->owner, pthread_self());
    pthread_mutex_unlock(&j->mu);
    return owned;
}

uint64_t journal_shippable_next(const struct journal_core *j) {
    if (j->held_after == JOURNAL_NOT_HELD || j->next_seq <= j->held_after + 1) return j->next_seq;
    return j->held_after + 1;
}

int journal_wait_shippable(struct journal_core *j, uint64_t seq, double timeout) {
    struct timespec deadline;
    monotonic_deadline(&deadline, timeout < 0 ? 0 : timeout);
    pthread_mutex_lock(&j->mu);
    int rc = 0;
    j->pollers++;
    while (journal_shippable_next(j) <= seq && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&j->appended, &j->mu, &deadline);
    j->pollers--;
    int ready = journal_shippable_next(j) > seq;
    pthread_mutex_unlock(&j->mu);
    return ready;
}

void journal_set_next_seq(struct journal_core *j, uint64_t next_seq) {
    pthread_mutex_lock(&j->mu);
    j->next_seq = next_seq;
    pthread_cond_broadcast(&j->appended);
    pthread_mutex_unlock(&j->mu);
}

void journal_set_held_after(struct journal_core *j, uint64_t held_after) {
    pthread_mutex_lock(&j->mu);
    j->held_after = held_after;
    pthread_cond_broadcast(&j->appended);
    pthread_mutex_unlock(&j->mu);
}

/* The header of backend/journal_record.py: magic "CCJ1" | kind u8 | flags u8 | reserved u16 |
 * seq u64 | ldev u32 | offset u64 | length u32 | timestamp_ns u64 | crc32c u32, the CRC over
 * the 40 bytes before it and the payload. */
static void pack_header(uint8_t *h, uint64_t seq, int kind, uint32_t ldev_id, uint64_t offset, uint32_t length,
                        int64_t stamp, int keep_allocated, const uint8_t *data, uint32_t data_len) {
    memcpy(h, "CCJ1", 4);
    h[4] = (uint8_t)kind;
    h[5] = keep_allocated ? 1 : 0;
    h[6] = h[7] = 0;
    nbd_put_u64(h + 8, seq);
    nbd_put_u32(h + 16, ldev_id);
    nbd_put_u64(h + 20, offset);
    nbd_put_u32(h + 28, length);
    nbd_put_u64(h + 32, (uint64_t)stamp);
    uint32_t crc = crc32c_extend(crc32c_extend(0, h, 40), data, data_len);
    nbd_put_u32(h + 40, crc);
}

int64_t journal_append(struct journal_core *j, int kind, uint32_t ldev_id, uint64_t offset, uint32_t length,
                       int keep_allocated, const uint8_t *data, uint32_t data_len, int python_checked) {
    if (kind == JOURNAL_WRITE ? data_len != length || (length && !data) : data_len != 0) return -EINVAL;
    uint32_t size = JOURNAL_HEADER_BYTES + data_len;
    journal_lock(j);
    int64_t result = 0;
    if ((j->python_only && !python_checked) || j->overflowed || j->active_fd < 0 || j->usage + size > j->capacity ||
        j->active_size + size > j->active_limit)
        goto done;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t stamp = (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec;
    uint64_t seq = j->next_seq;
    uint8_t head[JOURNAL_HEADER_BYTES];
    pack_header(head, seq, kind, ldev_id, offset, length, stamp, keep_allocated, data, data_len);
    struct iovec parts[2] = {{head, sizeof head}, {(void *)data, data_len}};
    size_t written = 0;
    while (written < size) { /* a short write into a preallocated file: finish it */
        struct iovec rest[2];
        int n = 0;
        size_t skip = written;
        for (int i = 0; i < 2; i++) {
            if (skip >= parts[i].iov_len) {
                skip -= parts[i].iov_len;
                continue;
            }
            rest[n].iov_base = (uint8_t *)parts[i].iov_base + skip;
            rest[n].iov_len = parts[i].iov_len - skip;
            skip = 0;
            n++;
        }
        ssize_t got = pwritev(j->active_fd, rest, n, (off_t)(j->active_size + written));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            result = got < 0 ? -errno : -ENOSPC;
            goto done;
        }
        written += (size_t)got;
    }
    int err = journal_index_file(&j->index, seq, j->active_segment, j->active_size, size, stamp);
    if (err) { /* the bytes are there but unknown: the next append overwrites them */
        result = err;
        goto done;
    }
    j->active_size += size;
    j->active_last_seq = seq;
    j->usage += size;
    j->newest_write_ns = stamp;
    journal_set_next_seq(j, seq + 1);
    result = (int64_t)seq;
done:
    journal_unlock(j);
    return result;
}
