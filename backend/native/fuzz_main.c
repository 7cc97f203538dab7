/* Drives the native transmission phase with untrusted bytes, for the sanitizer build.
 *
 *   fuzz_main FILE...      each file is one input: a config byte, then what a client sends
 *   fuzz_main --self-check overflow a heap buffer by one byte: the sanitizers must stop it
 *   fuzz_main --index FILE... drive a journal's index of unconfirmed records with each input
 *
 * Each input is served by conn_serve over a socketpair, against a 1 MiB
 * memfd as the LDEV (tmpfs: punching works, zeroing a range falls back to
 * writes, SEEK_DATA/SEEK_HOLE answer), exactly as a connection thread does.
 * The config byte picks the session: bit 0 structured replies, bit 1 read
 * only, bit 2 a metadata context, bit 3 the gate plain (else writes go to the
 * batch callback, which fails every seventh with EIO), bit 4 growable, bit 5
 * a QoS limit (tiny holds), bit 6 a P-VOL's route (a record in a journal
 * whose 128 KiB segment fills, then the data; the rest to the batch). Built with -fsanitize=address,undefined and
 * -fno-sanitize-recover=all by tests/backend/nbd/test_native_sanitized.py: any
 * memory error or undefined behaviour aborts the run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "gate.h"
#include "journal_core.h"
#include "journal_index.h"
#include "nbd_wire.h"

#define LDEV_BYTES (1u << 20)

static size_t batches_seen;

static void fake_write_batch(void *ctx, struct batch_entry *entries, size_t count) {
    (void)ctx;
    for (size_t i = 0; i < count; i++) {
        batches_seen++;
        if (entries[i].req.command == NBD_CMD_WRITE) { /* touch every payload byte the callback is promised */
            volatile uint8_t sum = 0;
            for (uint32_t b = 0; b < entries[i].req.length; b++) sum ^= entries[i].payload[b];
        }
        entries[i].error = batches_seen % 7 == 0 ? NBD_EIO : 0;
    }
}

static void closed(void *ctx, const char *reason) {
    (void)ctx;
    if (!reason) abort();
}

static const struct conn_ops ops = {fake_write_batch, closed};

static void *serve(void *arg) {
    conn_serve(arg);
    return NULL;
}

static void *drain(void *arg) {
    int fd = *(int *)arg;
    uint8_t buf[65536];
    while (read(fd, buf, sizeof buf) > 0) {}
    return NULL;
}

static int run_one(const uint8_t *data, size_t len) {
    if (!len) return 0;
    uint8_t config = data[0];
    int ldev = memfd_create("ldev", MFD_CLOEXEC);
    if (ldev < 0 || ftruncate(ldev, LDEV_BYTES) != 0) return perror("memfd"), -1;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return perror("socketpair"), -1;
    struct qos qos;
    qos_init(&qos);
    if (config & 32) qos_update(&qos, 100000, 1000);
    struct gate gate;
    gate_init(&gate, ldev, 1, LDEV_BYTES, &qos);
    gate.route = config & 8 ? ROUTE_PLAIN : ROUTE_PYTHON;
    struct journal_core journal;
    journal_init(&journal, 256 * 1024);
    int segment = memfd_create("segment", MFD_CLOEXEC);
    if (segment < 0 || ftruncate(segment, 128 * 1024) != 0) return perror("memfd"), -1;
    if (config & 64) {
        journal.active_fd = segment;
        journal.active_limit = 128 * 1024;
        gate.route = ROUTE_JOURNAL;
        gate.journal = &journal;
    }
    struct conn_config cfg = {
        .fd = sv[0],
        .gate = &gate,
        .session = {LDEV_BYTES, config & 2 ? 1 : 0, config & 1, config & 4 ? 1 : 0},
        .growable = (config & 16) != 0,
        .initial_out = (const uint8_t *)"hello",
        .initial_out_len = 5,
        .initial_in = data + 1,
        .initial_in_len = len - 1 < 100 ? len - 1 : 100, /* some arrive with the handshake */
        .ops = &ops,
        .ctx = NULL,
    };
    struct conn *c = conn_new(&cfg);
    if (!c) return perror("conn_new"), -1;
    pthread_t reader;
    pthread_create(&reader, NULL, drain, &sv[1]);
    /* The rest arrives later, in one go; then the client hangs up its sending side. */
    size_t sent = cfg.initial_in_len + 1;
    pthread_t server;
    pthread_create(&server, NULL, serve, c);
    while (sent < len) {
        ssize_t n = send(sv[1], data + sent, len - sent, MSG_NOSIGNAL);
        if (n <= 0) break; /* the server hung up first */
        sent += (size_t)n;
    }
    shutdown(sv[1], SHUT_WR);
    pthread_join(server, NULL);
    pthread_join(reader, NULL);
    conn_release(c); /* the handle's reference */
    conn_release(c); /* the thread's (conn_serve was run directly) */
    close(sv[1]);
    close(ldev);
    close(segment);
    journal_destroy(&journal);
    gate_destroy(&gate);
    qos_destroy(&qos);
    return 0;
}

/* The control: a build whose sanitizers are not on would return 0 here. */
static int self_check(void) {
    volatile size_t len = 16;
    char *volatile buf = malloc(len);
    buf[len] = 'x';
    int kept = buf[len];
    free(buf);
    return kept == 0;
}

/* One input as operations on a journal's index, four bytes each; byte 0 picks it: file a record
 * of ((b1 << 8 | b2) + header) bytes, in a new segment when b3 is odd; trim through the oldest +
 * b1; the runs from the oldest + b1 within (b2 << 8) + 1 bytes; the account after the oldest +
 * b1. What the index answers must agree with what was filed. */
static int run_index(const uint8_t *in, size_t len) {
    struct journal_index x = {0};
    uint64_t next = 1, segment = 1, offset = 0;
    struct journal_run runs[8];
    int bad = 0;
    for (size_t i = 0; i + 4 <= len && !bad; i += 4) {
        const uint8_t *op = in + i;
        uint64_t first = journal_index_count(&x) ? x.entries[x.head].seq : next;
        if (op[0] % 4 == 0) {
            uint32_t size = ((uint32_t)op[1] << 8 | op[2]) + JOURNAL_HEADER_BYTES;
            if (op[3] & 1) segment = next, offset = 0;
            bad = journal_index_file(&x, next, segment, offset, size, (int64_t)next) != 0 ||
                  journal_index_file(&x, next + 2, segment, offset, size, 0) != -EINVAL;
            next++;
            offset += size;
        } else if (op[0] % 4 == 1) {
            struct journal_entry last;
            size_t before = journal_index_count(&x);
            if (journal_index_trim(&x, first + op[1], &last))
                bad = last.seq > first + op[1] || journal_index_count(&x) >= before;
        } else if (op[0] % 4 == 2) {
            size_t n = journal_index_runs(&x, first + op[1], next, ((uint64_t)op[2] << 8) + 1, runs, 8);
            for (size_t k = 0; k < n; k++) bad |= runs[k].bytes < JOURNAL_HEADER_BYTES || runs[k].segment >= next;
        } else {
            uint64_t records, bytes;
            int64_t oldest;
            journal_index_after(&x, first + op[1], &records, &bytes, &oldest);
            bad = records > journal_index_count(&x) || bytes < records * JOURNAL_HEADER_BYTES ||
                  (records && oldest <= (int64_t)(first + op[1]) - 1);
        }
    }
    journal_index_destroy(&x);
    return bad;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--self-check") == 0) return self_check();
    int index = argc > 1 && strcmp(argv[1], "--index") == 0;
    int inputs = 0;
    for (int i = 1 + index; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) return perror(argv[i]), 2;
        size_t cap = 1 << 16, len = 0;
        uint8_t *buf = malloc(cap);
        size_t n;
        while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
            len += n;
            if (len == cap) buf = realloc(buf, cap *= 2);
        }
        fclose(f);
        if (!buf || (index ? run_index(buf, len) : run_one(buf, len)) != 0) return 2;
        free(buf);
        inputs++;
    }
    printf("inputs=%d batched=%zu\n", inputs, batches_seen);
    return 0;
}
