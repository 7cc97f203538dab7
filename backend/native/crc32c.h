/* CRC32C (Castagnoli), as the journal's records carry it (backend/journal_record.py, which
 * computes it with google_crc32c): SSE4.2's instruction where the CPU has it, a table otherwise. */
#ifndef CCOPY_CRC32C_H
#define CCOPY_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* The CRC of `len` bytes following a CRC `crc` of what came before (0 to start). */
uint32_t crc32c_extend(uint32_t crc, const uint8_t *data, size_t len);

#endif
