/* AVX2/FMA kernels for x86-64. Strong definitions that replace the weak reference ones in
 * ../ref/kernels.c; the functions not defined here stay "ref". Everything is 256-bit except
 * one GEMM micro-kernel for the (12, 32) tile, compiled only when the build enables AVX-512
 * (-march=native on such a host): there AVX2 tops out below the peers' GEMMs. */
#if defined(__AVX2__) && defined(__FMA__)

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "../kernels.h"
#include "../int8_gemm.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* Lanes [0, n) set, for the partial vector at the end of a row (0 < n < 8). */
ALWAYS_INLINE __m256i tail_mask(int64_t n) {
  static const int32_t ones_then_zeros[16] = {-1, -1, -1, -1, -1, -1, -1, -1};
  return _mm256_loadu_si256((const __m256i *)(ones_then_zeros + 8 - n));
}

/* ---- vector math ------------------------------------------------------------------- */
static inline __m256 hsum_broadcast(__m256 v) {
  v = _mm256_add_ps(v, _mm256_permute2f128_ps(v, v, 1));
  v = _mm256_add_ps(v, _mm256_shuffle_ps(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
  return _mm256_add_ps(v, _mm256_shuffle_ps(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
}

static inline __m256 hmax_broadcast(__m256 v) {
  v = _mm256_max_ps(v, _mm256_permute2f128_ps(v, v, 1));
  v = _mm256_max_ps(v, _mm256_shuffle_ps(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
  return _mm256_max_ps(v, _mm256_shuffle_ps(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
}

/* Cephes expf: x = n ln2 + r with ln2 split in two so r is exact, e^r by a degree-7
 * polynomial (relative error ~1e-7), 2^n built in the exponent bits. The clamp keeps n in
 * the normal range; below it the result is 0 (expf gives a denormal there), so a -inf score
 * gets exactly zero weight. x is the second operand of min/max so that NaN passes through. */
static const float EXP_P[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                               4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f}; /* e^r's, from r^7 down */

static inline __m256 exp8(__m256 x) {
  const __m256 underflow = _mm256_cmp_ps(x, _mm256_set1_ps(-87.33654f), _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_set1_ps(88.3762626647949f), _mm256_max_ps(_mm256_set1_ps(-87.33654f), x));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(EXP_P[0]);
  for (int i = 1; i < 6; i++) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P[i]));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(underflow, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

/* Cephes tanhf: an odd polynomial below |x| = 0.625, where 1 - 2/(e^2x + 1) would cancel;
 * above it that identity on |x|, with the sign put back. exp8's clamp makes large |x| give 1. */
static inline __m256 tanh8(__m256 x) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 ax = _mm256_andnot_ps(sign, x);
  const __m256 big = _mm256_sub_ps(_mm256_set1_ps(1.0f),
                                   _mm256_div_ps(_mm256_set1_ps(2.0f),
                                                 _mm256_add_ps(exp8(_mm256_add_ps(ax, ax)), _mm256_set1_ps(1.0f))));
  const __m256 z = _mm256_mul_ps(x, x);
  __m256 p = _mm256_set1_ps(-5.70498872745e-3f);
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954e-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531e-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036e-1f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422e-1f));
  const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
  const __m256 is_small = _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ);
  return _mm256_blendv_ps(_mm256_or_ps(big, _mm256_and_ps(sign, x)), small, is_small);
}

/* erf as x * p(x^2) / q(x^2) on x clamped to [-4, 4] (erf(4) rounds to 1 in float); the
 * rational fit is XLA's and Eigen's float erf, ~1e-7 absolute error. The coefficients, shared by
 * the 8- and 16-lane versions: P from x^12 down, Q from x^8 down. */
static const float ERF_P[7] = {-2.72614225801306e-10f, 2.77068142495902e-08f, -2.10102402082508e-06f,
                               -5.69250639462346e-05f, -7.34990630326855e-04f, -2.95459980854025e-03f,
                               -1.60960333262415e-02f};
static const float ERF_Q[5] = {-1.45660718464996e-05f, -2.13374055278905e-04f, -1.68282697438203e-03f,
                               -7.37332916720468e-03f, -1.42647390514189e-02f};

static inline __m256 erf8(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-4.0f)), _mm256_set1_ps(4.0f));
  const __m256 z = _mm256_mul_ps(x, x);
  __m256 p = _mm256_set1_ps(ERF_P[0]), q = _mm256_set1_ps(ERF_Q[0]);
  for (int i = 1; i < 7; i++) p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(ERF_P[i]));
  for (int i = 1; i < 5; i++) q = _mm256_fmadd_ps(q, z, _mm256_set1_ps(ERF_Q[i]));
  return _mm256_div_ps(_mm256_mul_ps(x, p), q);
}

static inline __m256 activate8(__m256 v, int act) {
  const __m256 half_v = _mm256_mul_ps(_mm256_set1_ps(0.5f), v);
  switch (act) {
    case BERTC_ACT_GELU:
      return _mm256_fmadd_ps(half_v, erf8(_mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752f))), half_v);
    case BERTC_ACT_GELU_TANH: {
      const __m256 v3 = _mm256_mul_ps(_mm256_mul_ps(v, v), v);
      const __m256 inner = _mm256_mul_ps(_mm256_set1_ps(0.79788456080286536f),
                                         _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), v3, v));
      return _mm256_fmadd_ps(half_v, tanh8(inner), half_v);
    }
    case BERTC_ACT_TANH: return tanh8(v);
    case BERTC_ACT_RELU: return _mm256_max_ps(v, _mm256_setzero_ps());
    case BERTC_ACT_SILU: { /* v / (1 + e^-v); exp8 clamps e^-v at e^88, where expf gives inf: v * 0 there, as
                              v / inf is (-0, and NaN for -inf) */
      const __m256 s = _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), exp8(_mm256_sub_ps(_mm256_setzero_ps(), v))));
      const __m256 huge = _mm256_cmp_ps(v, _mm256_set1_ps(-88.3762626647949f), _CMP_LT_OQ);
      return _mm256_blendv_ps(s, _mm256_mul_ps(v, _mm256_setzero_ps()), huge);
    }
    default: return v;
  }
}

#ifdef __AVX512F__
/* erf8 on 16 lanes: the same rational fit, the same clamp. */
static inline __m512 erf16(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-4.0f)), _mm512_set1_ps(4.0f));
  const __m512 z = _mm512_mul_ps(x, x);
  __m512 p = _mm512_set1_ps(ERF_P[0]), q = _mm512_set1_ps(ERF_Q[0]);
  for (int i = 1; i < 7; i++) p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(ERF_P[i]));
  for (int i = 1; i < 5; i++) q = _mm512_fmadd_ps(q, z, _mm512_set1_ps(ERF_Q[i]));
  /* x p / q with q's reciprocal from rcp14 and one Newton step (~2^-28 relative): a division
   * would hold the divider for most of the epilogue's time */
  const __m512 r = _mm512_rcp14_ps(q);
  return _mm512_mul_ps(_mm512_mul_ps(x, p), _mm512_fnmadd_ps(_mm512_mul_ps(q, r), r, _mm512_add_ps(r, r)));
}

/* The mask of the first n of 16 lanes (none for n <= 0, all for n >= 16). */
ALWAYS_INLINE __mmask16 lanes(int64_t n) {
  return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

static inline __m512 gelu16(__m512 v) {
  const __m512 half_v = _mm512_mul_ps(_mm512_set1_ps(0.5f), v);
  return _mm512_fmadd_ps(half_v, erf16(_mm512_mul_ps(v, _mm512_set1_ps(0.70710678118654752f))), half_v);
}
#endif

/* y = act(x + bias) + res over n floats; bias/res may be NULL. In place (x == y) is fine. */
static void activate_span(const float *x, const float *bias, const float *res, float *y, int64_t n, int act) {
  int64_t i = 0;
#ifdef __AVX512F__
  if (act == BERTC_ACT_GELU || act == BERTC_ACT_NONE) { /* the epilogues BERT's GEMMs take: 16 lanes */
    for (; i + 16 <= n; i += 16) {
      __m512 v = _mm512_loadu_ps(x + i);
      if (bias) v = _mm512_add_ps(v, _mm512_loadu_ps(bias + i));
      if (act == BERTC_ACT_GELU) v = gelu16(v);
      if (res) v = _mm512_add_ps(v, _mm512_loadu_ps(res + i));
      _mm512_storeu_ps(y + i, v);
    }
  }
#endif
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    if (bias) v = _mm256_add_ps(v, _mm256_loadu_ps(bias + i));
    v = activate8(v, act);
    if (res) v = _mm256_add_ps(v, _mm256_loadu_ps(res + i));
    _mm256_storeu_ps(y + i, v);
  }
  if (i == n) return;
  const __m256i m = tail_mask(n - i);
  __m256 v = _mm256_maskload_ps(x + i, m);
  if (bias) v = _mm256_add_ps(v, _mm256_maskload_ps(bias + i, m));
  v = activate8(v, act);
  if (res) v = _mm256_add_ps(v, _mm256_maskload_ps(res + i, m));
  _mm256_maskstore_ps(y + i, m, v);
}

/* ---- packed linear ------------------------------------------------------------------- */
/* Work items are (row block, column panel) pairs, row-block major, so the pool's contiguous
 * split hands each thread whole panels of one row block: the A rows are shared from L2, each
 * panel's weights are read by exactly one thread. For each K block of kc, a panel's kc x nr
 * weights (16 KB at 256 x 16) stay in L1 while every mr-row tile of the block sweeps over
 * them; x is read in place (its kc-wide block, 128 KB at M = 128, sits in L2), so no packing
 * of A and no use of the scratch. */
/* Rows per work item: bertc_tuning.gemm_row_block, the target's choice (bounds the x block in L2). */

typedef struct {
  const float *x, *w, *bias, *res;
  float *y;
  int64_t M, N, K, panels, row_block;
  int act, mr, nr, kc;
} gemm_args;

/* c[rows, 8 nv] (+)= a[rows, kc] @ b[kc, 8 nv]: rows * nv accumulators live in registers;
 * a rows are lda apart, b rows ldb apart. Inlined with constant rows/nv, so the loops unroll
 * into straight FMA code. pf, when not NULL, is this tile's share of the next kc x nr weight slice
 * (laid out as b): every pfs-th step k prefetches its row k, so the slice arrives from DRAM spread
 * over the FMAs of all the tiles that sweep this one (see gemm_block). */
ALWAYS_INLINE void gemm_micro(const int rows, const int nv, int64_t kc, const float *a, int64_t lda, const float *b,
                              int64_t ldb, float *c, int64_t ldc, int accumulate, const char *pf, int pfs) {
  __m256 acc[8][3];
  int64_t next_pf = 0;
#pragma GCC unroll 8
  for (int r = 0; r < rows; r++)
#pragma GCC unroll 3
    for (int v = 0; v < nv; v++) acc[r][v] = accumulate ? _mm256_loadu_ps(c + r * ldc + 8 * v) : _mm256_setzero_ps();
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; k++) {
    __m256 bv[3];
    if (pf && k == next_pf) { /* a row of nv * 32 bytes: one cache line, or two when it is 96 bytes */
      next_pf += pfs;
      _mm_prefetch(pf + k * ldb * (int64_t)sizeof(float), _MM_HINT_T0);
      if (nv == 3) _mm_prefetch(pf + k * ldb * (int64_t)sizeof(float) + 64, _MM_HINT_T0);
    }
#pragma GCC unroll 3
    for (int v = 0; v < nv; v++) bv[v] = _mm256_loadu_ps(b + k * ldb + 8 * v);
#pragma GCC unroll 8
    for (int r = 0; r < rows; r++) {
      const __m256 av = _mm256_broadcast_ss(a + r * lda + k);
#pragma GCC unroll 3
      for (int v = 0; v < nv; v++) acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < rows; r++)
#pragma GCC unroll 3
    for (int v = 0; v < nv; v++) _mm256_storeu_ps(c + r * ldc + 8 * v, acc[r][v]);
}

/* One instantiation per (rows, nr) a supported tile can produce: rows < mr at the bottom edge. */
#define GEMM_ROWS_CASE(R, NV) case R: gemm_micro(R, NV, kc, a, lda, b, nr, c, ldc, acc, pf, pfs); return
static void gemm_micro_16(int rows, int64_t kc, const float *a, int64_t lda, const float *b, int64_t nr, float *c,
                          int64_t ldc, int acc, const char *pf, int pfs) {
  switch (rows) {
    GEMM_ROWS_CASE(1, 2); GEMM_ROWS_CASE(2, 2); GEMM_ROWS_CASE(3, 2);
    GEMM_ROWS_CASE(4, 2); GEMM_ROWS_CASE(5, 2); GEMM_ROWS_CASE(6, 2);
  }
}
static void gemm_micro_24(int rows, int64_t kc, const float *a, int64_t lda, const float *b, int64_t nr, float *c,
                          int64_t ldc, int acc, const char *pf, int pfs) {
  switch (rows) { GEMM_ROWS_CASE(1, 3); GEMM_ROWS_CASE(2, 3); GEMM_ROWS_CASE(3, 3); GEMM_ROWS_CASE(4, 3); }
}
static void gemm_micro_8(int rows, int64_t kc, const float *a, int64_t lda, const float *b, int64_t nr, float *c,
                         int64_t ldc, int acc, const char *pf, int pfs) {
  switch (rows) {
    GEMM_ROWS_CASE(1, 1); GEMM_ROWS_CASE(2, 1); GEMM_ROWS_CASE(3, 1); GEMM_ROWS_CASE(4, 1);
    GEMM_ROWS_CASE(5, 1); GEMM_ROWS_CASE(6, 1); GEMM_ROWS_CASE(7, 1); GEMM_ROWS_CASE(8, 1);
  }
}
#undef GEMM_ROWS_CASE

#ifdef __AVX512F__
/* The 512-bit twin of gemm_micro, for the (12, 32) tile: 24 zmm accumulators. A host with
 * AVX-512 doubles the FMA width, and the peers (oneDNN, MKL, XNNPACK) use it. */
ALWAYS_INLINE void gemm_micro512(const int rows, int64_t kc, const float *a, int64_t lda, const float *b, float *c,
                                 int64_t ldc, int accumulate, const char *pf, int pfs) {
  __m512 acc[12][2];
  int64_t next_pf = 0;
  /* Four base pointers, rows r = 3i + j at row3[i] + j * lda, so that the twelve addresses
   * are base + index * {0, 1, 2} and fit in the GPRs without reloading offsets each step. */
  const float *row3[4] = {a, a + 3 * lda, a + 6 * lda, a + 9 * lda};
#pragma GCC unroll 12
  for (int r = 0; r < rows; r++)
#pragma GCC unroll 2
    for (int v = 0; v < 2; v++) acc[r][v] = accumulate ? _mm512_loadu_ps(c + r * ldc + 16 * v) : _mm512_setzero_ps();
#pragma GCC unroll 2
  for (int64_t k = 0; k < kc; k++) {
    if (pf && k == next_pf) { /* as gemm_micro: the next slice's row k, two cache lines */
      next_pf += pfs;
      _mm_prefetch(pf + k * 128, _MM_HINT_T0);
      _mm_prefetch(pf + k * 128 + 64, _MM_HINT_T0);
    }
    const __m512 b0 = _mm512_loadu_ps(b + k * 32), b1 = _mm512_loadu_ps(b + k * 32 + 16);
#pragma GCC unroll 12
    for (int r = 0; r < rows; r++) {
      const __m512 av = _mm512_set1_ps(row3[r / 3][k + (r % 3) * lda]);
      acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < rows; r++)
#pragma GCC unroll 2
    for (int v = 0; v < 2; v++) _mm512_storeu_ps(c + r * ldc + 16 * v, acc[r][v]);
}

#define GEMM_ROWS_CASE(R) case R: gemm_micro512(R, kc, a, lda, b, c, ldc, acc, pf, pfs); return
static void gemm_micro_32(int rows, int64_t kc, const float *a, int64_t lda, const float *b, float *c, int64_t ldc,
                          int acc, const char *pf, int pfs) {
  switch (rows) {
    GEMM_ROWS_CASE(1); GEMM_ROWS_CASE(2); GEMM_ROWS_CASE(3); GEMM_ROWS_CASE(4); GEMM_ROWS_CASE(5); GEMM_ROWS_CASE(6);
    GEMM_ROWS_CASE(7); GEMM_ROWS_CASE(8); GEMM_ROWS_CASE(9); GEMM_ROWS_CASE(10); GEMM_ROWS_CASE(11); GEMM_ROWS_CASE(12);
  }
}
#undef GEMM_ROWS_CASE
#endif

static void gemm_micro_any(int rows, int64_t kc, const float *a, int64_t lda, const float *b, int64_t nr, float *c,
                           int64_t ldc, int acc, const char *pf, int pfs) {
  switch (nr) {
#ifdef __AVX512F__
    case 32: gemm_micro_32(rows, kc, a, lda, b, c, ldc, acc, pf, pfs); return;
#endif
    case 16: gemm_micro_16(rows, kc, a, lda, b, nr, c, ldc, acc, pf, pfs); return;
    case 24: gemm_micro_24(rows, kc, a, lda, b, nr, c, ldc, acc, pf, pfs); return;
    default: gemm_micro_8(rows, kc, a, lda, b, nr, c, ldc, acc, pf, pfs);
  }
}

/* One rows x nr tile at (m, panel p) for K block [k0, k0 + kb), prefetching pf (gemm_micro). The last panel may be
 * narrower than nr: its weights are zero-padded, so it is computed full width into a
 * stack tile and only the valid columns are copied to y. */
static void gemm_tile(const gemm_args *g, int64_t m, int rows, int64_t p, int64_t k0, int64_t kb, const char *pf,
                      int pfs) {
  const int64_t nr = g->nr, n0 = p * nr, cols = min64(nr, g->N - n0);
  const float *a = g->x + m * g->K + k0, *b = g->w + p * g->K * nr + k0 * nr;
  float *y = g->y + m * g->N + n0;
  const int first = k0 == 0, last = k0 + kb == g->K;
  if (cols == nr) {
    gemm_micro_any(rows, kb, a, g->K, b, nr, y, g->N, !first, pf, pfs);
  } else {
    float tile[12 * 32];
    for (int r = 0; r < rows && !first; r++) memcpy(tile + r * nr, y + r * g->N, (size_t)cols * sizeof(float));
    gemm_micro_any(rows, kb, a, g->K, b, nr, tile, nr, !first, pf, pfs);
    for (int r = 0; r < rows; r++) memcpy(y + r * g->N, tile + r * nr, (size_t)cols * sizeof(float));
  }
  if (!last) return;
  for (int r = 0; r < rows; r++)
    activate_span(y + r * g->N, g->bias ? g->bias + n0 : NULL, g->res ? g->res + (m + r) * g->N + n0 : NULL,
                  y + r * g->N, cols, g->act);
}

/* Rows per tile when `left` rows remain: a short remainder is merged with the last full tile and
 * the two split evenly (128 = 20 x 6 + 4 + 4, not 21 x 6 + 2), because a tile of one or two rows
 * has too few accumulators to hide the FMA latency. */
static int gemm_tile_rows(int64_t left, int mr) { return (int)(left > mr && left < 2 * mr ? (left + 1) / 2 : min64(mr, left)); }

/* Rows [m0, m1) x panels [p0, p1). Panel-major, then K blocks: the weights are read once, in
 * memory order, each kc x nr slice (16 KB at 256 x 16) staying in L1 while every row tile
 * sweeps over it; the panel's y columns stay in cache across its K blocks.
 * The weights come from DRAM (a model's are far larger than the caches), and a short sentence has
 * only one or two row tiles to hide their arrival behind. The panels are contiguous, so the next
 * slice is the next kc * nr floats, prefetched a row per k step spread over all the row tiles (of T
 * tiles, tile i takes rows i, i + T, ...). Issued all at once before the tile, the 16 KB burst overran
 * the core's miss buffers and stalled it: MiniLM's linears at M = 8 ran at 25-27 GFLOP/s with the
 * weights from DRAM, 31-38 spread out (benchmarks/gemm_rows.py --cold). All of it by the first tile
 * (as this did before) was a burst too where two short tiles split 13-23 rows: 6 x 384 at 14 tokens,
 * 1 thread, took 13-18% longer than now (interleaved; 24-48 tokens 2-6%). */
static void gemm_block(const gemm_args *g, int64_t m0, int64_t m1, int64_t p0, int64_t p1) {
  const char *w_end = (const char *)(g->w + g->panels * g->K * g->nr);
  int tiles = 0;
  for (int64_t m = m0; m < m1; tiles++) m += gemm_tile_rows(m1 - m, g->mr);
  for (int64_t p = p0; p < p1; p++)
    for (int64_t k0 = 0; k0 < g->K; k0 += g->kc) {
      const int64_t kb = min64(g->kc, g->K - k0);
      const char *next = (const char *)(g->w + p * g->K * g->nr + (k0 + kb) * g->nr);
      /* kb rows of nr floats ahead, unless that runs past the last weight (the final slice) */
      const char *pf = w_end - next >= kb * g->nr * (int64_t)sizeof(float) ? next : NULL;
      for (int64_t m = m0, i = 0; m < m1; i++) { /* tile i prefetches rows i, i + tiles, ... of the next slice */
        const int rows = gemm_tile_rows(m1 - m, g->mr);
        gemm_tile(g, m, rows, p, k0, kb, pf && i < kb ? pf + i * g->nr * (int64_t)sizeof(float) : NULL, tiles);
        m += rows;
      }
    }
}

static void gemm_items(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  const gemm_args *g = raw;
  for (int64_t t = lo; t < hi;) {
    const int64_t rb = t / g->panels, p0 = t % g->panels, p1 = min64(g->panels, p0 + hi - t);
    gemm_block(g, rb * g->row_block, min64(g->M, (rb + 1) * g->row_block), p0, p1);
    t += p1 - p0;
  }
}

/* Tiles outside the micro-kernel set: the reference loop, one row at a time. */
static void gemm_generic_rows(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  const gemm_args *g = raw;
  const int64_t N = g->N, K = g->K, nr = g->nr;
  for (int64_t m = lo; m < hi; m++) {
    float *y = g->y + m * N;
    for (int64_t n0 = 0; n0 < N; n0 += nr) {
      const float *panel = g->w + (n0 / nr) * K * nr;
      const int64_t cols = min64(nr, N - n0);
      memset(y + n0, 0, (size_t)cols * sizeof(float));
      for (int64_t k = 0; k < K; k++)
        for (int64_t j = 0; j < cols; j++) y[n0 + j] += g->x[m * K + k] * panel[k * nr + j];
    }
    activate_span(y, g->bias, g->res ? g->res + m * N : NULL, y, N, g->act);
  }
}

static int gemm_tile_supported(const bertc_gemm_tile *t) {
#ifdef __AVX512F__
  if (t->kc > 0 && t->mr == 12 && t->nr == 32) return 1;
#endif
  return t->kc > 0 && ((t->mr == 6 && t->nr == 16) || (t->mr == 4 && t->nr == 24) || (t->mr == 8 && t->nr == 8));
}

/* Row blocks of a multiple of mr rows; several per thread only when there are too few panels
 * to share (a narrow output, e.g. a classifier head) or M is large. */
static int64_t gemm_row_block(int64_t M, int64_t panels, int threads, int mr, int64_t row_block) {
  int64_t blocks = (M + row_block - 1) / row_block;
  if (panels < 4 * threads && blocks < threads) blocks = threads;
  const int64_t rows = (M + blocks - 1) / blocks;
  return (rows + mr - 1) / mr * mr;
}

void bertc_linear_packed(bertc_pool *p, const float *x, const float *w_packed, const float *bias,
                         const float *residual, float *y, int64_t M, int64_t N, int64_t K, int act,
                         const bertc_gemm_tile *tile) {
  gemm_args g = {x, w_packed, bias, residual, y, M, N, K, (N + tile->nr - 1) / tile->nr, 0,
                 act, tile->mr, tile->nr, tile->kc};
  if (!gemm_tile_supported(tile)) {
    bertc_parallel_rows(p, M, gemm_generic_rows, &g);
    return;
  }
  g.row_block = gemm_row_block(M, g.panels, bertc_pool_threads(p), tile->mr, bertc_pool_tuning(p)->gemm_row_block);
  bertc_parallel_rows(p, (M + g.row_block - 1) / g.row_block * g.panels, gemm_items, &g);
}

/* ---- int8 linear: kernels.h's format, ../int8_gemm.h's arithmetic --------------------------- */
/* One micro-kernel, by what the CPU has:
 * - AVX-512 VNNI, 12 x 32 (24 accumulators): VPDPBUSD sums four u8 x s8 products into each int32
 *   lane: x's unsigned bytes q by w; zp * colsum[n] is taken back at the end.
 * - AVX2, 4 x 16 (8 accumulators): VPMADDUBSW of q (unsigned, as VNNI) by w, then VPMADDWD with ones,
 *   for weights quantized to |w| <= 63 (bertc_qweight.qmax; targets.py's AVX2_I8_TILE): a pair's sum, at most
 *   2 * 255 * 63, never saturates int16. 7 instructions per row and K group, where the sign trick that full-range
 *   weights need (|x| by w carrying x's sign) took 10. Wider weights take int8_gemm.h's rows.
 * Two passes over the pool: x's rows are quantized into the work buffer once (int8_gemm.h), then the work
 * items, (row block, panel) pairs as in the fp32 GEMM, read them: each panel's weights (Kq x nr bytes)
 * serve every row tile of its block. The int32 sums run over the whole of K in registers. (Quantizing
 * inside each work item instead repeated it per item and per thread: at 2 threads, MiniLM's N = 384
 * linears spent a quarter of their time there.) */
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#define Q8_MR 12
#define Q8_NR 32
#else
#define Q8_MR 4
#define Q8_NR 16
#endif

/* The first pass: rows [lo, hi) of x into the work buffer with q8_quantize_row's bits, unsigned: the form
 * VPDPBUSD and VPMADDUBSW read; without a dense w (the sparse int8 GEMM's rows) dynamic and as q - 128, as
 * q8_quantize_rows writes them (its scalar loop, whose fminf / fmaxf are libm calls here, took two thirds of a
 * 10%-kept MiniLM's time). */
static void q8_quantize_x(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  const qgemm_args *g = raw;
  const int64_t K = g->K, Kq = g->Kq; /* (locals: q may alias *g, which would keep the loops below scalar) */
  const float x_scale = g->w ? g->w->x_scale : 0.0f;
  const int flip = g->w ? 0 : g->flip;
  const __m128i vflip = _mm_set1_epi8((char)flip);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t m = lo; m < hi; m++) {
    const float *x = g->x + m * K;
    int8_t *q = g->rows + m * Kq;
    float xmin = 0.0f, xmax = 0.0f;
    int64_t k = 0;
    if (x_scale <= 0.0f) { /* dynamic: the row's range (a static scale skips this pass); x first, so NaN is skipped */
      __m256 mn = _mm256_setzero_ps(), mx = _mm256_setzero_ps();
#ifdef __AVX512F__ /* 16 at a time first, folded into the 8-lane pair (min and max in any order: the same values) */
      __m512 mn16 = _mm512_setzero_ps(), mx16 = _mm512_setzero_ps();
      for (; k + 16 <= K; k += 16) {
        const __m512 v = _mm512_loadu_ps(x + k);
        mn16 = _mm512_min_ps(v, mn16), mx16 = _mm512_max_ps(v, mx16);
      }
      mn = _mm256_min_ps(_mm512_castps512_ps256(mn16), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(mn16), 1)));
      mx = _mm256_max_ps(_mm512_castps512_ps256(mx16), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(mx16), 1)));
#endif
      for (; k + 8 <= K; k += 8) {
        const __m256 v = _mm256_loadu_ps(x + k);
        mn = _mm256_min_ps(v, mn), mx = _mm256_max_ps(v, mx);
      }
      xmin = -_mm256_cvtss_f32(hmax_broadcast(_mm256_xor_ps(mn, sign))), xmax = _mm256_cvtss_f32(hmax_broadcast(mx));
      for (; k < K; k++) xmin = fminf(xmin, x[k]), xmax = fmaxf(xmax, x[k]);
    }
    const q8_row r = q8_row_params(x_scale, xmin, xmax);
    g->scales[m] = r.s, g->zps[m] = r.zp;
    const __m256 vinv = _mm256_set1_ps(r.inv), qlo = _mm256_set1_ps(r.lo), qhi = _mm256_set1_ps(r.hi);
    const __m256i zp = _mm256_set1_epi32(r.zp);
    k = 0;
#ifdef __AVX512F__ /* the same on 16 lanes: values in [0, 255] after zp, so VPMOVDB's truncation is the packs' result */
    const __m512 vinv16 = _mm512_set1_ps(r.inv), qlo16 = _mm512_set1_ps(r.lo), qhi16 = _mm512_set1_ps(r.hi);
    const __m512i zp16 = _mm512_set1_epi32(r.zp);
    for (; k + 16 <= K; k += 16) {
      const __m512 c = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(_mm512_loadu_ps(x + k), vinv16), qlo16), qhi16);
      const __m128i b = _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(c), zp16));
      _mm_storeu_si128((__m128i *)(q + k), _mm_xor_si128(b, vflip));
    }
#endif
    for (; k + 8 <= K; k += 8) { /* q8_value's order of max and min; cvtps rounds half to even as nearbyintf */
      const __m256 c = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_loadu_ps(x + k), vinv), qlo), qhi);
      const __m256i v = _mm256_add_epi32(_mm256_cvtps_epi32(c), zp);
      const __m128i h = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
      _mm_storel_epi64((__m128i *)(q + k), _mm_xor_si128(_mm_packus_epi16(h, h), vflip));
    }
    for (; k < K; k++) q[k] = (int8_t)((q8_value(x[k], &r) + r.zp) ^ flip);
    for (; k < Kq; k++) q[k] = (int8_t)(r.zp ^ flip);
  }
}

/* rows x Q8_NR of y at (m, panel p) from the quantized rows a (Kq apart) and their scales s; with VNNI, pf (or NULL)
 * is the next panel, fetched into L1 while this tile runs. A model whose weights outgrow L3 (bert-base's int8 85 MB)
 * reads each panel from DRAM once: its first tile waited on it (its four GEMM shapes at 128 tokens, 2.51 ms with the
 * weights in cache, took 2.85 cold, 2.56 with this prefetch). */
ALWAYS_INLINE void q8_tile(const int rows, const qgemm_args *g, const int8_t *a, const float *s, int64_t m, int64_t p,
                           const int8_t *pf) {
  const int64_t Kq = g->Kq, n0 = p * Q8_NR, cols = min64(Q8_NR, g->N - n0);
  const int8_t *b = g->w->w + p * Kq * Q8_NR;
  float *y = g->y + m * g->N + n0;
#if Q8_MR == 12
  /* The accumulators start at -zp colsum, so the loop leaves sum (q - zp) w (the same int32 sums, wrapping alike) */
  const __mmask16 k0 = lanes(cols), k1 = lanes(cols - 16);
  const __m512i cs0 = _mm512_maskz_loadu_epi32(k0, g->w->colsum + n0), cs1 = _mm512_maskz_loadu_epi32(k1, g->w->colsum + n0 + 16);
  __m512i acc[Q8_MR][2];
#pragma GCC unroll 12
  for (int r = 0; r < rows; r++) {
    const __m512i zp = _mm512_set1_epi32(-g->zps[m + r]);
    acc[r][0] = _mm512_mullo_epi32(cs0, zp), acc[r][1] = _mm512_mullo_epi32(cs1, zp);
  }
  for (int64_t t = 0; t < Kq / 4; t++) {
    const __m512i b0 = _mm512_loadu_si512(b + t * 128), b1 = _mm512_loadu_si512(b + t * 128 + 64);
    if (pf) { /* as gemm_micro512: the next panel's step t, two cache lines */
      _mm_prefetch((const char *)(pf + t * 128), _MM_HINT_T0);
      _mm_prefetch((const char *)(pf + t * 128 + 64), _MM_HINT_T0);
    }
#pragma GCC unroll 12
    for (int r = 0; r < rows; r++) {
      int32_t a4;
      memcpy(&a4, a + r * Kq + 4 * t, 4);
      const __m512i av = _mm512_set1_epi32(a4);
      acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], av, b0);
      acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], av, b1);
    }
  }
  const __m512 scale[2] = {_mm512_maskz_loadu_ps(k0, g->w->scale + n0), _mm512_maskz_loadu_ps(k1, g->w->scale + n0 + 16)};
  const __m512 bias[2] = {g->bias ? _mm512_maskz_loadu_ps(k0, g->bias + n0) : _mm512_setzero_ps(),
                          g->bias ? _mm512_maskz_loadu_ps(k1, g->bias + n0 + 16) : _mm512_setzero_ps()};
  if (cols == Q8_NR && (g->act == BERTC_ACT_NONE || g->act == BERTC_ACT_GELU)) {
    /* A whole tile with BERT's epilogues from the registers: activate_span's GELU, then the residual, as below.
     * (Through memory and activate_span, the epilogue took 7% of bert-base's int8 GEMM time at 128 tokens.) */
    const float *res = g->res ? g->res + m * g->N + n0 : NULL;
#pragma GCC unroll 12
    for (int r = 0; r < rows; r++)
#pragma GCC unroll 2
      for (int c = 0; c < 2; c++) {
        __m512 v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][c]), _mm512_mul_ps(_mm512_set1_ps(s[r]), scale[c]), bias[c]);
        if (g->act == BERTC_ACT_GELU) v = gelu16(v);
        if (res) v = _mm512_add_ps(v, _mm512_loadu_ps(res + r * g->N + 16 * c));
        _mm512_storeu_ps(y + r * g->N + 16 * c, v);
      }
    return;
  }
  /* through memory: an epilogue indexing acc by a variable v made GCC keep every accumulator on the stack */
  int32_t sums[Q8_MR][Q8_NR];
#pragma GCC unroll 12
  for (int r = 0; r < rows; r++) {
    _mm512_storeu_si512(sums[r], acc[r][0]);
    _mm512_storeu_si512(sums[r] + 16, acc[r][1]);
  }
  for (int v = 0; v < 2 && 16 * v < cols; v++) {
    const __mmask16 k = v ? k1 : k0;
#pragma GCC unroll 12
    for (int r = 0; r < rows; r++)
      _mm512_mask_storeu_ps(y + r * g->N + 16 * v, k, _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_loadu_si512(sums[r] + 16 * v)),
                                                                       _mm512_mul_ps(_mm512_set1_ps(s[r]), scale[v]), bias[v]));
  }
#else
  __m256i acc[Q8_MR][2];
  const __m256i ones = _mm256_set1_epi16(1);
#pragma GCC unroll 4
  for (int r = 0; r < rows; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
  for (int64_t t = 0; t < Kq / 4; t++) {
    const __m256i b0 = _mm256_loadu_si256((const __m256i *)(b + t * 64));
    const __m256i b1 = _mm256_loadu_si256((const __m256i *)(b + t * 64 + 32));
#pragma GCC unroll 4
    for (int r = 0; r < rows; r++) {
      int32_t a4;
      memcpy(&a4, a + r * Kq + 4 * t, 4);
      const __m256i av = _mm256_set1_epi32(a4);
      acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(_mm256_maddubs_epi16(av, b0), ones));
      acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(_mm256_maddubs_epi16(av, b1), ones));
    }
  }
  int32_t sums[Q8_MR][Q8_NR]; /* through memory, as above */
#pragma GCC unroll 4
  for (int r = 0; r < rows; r++) {
    _mm256_storeu_si256((__m256i *)sums[r], acc[r][0]);
    _mm256_storeu_si256((__m256i *)(sums[r] + 8), acc[r][1]);
  }
  for (int v = 0; v < 2 && 8 * v < cols; v++) {
    const int64_t n = n0 + 8 * v, lanes = min64(8, cols - 8 * v);
    const __m256i k = lanes == 8 ? _mm256_set1_epi32(-1) : tail_mask(lanes);
    const __m256 scale = _mm256_maskload_ps(g->w->scale + n, k);
    const __m256i colsum = _mm256_maskload_epi32(g->w->colsum + n, k);
    const __m256 bias = g->bias ? _mm256_maskload_ps(g->bias + n, k) : _mm256_setzero_ps();
#pragma GCC unroll 4
    for (int r = 0; r < rows; r++) { /* sum (q - zp) w = sum q w - zp colsum */
      const __m256i back = _mm256_mullo_epi32(colsum, _mm256_set1_epi32(g->zps[m + r]));
      const __m256 sum = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(sums[r] + 8 * v)), back));
      _mm256_maskstore_ps(y + r * g->N + 8 * v, k, _mm256_fmadd_ps(sum, _mm256_mul_ps(_mm256_set1_ps(s[r]), scale), bias));
    }
  }
#endif
  for (int r = 0; r < rows; r++)
    activate_span(y + r * g->N, NULL, g->res ? g->res + (m + r) * g->N + n0 : NULL, y + r * g->N, cols, g->act);
}

#define Q8_CASE(R) case R: q8_tile(R, g, a, s, m, p, pf); return
static void q8_tile_any(int rows, const qgemm_args *g, const int8_t *a, const float *s, int64_t m, int64_t p,
                        const int8_t *pf) {
  switch (rows) {
    Q8_CASE(1); Q8_CASE(2); Q8_CASE(3); Q8_CASE(4);
#if Q8_MR == 12
    Q8_CASE(5); Q8_CASE(6); Q8_CASE(7); Q8_CASE(8); Q8_CASE(9); Q8_CASE(10); Q8_CASE(11); Q8_CASE(12);
#endif
    default: return;
  }
}
#undef Q8_CASE

static void q8_items(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  const qgemm_args *g = raw;
  for (int64_t t = lo; t < hi;) {
    const int64_t rb = t / g->panels, p0 = t % g->panels, p1 = min64(g->panels, p0 + hi - t);
    const int64_t m0 = rb * g->row_block, m1 = min64(g->M, m0 + g->row_block);
    for (int64_t p = p0; p < p1; p++)
      for (int64_t m = m0; m < m1;) {
        const int rows = gemm_tile_rows(m1 - m, Q8_MR);
        const int8_t *pf = m == m0 && p + 1 < g->panels ? g->w->w + (p + 1) * g->Kq * Q8_NR : NULL; /* first tile */
        q8_tile_any(rows, g, g->rows + m * g->Kq, g->scales + m, m, p, pf);
        m += rows;
      }
    t += p1 - p0;
  }
}

/* Tiles other than Q8_MR x Q8_NR take int8_gemm.h's rows, one at a time, with this epilogue. */
static void q8_epilogue_avx2(float *y, const float *res, int64_t n, int act) { activate_span(y, NULL, res, y, n, act); }

void bertc_linear_packed_i8(bertc_pool *p, const float *x, const bertc_qweight *w, const float *bias,
                            const float *residual, float *y, int64_t M, int64_t N, int64_t K, int act,
                            const bertc_gemm_tile *tile, void *work) {
  if (tile->mr != Q8_MR || tile->nr != Q8_NR || (Q8_MR == 4 && w->qmax > 63)) {
    q8_rows_args a = {x, bias, residual, w, y, work, M, N, K, tile->nr, act, q8_epilogue_avx2};
    q8_linear_rows(p, &a);
    return;
  }
  qgemm_args g = {x, bias, residual, w, y, q8_rows(work), q8_scales(work, M, K), q8_zps(work, M, K), M, N, K, q8_kq(K),
                  (N + Q8_NR - 1) / Q8_NR, 0, act, 0};
  bertc_parallel_rows(q8_quantize_pool(p, M, K), M, q8_quantize_x, &g);
  g.row_block = gemm_row_block(M, g.panels, bertc_pool_threads(p), Q8_MR, bertc_pool_tuning(p)->gemm_row_block);
  bertc_parallel_rows(p, (M + g.row_block - 1) / g.row_block * g.panels, q8_items, &g);
}

/* ---- block-sparse linear: ../sparse_gemm.h on 32 zmm (AVX-512) or 16 ymm registers -------- */
#ifdef __AVX512F__
#define SPARSE_VREG_BYTES 64
#define SPARSE_VREGS 32
#else
#define SPARSE_VREG_BYTES 32
#define SPARSE_VREGS 16
#endif
static void sparse_epilogue(float *y, const float *bias, const float *res, int64_t n, int act) {
  activate_span(y, bias, res, y, n, act);
}
#include "../sparse_gemm.h"

/* ---- block-sparse int8: ../int8_gemm.h's two passes; its sums on VPMADDWD ----------------- */
/* Two blocks at a time, their int16 weights interleaved against the pair of x values (columns k0, k1), so one
 * VPMADDWD adds both blocks' products (|sum| <= 2 * 128 * 127) for its outputs, in order. An odd last block pairs
 * with zeros. x's pairs come from the tile's rows transposed once per work item (q8s_transpose4: xt[k] holds the 4
 * rows' bytes of column k), so a pair of blocks takes its 4 rows' x pairs in two loads, an unpack and a widening
 * (q8s_pairs4) and each row's pair in one shuffle, where gathering them row by row took 4 x 2 byte loads and
 * their assembly: the most of the kernel's instructions. */
/* 4 vectors of 16 bytes transposed to 16 dwords: byte k of v0 .. v3 become dword k (out[k / 4], lane k % 4) */
static inline void q8s_interleave4(__m128i v0, __m128i v1, __m128i v2, __m128i v3, __m128i out[4]) {
  const __m128i t0 = _mm_unpacklo_epi8(v0, v1), t1 = _mm_unpackhi_epi8(v0, v1);
  const __m128i t2 = _mm_unpacklo_epi8(v2, v3), t3 = _mm_unpackhi_epi8(v2, v3);
  out[0] = _mm_unpacklo_epi16(t0, t2), out[1] = _mm_unpackhi_epi16(t0, t2);
  out[2] = _mm_unpacklo_epi16(t1, t3), out[3] = _mm_unpackhi_epi16(t1, t3);
}
/* 4 rows Kq apart from q: columns k .. k + 15 as a dword each (their 4 rows' bytes) */
static inline void q8s_rows4(const int8_t *q, int64_t Kq, __m128i out[4]) {
  q8s_interleave4(_mm_loadu_si128((const __m128i *)q), _mm_loadu_si128((const __m128i *)(q + Kq)),
                  _mm_loadu_si128((const __m128i *)(q + 2 * Kq)), _mm_loadu_si128((const __m128i *)(q + 3 * Kq)), out);
}
static const void *q8s_transpose4(const q8s_args *a, const int8_t *q, float *scratch) {
  const int64_t Kq = q8_kq(a->K);
  int32_t *xt = (int32_t *)scratch; /* Kq dwords: BERTC_SCRATCH_SPARSE(K, 1) floats hold them */
  int64_t k = 0;
  for (; k + 16 <= Kq; k += 16) {
    __m128i t[4];
    q8s_rows4(q + k, Kq, t);
    for (int c = 0; c < 4; c++) _mm_storeu_si128((__m128i *)(xt + k + 4 * c), t[c]);
  }
  for (; k < Kq; k++)
    xt[k] = (int32_t)((uint32_t)(uint8_t)q[k] | (uint32_t)(uint8_t)q[Kq + k] << 8 |
                      (uint32_t)(uint8_t)q[2 * Kq + k] << 16 | (uint32_t)(uint8_t)q[3 * Kq + k] << 24);
  return xt;
}
/* the 4 rows' bytes of columns k0, k1 interleaved: x[m, k0], x[m, k1] at bytes 2m, 2m + 1 */
static inline __m128i q8s_bytes2(const int32_t *xt, int64_t k0, int64_t k1) {
  return _mm_unpacklo_epi8(_mm_cvtsi32_si128(xt[k0]), _mm_cvtsi32_si128(xt[k1]));
}
/* the 4 rows' x pairs (x[m, k0], x[m, k1]) as int16, row m in dword m */
static inline __m128i q8s_pairs4(const int32_t *xt, int64_t k0, int64_t k1) {
  return _mm_cvtepi8_epi16(q8s_bytes2(xt, k0, k1));
}
static inline __m128i q8s_load_i8x8(const int8_t *p, int r) {
  int64_t v = 0;
  memcpy(&v, p, (size_t)r);
  return _mm_cvtepi8_epi16(_mm_cvtsi64_si128(v));
}
/* r = 4, 8 on 128-bit registers: lo holds outputs 0-3, hi (r = 8) 4-7 */
#define Q8S_ROW_XMM(m, IMM, R)                                                                                \
  do {                                                                                                       \
    const __m128i xp = _mm_shuffle_epi32(p, IMM);                                                            \
    lo[m] = _mm_add_epi32(lo[m], _mm_madd_epi16(wl, xp));                                                    \
    if (R == 8) hi[m] = _mm_add_epi32(hi[m], _mm_madd_epi16(wh, xp));                                        \
  } while (0)
#define Q8S_SUMS_XMM(R)                                                                                      \
  static void q8s_sums_##R(const q8s_args *a, const void *tile, int64_t i, int32_t *acc) {                   \
    const int64_t b0 = a->w->offsets[i], nb = a->w->offsets[i + 1] - b0;                                     \
    const int32_t *idx = a->w->index + b0, *xt = tile;                                                       \
    const int8_t *v = a->w->values + b0 * R;                                                                 \
    __m128i lo[Q8S_MR], hi[Q8S_MR];                                                                          \
    for (int m = 0; m < Q8S_MR; m++) lo[m] = hi[m] = _mm_setzero_si128();                                    \
    for (int64_t b = 0; b < nb; b += 2) {                                                                    \
      const int two = b + 1 < nb;                                                                            \
      const __m128i w0 = q8s_load_i8x8(v + b * R, R), w1 = two ? q8s_load_i8x8(v + b * R + R, R) : _mm_setzero_si128(); \
      const __m128i wl = _mm_unpacklo_epi16(w0, w1), wh = _mm_unpackhi_epi16(w0, w1);                        \
      const __m128i p = q8s_pairs4(xt, idx[b], idx[two ? b + 1 : b]);                                        \
      Q8S_ROW_XMM(0, 0x00, R); Q8S_ROW_XMM(1, 0x55, R); Q8S_ROW_XMM(2, 0xAA, R); Q8S_ROW_XMM(3, 0xFF, R);            \
    }                                                                                                        \
    for (int m = 0; m < Q8S_MR; m++) {                                                                       \
      _mm_storeu_si128((__m128i *)(acc + m * R), lo[m]);                                                     \
      if (R == 8) _mm_storeu_si128((__m128i *)(acc + m * R + 4), hi[m]);                                     \
    }                                                                                                        \
  }
Q8S_SUMS_XMM(4)
Q8S_SUMS_XMM(8)
/* r = 16: the same on 256-bit registers, interleaved within each 128-bit lane: lo holds outputs 0-3 | 8-11, hi
 * 4-7 | 12-15; the rows' pairs in both lanes. */
#define Q8S_ROW_YMM(m, IMM)                                                                                  \
  do {                                                                                                       \
    const __m256i xp = _mm256_shuffle_epi32(p, IMM);                                                         \
    lo[m] = _mm256_add_epi32(lo[m], _mm256_madd_epi16(wl, xp));                                              \
    hi[m] = _mm256_add_epi32(hi[m], _mm256_madd_epi16(wh, xp));                                              \
  } while (0)
static void q8s_sums_16(const q8s_args *a, const void *tile, int64_t i, int32_t *acc) {
  const int64_t b0 = a->w->offsets[i], nb = a->w->offsets[i + 1] - b0;
  const int32_t *idx = a->w->index + b0, *xt = tile;
  const int8_t *v = a->w->values + b0 * 16;
  __m256i lo[Q8S_MR], hi[Q8S_MR];
  for (int m = 0; m < Q8S_MR; m++) lo[m] = hi[m] = _mm256_setzero_si256();
  for (int64_t b = 0; b < nb; b += 2) {
    const int two = b + 1 < nb;
    const __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(v + b * 16)));
    const __m256i w1 = two ? _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(v + b * 16 + 16)))
                           : _mm256_setzero_si256();
    const __m256i wl = _mm256_unpacklo_epi16(w0, w1), wh = _mm256_unpackhi_epi16(w0, w1);
    const __m256i p = _mm256_broadcastsi128_si256(q8s_pairs4(xt, idx[b], idx[two ? b + 1 : b]));
    Q8S_ROW_YMM(0, 0x00); Q8S_ROW_YMM(1, 0x55); Q8S_ROW_YMM(2, 0xAA); Q8S_ROW_YMM(3, 0xFF);
  }
  for (int m = 0; m < Q8S_MR; m++) {
    _mm256_storeu_si256((__m256i *)(acc + m * 16), _mm256_permute2x128_si256(lo[m], hi[m], 0x20));
    _mm256_storeu_si256((__m256i *)(acc + m * 16 + 8), _mm256_permute2x128_si256(lo[m], hi[m], 0x31));
  }
}

/* Groups of 4 (kernels.h: interleaved per output, x86): four blocks at a time against the 4 rows' unsigned x bytes of
 * their 4 columns (q8s_quads4: row m's in dword m). With VNNI, VPDPBUSD on 8-bit weights; without, VPMADDUBSW summing
 * pairs in int16 on 7-bit ones (2 * 255 * 63 < 32768) and VPMADDWD by ones the two pairs into int32: 4 x r
 * multiply-adds a row in two multiplies, where the pairs above take four. */
static inline __m128i q8s_quads4(const int32_t *xt, const int32_t *idx) {
  return _mm_unpacklo_epi16(q8s_bytes2(xt, idx[0], idx[1]), q8s_bytes2(xt, idx[2], idx[3]));
}
#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512VL__)
/* VNNI: VPDPBUSD sums a group's four u8 x s8 products per output straight into int32, so the groups take 8-bit
 * weights (no VPMADDUBSW to saturate): one instruction a row for 4 x r multiply-adds, 16, 8 or 4 outputs on 512-,
 * 256- or 128-bit registers. Two groups per step into two sets of accumulators, against VPDPBUSD's latency. */
static inline __m128i q8s_xmm(__m128i p) { return p; }
#define Q8S_G4_DP_ROWS(S, p, w, DP, SHUF)                                                                    \
  do {                                                                                                       \
    S[0] = DP(S[0], SHUF(p, 0x00), w);                                                                       \
    S[1] = DP(S[1], SHUF(p, 0x55), w);                                                                       \
    S[2] = DP(S[2], SHUF(p, 0xAA), w);                                                                       \
    S[3] = DP(S[3], SHUF(p, 0xFF), w);                                                                       \
  } while (0)
#define Q8S_SUMS_G4_DP(R, T, ZERO, LOAD, BCAST, SHUF, DP, STORE, ADD)                                        \
  static void q8s_sums_g4_##R(const q8s_args *a, const void *tile, int64_t i, int32_t *acc) {                \
    const int64_t b0 = a->w->offsets[i], nb = a->w->offsets[i + 1] - b0;                                     \
    const int32_t *idx = a->w->index + b0, *xt = tile;                                                       \
    const int8_t *v = a->w->values + b0 * R;                                                                 \
    T s[Q8S_MR], t[Q8S_MR];                                                                                  \
    for (int m = 0; m < Q8S_MR; m++) s[m] = t[m] = ZERO();                                                   \
    int64_t b = 0;                                                                                           \
    for (; b + 8 <= nb; b += 8) {                                                                            \
      const T w0 = LOAD((const void *)(v + b * R)), w1 = LOAD((const void *)(v + b * R + 4 * R));            \
      const T p0 = BCAST(q8s_quads4(xt, idx + b)), p1 = BCAST(q8s_quads4(xt, idx + b + 4));                  \
      Q8S_G4_DP_ROWS(s, p0, w0, DP, SHUF);                                                                   \
      Q8S_G4_DP_ROWS(t, p1, w1, DP, SHUF);                                                                   \
    }                                                                                                        \
    if (b < nb) {                                                                                            \
      const T w0 = LOAD((const void *)(v + b * R)), p0 = BCAST(q8s_quads4(xt, idx + b));                     \
      Q8S_G4_DP_ROWS(s, p0, w0, DP, SHUF);                                                                   \
    }                                                                                                        \
    for (int m = 0; m < Q8S_MR; m++) STORE((void *)(acc + m * R), ADD(s[m], t[m]));                          \
  }
Q8S_SUMS_G4_DP(16, __m512i, _mm512_setzero_si512, _mm512_loadu_si512, _mm512_broadcast_i32x4, _mm512_shuffle_epi32,
               _mm512_dpbusd_epi32, _mm512_storeu_si512, _mm512_add_epi32)
Q8S_SUMS_G4_DP(8, __m256i, _mm256_setzero_si256, _mm256_loadu_si256, _mm256_broadcastsi128_si256, _mm256_shuffle_epi32,
               _mm256_dpbusd_epi32, _mm256_storeu_si256, _mm256_add_epi32)
Q8S_SUMS_G4_DP(4, __m128i, _mm_setzero_si128, _mm_loadu_si128, q8s_xmm, _mm_shuffle_epi32, _mm_dpbusd_epi32,
               _mm_storeu_si128, _mm_add_epi32)
/* Tiles of 16 rows (Q8S_MR_WIDE, for more than 4): a group's x comes from 4 loads of the rows transposed 16 at a time
 * (q8s_transpose16: xt[k] the 16 rows' bytes of column k) and 6 unpacks for all 16 rows, where the 4-row tiles take
 * 4 loads and 3 unpacks per 4; each row's 4 bytes are then broadcast from memory (a load, no shuffle). */
static const void *q8s_transpose16(const q8s_args *a, const int8_t *q, float *scratch) {
  const int64_t Kq = q8_kq(a->K);
  int8_t *xt = (int8_t *)scratch; /* Kq x 16 bytes: BERTC_SCRATCH_SPARSE_I8(K) floats */
  int64_t k = 0;
  for (; k + 16 <= Kq; k += 16) {
    __m128i t[4][4]; /* t[j][c]: columns k + 4c .. k + 4c + 3 of rows 4j .. 4j + 3, a dword per column */
    for (int j = 0; j < 4; j++) q8s_rows4(q + 4 * j * Kq + k, Kq, t[j]);
    for (int c = 0; c < 4; c++) { /* a 4 x 4 dword transpose: column k + 4c + i's 16 rows */
      const __m128i u0 = _mm_unpacklo_epi32(t[0][c], t[1][c]), u1 = _mm_unpackhi_epi32(t[0][c], t[1][c]);
      const __m128i u2 = _mm_unpacklo_epi32(t[2][c], t[3][c]), u3 = _mm_unpackhi_epi32(t[2][c], t[3][c]);
      _mm_storeu_si128((__m128i *)(xt + (k + 4 * c) * 16), _mm_unpacklo_epi64(u0, u2));
      _mm_storeu_si128((__m128i *)(xt + (k + 4 * c + 1) * 16), _mm_unpackhi_epi64(u0, u2));
      _mm_storeu_si128((__m128i *)(xt + (k + 4 * c + 2) * 16), _mm_unpacklo_epi64(u1, u3));
      _mm_storeu_si128((__m128i *)(xt + (k + 4 * c + 3) * 16), _mm_unpackhi_epi64(u1, u3));
    }
  }
  for (; k < Kq; k++)
    for (int m = 0; m < 16; m++) xt[k * 16 + m] = q[m * Kq + k];
  return xt;
}
/* the 16 rows' bytes of a group's 4 columns, row m's 4 in dword m of x */
static inline void q8s_quads16(const int8_t *xt, const int32_t *idx, int32_t *x) {
  __m128i t[4];
  q8s_interleave4(_mm_loadu_si128((const __m128i *)(xt + (int64_t)idx[0] * 16)),
                  _mm_loadu_si128((const __m128i *)(xt + (int64_t)idx[1] * 16)),
                  _mm_loadu_si128((const __m128i *)(xt + (int64_t)idx[2] * 16)),
                  _mm_loadu_si128((const __m128i *)(xt + (int64_t)idx[3] * 16)), t);
  for (int c = 0; c < 4; c++) _mm_storeu_si128((__m128i *)(x + 4 * c), t[c]);
}
/* 16 accumulators by name (an array of them was kept in memory) */
#define Q8S_X16(X, A, B) X(0, A, B) X(1, A, B) X(2, A, B) X(3, A, B) X(4, A, B) X(5, A, B) X(6, A, B) X(7, A, B) \
  X(8, A, B) X(9, A, B) X(10, A, B) X(11, A, B) X(12, A, B) X(13, A, B) X(14, A, B) X(15, A, B)
#define Q8S_W16_DECL(m, T, ZERO) T s##m = ZERO();
#define Q8S_W16_DP(m, DP, SET1) s##m = DP(s##m, SET1(x[m]), w);
#define Q8S_W16_STORE(m, STORE, R) STORE((void *)(acc + m * R), s##m);
#define Q8S_SUMS_WIDE(R, T, ZERO, LOAD, SET1, DP, STORE)                                                      \
  static void q8s_sums_w16_##R(const q8s_args *a, const void *tile, int64_t i, int32_t *acc) {               \
    const int64_t b0 = a->w->offsets[i], nb = a->w->offsets[i + 1] - b0;                                     \
    const int32_t *idx = a->w->index + b0;                                                                   \
    const int8_t *v = a->w->values + b0 * R, *xt = tile;                                                     \
    int32_t x[16];                                                                                           \
    Q8S_X16(Q8S_W16_DECL, T, ZERO)                                                                           \
    for (int64_t b = 0; b < nb; b += 4) {                                                                    \
      const T w = LOAD((const void *)(v + b * R));                                                           \
      q8s_quads16(xt, idx + b, x);                                                                           \
      __asm__("" : "+m"(*(int32_t(*)[16])x)); /* each row broadcast from memory, not by shifts of a register */  \
      Q8S_X16(Q8S_W16_DP, DP, SET1)                                                                          \
    }                                                                                                        \
    Q8S_X16(Q8S_W16_STORE, STORE, R)                                                                         \
  }
Q8S_SUMS_WIDE(16, __m512i, _mm512_setzero_si512, _mm512_loadu_si512, _mm512_set1_epi32, _mm512_dpbusd_epi32,
              _mm512_storeu_si512)
Q8S_SUMS_WIDE(8, __m256i, _mm256_setzero_si256, _mm256_loadu_si256, _mm256_set1_epi32, _mm256_dpbusd_epi32,
              _mm256_storeu_si256)
Q8S_SUMS_WIDE(4, __m128i, _mm_setzero_si128, _mm_loadu_si128, _mm_set1_epi32, _mm_dpbusd_epi32, _mm_storeu_si128)
#define Q8S_WIDE 1
#else
#define Q8S_WIDE 0
#define Q8S_G4_ROW(m, IMM, R)                                                                                 \
  do {                                                                                                       \
    const __m256i xp = _mm256_shuffle_epi32(p, IMM);                                                         \
    a0[m] = _mm256_add_epi32(a0[m], _mm256_madd_epi16(_mm256_maddubs_epi16(xp, w0), ones));                  \
    if (R == 16) a1[m] = _mm256_add_epi32(a1[m], _mm256_madd_epi16(_mm256_maddubs_epi16(xp, w1), ones));     \
  } while (0)
/* r = 8, 16: a group's 4 x r bytes in one or two 256-bit registers, outputs 0-7 and 8-15 in order */
#define Q8S_SUMS_G4(R)                                                                                       \
  static void q8s_sums_g4_##R(const q8s_args *a, const void *tile, int64_t i, int32_t *acc) {                \
    const int64_t b0 = a->w->offsets[i], nb = a->w->offsets[i + 1] - b0;                                     \
    const int32_t *idx = a->w->index + b0, *xt = tile;                                                       \
    const int8_t *v = a->w->values + b0 * R;                                                                 \
    const __m256i ones = _mm256_set1_epi16(1);                                                               \
    __m256i a0[Q8S_MR], a1[Q8S_MR];                                                                          \
    for (int m = 0; m < Q8S_MR; m++) a0[m] = a1[m] = _mm256_setzero_si256();                                 \
    for (int64_t b = 0; b < nb; b += 4) {                                                                    \
      const __m256i w0 = _mm256_loadu_si256((const __m256i *)(v + b * R));                                   \
      const __m256i w1 = R == 16 ? _mm256_loadu_si256((const __m256i *)(v + b * R + 32)) : w0;               \
      const __m256i p = _mm256_broadcastsi128_si256(q8s_quads4(xt, idx + b));                                \
      Q8S_G4_ROW(0, 0x00, R); Q8S_G4_ROW(1, 0x55, R); Q8S_G4_ROW(2, 0xAA, R); Q8S_G4_ROW(3, 0xFF, R);        \
    }                                                                                                        \
    for (int m = 0; m < Q8S_MR; m++) {                                                                       \
      _mm256_storeu_si256((__m256i *)(acc + m * R), a0[m]);                                                  \
      if (R == 16) _mm256_storeu_si256((__m256i *)(acc + m * R + 8), a1[m]);                                 \
    }                                                                                                        \
  }
Q8S_SUMS_G4(8)
Q8S_SUMS_G4(16)
/* r = 4: a group's 16 bytes in one 128-bit register */
static void q8s_sums_g4_4(const q8s_args *a, const void *tile, int64_t i, int32_t *acc) {
  const int64_t b0 = a->w->offsets[i], nb = a->w->offsets[i + 1] - b0;
  const int32_t *idx = a->w->index + b0, *xt = tile;
  const int8_t *v = a->w->values + b0 * 4;
  const __m128i ones = _mm_set1_epi16(1);
  __m128i s[Q8S_MR];
  for (int m = 0; m < Q8S_MR; m++) s[m] = _mm_setzero_si128();
  for (int64_t b = 0; b < nb; b += 4) {
    const __m128i w = _mm_loadu_si128((const __m128i *)(v + b * 4)), p = q8s_quads4(xt, idx + b);
    s[0] = _mm_add_epi32(s[0], _mm_madd_epi16(_mm_maddubs_epi16(_mm_shuffle_epi32(p, 0x00), w), ones));
    s[1] = _mm_add_epi32(s[1], _mm_madd_epi16(_mm_maddubs_epi16(_mm_shuffle_epi32(p, 0x55), w), ones));
    s[2] = _mm_add_epi32(s[2], _mm_madd_epi16(_mm_maddubs_epi16(_mm_shuffle_epi32(p, 0xAA), w), ones));
    s[3] = _mm_add_epi32(s[3], _mm_madd_epi16(_mm_maddubs_epi16(_mm_shuffle_epi32(p, 0xFF), w), ones));
  }
  for (int m = 0; m < Q8S_MR; m++) _mm_storeu_si128((__m128i *)(acc + m * 4), s[m]);
}
#endif

void bertc_linear_sparse_i8(bertc_pool *p, const float *x, const bertc_block_sparse_i8 *w, const float *bias,
                            const float *residual, float *y, int64_t M, int64_t N, int64_t K, int act, void *work) {
  q8s_sums_fn g4 = w->group != 4 || w->c != 1 ? NULL : w->r == 16 ? q8s_sums_g4_16 : w->r == 8 ? q8s_sums_g4_8
                                                          : w->r == 4 ? q8s_sums_g4_4 : NULL;
#if Q8S_WIDE
  const int wide = g4 && M > Q8S_MR; /* 16-row tiles */
  const q8s_prep_fn wide_prep = q8s_transpose16;
  if (wide) g4 = w->r == 16 ? q8s_sums_w16_16 : w->r == 8 ? q8s_sums_w16_8 : q8s_sums_w16_4;
#else
  const int wide = 0;
  const q8s_prep_fn wide_prep = NULL;
#endif
  const q8s_sums_fn sums = g4 ? g4 : Q8S_SUMS_FOR(w);
  const int flip = g4 ? 0 : 0x80; /* unsigned bytes for VPMADDUBSW / VPDPBUSD; q - 128 for the pairs and reference */
  qgemm_args g = {.x = x, .rows = q8_rows(work), .scales = q8_scales(work, M, K), .zps = q8_zps(work, M, K),
                  .M = M, .K = K, .Kq = q8_kq(K), .flip = flip};
  bertc_parallel_rows(q8_quantize_pool(p, M, K), M, q8_quantize_x, &g);
  q8s_args a = {bias, residual, w, y, work, M, N, K, 1, act, q8_epilogue_avx2, sums,
                sums == q8s_sums_ref ? NULL : wide ? wide_prep : q8s_transpose4, flip, wide ? Q8S_MR_WIDE : Q8S_MR, 0};
  q8_sparse_items(p, &a);
}

/* ---- layer norm ----------------------------------------------------------------------- */
typedef struct {
  const float *x, *res, *g, *b;
  float *y;
  int64_t n;
  float eps;
} ln_args;

static double hsum_pd(__m256d v) {
  const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}

/* y = x + res, returning the row sum. Sums are in double, like the reference: rows of 768+
 * values must keep the mean and variance to ~1e-7. */
static double ln_sum(const float *x, const float *res, float *y, int64_t n) {
  __m256d acc = _mm256_setzero_pd();
  int64_t i = 0;
#ifdef __AVX512F__ /* 16 at a time into two independent double accumulators */
  __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
  for (; i + 16 <= n; i += 16) {
    __m512 v = _mm512_loadu_ps(x + i);
    if (res) v = _mm512_add_ps(v, _mm512_loadu_ps(res + i));
    _mm512_storeu_ps(y + i, v);
    a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    a1 = _mm512_add_pd(a1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
  }
  const __m512d a01 = _mm512_add_pd(a0, a1);
  acc = _mm256_add_pd(_mm512_castpd512_pd256(a01), _mm512_extractf64x4_pd(a01, 1));
#endif
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(x + i);
    if (res) v = _mm256_add_ps(v, _mm256_loadu_ps(res + i));
    _mm256_storeu_ps(y + i, v);
    acc = _mm256_add_pd(acc, _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)),
                                           _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))));
  }
  double sum = hsum_pd(acc);
  for (; i < n; i++) sum += y[i] = x[i] + (res ? res[i] : 0.0f);
  return sum;
}

static double ln_centered_squares(const float *y, int64_t n, double mean) {
  const __m256d m = _mm256_set1_pd(mean);
  __m256d acc = _mm256_setzero_pd();
  int64_t i = 0;
#ifdef __AVX512F__
  const __m512d m8 = _mm512_set1_pd(mean);
  __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(y + i);
    const __m512d lo = _mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)), m8);
    const __m512d hi =
        _mm512_sub_pd(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))), m8);
    a0 = _mm512_fmadd_pd(lo, lo, a0);
    a1 = _mm512_fmadd_pd(hi, hi, a1);
  }
  const __m512d a01 = _mm512_add_pd(a0, a1);
  acc = _mm256_add_pd(_mm512_castpd512_pd256(a01), _mm512_extractf64x4_pd(a01, 1));
#endif
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(y + i);
    const __m256d lo = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), m);
    const __m256d hi = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), m);
    acc = _mm256_fmadd_pd(lo, lo, _mm256_fmadd_pd(hi, hi, acc));
  }
  double sq = hsum_pd(acc);
  for (; i < n; i++) sq += (y[i] - mean) * (y[i] - mean);
  return sq;
}

static void ln_rows(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  const ln_args *a = raw;
  const int64_t n = a->n;
  for (int64_t r = lo; r < hi; r++) {
    float *y = a->y + r * n;
    const double mean = ln_sum(a->x + r * n, a->res ? a->res + r * n : NULL, y, n) / (double)n;
    const float inv = (float)(1.0 / sqrt(ln_centered_squares(y, n, mean) / (double)n + a->eps));
    const float mf = (float)mean;
    const __m256 vm = _mm256_set1_ps(mf), vinv = _mm256_set1_ps(inv);
    int64_t i = 0;
#ifdef __AVX512F__
    for (; i + 16 <= n; i += 16) {
      const __m512 t = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(y + i), _mm512_set1_ps(mf)), _mm512_set1_ps(inv));
      _mm512_storeu_ps(y + i, _mm512_fmadd_ps(t, _mm512_loadu_ps(a->g + i), _mm512_loadu_ps(a->b + i)));
    }
#endif
    for (; i + 8 <= n; i += 8) {
      const __m256 t = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(y + i), vm), vinv);
      _mm256_storeu_ps(y + i, _mm256_fmadd_ps(t, _mm256_loadu_ps(a->g + i), _mm256_loadu_ps(a->b + i)));
    }
    for (; i < n; i++) y[i] = (y[i] - mf) * inv * a->g[i] + a->b[i];
  }
}

void bertc_layer_norm(bertc_pool *p, const float *x, const float *residual, const float *gamma, const float *beta,
                      float *y, int64_t rows, int64_t n, float eps) {
  ln_args a = {x, residual, gamma, beta, y, n, eps};
  bertc_parallel_rows(p, rows, ln_rows, &a);
}

/* RMSNorm (EuroBERT's): y = x / sqrt(mean(x^2) + eps) * g, the squares summed in double as layer_norm's are. */
typedef struct { const float *x, *g; float *y; int64_t n; float eps; } rms_args;
static void rms_rows(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  const rms_args *a = raw;
  const int64_t n = a->n;
  for (int64_t r = lo; r < hi; r++) {
    const float *x = a->x + r * n;
    float *y = a->y + r * n;
    const float inv = (float)(1.0 / sqrt(ln_centered_squares(x, n, 0.0) / (double)n + a->eps));
    const __m256 vinv = _mm256_set1_ps(inv);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vinv), _mm256_loadu_ps(a->g + i)));
    for (; i < n; i++) y[i] = x[i] * inv * a->g[i];
  }
}

void bertc_rms_norm(bertc_pool *p, const float *x, const float *gamma, float *y, int64_t rows, int64_t n, float eps) {
  rms_args a = {x, gamma, y, n, eps};
  bertc_parallel_rows(p, rows, rms_rows, &a);
}

/* ---- softmax ---------------------------------------------------------------------------- */
/* The lanes past n (0 < n < 8) are `fill`, so a row tail can join max/sum reductions. */
static inline __m256 load_tail(const float *x, int64_t n, float fill) {
  const __m256i m = tail_mask(n);
  return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(x, m), _mm256_castsi256_ps(m));
}

static float row_max(const float *x, int64_t n) {
  __m256 mx = _mm256_set1_ps(-INFINITY);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(x + i));
  if (i < n) mx = _mm256_max_ps(mx, load_tail(x + i, n - i, -INFINITY));
  return _mm256_cvtss_f32(hmax_broadcast(mx));
}

/* y = exp(x - mx), returning the sum; the tail's fill of -inf adds zeros. */
static float exp_shifted(const float *x, float *y, int64_t n, float mx) {
  const __m256 vmx = _mm256_set1_ps(mx);
  __m256 sum = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmx));
    _mm256_storeu_ps(y + i, e);
    sum = _mm256_add_ps(sum, e);
  }
  if (i < n) {
    const __m256 e = exp8(_mm256_sub_ps(load_tail(x + i, n - i, -INFINITY), vmx));
    _mm256_maskstore_ps(y + i, tail_mask(n - i), e);
    sum = _mm256_add_ps(sum, e);
  }
  return _mm256_cvtss_f32(hsum_broadcast(sum));
}

static void scale_span(float *y, int64_t n, float s) {
  const __m256 vs = _mm256_set1_ps(s);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), vs));
  for (; i < n; i++) y[i] *= s;
}

typedef struct {
  const float *x;
  float *y;
  int64_t n;
} softmax_args;

static void softmax_rows(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  const softmax_args *a = raw;
  for (int64_t r = lo; r < hi; r++) {
    const float *x = a->x + r * a->n;
    float *y = a->y + r * a->n;
    scale_span(y, a->n, 1.0f / exp_shifted(x, y, a->n, row_max(x, a->n)));
  }
}

void bertc_softmax(bertc_pool *p, const float *x, float *y, int64_t rows, int64_t n) {
  softmax_args a = {x, y, n};
  bertc_parallel_rows(p, rows, softmax_rows, &a);
}

/* ---- unary -------------------------------------------------------------------------------- */
typedef struct {
  const float *x;
  float *y;
  int act;
} unary_args;

static void unary_rows(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  const unary_args *a = raw;
  activate_span(a->x + lo, NULL, NULL, a->y + lo, hi - lo, a->act);
}

void bertc_unary(bertc_pool *p, int act, const float *x, float *y, int64_t n) {
  unary_args a = {x, y, act};
  bertc_parallel_rows(p, n, unary_rows, &a);
}

/* ---- attention ---------------------------------------------------------------------------- */
/* Work is (batch, head, query) rows as in the reference. On entering a head a thread copies
 * its K transposed to [D, S] in the scratch, so a query's scores are FMAs along contiguous
 * keys; V is read in place, its rows being contiguous over D. Scratch: K^T (S*D), the score
 * row (S), the key mask as lane masks (S) -- within BERTC_SCRATCH_ATTENTION. */
typedef struct {
  const float *qk, *v; /* Q|K rows of qk_row floats, V rows of v_row floats (kernels.h) */
  int64_t qk_row, v_row;
  const int64_t *mask;
  const float *rel; /* relative-position bias [heads, 2R - 1], or NULL */
  int64_t R;
  const bertc_disentangled *pos; /* DeBERTa's c2p / p2c scores, or NULL */
  int64_t window; /* window > 0: each query reaches the keys of attention_span only */
  float *out;
  int64_t S, H, heads;
  float scale;
  int64_t qb; /* queries per block, for the AVX-512 path */
} attn_args;

typedef struct {
  float *kt, *scores;
  int32_t *keep; /* all ones where the key is attended to */
  float *vp;     /* the blocked paths: the head's V rows packed [S, D], or NULL */
} attn_scratch;

/* Head h's V rows of batch b: row j at attn_values_of(...) + j * a->v_row. */
static inline const float *attn_values_of(const attn_args *a, int64_t b, int64_t h) {
  return a->v + b * a->S * a->v_row + h * (a->H / a->heads);
}

#ifdef __AVX512F__
/* dst[c * dst_row + r] = src[r * src_row + c] for r, c < 16: unpacks of row pairs, of 64-bit pairs, then 128-bit lanes. */
static inline void transpose16(const float *src, int64_t src_row, float *dst, int64_t dst_row) {
  __m512 r[16], t[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + i * src_row);
#pragma GCC unroll 8
  for (int i = 0; i < 8; i++) /* lane L: rows 2i, 2i+1 at columns 4L, 4L+1 (t[2i]) and 4L+2, 4L+3 (t[2i+1]) */
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]), t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
#define PD(x) _mm512_castps_pd(x)
#pragma GCC unroll 4
  for (int i = 0; i < 4; i++) { /* lane L of r[4i + c]: rows 4i .. 4i+3 at column 4L + c */
    r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(PD(t[4 * i]), PD(t[4 * i + 2])));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(PD(t[4 * i]), PD(t[4 * i + 2])));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(PD(t[4 * i + 1]), PD(t[4 * i + 3])));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(PD(t[4 * i + 1]), PD(t[4 * i + 3])));
  }
#undef PD
#pragma GCC unroll 4
  for (int c = 0; c < 4; c++) { /* column 4L + c: lane L of r[c], r[4 + c], r[8 + c], r[12 + c] */
    const __m512 u0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88), u1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xdd);
    const __m512 u2 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88), u3 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xdd);
    _mm512_storeu_ps(dst + c * dst_row, _mm512_shuffle_f32x4(u0, u2, 0x88));
    _mm512_storeu_ps(dst + (4 + c) * dst_row, _mm512_shuffle_f32x4(u1, u3, 0x88));
    _mm512_storeu_ps(dst + (8 + c) * dst_row, _mm512_shuffle_f32x4(u0, u2, 0xdd));
    _mm512_storeu_ps(dst + (12 + c) * dst_row, _mm512_shuffle_f32x4(u1, u3, 0xdd));
  }
}
#endif

static void attn_pack_head(const attn_args *a, const attn_scratch *w, int64_t b, int64_t h) {
  const int64_t S = a->S, D = a->H / a->heads, row = a->qk_row;
  const float *k = a->qk + b * S * row + a->H + h * D;
  int64_t j0 = 0, d0 = 0;
#ifdef __AVX512F__ /* K^T in 16 x 16 blocks (the scalar copy was an eighth of MiniLM's attention), the edges below */
  for (; j0 + 16 <= S; j0 += 16)
    for (d0 = 0; d0 + 16 <= D; d0 += 16) transpose16(k + j0 * row + d0, row, w->kt + d0 * S + j0, S);
#endif
  for (int64_t j = 0; j < S; j++)
    for (int64_t d = j < j0 ? d0 : 0; d < D; d++) w->kt[d * S + j] = k[j * row + d];
  for (int64_t j = 0; j < S; j++) w->keep[j] = a->mask[b * S + j] ? -1 : 0;
  /* V in place is rows v_row floats apart (3H in a fused QKV): 4.5 KB for MiniLM, which maps all S rows of a
   * head to 8 of L1's 64 sets, so at S = 128 each pass over them missed L1. Packed, they are contiguous. */
  if (w->vp)
    for (int64_t j = 0; j < S; j++)
      memcpy(w->vp + j * D, attn_values_of(a, b, h) + j * a->v_row, (size_t)D * sizeof(float));
}

/* scores[j0, j0 + 8 nv) = masked(scale * q . K_j): nv independent accumulators over D. */
ALWAYS_INLINE void attn_scores_block(const int nv, const float *q, const attn_scratch *w, int64_t S, int64_t D,
                                     int64_t j0, float scale) {
  __m256 acc[8];
#pragma GCC unroll 8
  for (int v = 0; v < nv; v++) acc[v] = _mm256_setzero_ps();
  for (int64_t d = 0; d < D; d++) {
    const __m256 qd = _mm256_broadcast_ss(q + d);
#pragma GCC unroll 8
    for (int v = 0; v < nv; v++) acc[v] = _mm256_fmadd_ps(qd, _mm256_loadu_ps(w->kt + d * S + j0 + 8 * v), acc[v]);
  }
#pragma GCC unroll 8
  for (int v = 0; v < nv; v++) {
    const __m256 keep = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(w->keep + j0 + 8 * v)));
    const __m256 s = _mm256_mul_ps(acc[v], _mm256_set1_ps(scale));
    _mm256_storeu_ps(w->scores + j0 + 8 * v, _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), s, keep));
  }
}

/* scores[lo, hi): the keys the query reaches (all S without a window). */
static void attn_scores(const float *q, const attn_scratch *w, int64_t S, int64_t D, float scale, int64_t lo,
                        int64_t hi) {
  int64_t j = lo;
  for (; j + 64 <= hi; j += 64) attn_scores_block(8, q, w, S, D, j, scale);
  for (; j + 8 <= hi; j += 8) attn_scores_block(1, q, w, S, D, j, scale);
  for (; j < hi; j++) {
    float s = 0;
    for (int64_t d = 0; d < D; d++) s += q[d] * w->kt[d * S + j];
    w->scores[j] = w->keep[j] ? s * scale : -INFINITY;
  }
}

/* o[d0, d0 + 8 nv) = sum_j p[j] V[j, d0 ...]: nv accumulators live across all S keys. */
ALWAYS_INLINE void attn_values_block(const int nv, const float *p, const float *v, int64_t row, int64_t S, float *o,
                                     int64_t d0) {
  __m256 acc[8];
#pragma GCC unroll 8
  for (int c = 0; c < nv; c++) acc[c] = _mm256_setzero_ps();
  for (int64_t j = 0; j < S; j++) {
    const __m256 pj = _mm256_broadcast_ss(p + j);
#pragma GCC unroll 8
    for (int c = 0; c < nv; c++) acc[c] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(v + j * row + d0 + 8 * c), acc[c]);
  }
#pragma GCC unroll 8
  for (int c = 0; c < nv; c++) _mm256_storeu_ps(o + d0 + 8 * c, acc[c]);
}

static void attn_values(const float *p, const float *v, int64_t row, int64_t S, int64_t D, float *o) {
  int64_t d = 0;
  for (; d + 64 <= D; d += 64) attn_values_block(8, p, v, row, S, o, d);
  for (; d + 32 <= D; d += 32) attn_values_block(4, p, v, row, S, o, d);
  for (; d + 8 <= D; d += 8) attn_values_block(1, p, v, row, S, o, d);
  for (; d < D; d++) {
    float s = 0;
    for (int64_t j = 0; j < S; j++) s += p[j] * v[j * row + d];
    o[d] = s;
  }
}

static void attn_query(const attn_args *a, const attn_scratch *w, int64_t b, int64_t h, int64_t i) {
  const int64_t S = a->S, H = a->H, D = H / a->heads;
  float *o = a->out + (b * S + i) * H + h * D;
  int64_t lo, hi;
  attention_span(i, S, a->window, &lo, &hi);
  attn_scores(a->qk + (b * S + i) * a->qk_row + h * D, w, S, D, a->scale, lo, hi);
  float *p = w->scores + lo;
  const int64_t n = hi - lo;
  const float *rel = attention_rel_row(a->rel, a->R, h, i);
  if (rel) /* a masked key stays -inf */
    for (int64_t j = lo; j < hi; j++) w->scores[j] += rel[j];
  attention_position_row(a->pos, b * a->heads + h, S, i, lo, hi, a->scale, w->scores);
  const float mx = row_max(p, n);
  if (mx == -INFINITY) { /* every key masked: PyTorch gives NaN, the reference zeros */
    memset(o, 0, (size_t)D * sizeof(float));
    return;
  }
  scale_span(p, n, 1.0f / exp_shifted(p, p, n, mx));
  attn_values(p, attn_values_of(a, b, h) + lo * a->v_row, a->v_row, n, D, o);
}

static void attn_rows(void *raw, int64_t lo, int64_t hi, float *scratch) {
  const attn_args *a = raw;
  const int64_t S = a->S, D = a->H / a->heads;
  const attn_scratch w = {scratch, scratch + S * D, (int32_t *)(scratch + S * D + S), NULL};
  for (int64_t t = lo; t < hi; t++) { /* t enumerates (batch, head, query) */
    const int64_t i = t % S, h = (t / S) % a->heads, b = t / (S * a->heads);
    if (t == lo || i == 0) attn_pack_head(a, &w, b, h);
    attn_query(a, &w, b, h, i);
  }
}

/* The query rows q[r] and output rows o[r] of a block of QB queries from i0 (rows of them real): a short last block
 * repeats its first query in the spare rows, which compute that query's output bit for bit again and write it to
 * the same place. */
static inline void attn_block_rows(int QB, const attn_args *a, int64_t b, int64_t h, int64_t i0, int64_t rows,
                                   const float **q, float **o) {
  const int64_t S = a->S, H = a->H, D = H / a->heads, row = a->qk_row;
  for (int r = 0; r < QB; r++) {
    const int64_t i = i0 + (r < rows ? r : 0);
    q[r] = a->qk + b * S * row + i * row + h * D;
    o[r] = a->out + (b * S + i) * H + h * D;
  }
}

#ifdef __AVX512F__
/* ---- attention, AVX-512: QB queries at a time --------------------------------------------- */
/* One query at a time, a score costs a K^T load per FMA; QB queries share each load (QB is
 * bertc_tuning.attention_block, 4 or 8: each is a separate instantiation), so the
 * two products run as register-blocked GEMMs: scores [QB, S] = Q_blk K^T (8 x 32 per step: 16 zmm
 * accumulators, 2 K^T loads, 8 broadcasts of q) and out [QB, D] = P V (8 x 32 per step likewise).
 * The softmax's 1/sum is applied to the QB x D output rather than to the QB x S probabilities.
 * Scratch: K^T (S*D), the probabilities (QB*S), the key mask (S), V packed (S*D): within
 * BERTC_SCRATCH_ATTENTION. */
#define ATTN_QB 8 /* the largest QB: sizes the arrays */

/* exp8's Cephes expf on 16 lanes; the same clamps and underflow to exactly 0. */
static inline __m512 exp16(__m512 x) {
  const __mmask16 underflow = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.33654f), _CMP_LT_OQ);
  x = _mm512_min_ps(_mm512_set1_ps(88.3762626647949f), _mm512_max_ps(_mm512_set1_ps(-87.33654f), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 q = _mm512_set1_ps(EXP_P[0]);
  for (int i = 1; i < 6; i++) q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(EXP_P[i]));
  q = _mm512_fmadd_ps(q, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_maskz_mul_ps((__mmask16)~underflow, q, _mm512_castsi512_ps(e));
}

/* scores[r, j0 .. j0 + 32) for the QB query rows q[r] (masked past S). With mx (a plain attention: no position
 * terms) they are stored as the logits, scaled by scale and -inf where the key is not kept (keep), and mx[r] takes
 * their running maximum: the pass over the scores that did this alone was a tenth of attention's time. */
ALWAYS_INLINE void attn_scores_qb(const int QB, const float *const q[ATTN_QB], const float *kt, int64_t S,
                                  int64_t D, int64_t j0, float *scores, float scale, const int32_t *keep,
                                  __m512 mx[ATTN_QB]) {
  const __mmask16 m0 = lanes(S - j0), m1 = lanes(S - j0 - 16);
  __m512 acc[ATTN_QB][2];
#pragma GCC unroll 8
  for (int r = 0; r < QB; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t d = 0; d < D; d++) {
    const __m512 k0 = _mm512_maskz_loadu_ps(m0, kt + d * S + j0), k1 = _mm512_maskz_loadu_ps(m1, kt + d * S + j0 + 16);
#pragma GCC unroll 8
    for (int r = 0; r < QB; r++) {
      const __m512 qv = _mm512_set1_ps(q[r][d]);
      acc[r][0] = _mm512_fmadd_ps(qv, k0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(qv, k1, acc[r][1]);
    }
  }
  if (mx) { /* the logit pass's arithmetic: masked keys and lanes past S -inf */
    const __m512 ninf = _mm512_set1_ps(-INFINITY), sv = _mm512_set1_ps(scale);
    const __mmask16 k0 = _mm512_mask_cmpneq_epi32_mask(m0, _mm512_maskz_loadu_epi32(m0, keep + j0), _mm512_setzero_si512());
    const __mmask16 k1 = _mm512_mask_cmpneq_epi32_mask(m1, _mm512_maskz_loadu_epi32(m1, keep + j0 + 16), _mm512_setzero_si512());
#pragma GCC unroll 8
    for (int r = 0; r < QB; r++) {
      acc[r][0] = _mm512_mask_mul_ps(ninf, k0, acc[r][0], sv), acc[r][1] = _mm512_mask_mul_ps(ninf, k1, acc[r][1], sv);
      mx[r] = _mm512_max_ps(mx[r], _mm512_max_ps(acc[r][0], acc[r][1]));
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < QB; r++) {
    _mm512_mask_storeu_ps(scores + r * S + j0, m0, acc[r][0]);
    _mm512_mask_storeu_ps(scores + r * S + j0 + 16, m1, acc[r][1]);
  }
}

/* out[r, d0 .. d0 + 32) = sum_j p[r, j] V[j, d0 ..] * inv[r] (masked past D). */
ALWAYS_INLINE void attn_values_qb(const int QB, const float *p, const float *v, int64_t row, int64_t S, int64_t D,
                                  int64_t d0, float *const o[ATTN_QB], const float inv[ATTN_QB]) {
  const __mmask16 m0 = lanes(D - d0), m1 = lanes(D - d0 - 16);
  __m512 acc[ATTN_QB][2];
#pragma GCC unroll 8
  for (int r = 0; r < QB; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  /* Whole 32-lane steps (every head of 32 or 64) load V unmasked: GCC kept the masked loads' registers on the stack,
   * which made every FMA of the loop a load (MiniLM's 6 attentions at 128 tokens 1.53 -> 1.18 ms on the Zen 5 EPYC). */
#define ATTN_VALUES_STEP(LOAD0, LOAD1)                                                                       \
  for (int64_t j = 0; j < S; j++) {                                                                         \
    const __m512 v0 = LOAD0, v1 = LOAD1;                                                                    \
    _Pragma("GCC unroll 8") for (int r = 0; r < QB; r++) {                                                  \
      const __m512 pv = _mm512_set1_ps(p[r * S + j]);                                                       \
      acc[r][0] = _mm512_fmadd_ps(pv, v0, acc[r][0]);                                                       \
      acc[r][1] = _mm512_fmadd_ps(pv, v1, acc[r][1]);                                                       \
    }                                                                                                       \
  }
  if (m0 == 0xffff && m1 == 0xffff)
    ATTN_VALUES_STEP(_mm512_loadu_ps(v + j * row + d0), _mm512_loadu_ps(v + j * row + d0 + 16))
  else
    ATTN_VALUES_STEP(_mm512_maskz_loadu_ps(m0, v + j * row + d0), _mm512_maskz_loadu_ps(m1, v + j * row + d0 + 16))
#undef ATTN_VALUES_STEP
#pragma GCC unroll 8
  for (int r = 0; r < QB; r++) {
    const __m512 s = _mm512_set1_ps(inv[r]);
    _mm512_mask_storeu_ps(o[r] + d0, m0, _mm512_mul_ps(acc[r][0], s));
    _mm512_mask_storeu_ps(o[r] + d0 + 16, m1, _mm512_mul_ps(acc[r][1], s));
  }
}

/* Queries [i0, i0 + rows) of head h (attn_block_rows). */
ALWAYS_INLINE void attn_query_block(const int QB, const attn_args *a, const attn_scratch *w, int64_t b, int64_t h,
                                    int64_t i0, int64_t rows) {
  const int64_t S = a->S, D = a->H / a->heads;
  const float *q[ATTN_QB];
  float *o[ATTN_QB], inv[ATTN_QB];
  attn_block_rows(QB, a, b, h, i0, rows, q, o);
  const int plain = !a->rel && !a->pos; /* the logits straight from the scores' registers */
  __m512 mxs[ATTN_QB];
#pragma GCC unroll 8
  for (int r = 0; r < QB; r++) mxs[r] = _mm512_set1_ps(-INFINITY);
  for (int64_t j0 = 0; j0 < S; j0 += 32)
    attn_scores_qb(QB, q, w->kt, S, D, j0, w->scores, a->scale, w->keep, plain ? mxs : NULL);
  for (int r = 0; r < QB; r++) {
    float *sr = w->scores + r * S;
    const float *rel = attention_rel_row(a->rel, a->R, h, i0 + (r < rows ? r : 0));
    attention_position_row(a->pos, b * a->heads + h, S, i0 + (r < rows ? r : 0), 0, S, 1.0f, sr); /* scaled below */
    __m512 mx = mxs[r];
    for (int64_t j = 0; j < S && !plain; j += 16) { /* scale, bias and mask; masked keys and lanes past S: -inf */
      const __mmask16 m = lanes(S - j);
      const __mmask16 keep = _mm512_mask_cmpneq_epi32_mask(m, _mm512_maskz_loadu_epi32(m, w->keep + j),
                                                            _mm512_setzero_si512());
      __m512 sv = _mm512_mask_mul_ps(_mm512_set1_ps(-INFINITY), keep, _mm512_maskz_loadu_ps(m, sr + j),
                                     _mm512_set1_ps(a->scale));
      if (rel) sv = _mm512_add_ps(sv, _mm512_maskz_loadu_ps(m, rel + j));
      _mm512_mask_storeu_ps(sr + j, m, sv);
      mx = _mm512_max_ps(mx, sv);
    }
    const float rmax = _mm512_reduce_max_ps(mx);
    if (rmax == -INFINITY) { /* every key masked: PyTorch gives NaN, the reference zeros */
      memset(sr, 0, (size_t)S * sizeof(float));
      inv[r] = 0.0f;
      continue;
    }
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < S; j += 16) {
      const __mmask16 m = lanes(S - j);
      const __m512 e = exp16(_mm512_sub_ps(_mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), m, sr + j),
                                           _mm512_set1_ps(rmax)));
      _mm512_mask_storeu_ps(sr + j, m, e);
      sum = _mm512_add_ps(sum, e);
    }
    inv[r] = 1.0f / _mm512_reduce_add_ps(sum);
  }
  for (int64_t d0 = 0; d0 < D; d0 += 32) attn_values_qb(QB, w->scores, w->vp, D, S, D, d0, o, inv);
}

#else
/* ---- attention, AVX2: QB queries at a time --------------------------------------------------- */
/* The AVX-512 path's blocking on 8-lane registers: 8 ymm accumulators, QB queries by 64 / QB keys
 * (scores) or head lanes (values) per step, 4 x 16 or 8 x 8. The loads of a step's last, partial
 * chunk are masked (TAIL); a full chunk's are plain. Scratch as above. */
#define ATTN_QB 8

ALWAYS_INLINE __m256i lanes8(int64_t n) { return tail_mask(n < 0 ? 0 : n > 8 ? 8 : n); }

ALWAYS_INLINE __m256 attn_load(const int TAIL, const float *x, __m256i m) {
  return TAIL ? _mm256_maskload_ps(x, m) : _mm256_loadu_ps(x);
}

/* out[r][0 .. 64 / QB) = sum_t a[r][t] b[t * b_row ..] (times scale[r] where scale is given) for the QB rows a[r],
 * over T terms: the scores (a = q, b = K^T, terms over D) and the values (a = p, b = V, terms over S) alike.
 * n: the columns left from b's first; under 64 / QB the step is the last, partial one (TAIL). */
ALWAYS_INLINE void attn_product(const int QB, const int TAIL, const float *const a[ATTN_QB], const float *b,
                                int64_t b_row, int64_t T, int64_t n, float *const out[ATTN_QB],
                                const float *scale) {
  const int NV = 8 / QB;
  const __m256i m[2] = {lanes8(n), lanes8(n - 8)};
  __m256 acc[ATTN_QB][2];
#pragma GCC unroll 8
  for (int r = 0; r < QB; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t t = 0; t < T; t++) {
    __m256 bv[2];
#pragma GCC unroll 2
    for (int c = 0; c < NV; c++) bv[c] = attn_load(TAIL, b + t * b_row + 8 * c, m[c]);
#pragma GCC unroll 8
    for (int r = 0; r < QB; r++) {
      const __m256 av = _mm256_broadcast_ss(a[r] + t);
#pragma GCC unroll 2
      for (int c = 0; c < NV; c++) acc[r][c] = _mm256_fmadd_ps(av, bv[c], acc[r][c]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < QB; r++)
#pragma GCC unroll 2
    for (int c = 0; c < NV; c++) {
      const __m256 y = scale ? _mm256_mul_ps(acc[r][c], _mm256_set1_ps(scale[r])) : acc[r][c];
      if (TAIL) _mm256_maskstore_ps(out[r] + 8 * c, m[c], y);
      else _mm256_storeu_ps(out[r] + 8 * c, y);
    }
}

/* Scores [j, j + 8) of the row sr scaled, masked to -inf where a key is not kept (and past S), the bias rel added;
 * stored back and returned. Full chunks take plain loads and stores: a masked store costs ~10x one on Zen. */
ALWAYS_INLINE __m256 attn_logits(const int TAIL, const attn_args *a, const attn_scratch *w, float *sr, const float *rel,
                                 int64_t j) {
  const __m256i m = lanes8(a->S - j);
  const __m256 keep = _mm256_castsi256_ps(TAIL ? _mm256_maskload_epi32(w->keep + j, m)
                                               : _mm256_loadu_si256((const __m256i *)(w->keep + j)));
  __m256 sv = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), _mm256_mul_ps(attn_load(TAIL, sr + j, m),
                                                                          _mm256_set1_ps(a->scale)), keep);
  if (rel) sv = _mm256_add_ps(sv, attn_load(TAIL, rel + j, m));
  if (TAIL) _mm256_maskstore_ps(sr + j, m, sv);
  else _mm256_storeu_ps(sr + j, sv);
  return sv;
}

/* Queries [i0, i0 + rows) of head h, as the AVX-512 path's attn_query_block. */
ALWAYS_INLINE void attn_query_block(const int QB, const attn_args *a, const attn_scratch *w, int64_t b, int64_t h,
                                    int64_t i0, int64_t rows) {
  const int64_t S = a->S, D = a->H / a->heads, step = 64 / QB;
  const float *q[ATTN_QB];
  float *o[ATTN_QB], inv[ATTN_QB];
  attn_block_rows(QB, a, b, h, i0, rows, q, o);
  for (int64_t j0 = 0; j0 < S; j0 += step) {
    float *sc[ATTN_QB];
    for (int r = 0; r < QB; r++) sc[r] = w->scores + r * S + j0;
    if (j0 + step <= S) attn_product(QB, 0, q, w->kt + j0, S, D, S - j0, sc, NULL);
    else attn_product(QB, 1, q, w->kt + j0, S, D, S - j0, sc, NULL);
  }
  for (int r = 0; r < QB; r++) {
    float *sr = w->scores + r * S;
    const float *rel = attention_rel_row(a->rel, a->R, h, i0 + (r < rows ? r : 0));
    attention_position_row(a->pos, b * a->heads + h, S, i0 + (r < rows ? r : 0), 0, S, 1.0f, sr); /* scaled below */
    __m256 mx = _mm256_set1_ps(-INFINITY);
    for (int64_t j = 0; j < S; j += 8) /* scale, bias and mask; masked keys and lanes past S: -inf */
      mx = _mm256_max_ps(mx, j + 8 <= S ? attn_logits(0, a, w, sr, rel, j) : attn_logits(1, a, w, sr, rel, j));
    const float rmax = _mm256_cvtss_f32(hmax_broadcast(mx));
    if (rmax == -INFINITY) { /* every key masked: PyTorch gives NaN, the reference zeros */
      memset(sr, 0, (size_t)S * sizeof(float));
      inv[r] = 0.0f;
      continue;
    }
    inv[r] = 1.0f / exp_shifted(sr, sr, S, rmax);
  }
  const float *p[ATTN_QB];
  for (int r = 0; r < QB; r++) p[r] = w->scores + r * S;
  for (int64_t d0 = 0; d0 < D; d0 += step) {
    float *od[ATTN_QB];
    for (int r = 0; r < QB; r++) od[r] = o[r] + d0;
    if (d0 + step <= D) attn_product(QB, 0, p, w->vp + d0, D, S, D - d0, od, inv);
    else attn_product(QB, 1, p, w->vp + d0, D, S, D - d0, od, inv);
  }
}
#endif

static void attn_query_block4(const attn_args *a, const attn_scratch *w, int64_t b, int64_t h, int64_t i0,
                              int64_t rows) {
  attn_query_block(4, a, w, b, h, i0, rows);
}
static void attn_query_block8(const attn_args *a, const attn_scratch *w, int64_t b, int64_t h, int64_t i0,
                              int64_t rows) {
  attn_query_block(8, a, w, b, h, i0, rows);
}

static void attn_blocks(void *raw, int64_t lo, int64_t hi, float *scratch) {
  const attn_args *a = raw;
  const int64_t S = a->S, D = a->H / a->heads, qb = a->qb, blocks = (S + qb - 1) / qb;
  const attn_scratch w = {scratch, scratch + S * D, (int32_t *)(scratch + S * D + qb * S),
                          scratch + S * D + (qb + 1) * S};
  for (int64_t t = lo; t < hi; t++) { /* t enumerates (batch, head, query block) */
    const int64_t blk = t % blocks, h = (t / blocks) % a->heads, b = t / (blocks * a->heads);
    if (t == lo || blk == 0) attn_pack_head(a, &w, b, h);
    const int64_t i0 = blk * qb, rows = S - i0 < qb ? S - i0 : qb;
    if (qb == 4) attn_query_block4(a, &w, b, h, i0, rows);
    else attn_query_block8(a, &w, b, h, i0, rows);
  }
}

void bertc_attention(bertc_pool *p, const float *qk, int64_t qk_row, const float *v, int64_t v_row,
                     const int64_t *mask, const float *rel, int64_t R, const bertc_disentangled *pos, int64_t window,
                     float *out, int64_t B, int64_t S, int64_t H, int64_t heads, float scale) {
  attn_args a = {qk, v, qk_row, v_row, mask, rel, R, pos, window, out, S, H, heads, scale, 1};
  /* A query block shares its keys; a local layer's queries each reach a different window, which the
   * per-query path below computes alone (window + 1 keys, not S). */
  const int64_t D = H / heads;
  a.qb = bertc_pool_tuning(p)->attention_block == 4 ? 4 : ATTN_QB;
  if (window == 0 && 2 * S * D + (a.qb + 1) * S <= BERTC_SCRATCH_ATTENTION(S, D)) {
    bertc_parallel_rows(p, B * heads * ((S + a.qb - 1) / a.qb), attn_blocks, &a);
    return;
  }
  bertc_parallel_rows(p, B * heads * S, attn_rows, &a);
}

/* ---- batched matmul ------------------------------------------------------------------------ */
/* out[b] = a[b] @ bm[b] for the matmuls left unfused (DeBERTa's c2p and p2c scores: Q or K heads [S, D] against
 * W position keys or queries [D, W], per (batch, head)). Work is blocks of up to 4 rows of one batch entry; each
 * keeps a 4 x 16 tile of outputs in 8 accumulators over all of K (a row of b read once per 4 rows, not per row). */
ALWAYS_INLINE void mm_tile(const int R, const int NV, const float *a, const float *b, float *o, int64_t N, int64_t K,
                           int64_t n0) {
  __m256 acc[4][2];
#pragma GCC unroll 4
  for (int r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < K; k++) {
    const __m256 b0 = _mm256_loadu_ps(b + k * N + n0), b1 = NV > 1 ? _mm256_loadu_ps(b + k * N + n0 + 8) : b0;
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
      const __m256 ar = _mm256_broadcast_ss(a + r * K + k);
      acc[r][0] = _mm256_fmadd_ps(ar, b0, acc[r][0]);
      if (NV > 1) acc[r][1] = _mm256_fmadd_ps(ar, b1, acc[r][1]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; r++) {
    _mm256_storeu_ps(o + r * N + n0, acc[r][0]);
    if (NV > 1) _mm256_storeu_ps(o + r * N + n0 + 8, acc[r][1]);
  }
}

ALWAYS_INLINE void mm_rows(const int R, const float *a, const float *b, float *o, int64_t N, int64_t K) {
  int64_t n = 0;
  for (; n + 16 <= N; n += 16) mm_tile(R, 2, a, b, o, N, K, n);
  for (; n + 8 <= N; n += 8) mm_tile(R, 1, a, b, o, N, K, n);
  for (; n < N; n++)
    for (int r = 0; r < R; r++) {
      float s = 0.0f;
      for (int64_t k = 0; k < K; k++) s += a[r * K + k] * b[k * N + n];
      o[r * N + n] = s;
    }
}

#include "../batched_matmul.h"

const char *bertc_kernel_impl(const char *kernel) {
  static const char *const ours[] = {"bertc_linear_packed", "bertc_linear_packed_i8", "bertc_linear_sparse", "bertc_layer_norm",
                                     "bertc_linear_sparse_i8", "bertc_rms_norm", "bertc_softmax", "bertc_unary", "bertc_attention", "bertc_matmul"};
  for (size_t i = 0; i < sizeof ours / sizeof *ours; i++)
    if (strcmp(kernel, ours[i]) == 0) return "avx2";
  return "ref";
}

#endif
