/* The files beside weights.bin that the loader reads whole (tokenizer.bin, head.bin) begin alike: four magic
 * bytes, a u32 format version, and the sha256 of every byte from 40 on, then little-endian u32 fields.
 * Internal; static functions taking buffers, like loader.h. */
#ifndef BERTC_BLOB_H
#define BERTC_BLOB_H

#include <stdint.h>
#include <string.h>

#include "sha256.h"
#include "status.h"

static uint32_t blob_u32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* d[0..len) as a `what` file of this runtime's `version`: at least min_len bytes, the magic, the version, the
 * sha256. Built with -DBERTC_FUZZ the sha256 is computed but not compared: a fuzzer could never forge it,
 * and what it guards is what the fuzzer is there to reach. */
static bertc_status blob_check(const uint8_t *d, size_t len, size_t min_len, const char *magic, uint32_t version,
                               const char *what, const char *path, char *err) {
  if (len < min_len || memcmp(d, magic, 4) != 0)
    return fail(err, BERTC_ERR_FORMAT, "%s is not a bertc %s file (%s); recompile the artifact", path, what,
                len < min_len ? "too short" : "no magic");
  if (blob_u32(d + 4) != version)
    return fail(err, BERTC_ERR_FORMAT, "%s is version %u of the %s format, this runtime reads %u; recompile the "
                "artifact with this bertc", path, blob_u32(d + 4), what, version);
  static const char hex[] = "0123456789abcdef";
  char want[65], got[65];
  for (int i = 0; i < 32; i++) {
    want[2 * i] = hex[d[8 + i] >> 4];
    want[2 * i + 1] = hex[d[8 + i] & 15];
  }
  want[64] = 0;
  bertc_sha256_hex(d + 40, (uint64_t)(len - 40), got);
#ifndef BERTC_FUZZ
  if (strcmp(want, got) != 0)
    return fail(err, BERTC_ERR_CHECKSUM, "%s: sha256 of its contents does not match its header (damaged?); "
                "recompile the artifact", path);
#endif
  return BERTC_OK;
}

#endif
