/* The native part of one journal group's journal (backend/journal.py keeps the rest).
 *
 * Here: the journal's lock (reentrant; Python's Journal.lock is this lock, and
 * its Conditions are built on it), the group's sequence, the space used, the
 * segment being appended to, and the writing of records into it. Every record
 * of the journal is written by `journal_append`, whether a native connection
 * thread or Python's write path asks, so one sequence orders them all, and
 * files it in the index of unconfirmed records (journal_index.h), which the
 * backup's pulls, trimming and the account of unapplied writes read. Python
 * keeps recovery, new segments (preallocated or reused spares), retiring
 * segments and reading the records a pull hands out.
 *
 * A long poll for records (the backup's pull) waits here too, without the
 * lock, woken by every append and by the shipping hold's release.
 */
#ifndef CCOPY_JOURNAL_CORE_H
#define CCOPY_JOURNAL_CORE_H

#include <pthread.h>
#include <stdint.h>

#include "journal_index.h"

#define JOURNAL_HEADER_BYTES 44 /* backend/journal_record.py HEADER_BYTES */
#define JOURNAL_NOT_HELD UINT64_MAX

enum journal_record_kind { JOURNAL_WRITE = 1, JOURNAL_TRIM = 2, JOURNAL_ZEROES = 3 };

struct journal_core {
    pthread_mutex_t mu;          /* guards the lock's owner and the long poll's predicate */
    pthread_cond_t lock_free;    /* the lock was released */
    pthread_cond_t appended;     /* a record was appended, or shipping released */
    pthread_t owner;
    unsigned long count;         /* 0: the lock is free */
    unsigned long pollers;       /* long polls waiting (under mu) */
    /* what follows, under the lock (next_seq and held_after also under mu when they change) */
    uint64_t next_seq;
    uint64_t held_after;         /* records after it are not shipped (a verify's cut); JOURNAL_NOT_HELD */
    uint64_t usage;              /* bytes of records in the segments */
    uint64_t capacity;
    int overflowed;              /* sticky until a resync reopens the journal */
    int python_only;             /* synchronous or inflow control: appends go through Python's rules */
    int64_t newest_write_ns;
    int active_fd;               /* -1: no segment to append to (Python makes one) */
    uint64_t active_segment;     /* its name: its first sequence */
    uint64_t active_size;
    uint64_t active_limit;
    uint64_t active_last_seq;
    struct journal_index index;  /* the unconfirmed records */
};

int journal_init(struct journal_core *j, uint64_t capacity);
void journal_destroy(struct journal_core *j);
void journal_lock(struct journal_core *j);
int journal_lock_timed(struct journal_core *j, double timeout);
void journal_unlock(struct journal_core *j);
int journal_is_owned(struct journal_core *j);

/* Append a record with the group's next sequence to the active segment (not yet durable);
 * its sequence, or 0 when this append is Python's to decide (no active segment or no room
 * in it, the journal full or overflowed, or, unless `python_checked` says Python's rules were
 * applied already, synchronous or inflow control), or -errno. Takes the lock (reentrant).
 * `data` is a WRITE's payload (NULL, 0 for TRIM and ZEROES). */
int64_t journal_append(struct journal_core *j, int kind, uint32_t ldev_id, uint64_t offset, uint32_t length,
                       int keep_allocated, const uint8_t *data, uint32_t data_len, int python_checked);

/* The first sequence not handed to the backup (under the lock or mu). */
uint64_t journal_shippable_next(const struct journal_core *j);
/* Wait without the lock until record `seq` exists and may be shipped; 1 if so, 0 on timeout. */
int journal_wait_shippable(struct journal_core *j, uint64_t seq, double timeout);
/* Change what the long poll's predicate reads, under mu, and wake the pollers. */
void journal_set_next_seq(struct journal_core *j, uint64_t next_seq);
void journal_set_held_after(struct journal_core *j, uint64_t held_after);

#endif
