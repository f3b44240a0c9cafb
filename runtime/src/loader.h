/* What bertc_open and bertc_run (api.c) do the same way whichever backend runs the program: read the
 * manifest's format version and weights sha256, map and check weights.bin, and range-check the int64
 * inputs. Internal; static functions.
 *
 * Everything read from disk goes through a function that takes a buffer (parse_manifest,
 * check_manifest, check_weights, check_inputs), so that runtime/tests/fuzz_loader.c fuzzes exactly
 * what a loaded artifact runs. */
#ifndef BERTC_LOADER_H
#define BERTC_LOADER_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../include/bertc.h"
#include "sha256.h"
#include "status.h"

/* ---- manifest.json ---------------------------------------------------------------------------
 * The loader needs two facts from the manifest: the top-level "format_version" (an integer) and
 * "files" -> "weights.bin" -> "sha256" (a string). The manifest also carries the model's config,
 * which may be large (60,000 labels make 3.6 MB) and may hold any string, so it is parsed as JSON
 * (jsmn, vendored) and walked by key, never searched as text. */
#define JSMN_STATIC
#define JSMN_STRICT       /* primitives are numbers, true, false, null; no object as a key */
#define JSMN_PARENT_LINKS /* linear time: without them jsmn rescans its tokens at every comma */
#include "third_party/jsmn.h"

#define BERTC_MANIFEST_MAX_BYTES ((int64_t)64 << 20) /* bertc writes a few KB; 60,000 labels are 3.6 MB */
#define BERTC_MANIFEST_MAX_TOKENS (1 << 22)           /* JSON values: 20 bytes each, so at most 80 MB */

typedef struct {
  int format_version;
  char weights_sha256[65]; /* lowercase hex */
} bertc_manifest_facts;

/* The token after token i and everything inside it: tokens are in document order, so its subtree
 * is every following token that starts before it ends. */
static int json_next(const jsmntok_t *t, int n, int i) {
  int j = i + 1;
  while (j < n && t[j].start < t[i].end) j++;
  return j;
}

static int json_is(const char *js, const jsmntok_t *t, const char *text) {
  size_t len = strlen(text);
  return (size_t)(t->end - t->start) == len && memcmp(js + t->start, text, len) == 0;
}

/* jsmn builds the tree without checking that it is JSON's: every key of an object must have one
 * value (a missing colon or comma in an object leaves a key with none, or two), and a string
 * outside an object or a number has none. The index of the first token that breaks this, or -1.
 * (Separators inside arrays, as in [1 2] or [1,,2], jsmn does not record; the facts the loader
 * takes are read correctly around them, and bertc's own json.loads refuses such a file.) */
static int json_misplaced(const jsmntok_t *t, int n) {
  for (int i = 0; i < n; i++) {
    const int p = t[i].parent;
    if (i > 0 && p < 0) return i;
    const int is_key = p >= 0 && t[p].type == JSMN_OBJECT;
    const int is_container = t[i].type == JSMN_OBJECT || t[i].type == JSMN_ARRAY;
    if (is_key ? t[i].type != JSMN_STRING || t[i].size != 1 : !is_container && t[i].size != 0) return i;
  }
  return -1;
}

/* The value of `key` in object token `obj`: its token index, -1 when absent. json_misplaced has
 * checked that each key k of the object is a string whose one value is token k + 1. A repeated key
 * is an error: json.loads would take the last of two, and the loader takes no guesses. */
static bertc_status json_member(const char *js, const jsmntok_t *t, int n, int obj, const char *key, int *value,
                                const char *path, char *err) {
  *value = -1;
  for (int k = obj + 1; k + 1 < n && t[k].start < t[obj].end; k = json_next(t, n, k + 1)) {
    if (!json_is(js, &t[k], key)) continue;
    if (*value >= 0)
      return fail(err, BERTC_ERR_FORMAT, "%s has the key \"%s\" twice; the artifact is corrupt: recompile it", path, key);
    *value = k + 1;
  }
  return BERTC_OK;
}

/* The member `key` of object `obj`, which must be there and have type `type`. */
static bertc_status json_require(const char *js, const jsmntok_t *t, int n, int obj, const char *key, jsmntype_t type,
                                 const char *where, int *value, const char *path, char *err) {
  bertc_status st = json_member(js, t, n, obj, key, value, path, err);
  if (st != BERTC_OK) return st;
  const char *kind = type == JSMN_OBJECT ? "an object" : type == JSMN_STRING ? "a string" : "a number";
  if (*value < 0)
    return fail(err, BERTC_ERR_FORMAT, "%s has no %s%s; not a bertc manifest, or corrupt: recompile the artifact", path,
                where, key);
  if (t[*value].type != type)
    return fail(err, BERTC_ERR_FORMAT, "%s: %s%s is not %s; the artifact is corrupt: recompile it", path, where, key,
                kind);
  return BERTC_OK;
}

/* Parse a manifest (json[0..len), not NUL-terminated) and take the loader's two facts from it.
 * path names the file in messages. */
static bertc_status parse_manifest(const char *json, size_t len, const char *path, bertc_manifest_facts *out,
                                   char *err) {
  if ((int64_t)len > BERTC_MANIFEST_MAX_BYTES)
    return fail(err, BERTC_ERR_FORMAT, "%s is %lld bytes, more than the %lld MiB a manifest may hold; is it the one bertc "
                "wrote? recompile the artifact", path, (long long)len, (long long)(BERTC_MANIFEST_MAX_BYTES >> 20));
  const char *nul = memchr(json, 0, len);
  if (nul)
    return fail(err, BERTC_ERR_FORMAT, "%s holds a NUL byte at byte %lld, which JSON cannot; the artifact is corrupt: "
                "recompile it", path, (long long)(nul - json));
  jsmn_parser parser;
  jsmn_init(&parser);
  int n = jsmn_parse(&parser, json, len, NULL, 0); /* a first pass counts the tokens */
  if (n > BERTC_MANIFEST_MAX_TOKENS)
    return fail(err, BERTC_ERR_FORMAT, "%s holds %d JSON values, more than the %d the loader reads; is it the one bertc "
                "wrote? recompile the artifact", path, n, BERTC_MANIFEST_MAX_TOKENS);
  jsmntok_t *t = n > 0 ? malloc(sizeof *t * (size_t)n) : NULL;
  if (n > 0 && !t) return fail(err, BERTC_ERR_MEMORY, "out of memory reading %s (%d JSON values)", path, n);
  if (n > 0) {
    jsmn_init(&parser);
    n = jsmn_parse(&parser, json, len, t, (unsigned)n);
  }
  bertc_status st = BERTC_OK;
  int version = -1, files = -1, weights = -1, sha = -1;
  int misplaced = n >= 1 ? json_misplaced(t, n) : -1;
  if (n < 1 || t[0].type != JSMN_OBJECT || json_next(t, n, 0) != n || misplaced >= 0) {
    const char *why = n == JSMN_ERROR_PART ? "it ends early: truncated?"
                      : n == JSMN_ERROR_INVAL || n == JSMN_ERROR_NOMEM ? "a character out of place"
                      : n < 1 ? "it is empty"
                      : t[0].type != JSMN_OBJECT || json_next(t, n, 0) != n ? "it is not one JSON object"
                      : "a key without a value, or a missing colon or comma";
    unsigned at = misplaced >= 0 ? (unsigned)t[misplaced].start : parser.pos;
    st = fail(err, BERTC_ERR_FORMAT, "%s is not valid JSON (%s, near byte %u); the artifact is corrupt: recompile it",
              path, why, at);
  }
  if (st == BERTC_OK) st = json_require(json, t, n, 0, "format_version", JSMN_PRIMITIVE, "", &version, path, err);
  if (st == BERTC_OK) st = json_require(json, t, n, 0, "files", JSMN_OBJECT, "", &files, path, err);
  if (st == BERTC_OK)
    st = json_require(json, t, n, files, "weights.bin", JSMN_OBJECT, "files -> ", &weights, path, err);
  if (st == BERTC_OK)
    st = json_require(json, t, n, weights, "sha256", JSMN_STRING, "files -> weights.bin -> ", &sha, path, err);
  if (st == BERTC_OK) {
    /* an integer of at most 9 digits: a float, a bool or 1e3 is not a format version */
    const char *v = json + t[version].start;
    int digits = t[version].end - t[version].start, ok = digits >= 1 && digits <= 9;
    out->format_version = 0;
    for (int i = 0; ok && i < digits; i++) {
      ok = v[i] >= '0' && v[i] <= '9';
      out->format_version = out->format_version * 10 + (v[i] - '0');
    }
    if (!ok)
      st = fail(err, BERTC_ERR_FORMAT, "%s: format_version is %.*s, not a whole number; the artifact is corrupt: "
                "recompile it", path, digits > 40 ? 40 : digits, v);
  }
  if (st == BERTC_OK) {
    const char *h = json + t[sha].start;
    int digits = t[sha].end - t[sha].start, ok = digits == 64;
    for (int i = 0; ok && i < 64; i++) ok = (h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f');
    if (!ok)
      st = fail(err, BERTC_ERR_FORMAT, "%s: files -> weights.bin -> sha256 is not 64 lowercase hex digits; the artifact "
                "is corrupt: recompile it", path);
    else {
      memcpy(out->weights_sha256, h, 64);
      out->weights_sha256[64] = 0;
    }
  }
  free(t);
  return st;
}

/* parse_manifest, then the facts against what this library was compiled with. */
static bertc_status check_manifest(const char *json, size_t len, const char *path, int format_version, const char *sha,
                                   char *err) {
  bertc_manifest_facts facts;
  bertc_status st = parse_manifest(json, len, path, &facts, err);
  if (st != BERTC_OK) return st;
  if (facts.format_version != format_version)
    return fail(err, BERTC_ERR_FORMAT, "%s: format_version is not %d but %d (made by another bertc); recompile the "
                "artifact with this one", path, format_version, facts.format_version);
  if (strcmp(facts.weights_sha256, sha) != 0)
    return fail(err, BERTC_ERR_FORMAT, "%s names other weights than this library was compiled with; recompile the "
                "artifact", path);
  return BERTC_OK;
}

/* weights.bin's bytes against the compiled size and sha256. */
static bertc_status check_weights(const void *data, size_t len, const char *path, int64_t expected_bytes,
                                  const char *sha, char *err) {
  if ((int64_t)len != expected_bytes)
    return fail(err, BERTC_ERR_FORMAT, "%s is %lld bytes, expected %lld (truncated or replaced?); recompile the artifact",
                path, (long long)len, (long long)expected_bytes);
  char digest[65];
  bertc_sha256_hex(data, (uint64_t)len, digest);
  if (strcmp(digest, sha) != 0)
    return fail(err, BERTC_ERR_CHECKSUM, "%s: sha256 %s does not match the compiled %s (altered weights); recompile "
                "the artifact", path, digest, sha);
  return BERTC_OK;
}

/* The whole of a regular file of at most `limit` bytes, NUL-terminated (*len excludes the NUL). */
static bertc_status read_file(const char *path, int64_t limit, char **out, size_t *len, char *err) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return fail(err, BERTC_ERR_IO, "cannot read %s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return fail(err, BERTC_ERR_IO, "%s is not a regular file; the artifact is corrupt: recompile it", path);
  }
  if (st.st_size > limit) {
    close(fd);
    return fail(err, BERTC_ERR_FORMAT, "%s is %lld bytes, more than the %lld MiB it may hold; is it the one bertc "
                "wrote? recompile the artifact", path, (long long)st.st_size, (long long)(limit >> 20));
  }
  size_t size = (size_t)st.st_size, n = 0;
  char *buf = malloc(size + 1);
  if (!buf) {
    close(fd);
    return fail(err, BERTC_ERR_MEMORY, "out of memory reading %s (%lld bytes)", path, (long long)size);
  }
  while (n < size) {
    ssize_t r = read(fd, buf + n, size - n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    n += (size_t)r;
  }
  close(fd);
  if (n != size) {
    free(buf);
    return fail(err, BERTC_ERR_IO, "cannot read all of %s (%lld of %lld bytes; did it change while being read?)", path,
                (long long)n, (long long)size);
  }
  buf[n] = 0;
  *out = buf;
  *len = n;
  return BERTC_OK;
}

/* Check dir/manifest.json against the compiled format version and weights sha256, then map
 * dir/weights.bin (expected_bytes long, hashing to sha) read-only into *map / *len. */
static bertc_status open_weights(const char *dir, int format_version, const char *sha, int64_t expected_bytes,
                                 void **map_out, size_t *len_out, char *err) {
  char path[4096];
  snprintf(path, sizeof path, "%s/manifest.json", dir);
  char *manifest = NULL;
  size_t manifest_len = 0;
  bertc_status status = read_file(path, BERTC_MANIFEST_MAX_BYTES, &manifest, &manifest_len, err);
  if (status != BERTC_OK) return status;
  status = check_manifest(manifest, manifest_len, path, format_version, sha, err);
  free(manifest);
  if (status != BERTC_OK) return status;

  snprintf(path, sizeof path, "%s/weights.bin", dir);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return fail(err, BERTC_ERR_IO, "cannot open %s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    return fail(err, BERTC_ERR_IO, "cannot read %s: %s", path, strerror(errno));
  }
  if (st.st_size != expected_bytes) { /* refused by its size before a byte is read */
    close(fd);
    return check_weights(NULL, (size_t)st.st_size, path, expected_bytes, sha, err);
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
  status = check_weights(map, (size_t)st.st_size, path, expected_bytes, sha, err);
  if (status != BERTC_OK) {
    if (map) munmap(map, (size_t)st.st_size);
    return status;
  }
  *map_out = map;
  *len_out = (size_t)st.st_size;
  return BERTC_OK;
}

/* Copy one int64 input [batch, seq] into dst [B, S] (S: the compiled length, or seq itself for a dynamic
 * program), padding with `fill` inside the given rows and 0 outside, and reject any value outside [0, limit). */
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
 * an offset of -1 means the program has no such input). A static program (dynamic 0) reads [B, S]:
 * a shorter input is padded to S. A dynamic one runs at the input's own length, so the slots hold
 * [B, seq], contiguous and unpadded, for any seq in 1..S (its bound). */
static bertc_status check_inputs(char *err, char *base, int64_t B, int64_t S, int dynamic, int64_t vocab,
                                 int64_t type_vocab, int64_t ids_off, int64_t mask_off, int64_t types_off,
                                 const int64_t *ids, const int64_t *mask, const int64_t *types, int64_t batch,
                                 int64_t seq) {
  if (!ids) return fail(err, BERTC_ERR_ARGUMENT, "input_ids is NULL");
  if (batch != B)
    return fail(err, BERTC_ERR_INPUT, "batch %lld differs from the compiled batch %lld; recompile with --batch",
                (long long)batch, (long long)B);
  if (seq < 1 || seq > S)
    return fail(err, BERTC_ERR_INPUT, "sequence length %lld is outside 1..%lld (%s); truncate or recompile",
                (long long)seq, (long long)S, dynamic ? "the compiled --max-seq-len" : "the compiled --seq-len");
  const int64_t row = dynamic ? seq : S;
  if (mask_off < 0) { /* no mask in the program: padding, given or added here, would be attended */
    int padded = !dynamic && seq < S;
    for (int64_t i = 0; mask && i < batch * seq && !padded; i++) padded = mask[i] != 1;
    if (padded)
      return fail(err, BERTC_ERR_INPUT, "this model was compiled without an attention_mask input (traced or "
                  "exported on input_ids alone), so padding would be attended; pass %lld unpadded tokens, or trace "
                  "or export it again with (input_ids, attention_mask)", (long long)S);
  }
  bertc_status st = check_and_copy(err, (int64_t *)(base + ids_off), ids, B, row, batch, seq, vocab, 0, "token id",
                                   "; was the artifact compiled from a different tokenizer?");
  if (st == BERTC_OK && mask_off >= 0)
    st = check_and_copy(err, (int64_t *)(base + mask_off), mask, B, row, batch, seq, 2, 1, "attention mask value",
                        " (expected 0 or 1)");
  if (st == BERTC_OK && types_off >= 0)
    st = check_and_copy(err, (int64_t *)(base + types_off), types, B, row, batch, seq, type_vocab > 0 ? type_vocab : 1,
                        0, "token type id", "; pass zeros or no token_type_ids (RoBERTa-family models have only type 0)");
  return st;
}

#endif
