/* kernel_check: every kernel the linked ISA file defines, against the reference kernels, on
 * seeded random shapes that are not multiples of any tile (plus a few BERT-sized ones), with
 * 1 and 3 threads. One line per kernel: the implementation that was linked, the worst error
 * (max abs difference over max(1, max |reference|)); exit status 1 on any error over 1e-5, or
 * for bertc_linear_packed_f16 over the fp16 bound that check_linear_packed_f16 explains.
 *
 * Build and run from the repository root. ISA is the kernels file under test (nothing checks
 * the reference against itself); CC is the compiler for its target:
 *
 *   ISA=runtime/kernels/neon/kernels.c CC=".venv/bin/python -m ziglang cc -target aarch64-linux-musl -static" RUN=qemu-aarch64
 *   ISA="runtime/kernels/neon/kernels.c -mcpu=generic+v8_2a+fullfp16" ...  (the fp16 kernel; zig's
 *     spelling of gcc/clang's -march=armv8.2-a+fp16, which zig cc rejects; qemu's CPU has FP16)
 *   ISA="runtime/kernels/avx2/kernels.c -mavx2 -mfma" CC=gcc RUN=
 *   $CC -std=gnu11 -O3 -Wall -Wextra -Werror -Wno-unused-parameter -Iruntime/include -Iruntime/src \
 *     -Iruntime/kernels -o kernel_check runtime/tests/kernel_check.c runtime/tests/ref_renamed.c \
 *     runtime/kernels/ref/kernels.c $ISA runtime/src/pool.c -lm -pthread && $RUN ./kernel_check
 *
 * Usage: kernel_check [-t THREADS] [-i8] [MRxNR ...]
 *   -t     one thread count instead of 1 and 3
 *   -i8    the int8 GEMM alone (the same build run again on a CPU of other features: SDOT without i8mm)
 *   MRxNR  packed-linear tiles to check instead of the default list (supported and fallback) */
#include "kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The reference copies, renamed by ref_renamed.h and compiled in ref_renamed.c. */
extern __typeof__(bertc_linear_packed) ref_bertc_linear_packed;
extern __typeof__(bertc_linear_packed_f16) ref_bertc_linear_packed_f16;
extern __typeof__(bertc_linear_packed_i8) ref_bertc_linear_packed_i8;
extern __typeof__(bertc_linear_sparse) ref_bertc_linear_sparse;
extern __typeof__(bertc_linear_sparse_i8) ref_bertc_linear_sparse_i8;
extern __typeof__(bertc_linear) ref_bertc_linear;
extern __typeof__(bertc_attention) ref_bertc_attention;
extern __typeof__(bertc_layer_norm) ref_bertc_layer_norm;
extern __typeof__(bertc_rms_norm) ref_bertc_rms_norm;
extern __typeof__(bertc_softmax) ref_bertc_softmax;
extern __typeof__(bertc_unary) ref_bertc_unary;
extern __typeof__(bertc_binary) ref_bertc_binary;
extern __typeof__(bertc_matmul) ref_bertc_matmul;

#define TOLERANCE 1e-5
#define MAX_K 3072 /* the largest K below (BERT-base's FFN down-projection); sizes the pool's scratch */
#define MAX_SPARSE_K 1536 /* and the largest K and block width of the sparse cases */
#define MAX_SPARSE_C 8
#define RANDOM_CASES 60

/* ---- seeded inputs ---------------------------------------------------------------------- */
static uint64_t rng_state;

static uint64_t rng_next(void) { /* xorshift64*: the same cases on every platform */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 0x2545F4914F6CDD1Dull;
}
static int64_t rand_int(int64_t lo, int64_t hi) { return lo + (int64_t)(rng_next() % (uint64_t)(hi - lo + 1)); }
static float rand_float(float lo, float hi) { return lo + (hi - lo) * (float)(rng_next() >> 40) / (float)(1 << 24); }

static float *rand_array(int64_t n, float lo, float hi) {
  float *a = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
  for (int64_t i = 0; i < n; i++) a[i] = rand_float(lo, hi);
  return a;
}
/* Outputs start as NaN, so an element a kernel forgot to write shows up as a failure. */
static float *nan_array(int64_t n) {
  float *a = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
  for (int64_t i = 0; i < n; i++) a[i] = NAN;
  return a;
}

/* ---- comparison ------------------------------------------------------------------------- */
typedef struct {
  char label[48];
  double worst;
  int cases, failed;
  char first_failure[160];
} result;

/* Max abs error over max(1, max |want|): absolute for O(1) outputs, relative for large ones.
 * NaN and inf must match exactly. */
static double error_of(const float *got, const float *want, int64_t n) {
  double scale = 1.0, err = 0.0;
  for (int64_t i = 0; i < n; i++) {
    if (isnan(got[i]) || isnan(want[i]) || isinf(got[i]) || isinf(want[i])) {
      if (!(isnan(got[i]) && isnan(want[i])) && got[i] != want[i]) return INFINITY;
      continue;
    }
    scale = fmax(scale, fabs(want[i]));
    err = fmax(err, fabs((double)got[i] - want[i]));
  }
  return err / scale;
}

static void record_within(result *r, const float *got, const float *want, int64_t n, const char *shape,
                          double tolerance) {
  const double err = error_of(got, want, n);
  r->cases++;
  if (err > r->worst) r->worst = err;
  if (err <= tolerance) return;
  if (!r->failed)
    snprintf(r->first_failure, sizeof r->first_failure, "%s: error %.3g > %.3g", shape, err, tolerance);
  r->failed++;
}

static void record(result *r, const float *got, const float *want, int64_t n, const char *shape) {
  record_within(r, got, want, n, shape, TOLERANCE);
}

/* The same bits, or a failure that says so (error 0 with differing bits: a sign of zero or a NaN payload). */
static void record_bits(result *r, const float *got, const float *want, int64_t n, const char *shape) {
  const double err = error_of(got, want, n);
  r->cases++;
  if (err > r->worst) r->worst = err;
  if (memcmp(got, want, (size_t)n * sizeof(float)) == 0) return;
  if (!r->failed) snprintf(r->first_failure, sizeof r->first_failure, "%s: bits differ (error %.3g)", shape, err);
  r->failed++;
}

static int report(const result *r, const char *kernel) {
  printf("  %-31s impl %-5s worst %.2e over %3d cases  %s%s\n", r->label, bertc_kernel_impl(kernel), r->worst,
         r->cases, r->failed ? "FAIL first at " : "ok", r->failed ? r->first_failure : "");
  return r->failed != 0;
}

/* ---- packed linear ---------------------------------------------------------------------- */
/* The layout kernels.h documents: element (k, n) of panel n / nr at [k * nr + n % nr]. */
static float *pack_weights(const float *w, int64_t N, int64_t K, int nr) {
  const int64_t panels = (N + nr - 1) / nr;
  float *wp = calloc((size_t)(panels * K * nr), sizeof(float));
  for (int64_t n = 0; n < N; n++)
    for (int64_t k = 0; k < K; k++) wp[(n / nr) * K * nr + k * nr + n % nr] = w[n * K + k];
  return wp;
}

static void check_packed_case(bertc_pool *p, result *r, bertc_gemm_tile tile, int64_t M, int64_t N, int64_t K,
                              int act) {
  const int with_bias = rand_int(0, 2) > 0, with_res = rand_int(0, 1);
  /* weights scaled by 1/sqrt(K) as in a trained model, so outputs stay O(1) for every K */
  const float ws = 2.0f / sqrtf((float)K);
  float *x = rand_array(M * K, -1, 1), *w = rand_array(N * K, -ws, ws), *bias = rand_array(N, -1, 1);
  float *res = rand_array(M * N, -1, 1), *got = nan_array(M * N), *want = nan_array(M * N);
  float *wp = pack_weights(w, N, K, tile.nr);
  const float *b = with_bias ? bias : NULL, *rs = with_res ? res : NULL;
  bertc_linear_packed(p, x, wp, b, rs, got, M, N, K, act, &tile);
  ref_bertc_linear_packed(p, x, wp, b, rs, want, M, N, K, act, &tile);
  char shape[96];
  snprintf(shape, sizeof shape, "M=%lld N=%lld K=%lld kc=%d act=%d bias=%d res=%d", (long long)M, (long long)N,
           (long long)K, tile.kc, act, with_bias, with_res);
  record(r, got, want, M * N, shape);
  free(x), free(w), free(bias), free(res), free(got), free(want), free(wp);
}

static int check_linear_packed(bertc_pool *p, int mr, int nr) {
  result r = {0};
  snprintf(r.label, sizeof r.label, "bertc_linear_packed %dx%d", mr, nr);
  for (int c = 0; c < RANDOM_CASES; c++) {
    const int64_t M = rand_int(1, 37), N = rand_int(1, 70), K = rand_int(1, 90);
    const int32_t kcs[] = {(int32_t)K, (int32_t)rand_int(1, K), 256, 7};
    check_packed_case(p, &r, (bertc_gemm_tile){mr, nr, kcs[c % 4]}, M, N, K, c % 5);
  }
  static const int64_t bert[][4] = {{128, 384, 384, BERTC_ACT_NONE}, {16, 1152, 384, BERTC_ACT_NONE},
                                    {13, 1536, 384, BERTC_ACT_GELU}, {24, 384, 1536, BERTC_ACT_NONE}};
  for (size_t c = 0; c < sizeof bert / sizeof *bert; c++)
    check_packed_case(p, &r, (bertc_gemm_tile){mr, nr, 256}, bert[c][0], bert[c][1], bert[c][2], (int)bert[c][3]);
  return report(&r, "bertc_linear_packed");
}

/* NaN into the scratch of (most likely) every thread, so that a kernel which reads scratch it has
 * not written (say, the zero padding of packed x) fails. */
static void poison_scratch(void *n, int64_t lo, int64_t hi, float *scratch) {
  for (int64_t i = 0; i < *(const int64_t *)n; i++) scratch[i] = NAN;
}

/* ---- packed linear with int8 weights ----------------------------------------------------- */
/* kernels.h's int8 format from float weights: per-row symmetric scales to [-qmax, qmax], K in groups of four. */
typedef struct {
  int8_t *w;
  float *scale;
  int32_t *colsum;
  bertc_qweight q;
} qweights;

static qweights quantize_weights(const float *w, int64_t N, int64_t K, int nr, int qmax) {
  const int64_t Kq = (K + 3) / 4 * 4, panels = (N + nr - 1) / nr;
  qweights q = {calloc((size_t)(panels * Kq * nr), 1), calloc((size_t)N, sizeof(float)),
                calloc((size_t)N, sizeof(int32_t)), {0}};
  for (int64_t n = 0; n < N; n++) {
    float amax = 0.0f;
    for (int64_t k = 0; k < K; k++) amax = fmaxf(amax, fabsf(w[n * K + k]));
    q.scale[n] = amax / (float)qmax;
    for (int64_t k = 0; k < K; k++) {
      const int8_t v = (int8_t)(amax > 0 ? nearbyintf(w[n * K + k] * (float)qmax / amax) : 0);
      q.w[(n / nr) * Kq * nr + (k / 4) * 4 * nr + (n % nr) * 4 + k % 4] = v;
      q.colsum[n] += v;
    }
  }
  q.q = (bertc_qweight){q.w, q.scale, q.colsum, 0.0f, qmax};
  return q;
}

/* kernels.h's definition, computed here independently: x quantized per row over its range with 0 in it (or with the
 * static x_scale, zp 128, saturated), exact int64 sums of (qx - zp) w. */
static void q8_definition(bertc_pool *p, const float *x, const qweights *q, const float *bias, const float *res,
                          float *y, int64_t M, int64_t N, int64_t K, int nr, int act) {
  const int64_t Kq = (K + 3) / 4 * 4;
  const float x_scale = q->q.x_scale;
  int32_t *qx = malloc((size_t)K * sizeof(int32_t));
  for (int64_t m = 0; m < M; m++) {
    float lo = 0.0f, hi = 0.0f, s = x_scale, inv = x_scale > 0 ? 1.0f / x_scale : 0.0f, qlo = -127, qhi = 127;
    for (int64_t k = 0; k < K; k++) lo = fminf(lo, x[m * K + k]), hi = fmaxf(hi, x[m * K + k]);
    if (x_scale <= 0) {
      const int zp = hi > lo ? (int)nearbyintf(fminf(-lo * (255.0f / (hi - lo)), 255.0f)) : 0;
      s = (hi - lo) / 255.0f, inv = hi > lo ? 255.0f / (hi - lo) : 0.0f, qlo = (float)-zp, qhi = (float)(255 - zp);
    }
    for (int64_t k = 0; k < K; k++) { /* q - zp */
      const float v = x[m * K + k] * inv;
      qx[k] = (int32_t)nearbyintf(v > qhi ? qhi : v < qlo ? qlo : v);
    }
    for (int64_t n = 0; n < N; n++) {
      int64_t acc = 0;
      for (int64_t k = 0; k < K; k++) acc += qx[k] * q->w[(n / nr) * Kq * nr + (k / 4) * 4 * nr + (n % nr) * 4 + k % 4];
      y[m * N + n] = (float)((double)acc * s * q->scale[n] + (bias ? bias[n] : 0.0));
    }
  }
  ref_bertc_unary(p, act, y, y, M * N);
  for (int64_t i = 0; res && i < M * N; i++) y[i] += res[i];
  free(qx);
}

/* x_scale 0: dynamic; else the static scale, small enough that some of x (in [-1, 1]) saturates. qmax: the
 * weights' bound (63 takes AVX2's VPMADDUBSW kernel, 127 its rows). */
static void check_packed_i8_case(bertc_pool *p, result *r, result *def, bertc_gemm_tile tile, int64_t M, int64_t N,
                                 int64_t K, int act, float x_scale, int qmax) {
  const int with_bias = rand_int(0, 2) > 0, with_res = rand_int(0, 1);
  const float ws = 2.0f / sqrtf((float)K);
  float *x = rand_array(M * K, -1, 1), *w = rand_array(N * K, -ws, ws), *bias = rand_array(N, -1, 1);
  float *res = rand_array(M * N, -1, 1), *got = nan_array(M * N), *want = nan_array(M * N);
  float *exact = nan_array(M * N);
  if (M > 2) memset(x + K, 0, (size_t)K * sizeof(float)); /* a zero row: scale 0 */
  qweights q = quantize_weights(w, N, K, tile.nr, qmax);
  q.q.x_scale = x_scale;
  const float *b = with_bias ? bias : NULL, *rs = with_res ? res : NULL;
  /* the work buffers start as garbage, so that reading a byte the first pass did not write shows */
  void *work = malloc((size_t)BERTC_I8_WORK(M, K)), *ref_work = malloc((size_t)BERTC_I8_WORK(M, K));
  memset(work, 0x5a, (size_t)BERTC_I8_WORK(M, K));
  memset(ref_work, 0xa5, (size_t)BERTC_I8_WORK(M, K));
  bertc_linear_packed_i8(p, x, &q.q, b, rs, got, M, N, K, act, &tile, work);
  ref_bertc_linear_packed_i8(p, x, &q.q, b, rs, want, M, N, K, act, &tile, ref_work);
  q8_definition(p, x, &q, b, rs, exact, M, N, K, tile.nr, act);
  char shape[96];
  snprintf(shape, sizeof shape, "M=%lld N=%lld K=%lld act=%d bias=%d res=%d x_scale=%g qmax=%d", (long long)M,
           (long long)N, (long long)K, act, with_bias, with_res, (double)x_scale, qmax);
  /* the integer sums are exact: without an activation the bits must be the reference's */
  if (act == BERTC_ACT_NONE) record_bits(r, got, want, M * N, shape);
  else record(r, got, want, M * N, shape);
  if (def) record(def, want, exact, M * N, shape);
  free(x), free(w), free(bias), free(res), free(got), free(want), free(exact), free(q.w), free(q.scale), free(q.colsum);
  free(work), free(ref_work);
}

static int check_linear_packed_i8(bertc_pool *p, int mr, int nr, int with_definition) {
  result r = {0}, def = {.label = "  reference vs formula"};
  snprintf(r.label, sizeof r.label, "bertc_linear_packed_i8 %dx%d", mr, nr);
  for (int c = 0; c < RANDOM_CASES; c++)
    check_packed_i8_case(p, &r, with_definition ? &def : NULL, (bertc_gemm_tile){mr, nr, 256}, rand_int(1, 37),
                         rand_int(1, 70), rand_int(1, 90), c % 5, c % 2 ? (float)rand_int(40, 130) / 127e2f : 0.0f,
                         c % 3 ? 63 : 127);
  static const int64_t bert[][4] = {{128, 384, 384, BERTC_ACT_NONE}, {200, 96, 384, BERTC_ACT_NONE},
                                    {13, 1536, 384, BERTC_ACT_GELU}, {24, 384, 1536, BERTC_ACT_NONE}};
  for (size_t c = 0; c < sizeof bert / sizeof *bert; c++)
    check_packed_i8_case(p, &r, with_definition ? &def : NULL, (bertc_gemm_tile){mr, nr, 256}, bert[c][0],
                         bert[c][1], bert[c][2], (int)bert[c][3], c % 2 ? 0.6f / 127.0f : 0.0f, c == 2 ? 127 : 63);
  const int failed = report(&r, "bertc_linear_packed_i8");
  return with_definition ? failed | report(&def, "bertc_linear_packed_i8") : failed;
}

/* ---- packed linear with fp16 weights ----------------------------------------------------- */
/* float -> binary16 bits, round to nearest even (what numpy's astype(float16) writes into
 * weights.bin); the harness's own, so the reference's widening is checked against it. */
static uint16_t float_to_half(float f) {
  uint32_t b;
  memcpy(&b, &f, sizeof b);
  const uint16_t sign = (uint16_t)(b >> 16 & 0x8000u);
  const uint32_t abs = b & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u; /* nan */
  if (abs >= 0x477ff000u) return sign | 0x7c00u; /* rounds past 65504: inf */
  if (abs < 0x38800000u) /* below 2^-14: a subnormal half, mant = round(|f| * 2^24) */
    return sign | (uint16_t)lrintf(fabsf(f) * 16777216.0f);
  const uint32_t m = abs + 0xfffu + (abs >> 13 & 1u); /* round the 13 dropped bits to nearest even */
  return sign | (uint16_t)((m - 0x38000000u) >> 13);
}

static double half_value(uint16_t h) { /* the exact value, by arithmetic rather than bit moves */
  const int exp = h >> 10 & 0x1f, mant = h & 0x3ff;
  const double v = exp == 0x1f ? (mant ? NAN : INFINITY) : exp ? ldexp(1024 + mant, exp - 25) : ldexp(mant, -24);
  return h & 0x8000u ? -v : v;
}

static uint16_t *pack_weights_f16(const float *w, int64_t N, int64_t K, int nr) {
  const int64_t panels = (N + nr - 1) / nr;
  uint16_t *wp = calloc((size_t)(panels * K * nr), sizeof(uint16_t));
  for (int64_t n = 0; n < N; n++)
    for (int64_t k = 0; k < K; k++) wp[(n / nr) * K * nr + k * nr + n % nr] = float_to_half(w[n * K + k]);
  return wp;
}

/* The bound for fp16 arithmetic. A running fp16 sum rounds with unit roundoff u = 2^-11 at the
 * size of the sum; summed in spans of L <= 128 steps whose totals go on in fp32, K products of
 * rms size s give a random-walk error of about u * s * sqrt(K * L / 6) ~ 4.6 u s sqrt(K), and
 * s <= max|x| max|w|. Rounding x to fp16 adds ~u/2 per product, far less. So the error is
 * about 5 u sqrt(K) max|x| max|w| at worst; 16x that leaves room for the tail of thousands of
 * outputs and stays well below one missing product (max|x||w|, 1/sqrt(K) of the output). */
static double f16_tolerance(int64_t K, float max_x, float max_w) {
  return 16.0 * 0x1p-11 * sqrt((double)K) * max_x * max_w;
}

static void check_packed_f16_case(bertc_pool *p, result *r, result *vs32, bertc_gemm_tile tile, int64_t M,
                                  int64_t N, int64_t K, int act) {
  const int with_bias = rand_int(0, 2) > 0, with_res = rand_int(0, 1);
  const float ws = 2.0f / sqrtf((float)K);
  float *x = rand_array(M * K, -1, 1), *w = rand_array(N * K, -ws, ws), *bias = rand_array(N, -1, 1);
  float *res = rand_array(M * N, -1, 1), *got = nan_array(M * N), *want = nan_array(M * N);
  uint16_t *wp = pack_weights_f16(w, N, K, tile.nr);
  const float *b = with_bias ? bias : NULL, *rs = with_res ? res : NULL;
  bertc_linear_packed_f16(p, x, wp, b, rs, got, M, N, K, act, &tile);
  ref_bertc_linear_packed_f16(p, x, wp, b, rs, want, M, N, K, act, &tile);
  char shape[96];
  snprintf(shape, sizeof shape, "M=%lld N=%lld K=%lld kc=%d act=%d bias=%d res=%d", (long long)M, (long long)N,
           (long long)K, tile.kc, act, with_bias, with_res);
  record_within(r, got, want, M * N, shape, f16_tolerance(K, 1, ws));
  if (vs32) { /* against the fp32 weights: the error --dtype fp16 adds to a model */
    float *wp32 = pack_weights(w, N, K, tile.nr);
    ref_bertc_linear_packed(p, x, wp32, b, rs, want, M, N, K, act, &tile);
    record_within(vs32, got, want, M * N, shape, f16_tolerance(K, 1, ws));
    free(wp32);
  }
  free(x), free(w), free(bias), free(res), free(got), free(want), free(wp);
}

static int check_linear_packed_f16(bertc_pool *p, int mr, int nr) {
  result r = {0}, vs32 = {0};
  snprintf(r.label, sizeof r.label, "bertc_linear_packed_f16 %dx%d", mr, nr);
  snprintf(vs32.label, sizeof vs32.label, "  same vs fp32 weights");
  for (int c = 0; c < RANDOM_CASES; c++) {
    const int64_t M = rand_int(1, 37), N = rand_int(1, 70), K = rand_int(1, 90);
    const int32_t kcs[] = {(int32_t)K, (int32_t)rand_int(1, K), 256, 7};
    check_packed_f16_case(p, &r, NULL, (bertc_gemm_tile){mr, nr, kcs[c % 4]}, M, N, K, c % 5);
  }
  static const int64_t bert[][4] = {{128, 384, 384, BERTC_ACT_NONE}, {13, 1536, 384, BERTC_ACT_GELU},
                                    {24, 384, 1536, BERTC_ACT_NONE}, {9, 384, MAX_K, BERTC_ACT_NONE}};
  for (size_t c = 0; c < sizeof bert / sizeof *bert; c++)
    check_packed_f16_case(p, &r, &vs32, (bertc_gemm_tile){mr, nr, 256}, bert[c][0], bert[c][1], bert[c][2],
                          (int)bert[c][3]);
  const int failed = report(&r, "bertc_linear_packed_f16");
  return failed | report(&vs32, "bertc_linear_packed_f16");
}

/* Every binary16 value as a weight times x = 1: widening is exact, so the reference must give
 * each value exactly (subnormals, inf and nan included), and so must the kernel, whose single
 * fp16 product and sum are exact too. */
static int check_f16_values(bertc_pool *p) {
  result r = {.label = "bertc_linear_packed_f16 values"};
  const int64_t N = 65536;
  const bertc_gemm_tile tile = {8, 16, 256};
  const float one = 1.0f;
  uint16_t *wp = malloc((size_t)N * sizeof(uint16_t));
  float *exact = malloc((size_t)N * sizeof(float)), *got = nan_array(N), *want = nan_array(N);
  for (int64_t n = 0; n < N; n++) {
    wp[n] = (uint16_t)n; /* K = 1: panel p holds columns 16p..16p+15 in order */
    exact[n] = (float)half_value((uint16_t)n) + 0.0f; /* the +0 turns -0 into +0, as 0 + 1 * -0 does */
  }
  ref_bertc_linear_packed_f16(p, &one, wp, NULL, NULL, want, 1, N, 1, BERTC_ACT_NONE, &tile);
  record_within(&r, want, exact, N, "reference vs exact", 0.0);
  bertc_linear_packed_f16(p, &one, wp, NULL, NULL, got, 1, N, 1, BERTC_ACT_NONE, &tile);
  record_within(&r, got, want, N, "kernel vs reference", 0.0);
  for (int64_t n = 0; n < N; n++) /* error_of ignores the sign of zero and the nan payload */
    if (float_to_half(exact[n]) != (uint16_t)n && !isnan(exact[n]) && n != 0x8000) {
      if (!r.failed) snprintf(r.first_failure, sizeof r.first_failure, "float_to_half(%g) != 0x%04llx", exact[n],
                              (long long)n);
      r.failed++;
    }
  free(wp), free(exact), free(got), free(want);
  return report(&r, "bertc_linear_packed_f16");
}

/* ---- block-sparse linear ---------------------------------------------------------------- */
typedef struct {
  bertc_block_sparse w;
  int32_t *offsets, *index;
  float *values;
} sparse_weights;

/* Keeps each r x c block of W[N,K] with probability `density` and zeroes the others in W, so that
 * W stays the dense equivalent; the kept blocks are compressed to the format kernels.h documents. */
static sparse_weights compress_blocks(float *w, int64_t N, int64_t K, int r, int c, double density) {
  const int64_t rows = (N + r - 1) / r, cols = (K + c - 1) / c;
  sparse_weights s = {{r, c, (int32_t)rows, NULL, NULL, NULL}, calloc((size_t)rows + 1, sizeof(int32_t)),
                      malloc((size_t)(rows * cols + 1) * sizeof(int32_t)),
                      calloc((size_t)(rows * cols * r * c + 1), sizeof(float))};
  int32_t blocks = 0;
  for (int64_t i = 0; i < rows; i++) {
    s.offsets[i] = blocks;
    for (int64_t kb = 0; kb < cols; kb++) {
      const int keep = rand_float(0, 1) < density;
      if (keep) s.index[blocks] = (int32_t)(kb * c);
      for (int64_t l = 0; l < c; l++)
        for (int64_t j = 0; j < r; j++) {
          const int64_t n = i * r + j, k = kb * c + l;
          if (n >= N || k >= K) continue; /* the padding stays zero */
          if (keep) s.values[(blocks * c + l) * r + j] = w[n * K + k];
          else w[n * K + k] = 0.0f;
        }
      blocks += keep;
    }
  }
  s.offsets[rows] = blocks;
  s.w.offsets = s.offsets, s.w.index = s.index, s.w.values = s.values;
  return s;
}

/* The ISA kernel against the reference, and the reference against the definition: x @ W^T from
 * the dense W in double, then act(. + bias) + residual. */
static void check_sparse_case(bertc_pool *p, result *r, result *vs_dense, int br, int bc, double density, int64_t M,
                              int64_t N, int64_t K, int act) {
  const int with_bias = rand_int(0, 2) > 0, with_res = rand_int(0, 1);
  const float ws = 2.0f / sqrtf((float)K);
  float *x = rand_array(M * K, -1, 1), *w = rand_array(N * K, -ws, ws), *bias = rand_array(N, -1, 1);
  float *res = rand_array(M * N, -1, 1), *got = nan_array(M * N), *want = nan_array(M * N), *dense = nan_array(M * N);
  sparse_weights s = compress_blocks(w, N, K, br, bc, density);
  const float *b = with_bias ? bias : NULL, *rs = with_res ? res : NULL;
  int64_t scratch = BERTC_SCRATCH_SPARSE(K, bc);
  bertc_parallel_rows(p, 64, poison_scratch, &scratch);
  bertc_linear_sparse(p, x, &s.w, b, rs, got, M, N, K, act);
  ref_bertc_linear_sparse(p, x, &s.w, b, rs, want, M, N, K, act);
  char shape[96];
  snprintf(shape, sizeof shape, "%dx%d d=%.2f M=%lld N=%lld K=%lld act=%d bias=%d res=%d", br, bc, density,
           (long long)M, (long long)N, (long long)K, act, with_bias, with_res);
  record(r, got, want, M * N, shape);
  if (vs_dense) {
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++) {
        double acc = 0.0;
        for (int64_t k = 0; k < K; k++) acc += (double)x[m * K + k] * w[n * K + k];
        dense[m * N + n] = (float)acc + (b ? b[n] : 0.0f);
      }
    ref_bertc_unary(p, act, dense, dense, M * N);
    for (int64_t i = 0; rs && i < M * N; i++) dense[i] += rs[i];
    record(vs_dense, want, dense, M * N, shape);
  }
  free(x), free(w), free(bias), free(res), free(got), free(want), free(dense);
  free(s.offsets), free(s.index), free(s.values);
}

/* Block shapes of every kernel path (by columns, by rows, scalar), densities from empty to full,
 * shapes that divide neither the block nor any tile. */
static int check_linear_sparse(bertc_pool *p) {
  result r = {.label = "bertc_linear_sparse"}, vs_dense = {.label = "  reference vs dense W"};
  static const int blocks[][2] = {{1, 1}, {1, 4}, {1, 8}, {4, 1}, {8, 1}, {16, 1}, {2, 2},
                                  {4, 4}, {3, 5}, {32, 1}, {8, 2}, {16, 4}, {2, 1}, {4, 2}};
  static const double densities[] = {0.0, 0.1, 0.5, 1.0};
  for (size_t sh = 0; sh < sizeof blocks / sizeof *blocks; sh++)
    for (int c = 0; c < 16; c++) { /* cases 5, 6, 7: M, N, K = 1 (densities 0.1, 0.5, 1) */
      const int64_t M = c == 5 ? 1 : rand_int(1, 70), N = c == 6 ? 1 : rand_int(1, 70);
      const int64_t K = c == 7 ? 1 : rand_int(1, 90);
      check_sparse_case(p, &r, &vs_dense, blocks[sh][0], blocks[sh][1], densities[c % 4], M, N, K, c % 5);
    }
  /* every row count of 1-17 (real text's few tokens: the few-rows tile of r < L blocks, the switch back, and the
   * by-rows tile's half-height tail at 9-16), a tail of 1, 16 and 17 rows after a whole 32-row tile, the by-columns
   * tile's last tile of 4 and 8 rows after whole ones (21, 33, 40, 49) and the by-rows tile's of a quarter, three
   * quarters or (AVX-512) one and a half registers (33, 40; 21, 49), a short tail after two (65, 80), no rows */
  static const int more_rows[] = {21, 33, 40, 48, 49, 65, 80, 0};
  for (size_t sh = 0; sh < sizeof blocks / sizeof *blocks; sh++)
    for (int j = 0; j < 25; j++) {
      const int M = j < 17 ? j + 1 : more_rows[j - 17];
      check_sparse_case(p, &r, &vs_dense, blocks[sh][0], blocks[sh][1], densities[1 + M % 3], M, rand_int(1, 70),
                        rand_int(1, 90), M % 5);
    }
  /* BERT-sized: MiniLM's FFN projections at 128 tokens, its QKV projection at 37, a 4x1 one at 9 (fewer
   * rows than a tile: the block rows are split between threads). The reference is the loop checked
   * above, so only the kernel is compared. */
  check_sparse_case(p, &r, NULL, 16, 1, 0.25, 128, 1536, 384, BERTC_ACT_GELU);
  check_sparse_case(p, &r, NULL, 16, 1, 0.1, 128, 384, MAX_SPARSE_K, BERTC_ACT_NONE);
  check_sparse_case(p, &r, NULL, 8, 1, 0.5, 37, 1152, 384, BERTC_ACT_NONE);
  check_sparse_case(p, &r, NULL, 1, MAX_SPARSE_C, 0.25, 128, 384, 384, BERTC_ACT_NONE);
  check_sparse_case(p, &r, NULL, 4, 1, 0.25, 9, 384, 384, BERTC_ACT_NONE);
  check_sparse_case(p, &r, NULL, 16, 1, 0.5, 37, 1152, 512, BERTC_ACT_NONE); /* 1.1 MiB kept, a short last tile: */
  check_sparse_case(p, &r, NULL, 1, 4, 0.5, 40, 1152, 512, BERTC_ACT_NONE);  /* block rows split for every tile */
  /* light GEMMs split by their tiles' work (sparse_items): a one-row last tile of 1x4 blocks, 16x1's of 9 rows */
  check_sparse_case(p, &r, NULL, 1, 4, 0.1, 161, 512, 512, BERTC_ACT_NONE);
  check_sparse_case(p, &r, NULL, 16, 1, 0.1, 105, 1536, 512, BERTC_ACT_GELU);
  const int failed = report(&r, "bertc_linear_sparse");
  return failed | report(&vs_dense, "bertc_linear_sparse");
}

/* ---- block-sparse int8 linear ------------------------------------------------------------ */
/* The pruned W quantized as the dense int8 GEMM's (nr = 1 panels: q[n,k] at n * Kq + k), its kept blocks as int8;
 * the ISA kernel against the reference, and the reference against the dense int8 reference on the same pruned
 * weights: both bit for bit without an activation (exact integer sums, the same fma). */
static void check_sparse_i8_case(bertc_pool *p, result *r, result *vs_dense, int br, double density, int64_t M,
                                 int64_t N, int64_t K, int act, int group, int qmax) {
  const int with_bias = rand_int(0, 2) > 0, with_res = rand_int(0, 1);
  const float ws = 2.0f / sqrtf((float)K);
  float *x = rand_array(M * K, -1, 1), *w = rand_array(N * K, -ws, ws), *bias = rand_array(N, -1, 1);
  float *res = rand_array(M * N, -1, 1), *got = nan_array(M * N), *want = nan_array(M * N), *dense = nan_array(M * N);
  if (M > 2) memset(x + K, 0, (size_t)K * sizeof(float)); /* a zero row: scale 0 */
  sparse_weights s = compress_blocks(w, N, K, br, 1, density);
  qweights q = quantize_weights(w, N, K, 1, qmax);
  const int64_t Kq = (K + 3) / 4 * 4, rows = s.w.block_rows;
  /* group 4 (kernels.h): each block row padded with zero blocks at its last column to a multiple of 4, interleaved */
  int32_t *offsets = calloc((size_t)(rows + 1), sizeof(int32_t));
  for (int64_t i = 0; i < rows; i++) {
    const int32_t n = s.offsets[i + 1] - s.offsets[i];
    offsets[i + 1] = offsets[i] + (group == 4 ? (n + 3) / 4 * 4 : n);
  }
  int32_t *index = calloc((size_t)offsets[rows] + 1, sizeof(int32_t));
  int8_t *values = calloc((size_t)(offsets[rows] * br + 1), 1);
  for (int64_t i = 0; i < rows; i++)
    for (int64_t b = offsets[i]; b < offsets[i + 1]; b++) {
      const int64_t from = s.offsets[i] + (b - offsets[i]), pad = from >= s.offsets[i + 1];
      index[b] = s.index[pad ? s.offsets[i + 1] - 1 : from];
      for (int64_t j = 0; j < br && i * br + j < N; j++)
        values[group == 4 ? (b / 4 * br + j) * 4 + b % 4 : b * br + j] = pad ? 0 : q.w[(i * br + j) * Kq + index[b]];
    }
  const bertc_block_sparse_i8 wq = {br, 1, (int32_t)rows, offsets, index, values, q.scale, q.colsum, group};
  const float *b = with_bias ? bias : NULL, *rs = with_res ? res : NULL;
  const bertc_gemm_tile tile = {1, 1, 256};
  void *work = malloc((size_t)BERTC_I8_WORK(M, K)), *ref_work = malloc((size_t)BERTC_I8_WORK(M, K));
  memset(work, 0x5a, (size_t)BERTC_I8_WORK(M, K));
  memset(ref_work, 0xa5, (size_t)BERTC_I8_WORK(M, K));
  bertc_linear_sparse_i8(p, x, &wq, b, rs, got, M, N, K, act, work);
  ref_bertc_linear_sparse_i8(p, x, &wq, b, rs, want, M, N, K, act, ref_work);
  ref_bertc_linear_packed_i8(p, x, &q.q, b, rs, dense, M, N, K, act, &tile, ref_work);
  char shape[112];
  snprintf(shape, sizeof shape, "%dx1 g%d q%d d=%.2f M=%lld N=%lld K=%lld act=%d bias=%d res=%d", br, group, qmax,
           density, (long long)M, (long long)N, (long long)K, act, with_bias, with_res);
  if (act == BERTC_ACT_NONE) record_bits(r, got, want, M * N, shape), record_bits(vs_dense, want, dense, M * N, shape);
  else record(r, got, want, M * N, shape), record(vs_dense, want, dense, M * N, shape);
  free(x), free(w), free(bias), free(res), free(got), free(want), free(dense), free(values), free(offsets), free(index);
  free(s.offsets), free(s.index), free(s.values), free(q.w), free(q.scale), free(q.colsum), free(work), free(ref_work);
}

/* The largest weights the groups of 4 take in this build: x86 without VNNI sums their pairs on VPMADDUBSW (7-bit) */
#if defined(__AVX2__) && !(defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512VL__))
#define GROUP4_QMAX 63
#else
#define GROUP4_QMAX 127
#endif

static int check_linear_sparse_i8(bertc_pool *p) {
  result r = {.label = "bertc_linear_sparse_i8"}, vs_dense = {.label = "  reference vs dense int8"};
  static const int rows[] = {4, 8, 16};
  static const double densities[] = {0.0, 0.1, 0.5, 1.0};
  /* the plain layout (8-bit weights), groups of 4 with 7-bit weights, and with 8-bit ones where the build takes them */
  static const int layouts[][2] = {{1, 127}, {4, 63}, {4, GROUP4_QMAX}};
  for (int l = 0; l < 3; l++) {
    if (l == 2 && GROUP4_QMAX == 63) break;
    const int group = layouts[l][0], qmax = layouts[l][1];
    for (int sh = 0; sh < 3; sh++)
      for (int c = 0; c < 24; c++) /* cases 5, 6, 7: M, N, K = 1; M 1-9 (a few tokens) in every fourth */
        check_sparse_i8_case(p, &r, &vs_dense, rows[sh], densities[c % 4], c == 5 ? 1 : c % 4 == 3 ? rand_int(1, 9) :
                             rand_int(1, 70), c == 6 ? 1 : rand_int(1, 70), c == 7 ? 1 : rand_int(1, 90), c % 5, group,
                             qmax);
    check_sparse_i8_case(p, &r, &vs_dense, 16, 0.25, 128, 1536, 384, BERTC_ACT_NONE, group, qmax);
    check_sparse_i8_case(p, &r, &vs_dense, 8, 0.5, 37, 384, 1536, BERTC_ACT_GELU, group, qmax);
    check_sparse_i8_case(p, &r, &vs_dense, 4, 0.3, 3, 1152, 384, BERTC_ACT_NONE, group, qmax);
    check_sparse_i8_case(p, &r, &vs_dense, 16, 0.2, 161, 512, 256, BERTC_ACT_NONE, group, qmax); /* a 1-row tail tile */
  }
  const int failed = report(&r, "bertc_linear_sparse_i8");
  return failed | report(&vs_dense, "bertc_linear_sparse_i8");
}

/* ---- unpacked linear and matmul --------------------------------------------------------- */
static int check_linear(bertc_pool *p) {
  result r = {.label = "bertc_linear"};
  for (int c = 0; c < RANDOM_CASES; c++) {
    const int64_t M = rand_int(1, 37), N = rand_int(1, 70), K = rand_int(1, 90);
    const int act = c % 5, with_bias = rand_int(0, 1), with_res = rand_int(0, 1);
    const float ws = 2.0f / sqrtf((float)K);
    float *x = rand_array(M * K, -1, 1), *w = rand_array(K * N, -ws, ws), *bias = rand_array(N, -1, 1);
    float *res = rand_array(M * N, -1, 1), *got = nan_array(M * N), *want = nan_array(M * N);
    bertc_linear(p, x, w, with_bias ? bias : NULL, with_res ? res : NULL, got, M, N, K, act);
    ref_bertc_linear(p, x, w, with_bias ? bias : NULL, with_res ? res : NULL, want, M, N, K, act);
    char shape[96];
    snprintf(shape, sizeof shape, "M=%lld N=%lld K=%lld act=%d", (long long)M, (long long)N, (long long)K, act);
    record(&r, got, want, M * N, shape);
    free(x), free(w), free(bias), free(res), free(got), free(want);
  }
  return report(&r, "bertc_linear");
}

static int check_matmul(bertc_pool *p) {
  result r = {.label = "bertc_matmul"};
  for (int c = 0; c <= RANDOM_CASES; c++) { /* the last: DeBERTa's c2p / p2c shape, [S, D] x [D, W] per head */
    const int last = c == RANDOM_CASES;
    const int64_t batch = last ? 6 : rand_int(1, 3), M = last ? 37 : rand_int(1, 20), N = last ? 70 : rand_int(1, 40),
                  K = last ? 64 : rand_int(1, 40);
    const int64_t as = rand_int(0, 1) ? M * K : 0, bs = rand_int(0, 1) ? K * N : 0;
    float *a = rand_array(batch * M * K, -1, 1), *b = rand_array(batch * K * N, -1, 1);
    float *got = nan_array(batch * M * N), *want = nan_array(batch * M * N);
    bertc_matmul(p, a, b, got, batch, M, N, K, as, bs);
    ref_bertc_matmul(p, a, b, want, batch, M, N, K, as, bs);
    char shape[96];
    snprintf(shape, sizeof shape, "batch=%lld M=%lld N=%lld K=%lld", (long long)batch, (long long)M, (long long)N,
             (long long)K);
    record(&r, got, want, batch * M * N, shape);
    free(a), free(b), free(got), free(want);
  }
  return report(&r, "bertc_matmul");
}

/* ---- attention -------------------------------------------------------------------------- */
/* One batch row of the mask: all kept, all masked (the reference's zero rows), random, or a
 * padding suffix as a tokenizer writes it. */
static void fill_mask(int64_t *mask, int64_t S) {
  const int mode = (int)rand_int(0, 3);
  const int64_t keep = rand_int(1, S);
  for (int64_t j = 0; j < S; j++)
    mask[j] = mode == 0 ? 1 : mode == 1 ? 0 : mode == 2 ? rand_int(0, 9) < 7 : j < keep;
}

/* separate_v: Q|K rows [B,S,2H] and V rows of their own (MobileBERT's), here wider than H (their row a stride) */
static void check_attention_case(bertc_pool *p, result *r, int64_t B, int64_t S, int64_t heads, int64_t D,
                                 int separate_v) {
  const int64_t H = heads * D, qk_row = separate_v ? 2 * H : 3 * H, v_row = separate_v ? H + rand_int(0, 3) : 3 * H;
  float *qk = rand_array(B * S * qk_row, -2, 2), *got = nan_array(B * S * H), *want = nan_array(B * S * H);
  float *vs = separate_v ? rand_array(B * S * v_row, -2, 2) : NULL, *v = separate_v ? vs : qk + 2 * H;
  int64_t *mask = malloc((size_t)(B * S) * sizeof(int64_t));
  for (int64_t b = 0; b < B; b++) fill_mask(mask + b * S, S);
  const float scale = 1.0f / sqrtf((float)D);
  /* every other case with a relative-position bias (MPNet's), its table longer than S as a dynamic program's */
  const int64_t R = rand_int(0, 1) ? S + rand_int(0, 9) : 0;
  float *rel = R ? rand_array(heads * (2 * R - 1), -3, 3) : NULL;
  /* every third case a local window (ModernBERT's), narrower or wider than S, odd or even */
  const int64_t window = rand_int(0, 2) == 0 ? rand_int(1, S + 4) : 0;
  /* two cases in three DeBERTa's c2p and/or p2c scores, W positions, tables of 2P - 1 columns longer than S needs */
  const int kinds = (int)rand_int(0, 5) & 3; /* bit 0: c2p, bit 1: p2c; 0: no disentangled terms */
  const int64_t W = rand_int(1, 40), P = S + rand_int(0, 9), n = B * heads * S * W;
  float *c2p = kinds & 1 ? rand_array(n, -3, 3) : NULL, *p2c = kinds & 2 ? rand_array(n, -3, 3) : NULL;
  int64_t *at = malloc((size_t)(2 * (2 * P - 1)) * sizeof(int64_t));
  for (int64_t t = 0; t < 2 * (2 * P - 1); t++) at[t] = rand_int(0, W - 1);
  const bertc_disentangled dis = {c2p, p2c, at, at + 2 * P - 1, W, P}, *pos = kinds ? &dis : NULL;
  bertc_attention(p, qk, qk_row, v, v_row, mask, rel, R, pos, window, got, B, S, H, heads, scale);
  ref_bertc_attention(p, qk, qk_row, v, v_row, mask, rel, R, pos, window, want, B, S, H, heads, scale);
  char shape[160];
  snprintf(shape, sizeof shape, "B=%lld S=%lld heads=%lld D=%lld R=%lld v_row=%lld window=%lld c2p|p2c=%d",
           (long long)B, (long long)S, (long long)heads, (long long)D, (long long)R, (long long)v_row, (long long)window,
           kinds);
  record(r, got, want, B * S * H, shape);
  free(qk), free(vs), free(got), free(want), free(mask), free(rel), free(c2p), free(p2c), free(at);
}

static int check_attention(bertc_pool *p) {
  result r = {.label = "bertc_attention"};
  for (int c = 0; c < RANDOM_CASES; c++)
    check_attention_case(p, &r, rand_int(1, 2), rand_int(1, 70), rand_int(1, 5), rand_int(1, 40), c % 2);
  check_attention_case(p, &r, 1, 128, 12, 64, 0);
  check_attention_case(p, &r, 2, 70, 4, 64, 0);
  check_attention_case(p, &r, 1, 128, 12, 32, 0); /* MiniLM's heads */
  check_attention_case(p, &r, 1, 37, 2, 80, 0);   /* heads wider than 64, not a multiple of 16 */
  check_attention_case(p, &r, 2, 19, 3, 128, 0);
  check_attention_case(p, &r, 1, 128, 4, 32, 1);  /* MobileBERT's: 4 heads of its 128-wide bottleneck */
  check_attention_case(p, &r, 2, 45, 3, 24, 1);
  return report(&r, "bertc_attention");
}

/* ---- row-wise ops ----------------------------------------------------------------------- */
static int check_layer_norm(bertc_pool *p) {
  result r = {.label = "bertc_layer_norm"};
  for (int c = 0; c < RANDOM_CASES + 2; c++) {
    const int64_t rows = rand_int(1, 9), n = c < RANDOM_CASES ? rand_int(1, 800) : c == RANDOM_CASES ? 768 : 384;
    const float offset = rand_int(0, 1) ? 5.0f : 0.0f; /* a row mean far from 0 */
    const float eps = rand_int(0, 1) ? 1e-12f : 1e-5f;
    float *x = rand_array(rows * n, offset - 2, offset + 2), *res = rand_array(rows * n, -1, 1);
    float *g = rand_array(n, 0.5f, 1.5f), *b = rand_array(n, -0.5f, 0.5f);
    float *got = nan_array(rows * n), *want = nan_array(rows * n);
    const float *rs = rand_int(0, 1) ? res : NULL;
    bertc_layer_norm(p, x, rs, g, b, got, rows, n, eps);
    ref_bertc_layer_norm(p, x, rs, g, b, want, rows, n, eps);
    char shape[96];
    snprintf(shape, sizeof shape, "rows=%lld n=%lld res=%d eps=%g", (long long)rows, (long long)n, rs != NULL, eps);
    record(&r, got, want, rows * n, shape);
    free(x), free(res), free(g), free(b), free(got), free(want);
  }
  return report(&r, "bertc_layer_norm");
}

static int check_rms_norm(bertc_pool *p) {
  result r = {.label = "bertc_rms_norm"};
  for (int c = 0; c < RANDOM_CASES + 1; c++) {
    const int64_t rows = rand_int(1, 9), n = c < RANDOM_CASES ? rand_int(1, 800) : 768;
    const float eps = rand_int(0, 1) ? 1e-6f : 1e-5f;
    float *x = rand_array(rows * n, -3, 3), *g = rand_array(n, 0.5f, 1.5f);
    float *got = nan_array(rows * n), *want = nan_array(rows * n);
    bertc_rms_norm(p, x, g, got, rows, n, eps);
    ref_bertc_rms_norm(p, x, g, want, rows, n, eps);
    char shape[96];
    snprintf(shape, sizeof shape, "rows=%lld n=%lld eps=%g", (long long)rows, (long long)n, eps);
    record(&r, got, want, rows * n, shape);
    free(x), free(g), free(got), free(want);
  }
  return report(&r, "bertc_rms_norm");
}

static int check_softmax(bertc_pool *p) {
  result r = {.label = "bertc_softmax"};
  for (int c = 0; c < RANDOM_CASES; c++) {
    const int64_t rows = rand_int(1, 9), n = rand_int(1, 300);
    float *x = rand_array(rows * n, -20, 20), *got = nan_array(rows * n), *want = nan_array(rows * n);
    for (int64_t i = 0; i < rows * n; i++) /* additive-mask values; element 0 of a row stays finite */
      if (i % n && rand_int(0, 9) == 0) x[i] = rand_int(0, 1) ? -INFINITY : -1e9f;
    bertc_softmax(p, x, got, rows, n);
    ref_bertc_softmax(p, x, want, rows, n);
    char shape[96];
    snprintf(shape, sizeof shape, "rows=%lld n=%lld", (long long)rows, (long long)n);
    record(&r, got, want, rows * n, shape);
    free(x), free(got), free(want);
  }
  return report(&r, "bertc_softmax");
}

/* Random lengths, then a dense sweep over the range where erf/tanh bend, then special values. */
static int check_unary(bertc_pool *p) {
  static const char *const acts[] = {"none", "gelu", "gelu_tanh", "tanh", "relu", "silu"};
  static const float specials[] = {0.0f, -0.0f, 1e-20f, -1e-20f, 40, -40, 100, -100, 1e10f, -1e10f, 1e30f, -1e30f,
                                   INFINITY, -INFINITY, NAN};
  int failed = 0;
  for (int act = 0; act < (int)(sizeof acts / sizeof *acts); act++) {
    result r = {0};
    snprintf(r.label, sizeof r.label, "bertc_unary %s", acts[act]);
    for (int c = 0; c <= RANDOM_CASES; c++) {
      const int64_t n = c < RANDOM_CASES ? rand_int(1, 3000) : 30001 + (int64_t)(sizeof specials / sizeof *specials);
      float *x = rand_array(n, -12, 12), *got = nan_array(n), *want = nan_array(n);
      for (int64_t i = 0; c == RANDOM_CASES && i < n; i++)
        x[i] = i < 30001 ? -15.0f + 1e-3f * (float)i : specials[i - 30001];
      bertc_unary(p, act, x, got, n);
      ref_bertc_unary(p, act, x, want, n);
      char shape[96];
      snprintf(shape, sizeof shape, "%s n=%lld", c < RANDOM_CASES ? "random" : "sweep", (long long)n);
      record(&r, got, want, n, shape);
      free(x), free(got), free(want);
    }
    failed |= report(&r, "bertc_unary");
  }
  return failed;
}

/* Rank-4 broadcasting: each dim of a and b is either full or broadcast (stride 0). */
static int check_binary(bertc_pool *p) {
  result r = {.label = "bertc_binary"};
  for (int c = 0; c < RANDOM_CASES; c++) {
    const int64_t shape[4] = {rand_int(1, 3), rand_int(1, 4), rand_int(1, 6), rand_int(1, 40)};
    int64_t as[4], bs[4], an = 1, bn = 1;
    for (int d = 3; d >= 0; d--) {
      as[d] = rand_int(0, 2) ? an : 0;
      bs[d] = rand_int(0, 2) ? bn : 0;
      an *= as[d] ? shape[d] : 1;
      bn *= bs[d] ? shape[d] : 1;
    }
    const int64_t n = shape[0] * shape[1] * shape[2] * shape[3];
    float *a = rand_array(an, -2, 2), *b = rand_array(bn, 0.5f, 2), *got = nan_array(n), *want = nan_array(n);
    const int op = c % 4;
    bertc_binary(p, op, a, as, b, bs, got, shape);
    ref_bertc_binary(p, op, a, as, b, bs, want, shape);
    char desc[96];
    snprintf(desc, sizeof desc, "op=%d shape=%lldx%lldx%lldx%lld", op, (long long)shape[0], (long long)shape[1],
             (long long)shape[2], (long long)shape[3]);
    record(&r, got, want, n, desc);
    free(a), free(b), free(got), free(want);
  }
  return report(&r, "bertc_binary");
}

/* ---- driver ----------------------------------------------------------------------------- */
/* The tiles the targets pick (neon 8x12, 4x16, 8x8, and for fp16 weights 8x16, 8x24; avx2 6x16,
 * 4x24, 6x8) and odd ones that must take an ISA file's fallback path. */
static const int default_tiles[][2] = {{8, 12}, {4, 16}, {8, 8},  {8, 16}, {8, 24},
                                       {6, 16}, {4, 24}, {6, 8},  {3, 5},  {1, 1},  {16, 16}};

/* Every kernel but the int8 GEMM. */
static int check_float_kernels(bertc_pool *p, const int (*tiles)[2], int ntiles) {
  int failed = 0;
  for (int t = 0; t < ntiles; t++) failed |= check_linear_packed(p, tiles[t][0], tiles[t][1]);
  failed |= check_linear_sparse(p);
  failed |= check_linear(p);
  failed |= check_matmul(p);
  failed |= check_attention(p);
  failed |= check_layer_norm(p);
  failed |= check_rms_norm(p);
  failed |= check_softmax(p);
  failed |= check_unary(p);
  failed |= check_binary(p);
  /* Where the ISA file has no fp16 GEMM the reference is linked: one tile keeps the reference's own
   * checks (against fp32 weights and every half value); every tile would check it against itself. */
  const int f16_tiles = strcmp(bertc_kernel_impl("bertc_linear_packed_f16"), "ref") ? ntiles : 1;
  for (int t = 0; t < f16_tiles; t++) failed |= check_linear_packed_f16(p, tiles[t][0], tiles[t][1]);
  failed |= check_f16_values(p);
  return failed;
}

static int check_all(int threads, const int (*tiles)[2], int ntiles, int int8_only) {
  /* the default tuning, and with more than 2 threads other legal values (small attention blocks,
   * GEMM row blocks that are not multiples of any tile) */
  const bertc_tuning tuning = threads > 2 ? (bertc_tuning){3, 4, 40} : (bertc_tuning)BERTC_TUNING_DEFAULT;
  const int64_t scratch = BERTC_SCRATCH_LINEAR(MAX_K) > BERTC_SCRATCH_SPARSE(MAX_SPARSE_K, MAX_SPARSE_C)
                              ? BERTC_SCRATCH_LINEAR(MAX_K)
                              : BERTC_SCRATCH_SPARSE(MAX_SPARSE_K, MAX_SPARSE_C);
  bertc_pool *p = bertc_pool_create(threads, scratch, &tuning);
  if (!p) {
    fprintf(stderr, "kernel_check: could not create a pool of %d threads\n", threads);
    return 1;
  }
  rng_state = 0x9E3779B97F4A7C15ull; /* the same cases for every thread count */
  printf("threads %d\n", threads);
  int failed = 0;
  if (!int8_only) failed |= check_float_kernels(p, tiles, ntiles);
  /* int8: every tile (the ISA file's own, and the others through its fallback; one where the reference is
   * linked), and once the reference against kernels.h's formula */
  const int i8_tiles = strcmp(bertc_kernel_impl("bertc_linear_packed_i8"), "ref") ? ntiles : 1;
  for (int t = 0; t < i8_tiles; t++) failed |= check_linear_packed_i8(p, tiles[t][0], tiles[t][1], t == 0);
  failed |= check_linear_sparse_i8(p);
  bertc_pool_destroy(p);
  return failed;
}

int main(int argc, char **argv) {
  int thread_counts[2] = {1, 3}, nthreads = 2, tiles[16][2], ntiles = 0, int8_only = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "-t") == 0 && i + 1 < argc && atoi(argv[i + 1]) > 0) {
      thread_counts[0] = atoi(argv[++i]);
      nthreads = 1;
    } else if (strcmp(argv[i], "-i8") == 0) {
      int8_only = 1;
    } else if (ntiles < 16 && sscanf(argv[i], "%dx%d", &tiles[ntiles][0], &tiles[ntiles][1]) == 2 &&
               tiles[ntiles][0] >= 1 && tiles[ntiles][0] <= 16 && tiles[ntiles][1] >= 1) {
      ntiles++;
    } else {
      fprintf(stderr, "usage: kernel_check [-t THREADS] [-i8] [MRxNR ...]  (mr 1..16: the scratch packs up to 16 rows)\n");
      return 2;
    }
  }
  const int (*use)[2] = ntiles ? (const int (*)[2])tiles : default_tiles;
  const int nuse = ntiles ? ntiles : (int)(sizeof default_tiles / sizeof *default_tiles);
  int failed = 0;
  for (int t = 0; t < nthreads; t++) failed |= check_all(thread_counts[t], use, nuse, int8_only);
  puts(failed ? "kernel_check: FAILED" : "kernel_check: all kernels match the reference");
  return failed;
}
