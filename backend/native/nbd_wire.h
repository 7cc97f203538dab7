/* NBD transmission phase on the wire, as pure functions: no sockets, no files.
 *
 * The native twin of backend/nbd/transmission.py: the request header is
 * parsed and checked here before anything touches an LDEV, and replies are
 * built into caller-owned memory. Kept free of I/O so that the fuzz harness
 * (fuzz_main.c, built with ASan and UBSan) and hypothesis (through the
 * binding) drive exactly the code the connection threads run.
 */
#ifndef CCOPY_NBD_WIRE_H
#define CCOPY_NBD_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define NBD_REQUEST_MAGIC 0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC 0x668E33EFu
#define NBD_REQUEST_HEADER_BYTES 28
#define NBD_SIMPLE_REPLY_BYTES 16
#define NBD_CHUNK_HEADER_BYTES 20
#define NBD_MAX_REQUEST_BYTES (32u * 1024u * 1024u)

enum nbd_command {
    NBD_CMD_READ = 0,
    NBD_CMD_WRITE = 1,
    NBD_CMD_DISC = 2,
    NBD_CMD_FLUSH = 3,
    NBD_CMD_TRIM = 4,
    NBD_CMD_CACHE = 5,
    NBD_CMD_WRITE_ZEROES = 6,
    NBD_CMD_BLOCK_STATUS = 7,
    NBD_CMD_COUNT = 8,
};

enum nbd_command_flag {
    NBD_FLAG_FUA = 1 << 0,
    NBD_FLAG_NO_HOLE = 1 << 1,
    NBD_FLAG_DF = 1 << 2,
    NBD_FLAG_REQ_ONE = 1 << 3,
};

enum nbd_reply_type {
    NBD_REPLY_NONE = 0,
    NBD_REPLY_OFFSET_DATA = 1,
    NBD_REPLY_BLOCK_STATUS = 5,
    NBD_REPLY_ERROR = (1 << 15) + 1,
};

/* The error values NBD allows on the wire (the protocol's errno numbers). */
enum nbd_errno {
    NBD_EPERM = 1,
    NBD_EIO = 5,
    NBD_ENOMEM = 12,
    NBD_EINVAL = 22,
    NBD_ENOSPC = 28,
};

struct nbd_request {
    uint16_t flags;
    uint16_t command;
    uint64_t cookie;
    uint64_t offset;
    uint32_t length;
};

/* What the handshake settled for a connection, fixed for its transmission phase. */
struct nbd_session {
    uint64_t export_size;    /* the size the client was told */
    int read_only;
    int structured_replies;
    int meta_contexts;       /* how many metadata contexts were set (base:allocation or none) */
};

enum nbd_parse_result {
    NBD_PARSE_NEED_MORE = 0, /* fewer than a header's bytes */
    NBD_PARSE_OK = 1,
    NBD_PARSE_BAD_MAGIC = -1, /* the stream cannot be trusted: hard disconnect */
    NBD_PARSE_OVERSIZED = -2, /* a WRITE whose payload will not be read: EINVAL, then disconnect */
};

/* Parse the request header at the start of `buf`. With NBD_PARSE_OK, the whole
 * request (header and, for WRITE, payload) is NBD_REQUEST_HEADER_BYTES +
 * nbd_payload_bytes(req) long; it may not all be in `buf` yet. */
int nbd_parse_header(const uint8_t *buf, size_t len, struct nbd_request *req);

/* Bytes of payload that follow the header: a WRITE's length, otherwise none. */
uint32_t nbd_payload_bytes(const struct nbd_request *req);

/* The NBD error a request earns before any data is touched (0: none). The same
 * rules as backend.nbd.transmission.check_request. */
int nbd_check_request(const struct nbd_request *req, const struct nbd_session *session);

/* Replies, written at `out` (which has room for them); each returns the bytes written. */
size_t nbd_simple_reply(uint8_t *out, uint64_t cookie, uint32_t error);
size_t nbd_chunk_header(uint8_t *out, uint64_t cookie, uint16_t type, uint32_t length, int done);
/* The header of the one OFFSET_DATA chunk of a structured READ reply (data follows): 28 bytes. */
size_t nbd_read_chunk_header(uint8_t *out, uint64_t cookie, uint64_t offset, uint32_t length);
/* A structured ERROR chunk with a message (at most 4096 bytes of it are sent). */
size_t nbd_error_chunk(uint8_t *out, uint64_t cookie, uint32_t error, const char *message, size_t message_len);
#define NBD_ERROR_CHUNK_MAX (NBD_CHUNK_HEADER_BYTES + 6 + 4096)

void nbd_put_u16(uint8_t *p, uint16_t v);
void nbd_put_u32(uint8_t *p, uint32_t v);
void nbd_put_u64(uint8_t *p, uint64_t v);

#endif
