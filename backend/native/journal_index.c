/* The index of a journal's unconfirmed records (see journal_index.h). */
#include "journal_index.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void journal_index_destroy(struct journal_index *x) {
    free(x->entries);
    memset(x, 0, sizeof *x);
}

size_t journal_index_count(const struct journal_index *x) { return x->len - x->head; }

static int make_room(struct journal_index *x) {
    if (x->head && x->head >= x->len / 2) { /* slide the live entries down: amortised, no growth */
        memmove(x->entries, x->entries + x->head, (x->len - x->head) * sizeof *x->entries);
        x->len -= x->head;
        x->head = 0;
        if (x->len < x->cap) return 0;
    }
    size_t cap = x->cap ? x->cap * 2 : 1024;
    struct journal_entry *grown = realloc(x->entries, cap * sizeof *grown);
    if (!grown) return -ENOMEM;
    x->entries = grown;
    x->cap = cap;
    return 0;
}

int journal_index_file(struct journal_index *x, uint64_t seq, uint64_t segment, uint64_t offset, uint32_t size,
                       int64_t timestamp_ns) {
    if (x->len > x->head && x->entries[x->len - 1].seq + 1 != seq) return -EINVAL;
    if (x->len == x->cap) {
        int err = make_room(x);
        if (err) return err;
    }
    x->filed_bytes += size;
    x->entries[x->len++] = (struct journal_entry){seq, segment, offset, size, timestamp_ns, x->filed_bytes};
    return 0;
}

const struct journal_entry *journal_index_find(const struct journal_index *x, uint64_t seq) {
    if (x->len == x->head) return NULL;
    uint64_t first = x->entries[x->head].seq;
    if (seq < first || seq - first >= x->len - x->head) return NULL;
    return &x->entries[x->head + (seq - first)];
}

int journal_index_trim(struct journal_index *x, uint64_t seq, struct journal_entry *last) {
    if (x->len == x->head || x->entries[x->head].seq > seq) return 0;
    uint64_t drop = seq - x->entries[x->head].seq + 1;
    if (drop > x->len - x->head) drop = x->len - x->head;
    x->head += drop;
    *last = x->entries[x->head - 1];
    if (x->head == x->len) x->head = x->len = 0;
    return 1;
}

void journal_index_after(const struct journal_index *x, uint64_t seq, uint64_t *records, uint64_t *bytes,
                         int64_t *oldest_ns) {
    *records = *bytes = 0;
    *oldest_ns = 0;
    if (x->len == x->head) return;
    uint64_t first = x->entries[x->head].seq;
    const struct journal_entry *from = seq < first ? &x->entries[x->head] : journal_index_find(x, seq + 1);
    if (!from) return;
    const struct journal_entry *newest = &x->entries[x->len - 1];
    *records = newest->seq - from->seq + 1;
    *bytes = newest->through_bytes - (from->through_bytes - from->size);
    *oldest_ns = from->timestamp_ns;
}

size_t journal_index_runs(const struct journal_index *x, uint64_t from_seq, uint64_t until_seq, uint64_t max_bytes,
                          struct journal_run *runs, size_t max_runs) {
    if (x->len == x->head) return 0;
    if (from_seq < x->entries[x->head].seq) from_seq = x->entries[x->head].seq; /* older: trimmed already */
    const struct journal_entry *e = journal_index_find(x, from_seq);
    size_t n = 0;
    uint64_t total = 0;
    for (; e && e < x->entries + x->len && e->seq < until_seq; e++) {
        if (total && total + e->size > max_bytes) break;
        if (n && runs[n - 1].segment == e->segment && runs[n - 1].offset + runs[n - 1].bytes == e->offset) {
            runs[n - 1].bytes += e->size;
        } else {
            if (n == max_runs) break;
            runs[n++] = (struct journal_run){e->segment, e->offset, e->size};
        }
        total += e->size;
    }
    return n;
}
