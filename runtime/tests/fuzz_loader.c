/* fuzz_loader: a libFuzzer target for everything the loader reads from disk or from a caller, through
 * the same functions a loaded artifact runs (src/loader.h). The first byte picks what the rest is:
 *
 *   '0' (0 mod 3)  manifest.json: parse_manifest and check_manifest
 *   '1' (1 mod 3)  weights.bin: check_weights (size, then sha256 over any length)
 *   '2' (2 mod 3)  bertc_run's int64 inputs: check_inputs, with a header byte each for the compiled
 *                  batch and length, the call's batch and length, vocab, type vocab, which inputs exist
 *                  and whether the program is dynamic (unpadded [batch, seq] slots)
 *   't'            tokenizer.bin (src/tokenizer.h): a byte for the token room, two for the length of a text,
 *                  the text, then the file: tok_parse, and tok_encode of that text and of fixed ones
 *   'h'            head.bin (src/head.h): head_parse, then head_row on hidden states of the file's width
 *
 * Built with -DBERTC_FUZZ, the tokenizer's and the head's own sha256 is computed but not compared: the fuzzer
 * could never forge it, and what it guards is what the fuzzer is here to reach.
 * Besides what ASan and UBSan catch, it aborts when a result breaks the contract: a refusal whose
 * message does not name the file, facts that are not what the parse promised, or an accepted input
 * copied with a value outside its range. `make fuzz` builds and runs it from runtime/tests/fuzz_corpus
 * with runtime/tests/fuzz_loader.dict; `make fuzz-smoke` is CI's short run. Build by hand:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iruntime/include -Iruntime/src \
 *     runtime/tests/fuzz_loader.c runtime/src/sha256.c -o fuzz_loader */
#pragma GCC diagnostic ignored "-Wunused-function" /* the file-reading half of loader.h */
#include "head.h"
#include "loader.h"
#include "tokenizer.h"

#include <stdint.h>

#define COMPILED_SHA "e5646e3361aa0380a317230f92f5f22a606dee1fc82915c67e45256b37383c57"
#define COMPILED_VERSION 2

static void expect(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "fuzz_loader: %s\n", what);
    abort();
  }
}

static void fuzz_manifest(const uint8_t *data, size_t size) {
  char *json = malloc(size ? size : 1); /* exactly `size` bytes: ASan sees a read past the end */
  memcpy(json, data, size);
  char err[512] = "";
  bertc_manifest_facts facts;
  bertc_status st = parse_manifest(json, size, "manifest.json", &facts, err);
  if (st == BERTC_OK) {
    expect(facts.format_version >= 0 && strlen(facts.weights_sha256) == 64, "parse_manifest's facts out of range");
    for (int i = 0; i < 64; i++)
      expect((facts.weights_sha256[i] >= '0' && facts.weights_sha256[i] <= '9') ||
                 (facts.weights_sha256[i] >= 'a' && facts.weights_sha256[i] <= 'f'),
             "parse_manifest accepted a sha256 that is not lowercase hex");
  } else {
    expect(strstr(err, "manifest.json") && strstr(err, "recompile"), "a manifest refusal without the file or the fix");
  }
  char err2[512] = "";
  bertc_status checked = check_manifest(json, size, "manifest.json", COMPILED_VERSION, COMPILED_SHA, err2);
  expect(st == BERTC_OK || checked == st, "check_manifest and parse_manifest disagree");
  if (checked == BERTC_OK)
    expect(facts.format_version == COMPILED_VERSION && !strcmp(facts.weights_sha256, COMPILED_SHA),
           "check_manifest accepted other facts");
  free(json);
}

static void fuzz_weights(const uint8_t *data, size_t size) {
  if (size < 1) return;
  const size_t len = size - 1;
  uint8_t *weights = malloc(len ? len : 1);
  memcpy(weights, data + 1, len);
  char err[512] = "";
  int64_t expected = (int64_t)len + (data[0] & 1); /* the right size or one byte more */
  bertc_status st = check_weights(weights, len, "weights.bin", expected, COMPILED_SHA, err);
  expect(st != BERTC_OK, "check_weights accepted weights that do not hash to the compiled sha256");
  expect(strstr(err, "weights.bin") && strstr(err, "recompile"), "a weights refusal without the file or the fix");
  expect((data[0] & 1) ? st == BERTC_ERR_FORMAT : st == BERTC_ERR_CHECKSUM, "a weights refusal with the wrong code");
  free(weights);
}

/* One int64 input of n values, or NULL: values from one signed byte each (near the ranges) or, when
 * `wide`, eight (anywhere); zeros when the data runs out. Exactly n values long, for ASan. */
static int64_t *input_values(const uint8_t **data, size_t *size, int64_t n, int present, int wide) {
  if (!present) return NULL;
  int64_t *v = malloc(sizeof *v * (size_t)(n > 0 ? n : 1));
  for (int64_t i = 0; i < n; i++) {
    const size_t take = wide ? 8 : 1;
    v[i] = 0;
    if (*size >= take) {
      if (wide) memcpy(&v[i], *data, 8);
      else v[i] = (int8_t)**data;
      *data += take;
      *size -= take;
    }
  }
  return v;
}

static void fuzz_inputs(const uint8_t *data, size_t size) {
  if (size < 8) return;
  const int64_t B = 1 + data[0] % 4, S = 1 + data[1] % 24;
  const int64_t batch = data[2] % 6, seq = (int8_t)data[3];
  const int64_t vocab = 1 + data[4] % 200, type_vocab = data[5] % 3;
  const int flags = data[6], wide = data[7] & 1;
  data += 8;
  size -= 8;
  /* the arena: ids, mask and types slots of B x S int64 each, where the program has them */
  const int64_t slot = B * S * 8;
  char *arena = malloc((size_t)(3 * slot));
  const int64_t mask_off = (flags & 1) ? slot : -1, types_off = (flags & 2) ? 2 * slot : -1;
  const int64_t n = batch * (seq > 0 ? seq : 0); /* what the caller passes: batch x seq */
  int64_t *ids = input_values(&data, &size, n, !(flags & 4), wide);
  int64_t *mask = input_values(&data, &size, n, !(flags & 8), wide);
  int64_t *types = input_values(&data, &size, n, !(flags & 16), wide);
  char err[512] = "";
  const int dynamic = (flags & 32) != 0;
  bertc_status st = check_inputs(err, arena, B, S, dynamic, vocab, type_vocab, 0, mask_off, types_off, ids, mask, types,
                                 batch, seq);
  if (st == BERTC_OK) {
    const int64_t *dst = (const int64_t *)arena, n_copied = B * (dynamic ? seq : S);
    expect(seq >= 1 && seq <= S, "an accepted length outside 1..S");
    for (int64_t i = 0; i < n_copied; i++) expect(dst[i] >= 0 && dst[i] < vocab, "an accepted token id out of range");
    if (mask_off >= 0)
      for (int64_t i = 0; i < n_copied; i++) expect(dst[slot / 8 + i] == 0 || dst[slot / 8 + i] == 1, "an accepted mask value");
    if (types_off >= 0)
      for (int64_t i = 0; i < n_copied; i++)
        expect(dst[2 * slot / 8 + i] >= 0 && dst[2 * slot / 8 + i] < (type_vocab > 0 ? type_vocab : 1),
               "an accepted token type out of range");
  } else {
    expect(err[0] != 0, "an input refusal without a message");
  }
  free(ids);
  free(mask);
  free(types);
  free(arena);
}

static void fuzz_tokenizer(const uint8_t *data, size_t size) {
  if (size < 3) return;
  const int64_t cap = 2 + data[0] % 40;
  size_t text_len = (size_t)data[1] | (size_t)data[2] << 8;
  data += 3;
  size -= 3;
  if (text_len > size) text_len = size;
  char *text = malloc(text_len ? text_len : 1);
  memcpy(text, data, text_len);
  const size_t len = size - text_len;
  uint8_t *file = malloc(len ? len : 1); /* exactly the file's bytes (malloc: aligned as read_file's) */
  memcpy(file, data + text_len, len);
  bertc_tokenizer t;
  char err[512] = "";
  if (tok_parse(file, len, "tokenizer.bin", &t, err) == BERTC_OK) {
    static const char *fixed[] = {"", " ", "Hello, World! [MASK] héllo 中文 가 \xf0\x9f\x98\x80", "\xff bad", "a\xcc\x81\xcc\x96\x62"};
    int64_t ids[64], types[64], count = -1;
    for (int k = -1; k < 5; k++) {
      const char *s = k < 0 ? text : fixed[k];
      const int64_t n = k < 0 ? (int64_t)text_len : (int64_t)strlen(s);
      if (tok_encode(&t, s, n, ids, types, cap, &count, err) != BERTC_OK) {
        expect(strstr(err, "UTF-8") != NULL || strstr(err, "memory") != NULL, "a tokenizer refusal that names no cause");
        continue;
      }
      expect(count >= 2 && count <= cap, "tok_encode wrote outside the room it was given");
      expect(ids[0] == t.cls && ids[count - 1] == t.sep, "tok_encode lost [CLS] or [SEP]");
    }
  } else {
    expect(strstr(err, "tokenizer.bin") && strstr(err, "recompile"), "a tokenizer refusal without the file or the fix");
  }
  free(file);
  free(text);
}

static void fuzz_head(const uint8_t *data, size_t size) {
  uint8_t *file = malloc(size ? size : 1);
  memcpy(file, data, size);
  bertc_head *h = malloc(sizeof *h);
  char err[512] = "";
  if (head_parse(file, size, "head.bin", h, err) == BERTC_OK) {
    const int64_t seq = 3, mask[3] = {1, 0, 1};
    float *hidden = calloc((size_t)(seq * h->width), sizeof *hidden), *pooled = calloc(h->width, sizeof *pooled);
    float *scratch = calloc(2 * (size_t)h->widest, sizeof *scratch), *out = calloc(2 * (size_t)h->out_width, sizeof *out);
    for (int64_t i = 0; i < seq * (int64_t)h->width; i++) hidden[i] = (float)(i % 7) - 3;
    head_row(h, hidden, pooled, mask, seq, scratch, out, out + h->out_width);
    free(hidden); free(pooled); free(scratch); free(out);
  } else {
    expect(strstr(err, "head.bin") && strstr(err, "recompile"), "a head refusal without the file or the fix");
  }
  free(h);
  free(file);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  if (data[0] == 't' || data[0] == 'h') {
    (data[0] == 't' ? fuzz_tokenizer : fuzz_head)(data + 1, size - 1);
    return 0;
  }
  switch (data[0] % 3) {
    case 0: fuzz_manifest(data + 1, size - 1); break;
    case 1: fuzz_weights(data + 1, size - 1); break;
    default: fuzz_inputs(data + 1, size - 1); break;
  }
  return 0;
}
