/* What both executors (the CPU one in runtime.c, the Vulkan one in ../vulkan/vulkan.c) do the same
 * way when opening and running an artifact: read the manifest's format version and weights sha256,
 * map and check weights.bin, and range-check the int64 inputs. Internal; static functions. */
#ifndef BERTC_LOADER_H
#define BERTC_LOADER_H

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../include/bertc.h"
#include "sha256.h"

static bertc_status fail(char *buf, bertc_status code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bertc_status fail(char *buf, bertc_status code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, 512, fmt, ap);
  va_end(ap);
  return code;
}

static char *read_text(const char *path, size_t limit) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *buf = malloc(limit + 1);
  size_t n = buf ? fread(buf, 1, limit, f) : 0;
  fclose(f);
  if (buf) buf[n] = 0;
  return buf;
}

/* The manifest is JSON written by bertc; the loader needs two facts from it and finds them
 * by key rather than pulling in a JSON parser. */
static int manifest_field(const char *json, const char *scope, const char *key, char *out, size_t cap) {
  const char *s = scope ? strstr(json, scope) : json;
  if (!s) return 0;
  const char *k = strstr(s, key);
  if (!k) return 0;
  k = strchr(k + strlen(key), ':');
  if (!k) return 0;
  k++;
  while (*k == ' ' || *k == '"') k++;
  size_t n = 0;
  while (k[n] && k[n] != '"' && k[n] != ',' && k[n] != '}' && k[n] != '\n' && n + 1 < cap) n++;
  memcpy(out, k, n);
  out[n] = 0;
  return 1;
}

/* Check dir/manifest.json against the compiled format version and weights sha256, then map
 * dir/weights.bin (expected_bytes long, hashing to sha) read-only into *map / *len. */
static bertc_status open_weights(const char *dir, int format_version, const char *sha, int64_t expected_bytes,
                                 void **map_out, size_t *len_out, char *err) {
  char path[4096], value[128];
  snprintf(path, sizeof path, "%s/manifest.json", dir);
  char *manifest = read_text(path, 1 << 20);
  if (!manifest) return fail(err, BERTC_ERR_IO, "cannot read %s: %s", path, strerror(errno));
  int version_ok = manifest_field(manifest, NULL, "\"format_version\"", value, sizeof value) &&
                   atoi(value) == format_version;
  int sha_ok = manifest_field(manifest, "\"weights.bin\"", "\"sha256\"", value, sizeof value) &&
               strcmp(value, sha) == 0;
  free(manifest);
  if (!version_ok)
    return fail(err, BERTC_ERR_FORMAT, "%s: format_version is not %d (corrupt, or made by another bertc)", path,
                format_version);
  if (!sha_ok)
    return fail(err, BERTC_ERR_FORMAT, "%s names other weights than this library was compiled with; recompile the artifact",
                path);

  snprintf(path, sizeof path, "%s/weights.bin", dir);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return fail(err, BERTC_ERR_IO, "cannot open %s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size != expected_bytes) {
    close(fd);
    return fail(err, BERTC_ERR_FORMAT, "%s is %lld bytes, expected %lld (truncated or replaced?)", path,
                (long long)st.st_size, (long long)expected_bytes);
  }
  void *map = NULL;
  if (st.st_size > 0) {
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      close(fd);
      return fail(err, BERTC_ERR_IO, "cannot map %s: %s", path, strerror(errno));
    }
  }
  close(fd);
  char digest[65];
  bertc_sha256_hex(map, (uint64_t)st.st_size, digest);
  if (strcmp(digest, sha) != 0) {
    if (map) munmap(map, (size_t)st.st_size);
    return fail(err, BERTC_ERR_CHECKSUM, "%s: sha256 %s does not match the compiled %s (altered weights)", path,
                digest, sha);
  }
  *map_out = map;
  *len_out = (size_t)st.st_size;
  return BERTC_OK;
}

/* Copy one int64 input [batch, seq] into dst [B, S] (the compiled shape), padding with `fill` inside
 * the given rows and 0 outside, and reject any value outside [0, limit). */
static bertc_status check_and_copy(char *err, int64_t *dst, const int64_t *src, int64_t B, int64_t S, int64_t batch,
                                   int64_t seq, int64_t limit, int64_t fill, const char *what, const char *hint) {
  for (int64_t b = 0; b < B; b++)
    for (int64_t s = 0; s < S; s++) {
      int64_t v = (b < batch && s < seq && src) ? src[b * seq + s] : (s < seq && b < batch ? fill : 0);
      if (v < 0 || v >= limit)
        return fail(err, BERTC_ERR_INPUT, "%s %lld at [%lld, %lld] is outside [0, %lld)%s", what, (long long)v,
                    (long long)b, (long long)s, (long long)limit, hint);
      dst[b * S + s] = v;
    }
  return BERTC_OK;
}

/* The shape checks of bertc_run and the copy of the three inputs into their slots (base + offset;
 * an offset of -1 means the program has no such input). */
static bertc_status check_inputs(char *err, char *base, int64_t B, int64_t S, int64_t vocab, int64_t type_vocab,
                                 int64_t ids_off, int64_t mask_off, int64_t types_off, const int64_t *ids,
                                 const int64_t *mask, const int64_t *types, int64_t batch, int64_t seq) {
  if (!ids) return fail(err, BERTC_ERR_ARGUMENT, "input_ids is NULL");
  if (batch != B)
    return fail(err, BERTC_ERR_INPUT, "batch %lld differs from the compiled batch %lld; recompile with --batch",
                (long long)batch, (long long)B);
  if (seq < 1 || seq > S)
    return fail(err, BERTC_ERR_INPUT, "sequence length %lld is outside 1..%lld (the compiled --seq-len); truncate or recompile",
                (long long)seq, (long long)S);
  bertc_status st = check_and_copy(err, (int64_t *)(base + ids_off), ids, B, S, batch, seq, vocab, 0, "token id",
                                   "; was the artifact compiled from a different tokenizer?");
  if (st == BERTC_OK && mask_off >= 0)
    st = check_and_copy(err, (int64_t *)(base + mask_off), mask, B, S, batch, seq, 2, 1, "attention mask value",
                        " (expected 0 or 1)");
  if (st == BERTC_OK && types_off >= 0)
    st = check_and_copy(err, (int64_t *)(base + types_off), types, B, S, batch, seq, type_vocab > 0 ? type_vocab : 1,
                        0, "token type id", "");
  return st;
}

#endif
