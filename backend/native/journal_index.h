/* The index of a journal's unconfirmed records: where each lies, in sequence order.
 *
 * Every append files its record here under the journal's lock, so what the
 * backup pulls, what a takeover would give up and what trimming drops are
 * found without walking records in the interpreter while host writes wait for
 * the lock. Sequences are contiguous (a journal hands them out one by one and
 * recovery keeps an unbroken chain), so a record is found by arithmetic.
 */
#ifndef CCOPY_JOURNAL_INDEX_H
#define CCOPY_JOURNAL_INDEX_H

#include <stddef.h>
#include <stdint.h>

struct journal_entry {
    uint64_t seq;
    uint64_t segment;       /* the segment's name: its first sequence */
    uint64_t offset;        /* in the segment */
    uint32_t size;          /* header and payload */
    int64_t timestamp_ns;   /* main-site time the write was journaled */
    uint64_t through_bytes; /* bytes of every record filed up to and including this one */
};

struct journal_index {
    struct journal_entry *entries; /* live ones are entries[head, len) */
    size_t head, len, cap;
    uint64_t filed_bytes; /* of every record filed since the journal opened */
};

/* One stretch of records lying back to back in one segment. */
struct journal_run {
    uint64_t segment;
    uint64_t offset;
    uint64_t bytes;
};

void journal_index_destroy(struct journal_index *x);
size_t journal_index_count(const struct journal_index *x);
/* File a record; it must carry the sequence after the newest filed (-EINVAL) or -ENOMEM. */
int journal_index_file(struct journal_index *x, uint64_t seq, uint64_t segment, uint64_t offset, uint32_t size,
                       int64_t timestamp_ns);
/* The entry of record `seq`, NULL when it is not filed. */
const struct journal_entry *journal_index_find(const struct journal_index *x, uint64_t seq);
/* Drop the records up to `seq`; the last one dropped is copied to `last` (1), or none was (0). */
int journal_index_trim(struct journal_index *x, uint64_t seq, struct journal_entry *last);
/* Records after `seq`: how many, their bytes and the oldest one's time (0 when none). */
void journal_index_after(const struct journal_index *x, uint64_t seq, uint64_t *records, uint64_t *bytes,
                         int64_t *oldest_ns);
/* The runs holding records from `from_seq` (or the oldest filed, if later) up to (not including) `until_seq`: at least one
 * record when there is one, then whole records while the total stays within `max_bytes`.
 * Fills at most `max_runs` runs; how many it filled. */
size_t journal_index_runs(const struct journal_index *x, uint64_t from_seq, uint64_t until_seq, uint64_t max_bytes,
                          struct journal_run *runs, size_t max_runs);

#endif
