/* int8 linear (bertc_linear_packed_i8; the format is in kernels.h): the parts every implementation
 * shares, in plain C. The reference kernel is built from them; an ISA kernel uses them for the tiles
 * its micro-kernels do not cover, and must give the same bits as q8_quantize_row and q8_dot_row
 * (runtime/tests/kernel_check.c compares them with the activation off).
 *
 * The work buffer (BERTC_I8_WORK bytes): the quantized rows of x, M rounded up to 16 rows of Kq bytes,
 * in the order the kernel's micro-tiles read them (row by row here and on x86, 8-row tiles on NEON), then
 * one float scale per row, then one int32 zero point per row. A row's bytes are its unsigned values q
 * (0..255: here, on x86, whose VPMADDUBSW / VPDPBUSD multiply unsigned by signed), or q - 128 (NEON's SDOT and
 * SMMLA, and the sparse sums, multiply signed by signed). Every kernel runs in two passes over the pool: the rows
 * are quantized once, then every thread's share of the GEMM reads them. */
#ifndef BERTC_INT8_GEMM_H
#define BERTC_INT8_GEMM_H

#include <math.h>
#include <string.h>

#include "kernels.h"

static inline int64_t q8_kq(int64_t K) { return (K + 3) / 4 * 4; }
static inline int8_t *q8_rows(void *work) { return (int8_t *)work; }
static inline float *q8_scales(void *work, int64_t M, int64_t K) {
  return (float *)((int8_t *)work + (M + 15) / 16 * 16 * q8_kq(K));
}
static inline int32_t *q8_zps(void *work, int64_t M, int64_t K) {
  return (int32_t *)(q8_scales(work, M, K) + (M + 15) / 16 * 16);
}

/* How a row is quantized (kernels.h): q = round-half-even(min(max(x * inv, lo), hi)) + zp, in [0, 255].
 * Dynamic (x_scale 0), asymmetric over the row's range with 0 in it: s = (max - min) / 255, inv = 255 / (max - min),
 * zp = round-half-even(-min * inv), [lo, hi] = [-zp, 255 - zp]; a constant zero row has s = inv = zp = 0.
 * Static (x_scale > 0): s = x_scale, inv = 1 / x_scale, zp = 128, [lo, hi] = [-127, 127] (x's outliers saturate).
 * NaN becomes lo, as fmaxf / maxps / vmaxnm make it. */
typedef struct {
  float s, inv, lo, hi;
  int32_t zp;
} q8_row;

static inline q8_row q8_row_params(float x_scale, float xmin, float xmax) {
  if (x_scale > 0.0f) return (q8_row){x_scale, 1.0f / x_scale, -127.0f, 127.0f, 128};
  xmin = fminf(xmin, 0.0f), xmax = fmaxf(xmax, 0.0f);
  const float range = xmax - xmin;
  if (!(range > 0.0f)) return (q8_row){0.0f, 0.0f, 0.0f, 0.0f, 0};
  const float inv = 255.0f / range;
  const int32_t zp = (int32_t)nearbyintf(fminf(-xmin * inv, 255.0f));
  return (q8_row){range / 255.0f, inv, (float)-zp, (float)(255 - zp), zp};
}

/* x's value in a row's bytes before zp is added: round-half-even of x * inv clamped to [lo, hi] */
static inline int32_t q8_value(float x, const q8_row *r) {
  return (int32_t)nearbyintf(fminf(fmaxf(x * r->inv, r->lo), r->hi));
}

/* q[0, Kq) = the row's bytes, q ^ flip (flip 0: unsigned q; 0x80: q - 128), past K as x = 0 would be (zp);
 * returns the row's parameters. */
static inline q8_row q8_quantize_row(const float *x, int64_t K, float x_scale, int8_t *q, int flip) {
  float lo = 0.0f, hi = 0.0f;
  for (int64_t k = 0; x_scale <= 0.0f && k < K; k++) lo = fminf(lo, x[k]), hi = fmaxf(hi, x[k]);
  const q8_row r = q8_row_params(x_scale, lo, hi);
  for (int64_t k = 0; k < K; k++) q[k] = (int8_t)((q8_value(x[k], &r) + r.zp) ^ flip);
  for (int64_t k = K; k < q8_kq(K); k++) q[k] = (int8_t)(r.zp ^ flip);
  return r;
}

/* The int32 sum of a row's GEMM from the sum over its bytes: unsigned bytes (flip 0) give sum q w, from which
 * zp colsum[n] is taken; bytes q - 128 give sum (q - 128) w, to which (128 - zp) colsum[n] is added. Both are
 * sum (q - zp) w, exactly (|sum| < 2^31 for K < 66000). */
static inline int32_t q8_offset(int32_t acc, int32_t zp, int32_t colsum, int flip) {
  return acc + (flip ? 128 - zp : -zp) * colsum;
}

/* y[0, N) = fma(sum_k (q[k] - zp) * w[n,k], s * scale[n], bias[n]): one quantized row (unsigned bytes) against
 * every column, before the activation. */
static inline void q8_dot_row(const int8_t *q, const q8_row *r, const bertc_qweight *w, const float *bias, float *y,
                              int64_t N, int64_t K, int64_t nr) {
  const int64_t Kq = q8_kq(K);
  for (int64_t n = 0; n < N; n++) {
    const int8_t *col = w->w + (n / nr) * Kq * nr + (n % nr) * 4;
    int32_t acc = 0;
    for (int64_t g = 0; g < Kq / 4; g++)
      for (int64_t i = 0; i < 4; i++) acc += (int32_t)(uint8_t)q[4 * g + i] * col[g * 4 * nr + i];
    y[n] = fmaf((float)q8_offset(acc, r->zp, w->colsum[n], 0), r->s * w->scale[n], bias ? bias[n] : 0.0f);
  }
}

/* y[0, n) = act(y) + res in place (res may be NULL): each implementation's own epilogue. */
typedef void (*q8_epilogue)(float *y, const float *res, int64_t n, int act);

/* An ISA kernel's two passes over the pool (avx2/ and neon/ kernels.c): x quantized into the work buffer's
 * rows (laid out as that kernel's micro-kernel reads them: Kq apart on x86, in row tiles on NEON) and
 * scales, then (row block, panel) work items over them. */
typedef struct {
  const float *x, *bias, *res;
  const bertc_qweight *w;
  float *y;
  int8_t *rows;
  float *scales;
  int32_t *zps;
  int64_t M, N, K, Kq, panels, row_block;
  int act;
  int flip; /* the rows without a dense w (the sparse int8 GEMM's): 0x80, q - 128; 0, unsigned */
} qgemm_args;

/* The whole kernel one row at a time, for any tile: the reference, and an ISA kernel's tiles without a
 * micro-kernel. */
typedef struct {
  const float *x, *bias, *res;
  const bertc_qweight *w;
  float *y;
  void *work;
  int64_t M, N, K, nr;
  int act;
  q8_epilogue epilogue;
} q8_rows_args;

/* The first pass: rows [lo, hi) of x into the work buffer, row by row, unsigned; where there is no dense w (the
 * sparse int8 GEMM's rows: pack-weights gives its linears no static scale), dynamic and as q - 128. */
static inline void q8_quantize_rows(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  const q8_rows_args *a = raw;
  const float x_scale = a->w ? a->w->x_scale : 0.0f;
  for (int64_t m = lo; m < hi; m++) {
    const q8_row r = q8_quantize_row(a->x + m * a->K, a->K, x_scale, q8_rows(a->work) + m * q8_kq(a->K),
                                     a->w ? 0 : 0x80);
    q8_scales(a->work, a->M, a->K)[m] = r.s;
    q8_zps(a->work, a->M, a->K)[m] = r.zp;
  }
}

static inline void q8_dot_rows(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  const q8_rows_args *a = raw;
  for (int64_t m = lo; m < hi; m++) {
    float *y = a->y + m * a->N;
    const q8_row r = {.s = q8_scales(a->work, a->M, a->K)[m], .zp = q8_zps(a->work, a->M, a->K)[m]};
    q8_dot_row(q8_rows(a->work) + m * q8_kq(a->K), &r, a->w, a->bias, y, a->N, a->K, a->nr);
    a->epilogue(y, a->res ? a->res + m * a->N : NULL, a->N, a->act);
  }
}

/* The pool of the first pass: the calling thread alone below BERTC_SERIAL_ELEMENTS of x, like a norm's, where a
 * parallel call's hand-off costs more than quantizing the rows (each thread's share of the GEMM reads every row
 * either way). */
static inline bertc_pool *q8_quantize_pool(bertc_pool *p, int64_t M, int64_t K) {
  return bertc_pool_sized(p, M * K, BERTC_SERIAL_ELEMENTS);
}

static inline void q8_linear_rows(bertc_pool *p, q8_rows_args *a) {
  bertc_parallel_rows(q8_quantize_pool(p, a->M, a->K), a->M, q8_quantize_rows, a);
  bertc_parallel_rows(p, a->M, q8_dot_rows, a);
}

/* ---- block-sparse int8 (bertc_linear_sparse_i8) --------------------------------------------------------------
 * The same two passes: x quantized by q8_quantize_rows (rows Kq apart, whatever the ISA), then work items of row
 * tiles' block rows (q8_sparse_items), a tile Q8S_MR rows (an ISA may take Q8S_MR_WIDE: q8s_args.mr). An
 * implementation gives the int32 sums of a tile's rows over one block row (q8s_sums_ref, or its ISA's vectors);
 * q8s_items turns them into y with q8_dot_row's fma. r <= Q8S_R_MAX. */
#define Q8S_MR 4
#define Q8S_MR_WIDE 16 /* the work buffer holds M rounded up to 16 rows */
#define Q8S_R_MAX 16
typedef struct q8s_args q8s_args;
/* acc[m * r + j] = sum over the blocks of block row i of q[m * Kq + k] * W[i r + j, k], m < a->mr (rows past
 * the tile's are read from the work buffer's padding and not stored). ``tile`` is the tile's rows (q, Kq apart),
 * or what the ISA's q8s_prep_fn made of them. */
typedef void (*q8s_sums_fn)(const q8s_args *a, const void *tile, int64_t i, int32_t *acc);
/* An ISA's own layout of a tile's rows, made once per work item in the thread's scratch (sums then read it). */
typedef const void *(*q8s_prep_fn)(const q8s_args *a, const int8_t *q, float *scratch);
struct q8s_args {
  const float *bias, *res;
  const bertc_block_sparse_i8 *w;
  float *y;
  void *work;
  int64_t M, N, K, chunks;
  int act;
  q8_epilogue epilogue;
  q8s_sums_fn sums;
  q8s_prep_fn prep; /* NULL: sums reads the rows as they are */
  int flip;         /* the rows' bytes (q8_offset): 0x80, q - 128; 0, unsigned (x86's VPMADDUBSW sums) */
  int mr;           /* rows per tile: Q8S_MR, or Q8S_MR_WIDE */
  uint64_t call;    /* this call's number (sparse_call_number), which q8s_tile tags a prepared tile with */
};

/* block b's weight j (column index[b] + l): kernels.h's layouts, plain or in groups of 4 */
static inline int8_t q8s_value(const bertc_block_sparse_i8 *w, int64_t b, int64_t l, int64_t j) {
  return w->group == 4 ? w->values[(b / 4 * w->r + j) * 4 + b % 4] : w->values[(b * w->c + l) * w->r + j];
}

static inline void q8s_sums_ref(const q8s_args *a, const void *tile, int64_t i, int32_t *acc) {
  const int8_t *q = tile;
  const bertc_block_sparse_i8 *w = a->w;
  const int64_t r = w->r, c = w->c, Kq = q8_kq(a->K);
  memset(acc, 0, (size_t)(a->mr * r) * sizeof(int32_t));
  for (int64_t b = w->offsets[i]; b < w->offsets[i + 1]; b++)
    for (int64_t l = 0; l < c && w->index[b] + l < a->K; l++)
      for (int64_t m = 0; m < a->mr; m++)
        for (int64_t j = 0; j < r; j++) acc[m * r + j] += (int32_t)q[m * Kq + w->index[b] + l] * q8s_value(w, b, l, j);
}

/* The tile of rows from m0 as the sums read it: the ISA's prep of them, made once a call on each thread (kernels.h
 * sparse_tile_ready), as the fp32 block kernel packs its x (sparse_gemm.h sparse_pack_once). */
static _Thread_local struct { sparse_ready at; const void *tile; } q8s_prepared;

static inline const void *q8s_tile(const q8s_args *a, const int8_t *q, int64_t m0, float *scratch) {
  if (!a->prep) return q;
  if (!sparse_tile_ready(&q8s_prepared.at, a->call, m0)) q8s_prepared.tile = a->prep(a, q, scratch);
  return q8s_prepared.tile;
}

static inline void q8s_items(void *raw, int64_t lo, int64_t hi, float *scratch) {
  const q8s_args *a = raw;
  const bertc_block_sparse_i8 *w = a->w;
  const int64_t r = w->r, N = a->N, Kq = q8_kq(a->K);
  const float *scales = q8_scales(a->work, a->M, a->K);
  const int32_t *zps = q8_zps(a->work, a->M, a->K);
  int32_t acc[Q8S_MR_WIDE * Q8S_R_MAX];
  /* on the tiles axis times `chunks`: item k spans [k, k + 1) * tiles, tile t [t, t + 1) * chunks */
  const int64_t tiles = (a->M + a->mr - 1) / a->mr, n = a->chunks, p0 = lo * tiles, p1 = hi * tiles;
  for (int64_t t = p0 / n; t < tiles && t * n < p1; t++) {
    const int64_t m0 = t * a->mr, rows = a->M - m0 < a->mr ? a->M - m0 : a->mr;
    const int64_t i0 = sparse_row_at(w->offsets, w->block_rows, p0 > t * n ? p0 - t * n : 0, n);
    const int64_t i1 = sparse_row_at(w->offsets, w->block_rows, p1 < (t + 1) * n ? p1 - t * n : n, n);
    if (i0 >= i1) continue;
    const int8_t *q = q8_rows(a->work) + m0 * Kq;
    const void *tile = q8s_tile(a, q, m0, scratch);
    for (int64_t i = i0; i < i1; i++) {
      a->sums(a, tile, i, acc);
      const int64_t cols = N - i * r < r ? N - i * r : r;
      const int32_t *cs = w->colsum + i * r;
      const float *sc = w->scale + i * r, *bias = a->bias ? a->bias + i * r : NULL;
      for (int64_t m = 0; m < rows; m++) { /* q8_offset's sums and q8_dot_row's fma, in loops the compiler vectorizes */
        const int32_t *s = acc + m * r, off = q8_offset(0, zps[m0 + m], 1, a->flip);
        const float xs = scales[m0 + m];
        float *yr = a->y + (m0 + m) * N + i * r;
        if (bias)
          for (int64_t j = 0; j < cols; j++) yr[j] = fmaf((float)(s[j] + off * cs[j]), xs * sc[j], bias[j]);
        else
          for (int64_t j = 0; j < cols; j++) yr[j] = fmaf((float)(s[j] + off * cs[j]), xs * sc[j], 0.0f);
      }
    }
    const int64_t n0 = i0 * r, n1 = i1 * r < N ? i1 * r : N;
    for (int64_t m = m0; m < m0 + rows && n0 < n1; m++)
      a->epilogue(a->y + m * N + n0, a->res ? a->res + m * N + n0 : NULL, n1 - n0, a->act);
  }
}

/* An ISA's sums for r x 1 blocks in GCC/Clang generic vectors, two blocks at a time: each block's r weights times
 * each row's byte (q - 128), the pair summed in int16 (|sum| <= 2 * 128 * 127 < 32768) and widened into int32
 * accumulators (NEON: SMULL, SMLAL, SADDW). The integer sums are exact in any order: the reference's bits. */
#define Q8S_VECTOR_SUMS(R)                                                                                       \
  static void q8s_sums_##R(const q8s_args *a, const void *tile, int64_t i, int32_t *acc) {                      \
    const int8_t *q = tile;                                                                                      \
    typedef int8_t v8 __attribute__((vector_size(R), aligned(1)));                                               \
    typedef int16_t v16 __attribute__((vector_size(2 * R)));                                                     \
    typedef int32_t v32 __attribute__((vector_size(4 * R)));                                                     \
    const int64_t Kq = q8_kq(a->K), b0 = a->w->offsets[i], nb = a->w->offsets[i + 1] - b0;                     \
    const int32_t *idx = a->w->index + b0;                                                                       \
    const int8_t *v = a->w->values + b0 * R;                                                                     \
    v32 s[Q8S_MR] = {0};                                                                                         \
    for (int64_t b = 0; b < nb; b += 2) {                                                                        \
      const int two = b + 1 < nb;                                                                                \
      const v16 w0 = __builtin_convertvector(*(const v8 *)(v + b * R), v16);                                     \
      const v16 w1 = two ? __builtin_convertvector(*(const v8 *)(v + b * R + R), v16) : (v16){0};               \
      const int64_t k0 = idx[b], k1 = idx[two ? b + 1 : b];                                                      \
      for (int m = 0; m < Q8S_MR; m++)                                                                           \
        s[m] += __builtin_convertvector(w0 * (int16_t)q[m * Kq + k0] + w1 * (int16_t)q[m * Kq + k1], v32);       \
    }                                                                                                            \
    memcpy(acc, s, sizeof s);                                                                                    \
  }

/* The ISA's sums for w's block (q8s_sums_4, _8, _16 defined), the reference's for any other (and groups of 4). */
#define Q8S_SUMS_FOR(w) \
  ((w)->c != 1 || (w)->group == 4 ? q8s_sums_ref : (w)->r == 16 ? q8s_sums_16 : (w)->r == 8 ? q8s_sums_8 : (w)->r == 4 ? q8s_sums_4 : q8s_sums_ref)

/* The second pass over x's quantized rows (q - 128, Kq apart, in a->work): `chunks` items, each an equal share of
 * the tiles' block rows laid end to end (weighed by sparse_row_at; a short last tile sums all its mr rows, so it
 * weighs as a full one), 4 a pool chunk, so the pool's equal ranges of items are equal work. Before, whole tiles
 * while there were 4 a thread (161 tokens in 16-row tiles, 2 threads: 6 tiles' work and 4 tiles and a row), and
 * else a tile's chunks of block rows, cut by rows, not blocks. */
static inline void q8_sparse_items(bertc_pool *p, q8s_args *a) {
  a->chunks = sparse_item_count(p, a->w->block_rows * ((a->M + a->mr - 1) / a->mr));
  a->call = sparse_call_number();
  bertc_parallel_rows(p, a->chunks, q8s_items, a);
}

/* Both passes, x quantized row by row here (an ISA with a vector quantizer runs its own, then q8_sparse_items). */
static inline void q8_linear_sparse(bertc_pool *p, const float *x, q8s_args *a) {
  q8_rows_args qa = {.x = x, .work = a->work, .M = a->M, .K = a->K};
  bertc_parallel_rows(q8_quantize_pool(p, a->M, a->K), a->M, q8_quantize_rows, &qa);
  q8_sparse_items(p, a);
}

#endif
