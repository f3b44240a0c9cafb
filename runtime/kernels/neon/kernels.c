/* ARM64 NEON kernels (fp32; the fp16-weight linear when built with FP16 arithmetic, the int8 one with SDOT).
 * Strong definitions of the hot ops; everything else resolves to the weak reference kernels in
 * ../ref/kernels.c. Tested against the reference by runtime/tests/kernel_check.c. */
#include "../int8_gemm.h"
#include "../kernels.h"

#include <arm_neon.h>
#include <math.h>
#include <string.h>

static const char *const neon_kernels[] = {
    "bertc_linear_packed", "bertc_linear_sparse", "bertc_attention", "bertc_layer_norm", "bertc_rms_norm", "bertc_softmax",
    "bertc_unary", "bertc_matmul", "bertc_linear_sparse_i8",
#if defined(__ARM_FEATURE_FP16_VECTOR_ARITHMETIC) /* built with -march=armv8.2-a+fp16 (--dtype fp16) */
    "bertc_linear_packed_f16",
#endif
#if defined(__ARM_FEATURE_DOTPROD) /* built with -march=armv8.2-a+dotprod (--dtype int8) */
    "bertc_linear_packed_i8",
#endif
};

#if defined(__ARM_FEATURE_DOTPROD)
static int cpu_has_i8mm(void);
#endif

const char *bertc_kernel_impl(const char *kernel) {
#if defined(__ARM_FEATURE_DOTPROD)
  if (strcmp(kernel, "bertc_linear_packed_i8") == 0) return cpu_has_i8mm() ? "neon-i8mm" : "neon";
#endif
  for (size_t i = 0; i < sizeof neon_kernels / sizeof *neon_kernels; i++)
    if (strcmp(kernel, neon_kernels[i]) == 0) return "neon";
  return "ref";
}

/* ---- vector math: each within a few ulp of libm, so the model stays within 1e-4 of PyTorch --- */

/* Cephes expf: e^x = 2^n * e^r with |r| <= ln2/2, the degree-6 polynomial is good to ~1e-9
 * relative. Inputs past the float range saturate to 0 / inf as libm does (softmax relies on
 * exp(-inf) == 0 for masked scores). */
static inline float32x4_t exp_f32x4(float32x4_t x) {
  const float32x4_t hi = vdupq_n_f32(88.3762626647949f), lo = vdupq_n_f32(-87.3365447504f);
  const float32x4_t xc = vminq_f32(vmaxq_f32(x, lo), hi);
  const float32x4_t n = vrndnq_f32(vmulq_f32(xc, vdupq_n_f32(1.44269504088896341f)));
  float32x4_t r = vfmsq_f32(xc, n, vdupq_n_f32(0.693359375f)); /* ln2 split in two: exact n*hi */
  r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
  float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
  p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
  p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
  p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
  p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
  p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
  float32x4_t e = vaddq_f32(vfmaq_f32(r, p, vmulq_f32(r, r)), vdupq_n_f32(1.0f));
  const int32x4_t bits = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
  e = vmulq_f32(e, vreinterpretq_f32_s32(bits));
  e = vbslq_f32(vcgtq_f32(x, hi), vdupq_n_f32(INFINITY), e);
  return vbslq_f32(vcltq_f32(x, lo), vdupq_n_f32(0.0f), e);
}

/* Cephes tanhf: an odd polynomial below 0.625 (where (1-e)/(1+e) would lose relative accuracy),
 * otherwise (1-e)/(1+e) with e = exp(-2|x|), which cannot overflow. */
static inline float32x4_t tanh_f32x4(float32x4_t x) {
  const float32x4_t ax = vabsq_f32(x);
  const float32x4_t e = exp_f32x4(vmulq_f32(ax, vdupq_n_f32(-2.0f)));
  const float32x4_t one = vdupq_n_f32(1.0f);
  float32x4_t big = vdivq_f32(vsubq_f32(one, e), vaddq_f32(one, e));
  big = vbslq_f32(vdupq_n_u32(0x80000000u), x, big); /* copy the sign of x */
  const float32x4_t z = vmulq_f32(x, x);
  float32x4_t p = vdupq_n_f32(-5.70498872745e-3f);
  p = vfmaq_f32(vdupq_n_f32(2.06390887954e-2f), p, z);
  p = vfmaq_f32(vdupq_n_f32(-5.37397155531e-2f), p, z);
  p = vfmaq_f32(vdupq_n_f32(1.33314422036e-1f), p, z);
  p = vfmaq_f32(vdupq_n_f32(-3.33332819422e-1f), p, z);
  const float32x4_t small = vfmaq_f32(x, vmulq_f32(p, z), x);
  return vbslq_f32(vcltq_f32(ax, vdupq_n_f32(0.625f)), small, big);
}

/* erf as Eigen's rational x*P(x^2)/Q(x^2) on [-4, 4] (max abs error ~7e-8); beyond 3.9 erff
 * already rounds to +-1, so return that exactly and keep GELU's 1+erf exact for large -x. */
static inline float32x4_t erf_f32x4(float32x4_t x) {
  const float32x4_t xc = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-4.0f)), vdupq_n_f32(4.0f));
  const float32x4_t x2 = vmulq_f32(xc, xc);
  float32x4_t p = vdupq_n_f32(-2.72614225801306e-10f);
  p = vfmaq_f32(vdupq_n_f32(2.77068142495902e-08f), p, x2);
  p = vfmaq_f32(vdupq_n_f32(-2.10102402082508e-06f), p, x2);
  p = vfmaq_f32(vdupq_n_f32(-5.69250639462346e-05f), p, x2);
  p = vfmaq_f32(vdupq_n_f32(-7.34990630326855e-04f), p, x2);
  p = vfmaq_f32(vdupq_n_f32(-2.95459980854025e-03f), p, x2);
  p = vfmaq_f32(vdupq_n_f32(-1.60960333262415e-02f), p, x2);
  float32x4_t q = vdupq_n_f32(-1.45660718464996e-05f);
  q = vfmaq_f32(vdupq_n_f32(-2.13374055278905e-04f), q, x2);
  q = vfmaq_f32(vdupq_n_f32(-1.68282697438203e-03f), q, x2);
  q = vfmaq_f32(vdupq_n_f32(-7.37332916720468e-03f), q, x2);
  q = vfmaq_f32(vdupq_n_f32(-1.42647390514189e-02f), q, x2);
  const float32x4_t r = vdivq_f32(vmulq_f32(p, xc), q);
  const float32x4_t sat = vbslq_f32(vdupq_n_u32(0x80000000u), x, vdupq_n_f32(1.0f));
  return vbslq_f32(vcgtq_f32(vabsq_f32(x), vdupq_n_f32(3.9f)), sat, r);
}

static inline float32x4_t activate_f32x4(float32x4_t v, int act) {
  const float32x4_t half_v = vmulq_f32(v, vdupq_n_f32(0.5f));
  switch (act) {
    case BERTC_ACT_GELU: {
      const float32x4_t e = erf_f32x4(vmulq_f32(v, vdupq_n_f32(0.70710678118654752f)));
      return vfmaq_f32(half_v, half_v, e);
    }
    case BERTC_ACT_GELU_TANH: {
      const float32x4_t cube = vmulq_f32(vmulq_f32(v, v), v);
      const float32x4_t inner = vmulq_f32(vfmaq_f32(v, cube, vdupq_n_f32(0.044715f)), vdupq_n_f32(0.79788456080286536f));
      return vfmaq_f32(half_v, half_v, tanh_f32x4(inner));
    }
    case BERTC_ACT_TANH: return tanh_f32x4(v);
    case BERTC_ACT_RELU: /* a select, not vmaxq: NaN gives 0 as in the reference */
      return vbslq_f32(vcgtq_f32(v, vdupq_n_f32(0.0f)), v, vdupq_n_f32(0.0f));
    case BERTC_ACT_SILU: /* v / (1 + e^-v); e^-v saturates to inf for v < -88, giving -0 as expf does */
      return vdivq_f32(v, vaddq_f32(vdupq_n_f32(1.0f), exp_f32x4(vnegq_f32(v))));
    default: return v;
  }
}

/* Loads/stores of the last n < 4 floats of a row go through a padded copy, so tails take the
 * same vector path (and the same rounding) as the body. */
static inline float32x4_t load_tail(const float *p, int64_t n) {
  float buf[4] = {0, 0, 0, 0};
  memcpy(buf, p, (size_t)n * sizeof(float));
  return vld1q_f32(buf);
}
static inline void store_tail(float *p, float32x4_t v, int64_t n) {
  float buf[4];
  vst1q_f32(buf, v);
  memcpy(p, buf, (size_t)n * sizeof(float));
}

/* y[0:n] = act(y + bias) + res, for one row of a tile; bias/res may be NULL. */
static void epilogue_row(float *y, const float *bias, const float *res, int64_t n, int act) {
  for (int64_t i = 0; i < n; i += 4) {
    const int64_t w = n - i < 4 ? n - i : 4;
    float32x4_t v = w == 4 ? vld1q_f32(y + i) : load_tail(y + i, w);
    if (bias) v = vaddq_f32(v, w == 4 ? vld1q_f32(bias + i) : load_tail(bias + i, w));
    v = activate_f32x4(v, act);
    if (res) v = vaddq_f32(v, w == 4 ? vld1q_f32(res + i) : load_tail(res + i, w));
    if (w == 4) vst1q_f32(y + i, v);
    else store_tail(y + i, v, w);
  }
}

/* ---- packed linear -------------------------------------------------------------------- */
/* The fp32 and fp16 kernels share the blocking below; only the element type of packed x and of
 * the weight panels differs, so the micro-kernel and the x packer take untyped pointers. */
typedef void (*micro_fn)(const void *xp, const void *wp, int64_t kc, float *c, int64_t ldc, int accumulate);
typedef void (*pack_fn)(const float *x, void *xp, int64_t m0, int64_t rows, int mr, int64_t K);

typedef struct {
  const float *x, *bias, *res;
  const void *w; /* panels of float, or of binary16 for bertc_linear_packed_f16 */
  float *y;
  int64_t M, N, K, kc;
  int act, mr, nr;
  int64_t elem;   /* bytes per packed x and w element: sizeof(float) or sizeof(float16_t) */
  micro_fn micro; /* NULL when no micro-kernel fits the tile: a row-at-a-time loop runs instead */
  pack_fn pack;
  int64_t panels, groups; /* work item t = (mr block t / groups, panel group t % groups) */
} packed_args;

/* The register tile: MR rows x NV q-registers of accumulators, over kc steps of the packed x
 * block (xp[k * MR + r]) and weight panel (wp[k * NV * 4 + j]). C is the tile's top-left in a
 * row-major buffer with stride ldc; `accumulate` adds to it (K blocks after the first). The
 * constant MR/NV let the compiler keep acc[][] entirely in registers once inlined. */
#define FMA_ROW(r, xv, lane) \
  for (int v = 0; v < NV; v++) acc[r][v] = vfmaq_laneq_f32(acc[r][v], w[v], xv, lane)

static inline __attribute__((always_inline)) void micro_tile(const int MR, const int NV, const float *xp,
                                                             const float *wp, int64_t kc, float *c, int64_t ldc,
                                                             int accumulate) {
  float32x4_t acc[8][4];
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) acc[r][v] = accumulate ? vld1q_f32(c + r * ldc + 4 * v) : vdupq_n_f32(0.0f);
  for (int64_t k = 0; k < kc; k++, xp += MR, wp += 4 * NV) {
    float32x4_t w[4];
    for (int v = 0; v < NV; v++) w[v] = vld1q_f32(wp + 4 * v);
    const float32x4_t x0 = vld1q_f32(xp);
    FMA_ROW(0, x0, 0);
    FMA_ROW(1, x0, 1);
    FMA_ROW(2, x0, 2);
    FMA_ROW(3, x0, 3);
    if (MR == 8) {
      const float32x4_t x1 = vld1q_f32(xp + 4);
      FMA_ROW(4, x1, 0);
      FMA_ROW(5, x1, 1);
      FMA_ROW(6, x1, 2);
      FMA_ROW(7, x1, 3);
    }
  }
  for (int r = 0; r < MR; r++)
    for (int v = 0; v < NV; v++) vst1q_f32(c + r * ldc + 4 * v, acc[r][v]);
}
#undef FMA_ROW

static void micro_8x12(const void *xp, const void *wp, int64_t kc, float *c, int64_t ldc, int accumulate) {
  micro_tile(8, 3, xp, wp, kc, c, ldc, accumulate);
}
static void micro_4x16(const void *xp, const void *wp, int64_t kc, float *c, int64_t ldc, int accumulate) {
  micro_tile(4, 4, xp, wp, kc, c, ldc, accumulate);
}
static void micro_8x8(const void *xp, const void *wp, int64_t kc, float *c, int64_t ldc, int accumulate) {
  micro_tile(8, 2, xp, wp, kc, c, ldc, accumulate);
}

static micro_fn micro_for(int mr, int nr) {
  if (mr == 8 && nr == 12) return micro_8x12;
  if (mr == 4 && nr == 16) return micro_4x16;
  if (mr == 8 && nr == 8) return micro_8x8;
  return NULL;
}

/* xp[k * mr + r] = x[m0 + r, k], rows past M zero: the micro-kernel reads mr rows per k. */
static void pack_x_block(const float *x, void *xp_raw, int64_t m0, int64_t rows, int mr, int64_t K) {
  float *xp = xp_raw;
  for (int64_t r = 0; r < mr; r++) {
    const float *src = x + (m0 + r) * K;
    for (int64_t k = 0; k < K; k++) xp[k * mr + r] = r < rows ? src[k] : 0.0f;
  }
}

/* One tile of y (rows x cols at y0) over K block [k0, k0 + kc). Edge tiles run the same
 * micro-kernel on a full-size staging tile, since the panel is zero-padded past N. */
static void run_tile(const packed_args *a, const char *xp, const char *wp, float *y0, int64_t rows, int64_t cols,
                     int64_t k0, int64_t kc) {
  const int mr = a->mr, nr = a->nr;
  const char *xk = xp + k0 * mr * a->elem, *wk = wp + k0 * nr * a->elem;
  if (rows == mr && cols == nr) {
    a->micro(xk, wk, kc, y0, a->N, k0 > 0);
    return;
  }
  float tile[8 * 24] = {0}; /* the largest micro tile, fp16's 8x24 */
  for (int64_t r = 0; r < rows && k0 > 0; r++) memcpy(tile + r * nr, y0 + r * a->N, (size_t)cols * sizeof(float));
  a->micro(xk, wk, kc, tile, nr, k0 > 0);
  for (int64_t r = 0; r < rows; r++) memcpy(y0 + r * a->N, tile + r * nr, (size_t)cols * sizeof(float));
}

/* K blocks outermost so an mr x kc slice of packed x stays in L1 across all panels. The
 * epilogue runs per tile right after its last K block, while the tile is still in L1 (in
 * registers it would spill: 24 accumulators leave too few for the erf polynomial). */
static void packed_block(const packed_args *a, const char *xp, int64_t m0, int64_t p0, int64_t p1) {
  const int64_t rows = a->M - m0 < a->mr ? a->M - m0 : a->mr;
  for (int64_t k0 = 0; k0 < a->K; k0 += a->kc) {
    const int64_t kc = a->K - k0 < a->kc ? a->K - k0 : a->kc;
    const int last = k0 + kc == a->K;
    for (int64_t p = p0; p < p1; p++) {
      const int64_t n0 = p * a->nr, cols = a->N - n0 < a->nr ? a->N - n0 : a->nr;
      float *y0 = a->y + m0 * a->N + n0;
      run_tile(a, xp, (const char *)a->w + p * a->K * a->nr * a->elem, y0, rows, cols, k0, kc);
      for (int64_t r = 0; r < rows && last; r++)
        epilogue_row(y0 + r * a->N, a->bias ? a->bias + n0 : NULL, a->res ? a->res + (m0 + r) * a->N + n0 : NULL,
                     cols, a->act);
    }
  }
}

static void packed_items(void *raw, int64_t lo, int64_t hi, float *scratch) {
  const packed_args *a = raw;
  const int64_t per_group = (a->panels + a->groups - 1) / a->groups;
  int64_t packed = -1; /* consecutive items of one thread often share the mr block */
  for (int64_t t = lo; t < hi; t++) {
    const int64_t mb = t / a->groups, g = t % a->groups, m0 = mb * a->mr;
    const int64_t p0 = g * per_group, p1 = p0 + per_group < a->panels ? p0 + per_group : a->panels;
    if (mb != packed) a->pack(a->x, scratch, m0, a->M - m0 < a->mr ? a->M - m0 : a->mr, a->mr, a->K);
    packed = mb;
    if (p0 < p1) packed_block(a, (const char *)scratch, m0, p0, p1);
  }
}

/* Whole mr blocks per thread; when there are fewer blocks than threads (short sequences),
 * split the panels too so every thread has work. Tiles without a micro-kernel go row by row. */
static void packed_linear(bertc_pool *p, packed_args *a, bertc_rows_fn rows_generic) {
  if (!a->micro) {
    bertc_parallel_rows(p, a->M, rows_generic, a);
    return;
  }
  const int64_t blocks = (a->M + a->mr - 1) / a->mr, threads = bertc_pool_threads(p);
  a->panels = (a->N + a->nr - 1) / a->nr;
  a->groups = blocks >= threads ? 1 : (threads + blocks - 1) / blocks;
  if (a->groups > a->panels) a->groups = a->panels;
  bertc_parallel_rows(p, blocks * a->groups, packed_items, a);
}

/* Any other tile: one row at a time, columns four at a time, same epilogue. */
static void packed_rows_generic(void *raw, int64_t lo, int64_t hi, float *scratch) {
  const packed_args *a = raw;
  const int64_t N = a->N, K = a->K, nr = a->nr;
  for (int64_t m = lo; m < hi; m++) {
    const float *x = a->x + m * K;
    float *y = a->y + m * N;
    for (int64_t n0 = 0; n0 < N; n0 += nr) {
      const float *panel = (const float *)a->w + (n0 / nr) * K * nr;
      const int64_t cols = N - n0 < nr ? N - n0 : nr;
      int64_t j = 0;
      for (; j + 4 <= cols; j += 4) {
        float32x4_t acc = vdupq_n_f32(0.0f);
        for (int64_t k = 0; k < K; k++) acc = vfmaq_n_f32(acc, vld1q_f32(panel + k * nr + j), x[k]);
        vst1q_f32(y + n0 + j, acc);
      }
      for (; j < cols; j++) {
        float acc = 0.0f;
        for (int64_t k = 0; k < K; k++) acc += x[k] * panel[k * nr + j];
        y[n0 + j] = acc;
      }
    }
    epilogue_row(y, a->bias, a->res ? a->res + m * N : NULL, N, a->act);
  }
}

void bertc_linear_packed(bertc_pool *p, const float *x, const float *w_packed, const float *bias,
                         const float *residual, float *y, int64_t M, int64_t N, int64_t K, int act,
                         const bertc_gemm_tile *tile) {
  packed_args a = {.x = x, .bias = bias, .res = residual, .w = w_packed, .y = y, .M = M, .N = N, .K = K,
                   .kc = tile->kc > 0 ? tile->kc : K, .act = act, .mr = tile->mr, .nr = tile->nr,
                   .elem = sizeof(float), .micro = micro_for(tile->mr, tile->nr), .pack = pack_x_block};
  packed_linear(p, &a, packed_rows_generic);
}

#if defined(__ARM_FEATURE_FP16_VECTOR_ARITHMETIC)
/* ---- packed linear, fp16 weights (ARMv8.2-A FP16 arithmetic) --------------------------- */
/* x is rounded to fp16 as it is packed and the micro-kernel multiplies and adds in fp16: 8 lanes
 * per register, twice fp32's. But fp16 keeps 11 significant bits, and a running sum rounds at the
 * size of the sum: over K = 3072 steps that costs ~3 digits. So at most F16_SPAN steps are summed
 * in fp16; each span's sums are then widened and added to the fp32 tile in memory, which adds
 * one fp32 load/add/store per 16 halves of output per span (~5% of the FMAs at 128). Values
 * past fp16's range (|x| or a partial sum > 65504) become inf: BERT activations stay far below. */
#define F16_SPAN 128

/* MR = 8 rows (one q-register of packed x holds a k step), NV q-registers of 8 columns plus, with
 * HALF, one d-register of 4: 8x8, 8x12, 8x16 and 8x24 (8 * 3 + 3 + 1 = 28 registers). */
#define FMA_ROW_F16(r)                                                                      \
  do {                                                                                      \
    for (int v = 0; v < NV; v++) acc[r][v] = vfmaq_laneq_f16(acc[r][v], w[v], xv, r);       \
    if (HALF) acc4[r] = vfma_laneq_f16(acc4[r], w4, xv, r);                                 \
  } while (0)

static inline __attribute__((always_inline)) void micro_tile_f16(const int NV, const int HALF, const float16_t *xp,
                                                                 const float16_t *wp, int64_t kc, float *c,
                                                                 int64_t ldc, int accumulate) {
  float16x8_t acc[8][3];
  float16x4_t acc4[8];
  for (int r = 0; r < 8; r++) {
    for (int v = 0; v < NV; v++) acc[r][v] = vdupq_n_f16(0);
    acc4[r] = vdup_n_f16(0);
  }
  for (int64_t k = 0; k < kc; k++, xp += 8, wp += 8 * NV + 4 * HALF) {
    float16x8_t w[3];
    for (int v = 0; v < NV; v++) w[v] = vld1q_f16(wp + 8 * v);
    const float16x4_t w4 = HALF ? vld1_f16(wp + 8 * NV) : vdup_n_f16(0);
    const float16x8_t xv = vld1q_f16(xp);
    FMA_ROW_F16(0);
    FMA_ROW_F16(1);
    FMA_ROW_F16(2);
    FMA_ROW_F16(3);
    FMA_ROW_F16(4);
    FMA_ROW_F16(5);
    FMA_ROW_F16(6);
    FMA_ROW_F16(7);
  }
  for (int r = 0; r < 8; r++) {
    float *cr = c + r * ldc;
    for (int v = 0; v < NV; v++) {
      float32x4_t lo = vcvt_f32_f16(vget_low_f16(acc[r][v])), hi = vcvt_high_f32_f16(acc[r][v]);
      if (accumulate) {
        lo = vaddq_f32(lo, vld1q_f32(cr + 8 * v));
        hi = vaddq_f32(hi, vld1q_f32(cr + 8 * v + 4));
      }
      vst1q_f32(cr + 8 * v, lo);
      vst1q_f32(cr + 8 * v + 4, hi);
    }
    if (HALF) {
      float32x4_t q = vcvt_f32_f16(acc4[r]);
      if (accumulate) q = vaddq_f32(q, vld1q_f32(cr + 8 * NV));
      vst1q_f32(cr + 8 * NV, q);
    }
  }
}
#undef FMA_ROW_F16

static void micro_f16_8x8(const void *xp, const void *wp, int64_t kc, float *c, int64_t ldc, int accumulate) {
  micro_tile_f16(1, 0, xp, wp, kc, c, ldc, accumulate);
}
static void micro_f16_8x12(const void *xp, const void *wp, int64_t kc, float *c, int64_t ldc, int accumulate) {
  micro_tile_f16(1, 1, xp, wp, kc, c, ldc, accumulate);
}
static void micro_f16_8x16(const void *xp, const void *wp, int64_t kc, float *c, int64_t ldc, int accumulate) {
  micro_tile_f16(2, 0, xp, wp, kc, c, ldc, accumulate);
}
static void micro_f16_8x24(const void *xp, const void *wp, int64_t kc, float *c, int64_t ldc, int accumulate) {
  micro_tile_f16(3, 0, xp, wp, kc, c, ldc, accumulate);
}

static micro_fn micro_for_f16(int mr, int nr) {
  if (mr != 8) return NULL;
  if (nr == 8) return micro_f16_8x8;
  if (nr == 12) return micro_f16_8x12;
  if (nr == 16) return micro_f16_8x16;
  if (nr == 24) return micro_f16_8x24;
  return NULL;
}

/* pack_x_block, rounding x to fp16 (round to nearest even, as FPCR leaves it). */
static void pack_x_block_f16(const float *x, void *xp_raw, int64_t m0, int64_t rows, int mr, int64_t K) {
  float16_t *xp = xp_raw;
  for (int64_t r = 0; r < mr; r++) {
    const float *src = x + (m0 + r) * K;
    for (int64_t k = 0; k < K; k++) xp[k * mr + r] = r < rows ? (float16_t)src[k] : (float16_t)0.0f;
  }
}

/* Any other tile: one row at a time from the widened weights in fp32, as the reference does. */
static void packed_rows_generic_f16(void *raw, int64_t lo, int64_t hi, float *scratch) {
  const packed_args *a = raw;
  const int64_t N = a->N, K = a->K, nr = a->nr;
  for (int64_t m = lo; m < hi; m++) {
    const float *x = a->x + m * K;
    float *y = a->y + m * N;
    for (int64_t n0 = 0; n0 < N; n0 += nr) {
      const float16_t *panel = (const float16_t *)a->w + (n0 / nr) * K * nr;
      const int64_t cols = N - n0 < nr ? N - n0 : nr;
      int64_t j = 0;
      for (; j + 4 <= cols; j += 4) {
        float32x4_t acc = vdupq_n_f32(0.0f);
        for (int64_t k = 0; k < K; k++) acc = vfmaq_n_f32(acc, vcvt_f32_f16(vld1_f16(panel + k * nr + j)), x[k]);
        vst1q_f32(y + n0 + j, acc);
      }
      for (; j < cols; j++) {
        float acc = 0.0f;
        for (int64_t k = 0; k < K; k++) acc += x[k] * (float)panel[k * nr + j];
        y[n0 + j] = acc;
      }
    }
    epilogue_row(y, a->bias, a->res ? a->res + m * N : NULL, N, a->act);
  }
}

void bertc_linear_packed_f16(bertc_pool *p, const float *x, const uint16_t *w_packed, const float *bias,
                             const float *residual, float *y, int64_t M, int64_t N, int64_t K, int act,
                             const bertc_gemm_tile *tile) {
  const int64_t kc = tile->kc > 0 && tile->kc < F16_SPAN ? tile->kc : F16_SPAN;
  packed_args a = {.x = x, .bias = bias, .res = residual, .w = w_packed, .y = y, .M = M, .N = N, .K = K,
                   .kc = kc, .act = act, .mr = tile->mr, .nr = tile->nr, .elem = sizeof(float16_t),
                   .micro = micro_for_f16(tile->mr, tile->nr), .pack = pack_x_block_f16};
  packed_linear(p, &a, packed_rows_generic_f16);
}
#endif

/* The int8 kernels' epilogue (int8_gemm.h: rows outside the micro-kernels, and the sparse int8 kernel): the bias
 * is in the fma before it. */
static void q8_epilogue_neon(float *y, const float *res, int64_t n, int act) { epilogue_row(y, NULL, res, n, act); }

#if defined(__ARM_FEATURE_DOTPROD) /* built with -march=armv8.2-a+dotprod (--dtype int8) */
/* ---- int8 linear (ARMv8.2-A SDOT): kernels.h's format, ../int8_gemm.h's arithmetic ---------- */
/* SDOT multiplies signed by signed bytes (four products into each int32 lane), so x's bytes are q - 128, and
 * (128 - zp) colsum[n] is added at the end. vdotq_laneq_s32(acc, w, a, l) multiplies the K group of each of w's
 * four columns by lane l of a, so x is repacked as it is quantized, in tiles of Q8_MR rows: row r's 4 bytes of K group g
 * at tile + 32 g + 4 r, so that one q-register holds a group of rows 0-3 and the next of rows 4-7.
 * 8 x 12: 24 accumulators + 3 of weights + 2 of x = 29 of the 32 q-registers (the fp32 kernel's tile),
 * 5 loads per 24 SDOTs; 8 x 16 would need 32 accumulators, and 4 x 16 (x row-major) loads 5 per 16.
 * Two passes over the pool, as on x86: x's rows are quantized into the work buffer once, in those tiles;
 * then the work items, (row block, panel) pairs, read them: each panel's weights serve every row tile of
 * its block from L1. The int32 sums run over the whole of K in registers. */
#define Q8_MR 8
#define Q8_NR 12
#define Q8_NV (Q8_NR / 4)

/* The first pass: rows [lo, hi) of x into the work buffer in Q8_MR-row tiles, with q8_quantize_row's bits as
 * q - 128: vminnm / vmaxnm ignore NaN as fminf / fmaxf do, and vcvtnq rounds half to even as nearbyintf does. Rows
 * past M in the last tile are left as they are: the micro-kernel for fewer rows never uses their lanes. */
static void q8_pack_x(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  const qgemm_args *g = raw;
  const int64_t K = g->K;
  const float x_scale = g->w->x_scale;
  for (int64_t m = lo; m < hi; m++) {
    const float *x = g->x + m * K;
    /* row m's group 0: its tile, then 4 bytes per row before it (group i at q + 4 i * Q8_MR = q + k * Q8_MR) */
    int8_t *q = g->rows + m / Q8_MR * Q8_MR * g->Kq + m % Q8_MR * 4;
    float xmin = 0.0f, xmax = 0.0f;
    int64_t k = 0;
    if (x_scale <= 0.0f) { /* dynamic: the row's range (a static scale skips this pass) */
      float32x4_t mn = vdupq_n_f32(0.0f), mx = vdupq_n_f32(0.0f);
      for (; k + 4 <= K; k += 4) {
        const float32x4_t v = vld1q_f32(x + k);
        mn = vminnmq_f32(mn, v), mx = vmaxnmq_f32(mx, v);
      }
      xmin = vminnmvq_f32(mn), xmax = vmaxnmvq_f32(mx);
      for (; k < K; k++) xmin = fminf(xmin, x[k]), xmax = fmaxf(xmax, x[k]);
    }
    const q8_row r = q8_row_params(x_scale, xmin, xmax);
    g->scales[m] = r.s, g->zps[m] = r.zp;
    const float32x4_t qlo = vdupq_n_f32(r.lo), qhi = vdupq_n_f32(r.hi);
    const int32x4_t off = vdupq_n_s32(r.zp - 128);
    for (k = 0; k + 4 <= K; k += 4) { /* q8_value, then + zp - 128: in [-128, 127] */
      const float32x4_t c = vminnmq_f32(vmaxnmq_f32(vmulq_n_f32(vld1q_f32(x + k), r.inv), qlo), qhi);
      const int16x4_t h = vqmovn_s32(vaddq_s32(vcvtnq_s32_f32(c), off));
      vst1_lane_s32((int32_t *)(q + k * Q8_MR), vreinterpret_s32_s8(vqmovn_s16(vcombine_s16(h, h))), 0);
    }
    int8_t tail[4]; /* the last group, past K as x = 0 */
    for (int64_t i = 0; i < 4; i++) tail[i] = (int8_t)(((k + i < K ? q8_value(x[k + i], &r) : 0) + r.zp) ^ 0x80);
    if (k < K) memcpy(q + k * Q8_MR, tail, 4);
  }
}

/* rows x Q8_NR of y at (m, panel p) from the tile's int32 sums over x's bytes q - 128: kernels.h's
 * fma((float)(acc + (128 - zp) colsum[n]), s * scale[n], bias[n]), then act and the residual as epilogue_row.
 * Shared by the SDOT and SMMLA micro-kernels. */
static inline __attribute__((always_inline)) void q8_store(const int rows, const qgemm_args *g,
                                                           int32_t sums[Q8_MR][Q8_NR], const float *s, int64_t m,
                                                           int64_t p) {
  const int64_t N = g->N, n0 = p * Q8_NR, cols = N - n0 < Q8_NR ? N - n0 : Q8_NR;
  float *y = g->y + m * N + n0;
  for (int64_t j = 0; j < cols; j += 4) { /* the last panel's columns past N are not read or written */
    const int64_t n = n0 + j, lanes = cols - j < 4 ? cols - j : 4;
    const float32x4_t scale = lanes == 4 ? vld1q_f32(g->w->scale + n) : load_tail(g->w->scale + n, lanes);
    const float32x4_t bias = !g->bias ? vdupq_n_f32(0.0f) : lanes == 4 ? vld1q_f32(g->bias + n)
                                                                       : load_tail(g->bias + n, lanes);
    int32_t cs[4] = {0, 0, 0, 0};
    memcpy(cs, g->w->colsum + n, (size_t)lanes * sizeof(int32_t));
    const int32x4_t colsum = vld1q_s32(cs);
    for (int r = 0; r < rows; r++) {
      const int32x4_t sum = vmlaq_n_s32(vld1q_s32(sums[r] + j), colsum, 128 - g->zps[m + r]);
      float32x4_t v = vfmaq_f32(bias, vcvtq_f32_s32(sum), vmulq_n_f32(scale, s[r]));
      v = activate_f32x4(v, g->act);
      const float *res = g->res ? g->res + (m + r) * N + n : NULL;
      if (res) v = vaddq_f32(v, lanes == 4 ? vld1q_f32(res) : load_tail(res, lanes));
      if (lanes == 4) vst1q_f32(y + r * N + j, v);
      else store_tail(y + r * N + j, v, lanes);
    }
  }
}

/* acc[r][v] += row r's current K group (lane r - r0 of xv) against columns 4v..4v+3, for the rows r0..r0+3
 * of the tile; the lane must be a constant, hence macros. */
#define SDOT_ROW(r, xv, l) \
  if (rows > r)            \
    for (int v = 0; v < Q8_NV; v++) acc[r][v] = vdotq_laneq_s32(acc[r][v], w[v], xv, l)
#define SDOT_ROWS4(r0, xv) SDOT_ROW(r0, xv, 0); SDOT_ROW(r0 + 1, xv, 1); SDOT_ROW(r0 + 2, xv, 2); SDOT_ROW(r0 + 3, xv, 3)

/* rows x Q8_NR of y at (m, panel p) from the packed tile a and its rows' scales s. */
static inline __attribute__((always_inline)) void q8_tile(const int rows, const qgemm_args *g, const int8_t *a,
                                                          const float *s, int64_t m, int64_t p) {
  const int8_t *b = g->w->w + p * g->Kq * Q8_NR;
  int32x4_t acc[Q8_MR][Q8_NV];
  for (int r = 0; r < rows; r++)
    for (int v = 0; v < Q8_NV; v++) acc[r][v] = vdupq_n_s32(0);
  for (int64_t t = 0; t < g->Kq / 4; t++, a += 4 * Q8_MR, b += 4 * Q8_NR) {
    int8x16_t w[Q8_NV];
    for (int v = 0; v < Q8_NV; v++) w[v] = vld1q_s8(b + 16 * v);
    const int8x16_t a0 = vld1q_s8(a), a1 = rows > 4 ? vld1q_s8(a + 16) : a0;
    SDOT_ROWS4(0, a0);
    SDOT_ROWS4(4, a1);
  }
  /* through memory, as in the x86 kernel: GCC kept every accumulator on the stack otherwise */
  int32_t sums[Q8_MR][Q8_NR];
  for (int r = 0; r < rows; r++)
    for (int v = 0; v < Q8_NV; v++) vst1q_s32(sums[r] + 4 * v, acc[r][v]);
  q8_store(rows, g, sums, s, m, p);
}
#undef SDOT_ROWS4
#undef SDOT_ROW

#define Q8_CASE(R) case R: q8_tile(R, g, a, s, m, p); return
static void q8_tile_any(int rows, const qgemm_args *g, const int8_t *a, const float *s, int64_t m, int64_t p) {
  switch (rows) {
    Q8_CASE(1); Q8_CASE(2); Q8_CASE(3); Q8_CASE(4); Q8_CASE(5); Q8_CASE(6); Q8_CASE(7); Q8_CASE(8); default: return;
  }
}
#undef Q8_CASE

/* Work items [lo, hi) of (row block, panel) pairs, each row tile of a block against one panel by TILE. */
#define Q8_ITEMS(TILE)                                                                                                \
  const qgemm_args *g = raw;                                                                                          \
  for (int64_t t = lo; t < hi;) {                                                                                     \
    const int64_t rb = t / g->panels, p0 = t % g->panels, p1 = p0 + hi - t < g->panels ? p0 + hi - t : g->panels;    \
    const int64_t m0 = rb * g->row_block, m1 = m0 + g->row_block < g->M ? m0 + g->row_block : g->M;                  \
    for (int64_t p = p0; p < p1; p++)                                                                                 \
      for (int64_t m = m0; m < m1; m += Q8_MR)                                                                        \
        TILE(m1 - m < Q8_MR ? (int)(m1 - m) : Q8_MR, g, g->rows + m * g->Kq, g->scales + m, m, p);                  \
    t += p1 - p0;                                                                                                     \
  }

static void q8_items(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  Q8_ITEMS(q8_tile_any)
}

/* ---- the same GEMM on ARMv8.6-A SMMLA (i8mm), chosen at run time where the CPU has it ----------------------------
 * vmmlaq_s32(acc, a, b) adds a [2 x 8] times b [2 x 8]^T to the 2 x 2 int32 block acc: two rows against two columns
 * over 8 of K, 32 multiply-adds where SDOT does 16. The operands are the SDOT kernel's, two K groups at a time:
 * zipping the 32-bit lanes of group t and group t + 1 puts each row's (or column's) 8 bytes side by side, so x's
 * tiles and the weight panels keep their layout and one artifact runs on either kind of CPU. 8 x 12 as 4 row pairs
 * by 6 column pairs: 24 accumulators, as the SDOT tile; the int32 sums are exact either way, so both give the
 * reference's bits. */
#if defined(__linux__)
#include <sys/auxv.h>
#endif
#if defined(__clang__)
#define I8MM_TARGET __attribute__((target("i8mm")))
#else
#define I8MM_TARGET __attribute__((target("+i8mm")))
#endif

static int cpu_has_i8mm(void) {
#if defined(__linux__) /* Linux and Android: the kernel's HWCAP2_I8MM */
  return (getauxval(AT_HWCAP2) >> 13) & 1;
#else
  return 0;
#endif
}

/* the K groups t and t + 1 (zeros past the last) of 4 rows or 4 columns, as two pairs of 8 bytes each */
#define ZIP_GROUPS(lo, hi, g0, g1)                                                          \
  const int32x4_t g0##_32 = vreinterpretq_s32_s8(g0), g1##_32 = vreinterpretq_s32_s8(g1); \
  lo = vreinterpretq_s8_s32(vzip1q_s32(g0##_32, g1##_32));                                \
  hi = vreinterpretq_s8_s32(vzip2q_s32(g0##_32, g1##_32))

static inline __attribute__((always_inline)) I8MM_TARGET void q8_tile_mmla(const int rows, const qgemm_args *g,
                                                                            const int8_t *a, const float *s,
                                                                            int64_t m, int64_t p) {
  const int8_t *b = g->w->w + p * g->Kq * Q8_NR;
  const int pairs = (rows + 1) / 2;
  int32x4_t acc[Q8_MR / 2][Q8_NR / 2];
  for (int r = 0; r < pairs; r++)
    for (int c = 0; c < Q8_NR / 2; c++) acc[r][c] = vdupq_n_s32(0);
  const int64_t groups = g->Kq / 4;
  const int8x16_t zero = vdupq_n_s8(0);
  for (int64_t t = 0; t < groups; t += 2, a += 8 * Q8_MR, b += 8 * Q8_NR) {
    const int odd = t + 1 == groups; /* the last group alone: its partner is zeros */
    int8x16_t x[Q8_MR / 2], w[Q8_NR / 2];
    const int8x16_t x00 = vld1q_s8(a), x01 = odd ? zero : vld1q_s8(a + 4 * Q8_MR);
    ZIP_GROUPS(x[0], x[1], x00, x01);
    if (rows > 4) {
      const int8x16_t x10 = vld1q_s8(a + 16), x11 = odd ? zero : vld1q_s8(a + 4 * Q8_MR + 16);
      ZIP_GROUPS(x[2], x[3], x10, x11);
    }
    for (int v = 0; v < Q8_NV; v++) {
      const int8x16_t w0 = vld1q_s8(b + 16 * v), w1 = odd ? zero : vld1q_s8(b + 4 * Q8_NR + 16 * v);
      ZIP_GROUPS(w[2 * v], w[2 * v + 1], w0, w1);
    }
    for (int r = 0; r < pairs; r++)
      for (int c = 0; c < Q8_NR / 2; c++) acc[r][c] = vmmlaq_s32(acc[r][c], x[r], w[c]);
  }
  int32_t sums[Q8_MR][Q8_NR]; /* acc[r][c] is rows 2r, 2r + 1 by columns 2c, 2c + 1 */
  for (int r = 0; r < pairs; r++)
    for (int c = 0; c < Q8_NR / 2; c++) {
      vst1_s32(sums[2 * r] + 2 * c, vget_low_s32(acc[r][c]));
      if (2 * r + 1 < rows) vst1_s32(sums[2 * r + 1] + 2 * c, vget_high_s32(acc[r][c]));
    }
  q8_store(rows, g, sums, s, m, p);
}
#undef ZIP_GROUPS

#define Q8_CASE(R) case R: q8_tile_mmla(R, g, a, s, m, p); return
static I8MM_TARGET void q8_tile_mmla_any(int rows, const qgemm_args *g, const int8_t *a, const float *s, int64_t m,
                                         int64_t p) {
  switch (rows) {
    Q8_CASE(1); Q8_CASE(2); Q8_CASE(3); Q8_CASE(4); Q8_CASE(5); Q8_CASE(6); Q8_CASE(7); Q8_CASE(8); default: return;
  }
}
#undef Q8_CASE

static I8MM_TARGET void q8_items_mmla(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  Q8_ITEMS(q8_tile_mmla_any)
}
#undef Q8_ITEMS

/* Rows per work item: the target's gemm_row_block rounded up to a multiple of Q8_MR (the packed tiles); a
 * block per thread when there are too few panels to share (as on x86). */
static int64_t q8_row_block(int64_t M, int64_t panels, int threads, int64_t row_block) {
  int64_t blocks = (M + row_block - 1) / row_block;
  if (panels < 4 * threads && blocks < threads) blocks = threads;
  return ((M + blocks - 1) / blocks + Q8_MR - 1) / Q8_MR * Q8_MR;
}

/* Tiles other than Q8_MR x Q8_NR take int8_gemm.h's rows (quantized row by row), one at a time, with
 * q8_epilogue_neon. */
void bertc_linear_packed_i8(bertc_pool *p, const float *x, const bertc_qweight *w, const float *bias,
                            const float *residual, float *y, int64_t M, int64_t N, int64_t K, int act,
                            const bertc_gemm_tile *tile, void *work) {
  if (tile->mr != Q8_MR || tile->nr != Q8_NR) {
    q8_rows_args a = {x, bias, residual, w, y, work, M, N, K, tile->nr, act, q8_epilogue_neon};
    q8_linear_rows(p, &a);
    return;
  }
  qgemm_args g = {x, bias, residual, w, y, q8_rows(work), q8_scales(work, M, K), q8_zps(work, M, K), M, N, K, q8_kq(K),
                  (N + Q8_NR - 1) / Q8_NR, 0, act, 0};
  bertc_parallel_rows(q8_quantize_pool(p, M, K), M, q8_pack_x, &g);
  g.row_block = q8_row_block(M, g.panels, bertc_pool_threads(p), bertc_pool_tuning(p)->gemm_row_block);
  bertc_parallel_rows(p, (M + g.row_block - 1) / g.row_block * g.panels, cpu_has_i8mm() ? q8_items_mmla : q8_items,
                      &g);
}
#endif

/* ---- block-sparse linear: ../sparse_gemm.h on 32 q registers -------------------------------- */
#define SPARSE_VREG_BYTES 16
#define SPARSE_VREGS 32
#define SPARSE_CHAINS 16 /* big cores have four 128-bit FMA pipes of latency 4 */
static void sparse_epilogue(float *y, const float *bias, const float *res, int64_t n, int act) {
  epilogue_row(y, bias, res, n, act);
}
#include "../sparse_gemm.h"

/* ---- block-sparse int8: ../int8_gemm.h's two passes and generic-vector sums, in every NEON build (SDOT needs four
 * consecutive inputs per output, which an r x 1 block does not have) ---------------------------------------- */
Q8S_VECTOR_SUMS(4)
Q8S_VECTOR_SUMS(8)
Q8S_VECTOR_SUMS(16)
void bertc_linear_sparse_i8(bertc_pool *p, const float *x, const bertc_block_sparse_i8 *w, const float *bias,
                            const float *residual, float *y, int64_t M, int64_t N, int64_t K, int act, void *work) {
  q8s_args a = {bias, residual, w, y, work, M, N, K, 1, act, q8_epilogue_neon, Q8S_SUMS_FOR(w), NULL, 0x80, Q8S_MR, 0};
  q8_linear_sparse(p, x, &a);
}

/* ---- layer norm ------------------------------------------------------------------------ */
typedef struct { const float *x, *res, *g, *b; float *y; int64_t n; float eps; } ln_args;

/* Four vector accumulators (16 partial sums) keep the fp32 sums of 768+ values within ~1e-7
 * relative, close enough to the reference's double sums. */
static float sum_f32(const float *v, int64_t n) {
  float32x4_t s[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 4; j++) s[j] = vaddq_f32(s[j], vld1q_f32(v + i + 4 * j));
  for (; i + 4 <= n; i += 4) s[0] = vaddq_f32(s[0], vld1q_f32(v + i));
  if (i < n) s[1] = vaddq_f32(s[1], load_tail(v + i, n - i));
  return vaddvq_f32(vaddq_f32(vaddq_f32(s[0], s[1]), vaddq_f32(s[2], s[3])));
}

static float sum_sq_dev_f32(const float *v, int64_t n, float mean) {
  const float32x4_t m = vdupq_n_f32(mean);
  float32x4_t s[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 4; j++) {
      const float32x4_t d = vsubq_f32(vld1q_f32(v + i + 4 * j), m);
      s[j] = vfmaq_f32(s[j], d, d);
    }
  for (; i + 4 <= n; i += 4) {
    const float32x4_t d = vsubq_f32(vld1q_f32(v + i), m);
    s[0] = vfmaq_f32(s[0], d, d);
  }
  float tail = 0.0f;
  for (; i < n; i++) tail += (v[i] - mean) * (v[i] - mean);
  return vaddvq_f32(vaddq_f32(vaddq_f32(s[0], s[1]), vaddq_f32(s[2], s[3]))) + tail;
}

static void ln_rows(void *raw, int64_t lo, int64_t hi, float *scratch) {
  const ln_args *a = raw;
  const int64_t n = a->n;
  for (int64_t r = lo; r < hi; r++) {
    float *y = a->y + r * n;
    const float *x = a->x + r * n;
    if (a->res) {
      const float *res = a->res + r * n;
      int64_t i = 0;
      for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vaddq_f32(vld1q_f32(x + i), vld1q_f32(res + i)));
      for (; i < n; i++) y[i] = x[i] + res[i];
      x = y;
    }
    const float mean = sum_f32(x, n) / (float)n;
    const float inv = 1.0f / sqrtf(sum_sq_dev_f32(x, n, mean) / (float)n + a->eps);
    const float32x4_t m = vdupq_n_f32(mean), s = vdupq_n_f32(inv);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
      const float32x4_t t = vmulq_f32(vmulq_f32(vsubq_f32(vld1q_f32(x + i), m), s), vld1q_f32(a->g + i));
      vst1q_f32(y + i, vaddq_f32(t, vld1q_f32(a->b + i)));
    }
    for (; i < n; i++) y[i] = (x[i] - mean) * inv * a->g[i] + a->b[i];
  }
}

void bertc_layer_norm(bertc_pool *p, const float *x, const float *residual, const float *gamma, const float *beta,
                      float *y, int64_t rows, int64_t n, float eps) {
  ln_args a = {x, residual, gamma, beta, y, n, eps};
  bertc_parallel_rows(p, rows, ln_rows, &a);
}

/* RMSNorm (EuroBERT's): y = x / sqrt(mean(x^2) + eps) * g. */
typedef struct { const float *x, *g; float *y; int64_t n; float eps; } rms_args;
static void rms_rows(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  const rms_args *a = raw;
  const int64_t n = a->n;
  for (int64_t r = lo; r < hi; r++) {
    const float *x = a->x + r * n;
    float *y = a->y + r * n;
    const float inv = 1.0f / sqrtf(sum_sq_dev_f32(x, n, 0.0f) / (float)n + a->eps);
    const float32x4_t s = vdupq_n_f32(inv);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vmulq_f32(vmulq_f32(vld1q_f32(x + i), s), vld1q_f32(a->g + i)));
    for (; i < n; i++) y[i] = x[i] * inv * a->g[i];
  }
}

void bertc_rms_norm(bertc_pool *p, const float *x, const float *gamma, float *y, int64_t rows, int64_t n, float eps) {
  rms_args a = {x, gamma, y, n, eps};
  bertc_parallel_rows(p, rows, rms_rows, &a);
}

/* ---- softmax --------------------------------------------------------------------------- */

static float max_f32(const float *v, int64_t n) {
  float32x4_t m = vdupq_n_f32(-INFINITY);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) m = vmaxq_f32(m, vld1q_f32(v + i));
  float mx = vmaxvq_f32(m);
  for (; i < n; i++) mx = v[i] > mx ? v[i] : mx;
  return mx;
}

/* y = exp(x - mx) over n values; returns their sum. */
static float exp_shifted(const float *x, float *y, int64_t n, float mx) {
  const float32x4_t m = vdupq_n_f32(mx);
  float32x4_t s = vdupq_n_f32(0.0f);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const float32x4_t e = exp_f32x4(vsubq_f32(vld1q_f32(x + i), m));
    vst1q_f32(y + i, e);
    s = vaddq_f32(s, e);
  }
  if (i < n) {
    /* padding lanes hold 0 - mx; zero them so they add nothing */
    const float32x4_t e = exp_f32x4(vsubq_f32(load_tail(x + i, n - i), m));
    float buf[4] = {0, 0, 0, 0};
    store_tail(buf, e, n - i);
    store_tail(y + i, e, n - i);
    s = vaddq_f32(s, vld1q_f32(buf));
  }
  return vaddvq_f32(s);
}

static void scale_f32(float *y, int64_t n, float c) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vmulq_n_f32(vld1q_f32(y + i), c));
  for (; i < n; i++) y[i] *= c;
}

typedef struct { const float *x; float *y; int64_t n; } softmax_args;
static void softmax_rows(void *raw, int64_t lo, int64_t hi, float *scratch) {
  const softmax_args *a = raw;
  for (int64_t r = lo; r < hi; r++) {
    const float *x = a->x + r * a->n;
    float *y = a->y + r * a->n;
    const float sum = exp_shifted(x, y, a->n, max_f32(x, a->n));
    scale_f32(y, a->n, 1.0f / sum);
  }
}

void bertc_softmax(bertc_pool *p, const float *x, float *y, int64_t rows, int64_t n) {
  softmax_args a = {x, y, n};
  bertc_parallel_rows(p, rows, softmax_rows, &a);
}

/* ---- unary ----------------------------------------------------------------------------- */
typedef struct { const float *x; float *y; int act; } unary_args;
static void unary_span(void *raw, int64_t lo, int64_t hi, float *scratch) {
  const unary_args *a = raw;
  int64_t i = lo;
  for (; i + 4 <= hi; i += 4) vst1q_f32(a->y + i, activate_f32x4(vld1q_f32(a->x + i), a->act));
  if (i < hi) store_tail(a->y + i, activate_f32x4(load_tail(a->x + i, hi - i), a->act), hi - i);
}

void bertc_unary(bertc_pool *p, int act, const float *x, float *y, int64_t n) {
  unary_args a = {x, y, act};
  bertc_parallel_rows(p, n, unary_span, &a);
}

/* ---- attention ------------------------------------------------------------------------- */
typedef struct {
  const float *qk, *v; /* Q|K rows of qk_row floats, V rows of v_row floats (kernels.h) */
  int64_t qk_row, v_row;
  const int64_t *mask;
  const float *rel; /* relative-position bias [heads, 2R - 1], or NULL */
  int64_t R;
  const bertc_disentangled *pos; /* DeBERTa's c2p / p2c scores, or NULL */
  int64_t window;
  float *out;
  int64_t S, H, heads;
  float scale;
} attn_args;

/* The unmasked keys and values of one (batch, head), packed densely: [n][D] each, and each one's
 * position in the sequence (for the relative-position bias). */
typedef struct { float *k, *v; int32_t *at; int64_t n; } head_kv;

static head_kv pack_head(const attn_args *a, int64_t b, int64_t h, float *scratch) {
  const int64_t S = a->S, H = a->H, D = H / a->heads;
  head_kv kv = {scratch + S, scratch + S + S * D, (int32_t *)(scratch + S + 2 * S * D), 0};
  const float *k = a->qk + b * S * a->qk_row + H + h * D, *v = a->v + b * S * a->v_row + h * D;
  for (int64_t j = 0; j < S; j++) {
    if (!a->mask[b * S + j]) continue;
    memcpy(kv.k + kv.n * D, k + j * a->qk_row, (size_t)D * sizeof(float));
    memcpy(kv.v + kv.n * D, v + j * a->v_row, (size_t)D * sizeof(float));
    kv.at[kv.n++] = (int32_t)j;
  }
  return kv;
}

static float dot_f32(const float *a, const float *b, int64_t n) {
  float32x4_t s0 = vdupq_n_f32(0.0f), s1 = vdupq_n_f32(0.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
    s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
  }
  if (i + 4 <= n) {
    s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
    i += 4;
  }
  float s = vaddvq_f32(vaddq_f32(s0, s1));
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

/* o[0:D] = sum_j p[j] * v[j][0:D], 16 columns at a time so the partial sums stay in registers. */
static void weighted_sum(const float *p, const float *v, int64_t n, int64_t D, float *o) {
  int64_t d = 0;
  for (; d + 16 <= D; d += 16) {
    float32x4_t acc[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
    for (int64_t j = 0; j < n; j++)
      for (int c = 0; c < 4; c++) acc[c] = vfmaq_n_f32(acc[c], vld1q_f32(v + j * D + d + 4 * c), p[j]);
    for (int c = 0; c < 4; c++) vst1q_f32(o + d + 4 * c, acc[c]);
  }
  for (; d + 4 <= D; d += 4) {
    float32x4_t acc = vdupq_n_f32(0.0f);
    for (int64_t j = 0; j < n; j++) acc = vfmaq_n_f32(acc, vld1q_f32(v + j * D + d), p[j]);
    vst1q_f32(o + d, acc);
  }
  for (; d < D; d++) {
    float acc = 0.0f;
    for (int64_t j = 0; j < n; j++) acc += p[j] * v[j * D + d];
    o[d] = acc;
  }
}

/* Query i of head bh (b * heads + h) against the packed keys: scores (+ rel[key position], + DeBERTa's position
 * scores) -> softmax -> weighted sum of values. */
static void attend_row(const float *q, const head_kv *kv, int64_t D, float scale, const float *rel,
                       const bertc_disentangled *pos, int64_t bh, int64_t S, int64_t i, float *scores, float *o) {
  if (kv->n == 0) { /* every key masked: PyTorch gives NaN, the reference gives zeros */
    memset(o, 0, (size_t)D * sizeof(float));
    return;
  }
  for (int64_t j = 0; j < kv->n; j++) scores[j] = dot_f32(q, kv->k + j * D, D) * scale;
  if (pos)
    for (int64_t j = 0; j < kv->n; j++) scores[j] += scale * attention_position_score(pos, bh, S, i, kv->at[j]);
  if (rel)
    for (int64_t j = 0; j < kv->n; j++) scores[j] += rel[kv->at[j]];
  const float sum = exp_shifted(scores, scores, kv->n, max_f32(scores, kv->n));
  scale_f32(scores, kv->n, 1.0f / sum);
  weighted_sum(scores, kv->v, kv->n, D, o);
}

/* The packed keys within query i's window (ModernBERT's local layers): those at positions [lo, hi). */
static head_kv window_of(const head_kv *kv, int64_t i, int64_t S, int64_t window, int64_t D) {
  int64_t lo, hi, first = 0, last;
  attention_span(i, S, window, &lo, &hi);
  while (first < kv->n && kv->at[first] < lo) first++;
  for (last = first; last < kv->n && kv->at[last] < hi;) last++;
  return (head_kv){kv->k + first * D, kv->v + first * D, kv->at + first, last - first};
}

static void attn_rows(void *raw, int64_t lo, int64_t hi, float *scratch) {
  const attn_args *a = raw;
  const int64_t S = a->S, H = a->H, D = H / a->heads, row = a->qk_row;
  head_kv kv = {0};
  int64_t packed = -1; /* the (batch, head) whose keys are in scratch */
  for (int64_t t = lo; t < hi; t++) { /* t enumerates (batch, head, query) */
    const int64_t i = t % S, bh = t / S, h = bh % a->heads, b = bh / a->heads;
    if (bh != packed) kv = pack_head(a, b, h, scratch);
    packed = bh;
    const float *q = a->qk + (b * S + i) * row + h * D;
    const float *rel = attention_rel_row(a->rel, a->R, h, i);
    const head_kv near = a->window ? window_of(&kv, i, S, a->window, D) : kv;
    attend_row(q, &near, D, a->scale, rel, a->pos, bh, S, i, scratch, a->out + (b * S + i) * H + h * D);
  }
}

void bertc_attention(bertc_pool *p, const float *qk, int64_t qk_row, const float *v, int64_t v_row,
                     const int64_t *mask, const float *rel, int64_t R, const bertc_disentangled *pos, int64_t window,
                     float *out, int64_t B, int64_t S, int64_t H, int64_t heads, float scale) {
  attn_args a = {qk, v, qk_row, v_row, mask, rel, R, pos, window, out, S, H, heads, scale};
  bertc_parallel_rows(p, B * heads * S, attn_rows, &a);
}

/* ---- batched matmul --------------------------------------------------------------------------- */
/* out[b] = a[b] @ bm[b] for the matmuls left unfused (DeBERTa's c2p and p2c scores), as the AVX2 file's: blocks of up
 * to 4 rows keep a 4 x 16 tile of outputs in 16 accumulators over all of K, a row of b read once per 4 rows. */
static inline __attribute__((always_inline)) void mm_tile(const int R, const int NV, const float *a, const float *b,
                                                          float *o, int64_t N, int64_t K, int64_t n0) {
  float32x4_t acc[4][4];
  for (int r = 0; r < R; r++)
    for (int v = 0; v < NV; v++) acc[r][v] = vdupq_n_f32(0.0f);
  for (int64_t k = 0; k < K; k++) {
    float32x4_t bv[4];
    for (int v = 0; v < NV; v++) bv[v] = vld1q_f32(b + k * N + n0 + 4 * v);
    for (int r = 0; r < R; r++)
      for (int v = 0; v < NV; v++) acc[r][v] = vfmaq_n_f32(acc[r][v], bv[v], a[r * K + k]);
  }
  for (int r = 0; r < R; r++)
    for (int v = 0; v < NV; v++) vst1q_f32(o + r * N + n0 + 4 * v, acc[r][v]);
}

static inline __attribute__((always_inline)) void mm_rows(const int R, const float *a, const float *b, float *o,
                                                          int64_t N, int64_t K) {
  int64_t n = 0;
  for (; n + 16 <= N; n += 16) mm_tile(R, 4, a, b, o, N, K, n);
  for (; n + 4 <= N; n += 4) mm_tile(R, 1, a, b, o, N, K, n);
  for (; n < N; n++)
    for (int r = 0; r < R; r++) {
      float acc = 0.0f;
      for (int64_t k = 0; k < K; k++) acc += a[r * K + k] * b[k * N + n];
      o[r * N + n] = acc;
    }
}

#include "../batched_matmul.h"
