/* One NBD connection's transmission phase (see conn.h). */
#define _GNU_SOURCE
#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define IN_START_BYTES (256u * 1024u)
#define OUT_FLUSH_BYTES (1u * 1024u * 1024u) /* queued replies go out once they reach this */
#define BASE_ALLOCATION_ID 1u
#define STATE_HOLE_ZERO 3u

struct conn {
    struct conn_config cfg;
    pthread_mutex_t mu;  /* guards `closed` against conn_abort */
    int closed;          /* the socket is closed: nothing left to cut */
    _Atomic int aborted; /* conn_abort cut it */
    _Atomic int refs;    /* the thread's and the handle's */
    uint8_t *in;
    size_t in_cap, in_start, in_end;
    uint8_t *out;
    size_t out_len, out_cap;
    int send_failed;
    struct batch_entry *batch;
    size_t batch_len, batch_cap;
    const char *hang_up; /* set: stop once what is queued is sent */
};

static void conn_unref(struct conn *c) {
    if (atomic_fetch_sub(&c->refs, 1) != 1) return;
    pthread_mutex_destroy(&c->mu);
    free(c->in);
    free(c->out);
    free(c->batch);
    free(c);
}

/* The NBD error value the host sees for a failure of the file system. */
static uint32_t nbd_errno_for(int err) {
    switch (err) {
    case ENOSPC: case EDQUOT: case EFBIG: return NBD_ENOSPC;
    case EPERM: case EACCES: case EROFS: return NBD_EPERM;
    case EINVAL: return NBD_EINVAL;
    default: return NBD_EIO;
    }
}

/* -- output ------------------------------------------------------------------------ */
static uint8_t *out_take(struct conn *c, size_t len) {
    if (c->out_len + len > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 64 * 1024;
        while (cap < c->out_len + len) cap *= 2;
        uint8_t *grown = realloc(c->out, cap);
        if (!grown) return NULL;
        c->out = grown;
        c->out_cap = cap;
    }
    uint8_t *at = c->out + c->out_len;
    c->out_len += len;
    return at;
}

static void flush_out(struct conn *c) {
    size_t sent = 0;
    while (sent < c->out_len && !c->send_failed) {
        ssize_t n = send(c->cfg.fd, c->out + sent, c->out_len - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            c->send_failed = 1;
            if (!c->hang_up) c->hang_up = "send_failed";
            break;
        }
        sent += (size_t)n;
    }
    c->out_len = 0;
}

static void out_oom(struct conn *c) {
    if (!c->hang_up) c->hang_up = "out_of_memory";
}

static void reply_ok(struct conn *c, uint64_t cookie) {
    uint8_t *at = out_take(c, NBD_SIMPLE_REPLY_BYTES);
    if (at) nbd_simple_reply(at, cookie, 0);
    else out_oom(c);
}

static void reply_error(struct conn *c, uint64_t cookie, uint32_t error, const char *message) {
    if (!c->cfg.session.structured_replies) {
        uint8_t *at = out_take(c, NBD_SIMPLE_REPLY_BYTES);
        if (at) nbd_simple_reply(at, cookie, error);
        else out_oom(c);
        return;
    }
    size_t len = strlen(message);
    uint8_t *at = out_take(c, NBD_CHUNK_HEADER_BYTES + 6 + len);
    if (at) nbd_error_chunk(at, cookie, error, message, len);
    else out_oom(c);
}

/* -- requests served here ------------------------------------------------------------ */
static int pwrite_all(int fd, const uint8_t *data, size_t len, off_t offset) {
    while (len) {
        ssize_t n = pwrite(fd, data, len, offset);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno;
        if (n == 0) return ENOSPC;
        data += n;
        len -= (size_t)n;
        offset += n;
    }
    return 0;
}

static int zero_allocated(int fd, uint64_t offset, uint32_t length) {
    if (fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, (off_t)offset, length) == 0) return 0;
    if (errno != EOPNOTSUPP && errno != ENOSYS) return errno;
    static const uint8_t zeroes[64 * 1024];
    while (length) {
        uint32_t step = length < sizeof zeroes ? length : (uint32_t)sizeof zeroes;
        int err = pwrite_all(fd, zeroes, step, (off_t)offset);
        if (err) return err;
        offset += step;
        length -= step;
    }
    return 0;
}

/* ENOSPC for a write past what the session may reach, else 0. */
static int past_the_end(struct conn *c, const struct nbd_request *req) {
    uint64_t limit = c->cfg.growable ? atomic_load(&c->cfg.gate->size) : c->cfg.session.export_size;
    return req->offset > limit || req->length > limit - req->offset ? ENOSPC : 0;
}

/* The data step of a write (under the gate's lock): 0 or an errno. */
static int write_data(struct conn *c, const struct nbd_request *req, const uint8_t *payload) {
    int fd = c->cfg.gate->fd;
    if (req->command == NBD_CMD_WRITE) return pwrite_all(fd, payload, req->length, (off_t)req->offset);
    if (!req->length) return 0;
    if (req->command == NBD_CMD_WRITE_ZEROES && (req->flags & NBD_FLAG_NO_HOLE))
        return zero_allocated(fd, req->offset, req->length);
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)req->offset, req->length) != 0) return errno;
    return 0;
}

/* A P-VOL's write: its record in the group's journal, then its data (the write path's steps 3
 * and 4, under the gate's lock). 0 or an errno when done here; -1 when the journal leaves it
 * to Python (full, no room in the segment, synchronous or inflow control). */
static int journal_then_data(struct conn *c, const struct nbd_request *req, const uint8_t *payload) {
    struct gate *g = c->cfg.gate;
    int writes = req->command == NBD_CMD_WRITE;
    int kind = writes ? JOURNAL_WRITE : req->command == NBD_CMD_TRIM ? JOURNAL_TRIM : JOURNAL_ZEROES;
    int64_t seq = journal_append(g->journal, kind, g->ldev_id, req->offset, req->length,
                                 req->command == NBD_CMD_WRITE_ZEROES && (req->flags & NBD_FLAG_NO_HOLE),
                                 writes ? payload : NULL, writes ? req->length : 0, 0);
    if (seq == 0) return -1;
    if (seq < 0) return (int)-seq;
    return write_data(c, req, payload);
}

static int sync_data(int fd) {
    while (fdatasync(fd) != 0)
        if (errno != EINTR) return errno;
    return 0;
}

/* 0, or the errno of a failed read (its error reply is queued). */
static int serve_read(struct conn *c, const struct nbd_request *req) {
    int structured = c->cfg.session.structured_replies;
    size_t head = structured ? NBD_CHUNK_HEADER_BYTES + 8 : NBD_SIMPLE_REPLY_BYTES;
    size_t mark = c->out_len;
    uint8_t *at = out_take(c, head + req->length);
    if (!at) {
        out_oom(c);
        return ENOMEM;
    }
    uint8_t *data = at + head;
    size_t got = 0;
    while (got < req->length) {
        ssize_t n = pread(c->cfg.gate->fd, data + got, req->length - got, (off_t)(req->offset + got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int err = errno;
            c->out_len = mark; /* take the reply back: an error instead */
            reply_error(c, req->cookie, nbd_errno_for(err), strerror(err));
            return err;
        }
        if (n == 0) { /* past the file's end (headroom of a publication): zeroes */
            memset(data + got, 0, req->length - got);
            break;
        }
        got += (size_t)n;
    }
    if (structured) nbd_read_chunk_header(at, req->cookie, req->offset, req->length);
    else nbd_simple_reply(at, req->cookie, 0);
    return 0;
}

/* base:allocation of [offset, offset+length): the file's data and holes, then headroom past its end as a hole. */
static int serve_block_status(struct conn *c, const struct nbd_request *req) {
    int fd = c->cfg.gate->fd;
    struct stat st;
    if (fstat(fd, &st) != 0) return errno;
    uint64_t pos = req->offset, end = req->offset + req->length;
    uint64_t file_end = (uint64_t)st.st_size < end ? (uint64_t)st.st_size : end;
    size_t mark = c->out_len, count = 0;
    uint8_t *head = out_take(c, NBD_CHUNK_HEADER_BYTES + 4);
    if (!head) return ENOMEM;
    uint32_t last_state = 0;
    int req_one = req->flags & NBD_FLAG_REQ_ONE;
    while (pos < end && !(req_one && count)) {
        uint64_t run_end;
        uint32_t state;
        if (pos >= file_end) {
            run_end = end;
            state = STATE_HOLE_ZERO;
        } else {
            off_t data = lseek(fd, (off_t)pos, SEEK_DATA);
            if (data < 0 && errno != ENXIO) goto failed;
            if (data < 0 || (uint64_t)data > pos) { /* a hole up to the next data, or to the end */
                run_end = data < 0 || (uint64_t)data > file_end ? file_end : (uint64_t)data;
                state = STATE_HOLE_ZERO;
            } else {
                off_t hole = lseek(fd, (off_t)pos, SEEK_HOLE);
                if (hole < 0) goto failed;
                run_end = (uint64_t)hole < file_end ? (uint64_t)hole : file_end;
                state = 0;
            }
        }
        uint64_t run = run_end - pos;
        if (count && state == last_state) { /* merge with the descriptor before */
            uint8_t *prev = c->out + c->out_len - 8;
            uint32_t merged = ((uint32_t)prev[0] << 24 | (uint32_t)prev[1] << 16 | (uint32_t)prev[2] << 8 | prev[3]);
            nbd_put_u32(prev, merged + (uint32_t)run);
        } else {
            uint8_t *d = out_take(c, 8);
            if (!d) {
                c->out_len = mark;
                return ENOMEM;
            }
            nbd_put_u32(d, (uint32_t)run);
            nbd_put_u32(d + 4, state);
            count++;
        }
        last_state = state;
        pos = run_end;
    }
    head = c->out + mark; /* the buffer may have moved */
    nbd_chunk_header(head, req->cookie, NBD_REPLY_BLOCK_STATUS, (uint32_t)(4 + 8 * count), 1);
    nbd_put_u32(head + NBD_CHUNK_HEADER_BYTES, BASE_ALLOCATION_ID);
    return 0;
failed:;
    int err = errno;
    c->out_len = mark;
    return err;
}

/* -- requests for the write path ---------------------------------------------------- */
static int batch_add(struct conn *c, const struct nbd_request *req, const uint8_t *payload, double started) {
    if (c->batch_len == c->batch_cap) {
        size_t cap = c->batch_cap ? c->batch_cap * 2 : 64;
        struct batch_entry *grown = realloc(c->batch, cap * sizeof *grown);
        if (!grown) return -1;
        c->batch = grown;
        c->batch_cap = cap;
    }
    c->batch[c->batch_len++] = (struct batch_entry){*req, payload, started, 0};
    return 0;
}

static void run_batch(struct conn *c) {
    if (!c->batch_len) return;
    c->cfg.ops->write_batch(c->cfg.ctx, c->batch, c->batch_len);
    double now = monotonic_seconds();
    for (size_t i = 0; i < c->batch_len; i++) {
        struct batch_entry *e = &c->batch[i];
        if (e->error) reply_error(c, e->req.cookie, (uint32_t)e->error, "the write path refused or failed it");
        else reply_ok(c, e->req.cookie);
        gate_observe(c->cfg.gate, e->req.command, now - e->started, e->error != 0);
    }
    c->batch_len = 0;
}

static void serve_write(struct conn *c, const struct nbd_request *req, const uint8_t *payload, double started) {
    struct gate *g = c->cfg.gate;
    int err = -1; /* -1: the write path's */
    if (!c->batch_len) { /* with writes queued for the write path, this one goes behind them */
        gate_lock(g);
        int route = g->route;
        int fua = req->flags & NBD_FLAG_FUA;
        if (route == ROUTE_PLAIN || (route == ROUTE_JOURNAL && !fua)) { /* a FUA P-VOL write syncs the journal */
            err = past_the_end(c, req);
            if (!err) err = route == ROUTE_PLAIN ? write_data(c, req, payload) : journal_then_data(c, req, payload);
        }
        gate_unlock(g);
        if (err >= 0) {
            if (!err && fua) err = sync_data(g->fd);
            if (err) reply_error(c, req->cookie, nbd_errno_for(err), strerror(err));
            else reply_ok(c, req->cookie);
            gate_observe(g, req->command, monotonic_seconds() - started, err != 0);
            return;
        }
    }
    if (batch_add(c, req, payload, started) != 0) out_oom(c);
}

static void serve_flush(struct conn *c, const struct nbd_request *req, double started) {
    struct gate *g = c->cfg.gate;
    gate_lock(g);
    int plain = g->route == ROUTE_PLAIN;
    gate_unlock(g);
    if (c->batch_len || !plain) { /* a journal's records are made durable too */
        if (batch_add(c, req, NULL, started) != 0) out_oom(c);
        return;
    }
    int err = sync_data(g->fd);
    if (err) reply_error(c, req->cookie, nbd_errno_for(err), strerror(err));
    else reply_ok(c, req->cookie);
    gate_observe(g, req->command, monotonic_seconds() - started, err != 0);
}

static void hold_for_qos(struct conn *c, const struct nbd_request *req) {
    uint16_t cmd = req->command;
    if (cmd != NBD_CMD_READ && cmd != NBD_CMD_WRITE && cmd != NBD_CMD_TRIM && cmd != NBD_CMD_WRITE_ZEROES) return;
    double delay = qos_reserve(c->cfg.gate->qos, cmd == NBD_CMD_TRIM ? 0 : req->length, monotonic_seconds());
    if (delay <= 0) return;
    run_batch(c); /* what came before it is answered first; the held request keeps its place */
    flush_out(c);
    struct timespec ts = {(time_t)delay, (long)((delay - (double)(time_t)delay) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

static void serve_request(struct conn *c, const struct nbd_request *req, const uint8_t *payload) {
    int error = nbd_check_request(req, &c->cfg.session);
    if (error) { /* refused before it costs the LDEV's QoS allowance anything */
        run_batch(c); /* replies keep the order of the requests */
        reply_error(c, req->cookie, (uint32_t)error, "request refused");
        gate_observe(c->cfg.gate, req->command, 0.0, 1);
        return;
    }
    hold_for_qos(c, req);
    double started = monotonic_seconds();
    switch (req->command) {
    case NBD_CMD_WRITE:
    case NBD_CMD_TRIM:
    case NBD_CMD_WRITE_ZEROES:
        serve_write(c, req, payload, started);
        return;
    case NBD_CMD_FLUSH:
        serve_flush(c, req, started);
        return;
    case NBD_CMD_DISC:
        c->hang_up = "client_disc";
        return;
    default:
        break;
    }
    run_batch(c); /* a READ or BLOCK_STATUS sees every write sent before it */
    if (req->command == NBD_CMD_READ) {
        int err = serve_read(c, req);
        gate_observe(c->cfg.gate, req->command, monotonic_seconds() - started, err != 0);
    } else {
        int err = serve_block_status(c, req);
        if (err) reply_error(c, req->cookie, nbd_errno_for(err), strerror(err));
        gate_observe(c->cfg.gate, req->command, monotonic_seconds() - started, err != 0);
    }
    if (c->out_len >= OUT_FLUSH_BYTES) flush_out(c);
}

/* -- the loop ------------------------------------------------------------------------ */
/* Serve every whole request in the input buffer; make room for the rest of a partial one. */
static void serve_buffered(struct conn *c) {
    while (!c->hang_up) {
        struct nbd_request req;
        size_t have = c->in_end - c->in_start;
        int parsed = nbd_parse_header(c->in + c->in_start, have, &req);
        if (parsed == NBD_PARSE_NEED_MORE) break;
        if (parsed == NBD_PARSE_BAD_MAGIC) {
            c->hang_up = "protocol_error reason=bad_request_magic";
            return;
        }
        if (parsed == NBD_PARSE_OVERSIZED) {
            run_batch(c);
            reply_error(c, req.cookie, NBD_EINVAL, "WRITE exceeds the 33554432-byte maximum");
            c->hang_up = "protocol_error reason=oversized_write";
            return;
        }
        size_t whole = NBD_REQUEST_HEADER_BYTES + nbd_payload_bytes(&req);
        if (have < whole) {
            if (c->in_start + whole > c->in_cap) { /* the rest does not fit behind it */
                run_batch(c); /* payloads of queued writes live in this buffer */
                memmove(c->in, c->in + c->in_start, have);
                c->in_start = 0;
                c->in_end = have;
                if (whole > c->in_cap) {
                    uint8_t *grown = realloc(c->in, whole);
                    if (!grown) {
                        c->hang_up = "out_of_memory";
                        return;
                    }
                    c->in = grown;
                    c->in_cap = whole;
                }
            }
            break;
        }
        serve_request(c, &req, c->in + c->in_start + NBD_REQUEST_HEADER_BYTES);
        c->in_start += whole;
    }
}

void conn_serve(struct conn *c) {
    const char *reason = NULL;
    flush_out(c); /* the handshake's last answer */
    for (;;) {
        serve_buffered(c);
        run_batch(c);
        flush_out(c);
        if (c->hang_up) {
            reason = c->hang_up;
            break;
        }
        if (c->in_start == c->in_end) c->in_start = c->in_end = 0;
        else if (c->in_start && c->in_end == c->in_cap) {
            memmove(c->in, c->in + c->in_start, c->in_end - c->in_start);
            c->in_end -= c->in_start;
            c->in_start = 0;
        }
        ssize_t n = recv(c->cfg.fd, c->in + c->in_end, c->in_cap - c->in_end, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) {
            reason = atomic_load(&c->aborted) ? "aborted" : "client_eof";
            break;
        }
        if (n < 0) {
            reason = atomic_load(&c->aborted) ? "aborted" : "connection_lost";
            break;
        }
        c->in_end += (size_t)n;
    }
    c->cfg.ops->closed(c->cfg.ctx, reason);
    pthread_mutex_lock(&c->mu);
    close(c->cfg.fd);
    c->closed = 1;
    pthread_mutex_unlock(&c->mu);
}

struct conn *conn_new(const struct conn_config *config) {
    size_t in_cap = IN_START_BYTES;
    while (in_cap < config->initial_in_len) in_cap *= 2;
    struct conn *c = calloc(1, sizeof *c);
    uint8_t *in = malloc(in_cap);
    if (!c || !in) {
        free(c);
        free(in);
        errno = ENOMEM;
        return NULL;
    }
    c->cfg = *config;
    c->cfg.initial_out = NULL; /* copied: the caller's buffers may go once this returns */
    c->cfg.initial_in = NULL;
    if (config->initial_out_len) {
        uint8_t *at = out_take(c, config->initial_out_len);
        if (!at) {
            free(c);
            free(in);
            errno = ENOMEM;
            return NULL;
        }
        memcpy(at, config->initial_out, config->initial_out_len);
    }
    c->in = in;
    c->in_cap = in_cap;
    memcpy(c->in, config->initial_in, config->initial_in_len);
    c->in_end = config->initial_in_len;
    pthread_mutex_init(&c->mu, NULL);
    atomic_store(&c->refs, 2);
    return c;
}

static void *conn_thread(void *arg) {
    struct conn *c = arg;
    pthread_setname_np(pthread_self(), "nbd-conn"); /* what top -H and /proc/<pid>/task/<tid>/comm show */
    conn_serve(c);
    conn_unref(c);
    return NULL;
}

struct conn *conn_start(const struct conn_config *config) {
    struct conn *c = conn_new(config);
    if (!c) return NULL;
    /* The socket blocks from here on: this thread waits in recv, nobody polls it. */
    int flags = fcntl(config->fd, F_GETFL);
    if (flags >= 0) fcntl(config->fd, F_SETFL, flags & ~O_NONBLOCK);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t thread;
    int rc = pthread_create(&thread, &attr, conn_thread, c);
    pthread_attr_destroy(&attr);
    if (rc) {
        atomic_store(&c->refs, 1);
        conn_unref(c);
        errno = rc;
        return NULL;
    }
    return c;
}

void conn_abort(struct conn *c) {
    pthread_mutex_lock(&c->mu);
    atomic_store(&c->aborted, 1);
    if (!c->closed) shutdown(c->cfg.fd, SHUT_RDWR);
    pthread_mutex_unlock(&c->mu);
}

void conn_release(struct conn *c) { conn_unref(c); }
