/* One NBD connection's transmission phase, served on a thread of its own.
 *
 * The handshake (options, TLS, which export) stays in Python: once the client
 * has its export, the socket is handed here with what was settled. This
 * thread then parses requests, checks them (nbd_wire), holds them for the
 * LDEV's QoS limits, and serves READ, BLOCK_STATUS and every write the gate
 * calls plain without the interpreter. A write that needs the write path's
 * other steps (journal, copy-on-write, differential bitmap, the fence), and
 * a FLUSH that must reach a journal, go to `ops->write_batch`: the requests
 * that arrived together go as one batch, in order, so their copies and
 * journal records share syncs and the interpreter is entered once for them.
 *
 * Requests are served in the order they arrive; replies to everything read
 * in one receive go out in one send.
 */
#ifndef CCOPY_CONN_H
#define CCOPY_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "gate.h"
#include "nbd_wire.h"

struct batch_entry {
    struct nbd_request req;
    const uint8_t *payload; /* a WRITE's bytes, valid during the call */
    double started;
    int error;              /* set by write_batch: 0 or an NBD errno */
};

struct conn_ops {
    /* Serve the entries through the write path, in order, setting each one's error. */
    void (*write_batch)(void *ctx, struct batch_entry *entries, size_t count);
    /* The connection ended (`reason` says why); called once, on the connection's thread, before its socket closes. */
    void (*closed)(void *ctx, const char *reason);
};

struct conn_config {
    int fd;                      /* a connected stream socket, now the connection's */
    struct gate *gate;
    struct nbd_session session;
    int growable;                /* writes reach as far as the LDEV has grown, not only the size told */
    const uint8_t *initial_out;  /* sent first (the handshake's last answer) */
    size_t initial_out_len;
    const uint8_t *initial_in;   /* requests that arrived with the handshake's last option */
    size_t initial_in_len;
    const struct conn_ops *ops;
    void *ctx;
};

struct conn;

/* Start serving on a new thread; NULL (errno set) when it could not start, and then nothing was taken. */
struct conn *conn_start(const struct conn_config *config);
/* Cut the connection (access revoked, the server stops): its thread ends, `closed` is called. Thread-safe. */
void conn_abort(struct conn *c);
/* Forget the handle once `closed` was called (the thread frees the rest). */
void conn_release(struct conn *c);

/* The serving loop itself, on the caller's thread (the fuzz harness runs it this way). */
void conn_serve(struct conn *c);
struct conn *conn_new(const struct conn_config *config);

#endif
