/* The artifact's tokenizer: tokenizer.bin (written by bertc/tokenizer.py, whose docstring has the layout)
 * read and checked by tok_parse, then text -> token ids by tok_encode, exactly as the Hugging Face
 * tokenizers pipeline it was compiled from:
 *
 *   UTF-8 --split out added tokens ([CLS], [MASK]... typed in the text)--> each other piece:
 *         map1 (clean text, CJK padding, NFD) -> canonical reordering -> map2 (drop marks, lowercase)
 *         --split out normalized added tokens (<unk> typed as <UNK>)--> each other piece:
 *         split on whitespace, isolate punctuation -> greedy longest-match WordPiece
 *   -> [CLS] tokens [SEP], the text's tokens cut so that the whole fits in `cap`
 *
 * Internal; static functions taking buffers, like loader.h, so that a fuzzer can drive tok_parse and
 * tok_encode directly. A parsed tokenizer is read-only: any number of threads may encode with it. */
#ifndef BERTC_TOKENIZER_H
#define BERTC_TOKENIZER_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"

enum { TOK_VERSION = 5, TOK_WORDPIECE = 1, TOK_BYTE_BPE = 2, TOK_UNIGRAM = 3, TOK_HEADER = 96, TOK_SECTIONS = 17 };
enum { TOK_CLEAN = 1, TOK_CJK = 2, TOK_STRIP = 4, TOK_LOWER = 8, TOK_PREFIX_SPACE = 16, TOK_IGNORE_MERGES = 32 };
/* byte-level BPE: a code point's class for GPT-2's split, in the same top byte (whitespace is TOK_WS) */
enum { TOK_LETTER = 2, TOK_NUMBER = 4 };
/* Unigram: its normalizer and pre-tokenizer steps (flags), and a code point's grapheme-cluster properties
 * (UAX #29: the low bits of its run's info; whitespace is TOK_WS in the top byte) */
enum { TOK_PRECOMPILED = 1 << 8, TOK_COLLAPSE = 1 << 9, TOK_WS_SPLIT = 1 << 10, TOK_META_SPLIT = 1 << 11,
       TOK_PREPEND_ALWAYS = 1 << 12, TOK_PREPEND_FIRST = 1 << 13 };
enum { GCB_OTHER, GCB_CR, GCB_LF, GCB_CONTROL, GCB_EXTEND, GCB_ZWJ, GCB_RI, GCB_PREPEND, GCB_SPACINGMARK, GCB_L, GCB_V,
       GCB_T, GCB_LV, GCB_LVT };
enum { TOK_EXT_PICT = 16, INCB_CONSONANT = 1, INCB_EXTEND = 2, INCB_LINKER = 3 };
/* a code point's flags: the top byte of its run's info */
enum { TOK_WS = 1, TOK_PUNCT = 2, TOK_DROP1 = 4, TOK_SPACE1 = 8, TOK_PAD1 = 16, TOK_DROP2 = 32, TOK_HANGUL = 64 };
#define TOK_ITSELF 0xFFFFFFFFu   /* a map entry's length when the character maps to itself */
#define TOK_ADDED_ID 0x1FFFFFFFu /* an added token's id; bit 30: lstrip, bit 31: rstrip (the whitespace beside it goes with it) */
#define TOK_ADDED_NORMALIZED (1u << 29) /* its text is its content normalized, matched in normalized text (WordPiece) */
#define TOK_MAX_CP 0x110000u
#define TOK_MAX_BYTES ((int64_t)64 << 20) /* of text; tokenizer.bin itself may be as large */

typedef struct {
  uint32_t kind, flags, max_length, max_word_chars, longest1, longest2, types[3];
  uint32_t replacement; /* Unigram: the code point Metaspace writes for a space */
  int32_t unk, cls, sep, pad;
  const uint32_t *run_start, *run_info, *maps, *pool, *ccc, *vocab_off, *hash, *added;
  const uint8_t *vocab, *added_bytes, *prefix;
  const uint32_t *merges, *merge_hash; /* byte-level BPE: (left, right, merged) by rank; slot = rank + 1 */
  const uint8_t *scores;               /* Unigram: each piece's f64 log probability (read with memcpy) */
  const uint32_t *cm, *cm_hash;        /* Unigram's charsmap: (key off, key len, value off, value len); slot = entry + 1 */
  const uint8_t *cm_bytes;
  uint32_t n_cm, n_cm_bytes, n_cm_hash, cm_longest, cm_longest_value, vocab_longest;
  double min_score;
  uint32_t n_runs, n_maps, n_pool, n_ccc, n_vocab, n_vocab_bytes, n_hash, n_added, n_added_bytes, prefix_len;
  uint32_t n_merges, n_merge_hash;
  int64_t byte_id[256]; /* byte-level BPE: each byte's own token */
  uint8_t added_first[32], normalized_first[32]; /* bit sets: the first bytes of the added tokens matched in the raw
                                                    * text, and of those matched in normalized text */
  uint32_t n_normalized; /* added tokens matched in normalized text */
} bertc_tokenizer;

/* The id of prefix + s[0..n) in the vocabulary, -1 if absent (FNV-1a, as tokenizer.py hashes). */
static int64_t tok_lookup(const bertc_tokenizer *t, const uint8_t *s, uint32_t n, int with_prefix) {
  uint32_t h = 0x811C9DC5u, pn = with_prefix ? t->prefix_len : 0;
  for (uint32_t i = 0; i < pn; i++) h = (h ^ t->prefix[i]) * 0x01000193u;
  for (uint32_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x01000193u;
  for (uint32_t probe = 0, slot = h & (t->n_hash - 1); probe < t->n_hash; probe++, slot = (slot + 1) & (t->n_hash - 1)) {
    uint32_t id1 = t->hash[slot];
    if (!id1) return -1;
    const uint8_t *v = t->vocab + t->vocab_off[id1 - 1];
    uint32_t vn = t->vocab_off[id1] - t->vocab_off[id1 - 1];
    if (vn == pn + n && memcmp(v, t->prefix, pn) == 0 && memcmp(v + pn, s, n) == 0) return id1 - 1;
  }
  return -1;
}

/* Check tokenizer.bin's bytes (kept by the caller for as long as t is used) and point t into them.
 * Every offset, count, index and code point is range-checked here, once, so that tok_encode need not. */
static bertc_status tok_parse(const uint8_t *d, size_t len, const char *path, bertc_tokenizer *t, char *err) {
  memset(t, 0, sizeof *t);
  const size_t header = TOK_HEADER + 8 * TOK_SECTIONS;
  const bertc_status checked = blob_check(d, len, header, "BTOK", TOK_VERSION, "tokenizer", path, err);
  if (checked != BERTC_OK) return checked;
  t->kind = blob_u32(d + 40);
  if (t->kind < TOK_WORDPIECE || t->kind > TOK_UNIGRAM)
    return fail(err, BERTC_ERR_FORMAT, "%s holds a tokenizer of kind %u, which this runtime does not read; "
                "recompile the artifact with this bertc", path, t->kind);
  t->flags = blob_u32(d + 44);
  t->max_length = blob_u32(d + 48);
  t->unk = (int32_t)blob_u32(d + 52);
  t->cls = (int32_t)blob_u32(d + 56);
  t->sep = (int32_t)blob_u32(d + 60);
  t->pad = (int32_t)blob_u32(d + 64);
  for (int i = 0; i < 3; i++) t->types[i] = blob_u32(d + 68 + 4 * i);
  t->max_word_chars = blob_u32(d + 80);
  t->replacement = blob_u32(d + 92);
  t->longest1 = blob_u32(d + 84);
  t->longest2 = blob_u32(d + 88);
  /* sections: offset and count; the element size of each */
  static const uint32_t size[TOK_SECTIONS] = {4, 4, 16, 4, 4, 4, 1, 4, 12, 1, 1, 12, 4, 8, 16, 1, 4};
  const uint8_t *sec[TOK_SECTIONS];
  uint32_t count[TOK_SECTIONS];
  for (int s = 0; s < TOK_SECTIONS; s++) {
    uint32_t off = blob_u32(d + TOK_HEADER + 8 * s);
    count[s] = blob_u32(d + TOK_HEADER + 8 * s + 4);
    if (off < header || off % 4 || off > len || (uint64_t)count[s] * size[s] > len - off)
      return fail(err, BERTC_ERR_FORMAT, "%s: section %d lies outside the file; recompile the artifact", path, s);
    sec[s] = d + off;
  }
  t->run_start = (const uint32_t *)sec[0];
  t->run_info = (const uint32_t *)sec[1];
  t->maps = (const uint32_t *)sec[2];
  t->pool = (const uint32_t *)sec[3];
  t->ccc = (const uint32_t *)sec[4];
  t->vocab_off = (const uint32_t *)sec[5];
  t->vocab = sec[6];
  t->hash = (const uint32_t *)sec[7];
  t->added = (const uint32_t *)sec[8];
  t->added_bytes = sec[9];
  t->prefix = sec[10];
  t->merges = (const uint32_t *)sec[11];
  t->merge_hash = (const uint32_t *)sec[12];
  t->n_merges = count[11];
  t->n_merge_hash = count[12];
  t->scores = sec[13];
  t->cm = (const uint32_t *)sec[14];
  t->cm_bytes = sec[15];
  t->cm_hash = (const uint32_t *)sec[16];
  t->n_cm = count[14];
  t->n_cm_bytes = count[15];
  t->n_cm_hash = count[16];
  t->n_runs = count[0];
  t->n_maps = count[2];
  t->n_pool = count[3];
  t->n_ccc = count[4];
  t->n_vocab = count[5] ? count[5] - 1 : 0;
  t->n_vocab_bytes = count[6];
  t->n_hash = count[7];
  t->n_added = count[8];
  t->n_added_bytes = count[9];
  t->prefix_len = count[10];
  const char *bad = NULL;
  if (count[1] != t->n_runs || t->n_runs == 0 || t->run_start[0] != 0) bad = "code point runs";
  for (uint32_t i = 1; !bad && i < t->n_runs; i++)
    if (t->run_start[i] <= t->run_start[i - 1] || t->run_start[i] >= TOK_MAX_CP) bad = "code point runs";
  for (uint32_t i = 0; !bad && i < t->n_runs; i++)
    if (t->kind == TOK_WORDPIECE && (t->run_info[i] & 0xFFFFFF) >= t->n_maps) bad = "map entry of a run";
  if (!bad && (t->longest1 < 3 || t->longest1 > 64 || t->longest2 < 1 || t->longest2 > 64)) bad = "map lengths";
  for (uint32_t i = 0; !bad && i < 2 * t->n_maps; i++) {
    uint32_t off = t->maps[2 * i], n = t->maps[2 * i + 1];
    if (n != TOK_ITSELF && (off > t->n_pool || n > t->n_pool - off || n > (i % 2 ? t->longest2 : t->longest1)))
      bad = "map entry";
  }
  for (uint32_t i = 0; !bad && i < t->n_pool; i++)
    if (t->pool[i] >= TOK_MAX_CP || (t->pool[i] >= 0xD800 && t->pool[i] <= 0xDFFF)) bad = "mapped code point";
  for (uint32_t i = 1; !bad && i < t->n_ccc; i++)
    if (t->ccc[i] <= t->ccc[i - 1]) bad = "combining classes";
  if (!bad && (t->n_vocab == 0 || t->vocab_off[0] != 0 || t->vocab_off[t->n_vocab] != t->n_vocab_bytes))
    bad = "vocabulary";
  for (uint32_t i = 0; !bad && i < t->n_vocab; i++)
    if (t->vocab_off[i + 1] < t->vocab_off[i]) bad = "vocabulary";
  if (!bad && (t->n_hash == 0 || (t->n_hash & (t->n_hash - 1)) || t->n_hash < t->n_vocab)) bad = "hash table";
  for (uint32_t i = 0; !bad && i < t->n_hash; i++)
    if (t->hash[i] > t->n_vocab) bad = "hash table";
  for (uint32_t i = 0; !bad && i < t->n_added; i++) {
    uint32_t off = t->added[3 * i + 1], n = t->added[3 * i + 2];
    const int normalized = t->added[3 * i] & TOK_ADDED_NORMALIZED ? 1 : 0;
    if (n == 0 || off > t->n_added_bytes || n > t->n_added_bytes - off || (t->added[3 * i] & TOK_ADDED_ID) >= t->n_vocab ||
        (normalized && t->kind != TOK_WORDPIECE))
      bad = "added token";
    else {
      uint8_t *first = normalized ? t->normalized_first : t->added_first;
      first[t->added_bytes[off] >> 3] |= (uint8_t)(1u << (t->added_bytes[off] & 7));
      t->n_normalized += (uint32_t)normalized;
    }
  }
  if (!bad && (t->unk < 0 || t->cls < 0 || t->sep < 0 || t->pad < 0 || t->max_length < 2 ||
               (t->kind == TOK_WORDPIECE && t->max_word_chars == 0)))
    bad = "special tokens or lengths";
  for (uint32_t i = 0; !bad && i < t->n_merges; i++)
    if (t->merges[3 * i] >= t->n_vocab || t->merges[3 * i + 1] >= t->n_vocab || t->merges[3 * i + 2] >= t->n_vocab)
      bad = "merges";
  if (!bad && t->n_merges && (t->n_merge_hash == 0 || (t->n_merge_hash & (t->n_merge_hash - 1)))) bad = "merges";
  for (uint32_t i = 0; !bad && i < t->n_merge_hash; i++)
    if (t->merge_hash[i] > t->n_merges) bad = "merges";
  if (!bad && t->kind == TOK_UNIGRAM && (count[13] != t->n_vocab || t->replacement >= TOK_MAX_CP)) bad = "scores";
  t->min_score = 0;
  for (uint32_t i = 0; !bad && i < count[13]; i++) {
    double v;
    memcpy(&v, t->scores + 8 * (size_t)i, 8);
    if (v != v) bad = "scores";
    else if (i == 0 || v < t->min_score) t->min_score = v;
  }
  for (uint32_t i = 0; !bad && i < t->n_cm; i++) {
    const uint32_t *e = t->cm + 4 * i;
    if (e[1] == 0 || e[1] > 64 || e[0] > t->n_cm_bytes || e[1] > t->n_cm_bytes - e[0] || e[2] > t->n_cm_bytes ||
        e[3] > 256 || e[3] > t->n_cm_bytes - e[2]) bad = "charsmap";
    else {
      if (e[1] > t->cm_longest) t->cm_longest = e[1];
      if (e[3] > t->cm_longest_value) t->cm_longest_value = e[3];
    }
  }
  if (!bad && t->n_cm && (t->n_cm_hash == 0 || (t->n_cm_hash & (t->n_cm_hash - 1)))) bad = "charsmap";
  for (uint32_t i = 0; !bad && i < t->n_cm_hash; i++)
    if (t->cm_hash[i] > t->n_cm) bad = "charsmap";
  for (uint32_t i = 0; !bad && i < t->n_vocab; i++)
    if (t->vocab_off[i + 1] - t->vocab_off[i] > t->vocab_longest) t->vocab_longest = t->vocab_off[i + 1] - t->vocab_off[i];
  if (bad) return fail(err, BERTC_ERR_FORMAT, "%s: inconsistent %s (damaged?); recompile the artifact", path, bad);
  for (int b = 0; b < 256; b++) {
    const uint8_t byte = (uint8_t)b;
    t->byte_id[b] = tok_lookup(t, &byte, 1, 0);
    if (t->byte_id[b] < 0) t->byte_id[b] = t->unk;
  }
  return BERTC_OK;
}

/* ---- text -> code points -> normalized code points ------------------------------------------ */

/* Decode UTF-8 (the shortest form, no surrogates, at most U+10FFFF, as Python and Rust require) into cp;
 * the number of code points, or -1 - (offset of the first bad byte). */
static int64_t tok_decode(const uint8_t *s, int64_t n, uint32_t *cp) {
  int64_t i = 0, k = 0;
  while (i < n) {
    uint32_t c = s[i];
    int len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (!len || i + len > n) return -1 - i;
    if (len > 1) c &= 0x7F >> len;
    for (int j = 1; j < len; j++) {
      if ((s[i + j] & 0xC0) != 0x80) return -1 - i;
      c = c << 6 | (s[i + j] & 0x3F);
    }
    static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
    if ((len > 1 && c < least[len]) || c >= TOK_MAX_CP || (c >= 0xD800 && c <= 0xDFFF)) return -1 - i;
    cp[k++] = c;
    i += len;
  }
  return k;
}

static uint32_t tok_info(const bertc_tokenizer *t, uint32_t cp) {
  uint32_t lo = 0, hi = t->n_runs; /* the last run starting at or before cp */
  while (hi - lo > 1) {
    uint32_t mid = (lo + hi) / 2;
    if (t->run_start[mid] <= cp) lo = mid; else hi = mid;
  }
  return t->run_info[lo];
}

static uint32_t tok_ccc(const bertc_tokenizer *t, uint32_t cp) {
  uint32_t lo = 0, hi = t->n_ccc, key = cp << 8;
  while (lo < hi) {
    uint32_t mid = (lo + hi) / 2;
    if (t->ccc[mid] < key) lo = mid + 1; else hi = mid;
  }
  return lo < t->n_ccc && t->ccc[lo] >> 8 == cp ? (t->ccc[lo] & 0xFF) : 0;
}

/* map1 of cp into out (at most longest1 code points); returns how many */
static int tok_map1(const bertc_tokenizer *t, uint32_t cp, uint32_t *out) {
  uint32_t info = tok_info(t, cp), f = info >> 24;
  if (f & TOK_DROP1) return 0;
  if (f & TOK_SPACE1) { out[0] = ' '; return 1; }
  if (f & TOK_PAD1) { out[0] = ' '; out[1] = cp; out[2] = ' '; return 3; }
  if (f & TOK_HANGUL) { /* Unicode 3.12: the syllable's lead, vowel and (if any) trailing jamo */
    uint32_t s = cp - 0xAC00, tail = 0x11A7 + s % 28;
    out[0] = 0x1100 + s / 588;
    out[1] = 0x1161 + s % 588 / 28;
    if (tail != 0x11A7) out[2] = tail;
    return tail != 0x11A7 ? 3 : 2;
  }
  const uint32_t *e = t->maps + 4 * (info & 0xFFFFFF);
  if (e[1] == TOK_ITSELF) { out[0] = cp; return 1; }
  memcpy(out, t->pool + e[0], sizeof *out * e[1]);
  return (int)e[1];
}

static int tok_map2(const bertc_tokenizer *t, uint32_t cp, uint32_t *out) {
  uint32_t info = tok_info(t, cp);
  if ((info >> 24) & TOK_DROP2) return 0;
  const uint32_t *e = t->maps + 4 * (info & 0xFFFFFF);
  if (e[3] == TOK_ITSELF) { out[0] = cp; return 1; }
  memcpy(out, t->pool + e[2], sizeof *out * e[3]);
  return (int)e[3];
}

/* NFD's canonical ordering: within each run of characters with a nonzero combining class, a stable
 * sort by class (insertion sort: such runs are a few characters long). */
static void tok_reorder(const bertc_tokenizer *t, uint32_t *cp, int64_t n) {
  for (int64_t i = 1; i < n; i++) {
    uint32_t c = cp[i], k = tok_ccc(t, c);
    if (!k) continue;
    int64_t j = i;
    while (j > 0) {
      uint32_t kj = tok_ccc(t, cp[j - 1]);
      if (kj <= k) break; /* a starter (0) ends the run */
      cp[j] = cp[j - 1];
      j--;
    }
    cp[j] = c;
  }
}

/* ---- WordPiece ------------------------------------------------------------------------------- */

static int tok_len8(uint8_t lead) { return lead < 0x80 ? 1 : (lead & 0xE0) == 0xC0 ? 2 : (lead & 0xF0) == 0xE0 ? 3 : 4; }

static int tok_utf8(uint32_t c, uint8_t *o) {
  if (c < 0x80) { o[0] = (uint8_t)c; return 1; }
  if (c < 0x800) { o[0] = (uint8_t)(0xC0 | c >> 6); o[1] = (uint8_t)(0x80 | (c & 0x3F)); return 2; }
  if (c < 0x10000) {
    o[0] = (uint8_t)(0xE0 | c >> 12); o[1] = (uint8_t)(0x80 | (c >> 6 & 0x3F)); o[2] = (uint8_t)(0x80 | (c & 0x3F));
    return 3;
  }
  o[0] = (uint8_t)(0xF0 | c >> 18); o[1] = (uint8_t)(0x80 | (c >> 12 & 0x3F));
  o[2] = (uint8_t)(0x80 | (c >> 6 & 0x3F)); o[3] = (uint8_t)(0x80 | (c & 0x3F));
  return 4;
}

typedef struct {
  int64_t *ids;
  int64_t n, cap; /* tokens written, and room for the text's tokens */
  uint8_t *bytes; /* scratch: one word as UTF-8 */
  int64_t *at;    /* scratch: the byte offset of each of its characters, and its end */
  int64_t *pieces;
} tok_out;

static void tok_push(tok_out *o, int64_t id) {
  if (o->n < o->cap) o->ids[o->n++] = id;
}

/* One word (normalized code points) by greedy longest match: "un", "##aff", "##able"; the unknown token
 * for a word longer than max_word_chars or with a part no vocabulary entry matches. */
static void tok_word(const bertc_tokenizer *t, const uint32_t *w, int64_t n, tok_out *o) {
  if (n > (int64_t)t->max_word_chars) { tok_push(o, t->unk); return; }
  o->at[0] = 0;
  for (int64_t i = 0; i < n; i++) o->at[i + 1] = o->at[i] + tok_utf8(w[i], o->bytes + o->at[i]);
  int64_t k = 0;
  for (int64_t start = 0; start < n;) {
    int64_t end = n, id = -1;
    for (; end > start; end--)
      if ((id = tok_lookup(t, o->bytes + o->at[start], (uint32_t)(o->at[end] - o->at[start]), start > 0)) >= 0) break;
    if (id < 0) { tok_push(o, t->unk); return; }
    o->pieces[k++] = id;
    start = end;
  }
  for (int64_t i = 0; i < k; i++) tok_push(o, o->pieces[i]);
}

/* Scratch for a chunk of text: map1's and map2's outputs, and the word being matched. Grown as needed. */
typedef struct {
  uint32_t *buf1, *buf2;
  int64_t room; /* code points of text it has room for */
  /* byte-level BPE: one piece's bytes, its symbols (id, neighbours), the heap of candidate merges */
  uint8_t *b;
  int64_t *sym, *prev, *next, *heap_new;
  uint64_t *heap; /* rank << 32 | position */
  int64_t b_room, bpe_room;
  /* Unigram: the normalized piece (bytes, then code points), one part's bytes, and its best paths */
  uint8_t *norm;
  uint32_t *ncp;
  double *score;
  int64_t *start, *id, norm_len, norm_room, ncp_room, path_room;
} tok_scratch;

static int tok_grow(const bertc_tokenizer *t, tok_scratch *w, tok_out *o, int64_t n) {
  if (n <= w->room) return 1;
  const int64_t n1 = n * t->longest1, n2 = n1 * t->longest2;
  uint32_t *b1 = realloc(w->buf1, sizeof *b1 * (size_t)n1), *b2 = b1 ? realloc(w->buf2, sizeof *b2 * (size_t)n2) : NULL;
  if (b1) w->buf1 = b1;
  if (b2) w->buf2 = b2;
  uint8_t *bytes = b2 ? realloc(o->bytes, (size_t)n2 * 4) : NULL;
  if (bytes) o->bytes = bytes;
  int64_t *at = bytes ? realloc(o->at, sizeof *at * (size_t)(2 * n2 + 1)) : NULL;
  if (!at) return 0;
  o->at = at;
  o->pieces = at + n2 + 1;
  w->room = n;
  return 1;
}

/* A piece of text between added tokens is normalized in chunks of about this many code points, each
 * ending after an ASCII space, tab or newline: every normalizer maps those to whitespace, where the
 * pre-tokenizer splits (or after a CJK character, which gets a space on each side), so chunks tokenize as the whole would, in memory that does not grow with the text. */
#define TOK_CHUNK 4096

static int tok_is_break(const bertc_tokenizer *t, uint32_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || (c >= 0x80 && (tok_info(t, c) >> 24) & TOK_PAD1);
}

static int tok_piece_bpe(const bertc_tokenizer *t, const uint32_t *cp, int64_t n, tok_scratch *w, tok_out *o);
static int tok_piece_unigram(const bertc_tokenizer *t, const uint32_t *cp, int64_t n, int first, tok_scratch *w,
                             tok_out *o);

/* The longest normalized added token at normalized code points w[0..n), or -1; *len gets its length in code points.
 * Such a token never holds whitespace (tokenizer.py refuses it), so it lies within one chunk. */
static int64_t tok_added_normalized_at(const bertc_tokenizer *t, const uint32_t *w, int64_t n, int64_t *len) {
  uint8_t u[4];
  tok_utf8(w[0], u);
  if (!(t->normalized_first[u[0] >> 3] & (1u << (u[0] & 7)))) return -1;
  int64_t best = -1;
  *len = 0;
  for (uint32_t a = 0; a < t->n_added; a++) {
    if (!(t->added[3 * a] & TOK_ADDED_NORMALIZED)) continue;
    const uint8_t *p = t->added_bytes + t->added[3 * a + 1];
    const uint32_t an = t->added[3 * a + 2];
    uint32_t b = 0;
    int64_t k = 0;
    for (int m; b < an && k < n; b += (uint32_t)m, k++) {
      m = tok_utf8(w[k], u);
      if ((uint32_t)m > an - b || memcmp(u, p + b, (size_t)m) != 0) break;
    }
    if (b == an && k > *len) {
      best = t->added[3 * a];
      *len = k;
    }
  }
  return best;
}

/* Normalize, split out normalized added tokens, pre-tokenize and WordPiece one piece of text (n code points); 0
 * when out of memory. */
static int tok_piece(const bertc_tokenizer *t, const uint32_t *cp, int64_t n, int first, tok_scratch *w, tok_out *o) {
  if (t->kind == TOK_BYTE_BPE) return tok_piece_bpe(t, cp, n, w, o);
  if (t->kind == TOK_UNIGRAM) return tok_piece_unigram(t, cp, n, first, w, o);
  for (int64_t a = 0; a < n && o->n < o->cap;) {
    int64_t b = a + TOK_CHUNK < n ? a + TOK_CHUNK : n;
    while (b < n && !tok_is_break(t, cp[b - 1])) b++;
    if (!tok_grow(t, w, o, b - a)) return 0;
    int64_t n1 = 0, n2 = 0;
    for (int64_t i = a; i < b; i++) n1 += tok_map1(t, cp[i], w->buf1 + n1);
    if (t->flags & TOK_STRIP) tok_reorder(t, w->buf1, n1);
    for (int64_t i = 0; i < n1; i++) n2 += tok_map2(t, w->buf1[i], w->buf2 + n2);
    int64_t word = 0, len = 0;
    for (int64_t i = 0; i <= n2 && o->n < o->cap; i++) {
      const int64_t id = i < n2 && t->n_normalized ? tok_added_normalized_at(t, w->buf2 + i, n2 - i, &len) : -1;
      uint32_t f = i < n2 ? tok_info(t, w->buf2[i]) >> 24 : TOK_WS;
      if (id < 0 && !(f & (TOK_WS | TOK_PUNCT))) continue;
      if (i > word) tok_word(t, w->buf2 + word, i - word, o);
      if (id >= 0) { /* its lstrip / rstrip would take whitespace, which the pre-tokenizer drops anyway */
        tok_push(o, id & TOK_ADDED_ID);
        word = i + len;
        i += len - 1;
        continue;
      }
      if (f & TOK_PUNCT && o->n < o->cap) tok_word(t, w->buf2 + i, 1, o);
      word = i + 1;
    }
    a = b;
  }
  return 1;
}

/* ---- byte-level BPE ------------------------------------------------------------------------- */

static int tok_class(const bertc_tokenizer *t, uint32_t c) { return (int)(tok_info(t, c) >> 24); }

/* Where GPT-2's next piece, starting at i, ends: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+|
 * ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ (the alternatives in order, each as the regex engine takes it). */
static int64_t tok_gpt2_piece(const bertc_tokenizer *t, const uint32_t *cp, int64_t i, int64_t n) {
  if (cp[i] == '\'' && i + 1 < n) {
    const uint32_t a = cp[i + 1], b = i + 2 < n ? cp[i + 2] : 0;
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
  }
  const int64_t j = cp[i] == ' ' && i + 1 < n ? i + 1 : i;
  const int cls = tok_class(t, cp[j]);
  if (cls != TOK_WS) { /* letters, numbers or the rest, after one optional space */
    int64_t e = j + 1;
    while (e < n && tok_class(t, cp[e]) == cls) e++;
    return e;
  }
  int64_t e = i + 1; /* whitespace: all of it at the end; before anything else, all but its last character */
  while (e < n && tok_class(t, cp[e]) == TOK_WS) e++;
  return e == n || e - i == 1 ? e : e - 1;
}

static int64_t tok_merge(const bertc_tokenizer *t, int64_t left, int64_t right) {
  if (!t->n_merges || left < 0 || right < 0) return -1;
  const uint32_t mask = t->n_merge_hash - 1;
  uint32_t h = ((uint32_t)left * 0x9E3779B1u) ^ ((uint32_t)right * 0x85EBCA77u);
  for (uint32_t probe = 0, slot = h & mask; probe < t->n_merge_hash; probe++, slot = (slot + 1) & mask) {
    const uint32_t r1 = t->merge_hash[slot];
    if (!r1) return -1;
    if (t->merges[3 * (r1 - 1)] == (uint32_t)left && t->merges[3 * (r1 - 1) + 1] == (uint32_t)right) return r1 - 1;
  }
  return -1;
}

static void tok_heap_push(tok_scratch *w, int64_t *size, uint64_t key, int64_t merged) {
  int64_t i = (*size)++;
  while (i > 0 && w->heap[(i - 1) / 2] > key) {
    w->heap[i] = w->heap[(i - 1) / 2];
    w->heap_new[i] = w->heap_new[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  w->heap[i] = key;
  w->heap_new[i] = merged;
}

static void tok_heap_pop(tok_scratch *w, int64_t *size) {
  const uint64_t key = w->heap[--*size];
  const int64_t merged = w->heap_new[*size];
  int64_t i = 0;
  for (;;) {
    int64_t c = 2 * i + 1;
    if (c >= *size) break;
    if (c + 1 < *size && w->heap[c + 1] < w->heap[c]) c++;
    if (w->heap[c] >= key) break;
    w->heap[i] = w->heap[c];
    w->heap_new[i] = w->heap_new[c];
    i = c;
  }
  w->heap[i] = key;
  w->heap_new[i] = merged;
}

static void tok_heap_offer(const bertc_tokenizer *t, tok_scratch *w, int64_t *size, int64_t pos) {
  const int64_t r = tok_merge(t, w->sym[pos], w->sym[w->next[pos]]);
  if (r >= 0) tok_heap_push(w, size, (uint64_t)r << 32 | (uint64_t)pos, t->merges[3 * r + 2]);
}

/* One piece's m bytes as the tokenizers library's BPE merges them: the lowest-ranked pair first (the leftmost
 * of equals), each merge offering the pairs it makes with its neighbours; an entry whose pair has changed
 * since is dropped when it comes up, as the library drops it. */
static int tok_bpe(const bertc_tokenizer *t, const uint8_t *b, int64_t m, tok_scratch *w, tok_out *o) {
  if (m == 0) return 1;
  if (t->flags & TOK_IGNORE_MERGES) {
    const int64_t whole = m <= UINT32_MAX ? tok_lookup(t, b, (uint32_t)m, 0) : -1;
    if (whole >= 0) { tok_push(o, whole); return 1; }
  }
  if (m > w->bpe_room) {
    int64_t *p[4] = {w->sym, w->prev, w->next, w->heap_new};
    for (int k = 0; k < 4; k++) {
      int64_t *q = realloc(p[k], sizeof *q * (size_t)(k == 3 ? 3 * m : m));
      if (!q) return 0;
      p[k] = q;
      if (k == 0) w->sym = q; else if (k == 1) w->prev = q; else if (k == 2) w->next = q; else w->heap_new = q;
    }
    uint64_t *h = realloc(w->heap, sizeof *h * (size_t)(3 * m));
    if (!h) return 0;
    w->heap = h;
    w->bpe_room = m;
  }
  for (int64_t i = 0; i < m; i++) {
    w->sym[i] = t->byte_id[b[i]];
    w->prev[i] = i - 1;
    w->next[i] = i + 1 < m ? i + 1 : -1;
  }
  int64_t size = 0;
  for (int64_t i = 0; i + 1 < m; i++) tok_heap_offer(t, w, &size, i);
  while (size > 0) {
    const uint64_t key = w->heap[0];
    const int64_t pos = (int64_t)(key & 0xFFFFFFFFu), merged = w->heap_new[0];
    tok_heap_pop(w, &size);
    const int64_t nx = w->sym[pos] >= 0 ? w->next[pos] : -1;
    if (nx < 0) continue;
    const int64_t r = tok_merge(t, w->sym[pos], w->sym[nx]);
    if (r < 0 || t->merges[3 * r + 2] != merged) continue; /* the pair has changed since it was offered */
    w->sym[pos] = merged;
    w->sym[nx] = -1; /* gone */
    w->next[pos] = w->next[nx];
    if (w->next[nx] >= 0) w->prev[w->next[nx]] = pos;
    if (w->prev[pos] >= 0) tok_heap_offer(t, w, &size, w->prev[pos]);
    if (w->next[pos] >= 0) tok_heap_offer(t, w, &size, pos);
  }
  for (int64_t i = 0; i >= 0; i = w->next[i]) tok_push(o, w->sym[i]);
  return 1;
}

/* Text split as GPT-2 splits it, each part's UTF-8 bytes through BPE; 0 when out of memory. */
static int tok_split_bpe(const bertc_tokenizer *t, const uint32_t *cp, int64_t n, tok_scratch *w, tok_out *o) {
  for (int64_t i = 0; i < n && o->n < o->cap;) {
    const int64_t e = tok_gpt2_piece(t, cp, i, n);
    if (4 * (e - i) > w->b_room) {
      uint8_t *b = realloc(w->b, (size_t)(4 * (e - i)));
      if (!b) return 0;
      w->b = b;
      w->b_room = 4 * (e - i);
    }
    int64_t m = 0;
    for (int64_t k = i; k < e; k++) m += tok_utf8(cp[k], w->b + m);
    if (!tok_bpe(t, w->b, m, w, o)) return 0;
    i = e;
  }
  return 1;
}

/* A piece of text between added tokens, with the space the ByteLevel pre-tokenizer's add_prefix_space puts
 * before one that does not start with a space. */
static int tok_piece_bpe(const bertc_tokenizer *t, const uint32_t *cp, int64_t n, tok_scratch *w, tok_out *o) {
  if (n == 0 || !(t->flags & TOK_PREFIX_SPACE) || cp[0] == ' ') return tok_split_bpe(t, cp, n, w, o);
  uint32_t *with = malloc(sizeof *with * (size_t)(n + 1));
  if (!with) return 0;
  with[0] = ' ';
  memcpy(with + 1, cp, sizeof *cp * (size_t)n);
  const int ok = tok_split_bpe(t, with, n + 1, w, o);
  free(with);
  return ok;
}

/* ---- Unigram (SentencePiece) ------------------------------------------------------------------ */

/* Where the extended grapheme cluster starting at cp[i] ends (UAX #29's rules GB3-GB13, with GB9c's Indic
 * conjuncts), as the unicode-segmentation crate the tokenizers library uses draws them. */
static int64_t tok_grapheme_end(const bertc_tokenizer *t, const uint32_t *cp, int64_t i, int64_t n) {
  uint32_t ia = tok_info(t, cp[i]);
  int a = (int)(ia & 15), ri = a == GCB_RI, emoji = ia & TOK_EXT_PICT ? 1 : 0, incb = (ia >> 5 & 3) == INCB_CONSONANT;
  for (int64_t j = i + 1; j < n; j++) {
    const uint32_t ib = tok_info(t, cp[j]);
    const int b = (int)(ib & 15), cb = (int)(ib >> 5 & 3);
    int join;
    if (a == GCB_CR && b == GCB_LF) join = 1;
    else if (a == GCB_CR || a == GCB_LF || a == GCB_CONTROL || b == GCB_CR || b == GCB_LF || b == GCB_CONTROL) join = 0;
    else if (a == GCB_L && (b == GCB_L || b == GCB_V || b == GCB_LV || b == GCB_LVT)) join = 1;
    else if ((a == GCB_LV || a == GCB_V) && (b == GCB_V || b == GCB_T)) join = 1;
    else if ((a == GCB_LVT || a == GCB_T) && b == GCB_T) join = 1;
    else if (b == GCB_EXTEND || b == GCB_ZWJ || b == GCB_SPACINGMARK || a == GCB_PREPEND) join = 1;
    else if (incb == 2 && cb == INCB_CONSONANT) join = 1;            /* GB9c */
    else if (emoji == 2 && ib & TOK_EXT_PICT) join = 1;              /* GB11 */
    else if (a == GCB_RI && b == GCB_RI) join = ri % 2 == 1;         /* GB12, GB13: flags in pairs */
    else join = 0;
    if (!join) return j;
    ri = b == GCB_RI ? ri + 1 : 0;
    emoji = ib & TOK_EXT_PICT ? 1 : emoji && b == GCB_EXTEND ? 1 : emoji == 1 && b == GCB_ZWJ ? 2 : 0;
    incb = cb == INCB_CONSONANT ? 1 : incb && cb == INCB_LINKER ? 2 : incb && cb == INCB_EXTEND ? incb : 0;
    a = b;
  }
  return n;
}

/* The charsmap's replacement for s[0..n): that of the shortest key that begins s (the trie's first common
 * prefix, as tokenizers takes it), or NULL. */
static const uint32_t *tok_charsmap(const bertc_tokenizer *t, const uint8_t *s, int64_t n) {
  if (!t->n_cm) return NULL;
  const uint32_t mask = t->n_cm_hash - 1;
  uint32_t h = 0x811C9DC5u;
  for (int64_t k = 0; k < n && k < (int64_t)t->cm_longest && s[k]; k++) {
    h = (h ^ s[k]) * 0x01000193u;
    for (uint32_t probe = 0, slot = h & mask; probe < t->n_cm_hash; probe++, slot = (slot + 1) & mask) {
      const uint32_t e1 = t->cm_hash[slot];
      if (!e1) break;
      const uint32_t *e = t->cm + 4 * (e1 - 1);
      if (e[1] == (uint32_t)(k + 1) && memcmp(t->cm_bytes + e[0], s, (size_t)(k + 1)) == 0) return e;
    }
  }
  return NULL;
}

static int tok_norm_put(tok_scratch *w, const uint8_t *s, int64_t n) {
  if (n == 0) return 1; /* an empty replacement: nothing to add (and w->norm may not exist yet) */
  if (w->norm_len + n > w->norm_room) {
    int64_t room = 2 * (w->norm_len + n) + 64;
    uint8_t *b = realloc(w->norm, (size_t)room);
    if (!b) return 0;
    w->norm = b;
    w->norm_room = room;
  }
  memcpy(w->norm + w->norm_len, s, (size_t)n);
  w->norm_len += n;
  return 1;
}

/* The Precompiled normalizer: a cluster shorter than 6 bytes whose start the charsmap knows is replaced whole;
 * any other goes character by character, each replaced when the charsmap knows it. */
static int tok_precompiled(const bertc_tokenizer *t, const uint32_t *cp, int64_t n, tok_scratch *w) {
  uint8_t g[64];
  for (int64_t i = 0; i < n;) {
    const int64_t e = tok_grapheme_end(t, cp, i, n);
    int64_t len = 0;
    for (int64_t k = i; k < e && len < 6; k++) len += tok_utf8(cp[k], g + len);
    const uint32_t *r = len < 6 ? tok_charsmap(t, g, len) : NULL;
    if (r) {
      if (!tok_norm_put(w, t->cm_bytes + r[2], r[3])) return 0;
    } else {
      for (int64_t k = i; k < e; k++) {
        const int m = tok_utf8(cp[k], g);
        r = tok_charsmap(t, g, m);
        if (!(r ? tok_norm_put(w, t->cm_bytes + r[2], r[3]) : tok_norm_put(w, g, m))) return 0;
      }
    }
    i = e;
  }
  return 1;
}

/* One pre-token's best segmentation (Viterbi over the pieces' scores, as tokenizers' Unigram::encode: an
 * unknown character costs the lowest score less 10, runs of unknown characters are one token). */
static int tok_viterbi(const bertc_tokenizer *t, const uint8_t *b, int64_t m, tok_scratch *w, tok_out *o) {
  if (m == 0) return 1;
  if (m + 1 > w->path_room) {
    double *sc = realloc(w->score, sizeof *sc * (size_t)(m + 1));
    if (sc) w->score = sc;
    int64_t *st = sc ? realloc(w->start, sizeof *st * (size_t)(m + 1)) : NULL;
    if (st) w->start = st;
    int64_t *id = st ? realloc(w->id, sizeof *id * (size_t)(2 * (m + 1))) : NULL;
    if (!id) return 0;
    w->id = id;
    w->path_room = m + 1;
  }
  for (int64_t k = 0; k <= m; k++) w->start[k] = -1;
  w->start[0] = 0;
  w->score[0] = 0;
  const double unk_score = t->min_score - 10.0;
  for (int64_t s = 0; s < m;) {
    const int64_t mblen = tok_len8(b[s]) < m - s ? tok_len8(b[s]) : m - s;
    int single = 0;
    for (int64_t len = 1; len <= m - s && len <= (int64_t)t->vocab_longest; len++) {
      const int64_t id = tok_lookup(t, b + s, (uint32_t)len, 0);
      if (id < 0) continue;
      double piece;
      memcpy(&piece, t->scores + 8 * (size_t)id, 8);
      const double cand = piece + w->score[s];
      if (w->start[s + len] < 0 || cand > w->score[s + len]) {
        w->score[s + len] = cand;
        w->start[s + len] = s;
        w->id[s + len] = id;
      }
      single |= len == mblen;
    }
    if (!single) {
      const double cand = unk_score + w->score[s];
      if (w->start[s + mblen] < 0 || cand > w->score[s + mblen]) {
        w->score[s + mblen] = cand;
        w->start[s + mblen] = s;
        w->id[s + mblen] = t->unk;
      }
    }
    s += mblen;
  }
  int64_t *out = w->id + m + 1, k = 0, unk_end = -1, unk_start = 0;
  for (int64_t e = m; e > 0; e = w->start[e]) {
    const int64_t s = w->start[e];
    if (w->id[e] == t->unk) { /* fused with the unknown ones after it */
      if (unk_end < 0) unk_end = e;
      unk_start = s;
      continue;
    }
    if (unk_end >= 0) {
      const int64_t fused = tok_lookup(t, b + unk_start, (uint32_t)(unk_end - unk_start), 0);
      out[k++] = fused >= 0 ? fused : t->unk;
      unk_end = -1;
    }
    out[k++] = w->id[e];
  }
  if (unk_end >= 0) {
    const int64_t fused = tok_lookup(t, b + unk_start, (uint32_t)(unk_end - unk_start), 0);
    out[k++] = fused >= 0 ? fused : t->unk;
  }
  while (k > 0) tok_push(o, out[--k]);
  return 1;
}

/* Metaspace on one split (code points, spaces already the replacement's): the replacement before it, then
 * parts that each start at a replacement, every part through the Viterbi. */
static int tok_metaspace(const bertc_tokenizer *t, const uint32_t *cp, int64_t n, int first, tok_scratch *w,
                         tok_out *o) {
  const uint32_t rep = t->replacement;
  const int prepend = (t->flags & TOK_PREPEND_ALWAYS || (t->flags & TOK_PREPEND_FIRST && first)) && (n == 0 || cp[0] != rep);
  uint8_t *b = w->b;
  if (4 * (n + 1) > w->b_room) {
    b = realloc(w->b, (size_t)(4 * (n + 1)));
    if (!b) return 0;
    w->b = b;
    w->b_room = 4 * (n + 1);
  }
  int64_t m = prepend ? tok_utf8(rep, b) : 0, part = 0;
  for (int64_t k = 0; k < n && o->n < o->cap; k++) {
    if (t->flags & TOK_META_SPLIT && cp[k] == rep && m > part) {
      if (!tok_viterbi(t, b + part, m - part, w, o)) return 0;
      part = m;
    }
    m += tok_utf8(cp[k], b + m);
  }
  return o->n < o->cap ? tok_viterbi(t, b + part, m - part, w, o) : 1;
}

/* A piece of text between added tokens: Precompiled, runs of spaces made one, [WhitespaceSplit,] Metaspace,
 * Unigram. `first`: the piece begins the text (Metaspace's prepend_scheme "first"). */
static int tok_piece_unigram(const bertc_tokenizer *t, const uint32_t *cp, int64_t n, int first, tok_scratch *w,
                             tok_out *o) {
  if (n == 0) return 1;
  w->norm_len = 0;
  if (t->flags & TOK_PRECOMPILED) {
    if (!tok_precompiled(t, cp, n, w)) return 0;
  } else {
    uint8_t g[4];
    for (int64_t k = 0; k < n; k++)
      if (!tok_norm_put(w, g, tok_utf8(cp[k], g))) return 0;
  }
  if (w->norm_len + 1 > w->ncp_room) {
    uint32_t *c = realloc(w->ncp, sizeof *c * (size_t)(w->norm_len + 1));
    if (!c) return 0;
    w->ncp = c;
    w->ncp_room = w->norm_len + 1;
  }
  int64_t nn = tok_decode(w->norm, w->norm_len, w->ncp);
  if (nn < 0) return 1; /* the charsmap made bytes that are not UTF-8: a damaged file; nothing to tokenize */
  uint32_t *c = w->ncp;
  int64_t k = 0;
  for (int64_t i = 0; i < nn; i++) /* Replace(" {2,}", " ") */
    if (!(t->flags & TOK_COLLAPSE && c[i] == ' ' && i > 0 && c[i - 1] == ' ')) c[k++] = c[i];
  if (!(t->flags & TOK_WS_SPLIT)) { /* Metaspace on the whole piece: every space the replacement */
    for (int64_t i = 0; i < k; i++) c[i] = c[i] == ' ' ? t->replacement : c[i];
    return tok_metaspace(t, c, k, first, w, o);
  }
  for (int64_t i = 0; i < k && o->n < o->cap;) { /* WhitespaceSplit: words, whitespace dropped */
    if (tok_info(t, c[i]) >> 24 & TOK_WS) { i++; continue; }
    int64_t e = i + 1;
    while (e < k && !(tok_info(t, c[e]) >> 24 & TOK_WS)) e++;
    if (!tok_metaspace(t, c + i, e - i, first && i == 0, w, o)) return 0;
    i = e;
  }
  return 1;
}


/* The longest added token matched in the raw text at s[0..n), or -1. */
static int64_t tok_added_at(const bertc_tokenizer *t, const uint8_t *s, int64_t n, int64_t *len) {
  if (!(t->added_first[s[0] >> 3] & (1u << (s[0] & 7)))) return -1;
  int64_t best = -1;
  *len = 0;
  for (uint32_t a = 0; a < t->n_added; a++) {
    uint32_t an = t->added[3 * a + 2];
    if (t->added[3 * a] & TOK_ADDED_NORMALIZED) continue; /* found by tok_piece in the normalized text */
    if (an <= n && an > *len && memcmp(s, t->added_bytes + t->added[3 * a + 1], an) == 0) {
      best = t->added[3 * a]; /* with its lstrip / rstrip bits */
      *len = an;
    }
  }
  return best;
}

/* Tokenize UTF-8 text[0..n) into ids / types (room for cap >= 2 tokens): [CLS] tokens [SEP], the tokens
 * cut to cap - 2. *count gets the number written. (The header's max_length, the length the artifact was
 * compiled for, is the caller's to apply.) */
static bertc_status tok_encode(const bertc_tokenizer *t, const char *text, int64_t n, int64_t *ids, int64_t *types,
                               int64_t cap, int64_t *count, char *err) {
  if (n < 0 || n > TOK_MAX_BYTES)
    return fail(err, BERTC_ERR_INPUT, "the text is %lld bytes; the tokenizer takes 0 to %lld", (long long)n,
                (long long)TOK_MAX_BYTES);
  if (cap < 2) return fail(err, BERTC_ERR_ARGUMENT, "room for %lld tokens: [CLS] and [SEP] need 2", (long long)cap);
  const uint8_t *s = (const uint8_t *)text;
  uint32_t *cp = malloc(sizeof *cp * (size_t)(n + 1));
  if (!cp) return fail(err, BERTC_ERR_MEMORY, "out of memory tokenizing %lld bytes of text", (long long)n);
  const int64_t ncp = tok_decode(s, n, cp);
  if (ncp < 0) {
    free(cp);
    const int64_t bad = -1 - ncp;
    return fail(err, BERTC_ERR_INPUT, "the text is not valid UTF-8: the byte 0x%02x at offset %lld begins no character "
                "(or a cut, overlong or surrogate one); pass UTF-8 text", s[bad], (long long)bad);
  }
  tok_scratch w;
  memset(&w, 0, sizeof w);
  tok_out o = {ids + 1, 0, cap - 2, NULL, NULL, NULL};
  int ok = 1;
  /* Added tokens are found in the raw text, left to right, the longest at each place; the text between
   * them is tokenized piece by piece. Code point k begins at byte pos. A token with lstrip / rstrip takes
   * the whitespace before / after it along. */
  int64_t piece = 0, pos = 0, k = 0;
  while (ok && o.n < o.cap) {
    int64_t len = 0, id = k < ncp && t->n_added > t->n_normalized ? tok_added_at(t, s + pos, n - pos, &len) : -1;
    if (k < ncp && id < 0) {
      pos += tok_len8(s[pos]);
      k++;
      continue;
    }
    int64_t end = k;
    if (id >= 0 && id & (1 << 30))
      while (end > piece && tok_info(t, cp[end - 1]) >> 24 & TOK_WS) end--;
    ok = tok_piece(t, cp + piece, end - piece, piece == 0, &w, &o);
    if (k == ncp) break;
    tok_push(&o, id & TOK_ADDED_ID);
    for (const int64_t stop = pos + len; pos < stop; k++) pos += tok_len8(s[pos]);
    if (id & (1u << 31))
      for (; k < ncp && tok_info(t, cp[k]) >> 24 & TOK_WS; k++) pos += tok_len8(s[pos]);
    piece = k;
  }
  free(cp);
  free(w.buf1);
  free(w.buf2);
  free(w.b);
  free(w.sym);
  free(w.prev);
  free(w.next);
  free(w.heap_new);
  free(w.heap);
  free(w.norm);
  free(w.ncp);
  free(w.score);
  free(w.start);
  free(w.id);
  free(o.bytes);
  free(o.at);
  if (!ok) return fail(err, BERTC_ERR_MEMORY, "out of memory tokenizing %lld bytes of text", (long long)n);
  ids[0] = t->cls;
  ids[o.n + 1] = t->sep;
  for (int64_t i = 0; i < o.n + 2; i++) types[i] = t->types[i == 0 ? 0 : i == o.n + 1 ? 2 : 1];
  *count = o.n + 2;
  return BERTC_OK;
}

#endif
