/* NBD transmission phase on the wire (see nbd_wire.h). */
#include "nbd_wire.h"

#include <string.h>

static uint16_t get_u16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static uint32_t get_u32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static uint64_t get_u64(const uint8_t *p) { return ((uint64_t)get_u32(p) << 32) | get_u32(p + 4); }

void nbd_put_u16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

void nbd_put_u32(uint8_t *p, uint32_t v) {
    for (int i = 3; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

void nbd_put_u64(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}

int nbd_parse_header(const uint8_t *buf, size_t len, struct nbd_request *req) {
    if (len < NBD_REQUEST_HEADER_BYTES) return NBD_PARSE_NEED_MORE;
    if (get_u32(buf) != NBD_REQUEST_MAGIC) return NBD_PARSE_BAD_MAGIC;
    req->flags = get_u16(buf + 4);
    req->command = get_u16(buf + 6);
    req->cookie = get_u64(buf + 8);
    req->offset = get_u64(buf + 16);
    req->length = get_u32(buf + 24);
    if (req->command == NBD_CMD_WRITE && req->length > NBD_MAX_REQUEST_BYTES) return NBD_PARSE_OVERSIZED;
    return NBD_PARSE_OK;
}

uint32_t nbd_payload_bytes(const struct nbd_request *req) {
    return req->command == NBD_CMD_WRITE ? req->length : 0;
}

/* Command flags each command may carry. FUA is accepted everywhere because
 * existing clients set it on commands that do not write (the protocol says so). */
static int allowed_flags(uint16_t command) {
    switch (command) {
    case NBD_CMD_READ: return NBD_FLAG_FUA | NBD_FLAG_DF;
    case NBD_CMD_WRITE: return NBD_FLAG_FUA;
    case NBD_CMD_DISC: return NBD_FLAG_FUA;
    case NBD_CMD_FLUSH: return NBD_FLAG_FUA;
    case NBD_CMD_TRIM: return NBD_FLAG_FUA;
    case NBD_CMD_WRITE_ZEROES: return NBD_FLAG_FUA | NBD_FLAG_NO_HOLE;
    case NBD_CMD_BLOCK_STATUS: return NBD_FLAG_FUA | NBD_FLAG_REQ_ONE;
    default: return -1; /* CACHE (never advertised) and unknown commands */
    }
}

int nbd_check_request(const struct nbd_request *req, const struct nbd_session *session) {
    int allowed = allowed_flags(req->command);
    if (allowed < 0) return NBD_EINVAL;
    if (req->command == NBD_CMD_READ && !session->structured_replies) allowed &= ~NBD_FLAG_DF;
    if (req->flags & ~allowed) return NBD_EINVAL;
    int writes = req->command == NBD_CMD_WRITE || req->command == NBD_CMD_TRIM || req->command == NBD_CMD_WRITE_ZEROES;
    if (writes && session->read_only) return NBD_EPERM;
    if ((req->command == NBD_CMD_READ || req->command == NBD_CMD_WRITE) && req->length > NBD_MAX_REQUEST_BYTES)
        return NBD_EINVAL;
    if (req->command == NBD_CMD_BLOCK_STATUS && (!session->meta_contexts || req->length == 0)) return NBD_EINVAL;
    if (req->command == NBD_CMD_DISC || req->command == NBD_CMD_FLUSH) return 0;
    /* offset + length past the export (an offset near 2^64 must not wrap around) */
    if (req->offset > session->export_size || req->length > session->export_size - req->offset)
        return (req->command == NBD_CMD_WRITE || req->command == NBD_CMD_WRITE_ZEROES) ? NBD_ENOSPC : NBD_EINVAL;
    return 0;
}

size_t nbd_simple_reply(uint8_t *out, uint64_t cookie, uint32_t error) {
    nbd_put_u32(out, NBD_SIMPLE_REPLY_MAGIC);
    nbd_put_u32(out + 4, error);
    nbd_put_u64(out + 8, cookie);
    return NBD_SIMPLE_REPLY_BYTES;
}

size_t nbd_chunk_header(uint8_t *out, uint64_t cookie, uint16_t type, uint32_t length, int done) {
    nbd_put_u32(out, NBD_STRUCTURED_REPLY_MAGIC);
    nbd_put_u16(out + 4, done ? 1 : 0);
    nbd_put_u16(out + 6, type);
    nbd_put_u64(out + 8, cookie);
    nbd_put_u32(out + 16, length);
    return NBD_CHUNK_HEADER_BYTES;
}

size_t nbd_read_chunk_header(uint8_t *out, uint64_t cookie, uint64_t offset, uint32_t length) {
    size_t n = nbd_chunk_header(out, cookie, NBD_REPLY_OFFSET_DATA, 8 + length, 1);
    nbd_put_u64(out + n, offset);
    return n + 8;
}

size_t nbd_error_chunk(uint8_t *out, uint64_t cookie, uint32_t error, const char *message, size_t message_len) {
    if (message_len > 4096) message_len = 4096;
    size_t n = nbd_chunk_header(out, cookie, NBD_REPLY_ERROR, (uint32_t)(6 + message_len), 1);
    nbd_put_u32(out + n, error);
    nbd_put_u16(out + n + 4, (uint16_t)message_len);
    if (message_len) memcpy(out + n + 6, message, message_len);
    return n + 6 + message_len;
}
