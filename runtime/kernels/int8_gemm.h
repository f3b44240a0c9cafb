/* int8 linear (bertc_linear_packed_i8; the format is in kernels.h): the parts every implementation
 * shares, in plain C. The reference kernel is built from them; an ISA kernel uses them for the tiles
 * its micro-kernels do not cover, and must give the same bits as q8_quantize_row and q8_dot_row
 * (runtime/tests/kernel_check.c compares them with the activation off).
 *
 * The work buffer (BERTC_I8_WORK bytes): the quantized rows of x, M rounded up to 16 rows of Kq bytes,
 * in the order the kernel's micro-tiles read them (row by row here and on x86, 8-row tiles on NEON), then
 * one float scale per row. Every kernel runs in two passes over the pool: the rows are quantized once,
 * then every thread's share of the GEMM reads them. */
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

/* x * inv clamped to [-127, 127] before it is rounded: a static scale's outliers saturate (a dynamic scale
 * never needs it; the clamp changes none of its values). NaN becomes -127, as fmaxf / maxps / vmaxnm make it. */
static inline float q8_clamp(float v) { return fminf(fmaxf(v, -127.0f), 127.0f); }

/* The row's scale and the factor its values are multiplied by: the static x_scale and its inverse, or for
 * a dynamic GEMM (x_scale 0) max|x| / 127 and 127 / max|x| (0 and 0 for a zero row). */
static inline float q8_row_scale(float x_scale, float amax, float *inv) {
  if (x_scale > 0.0f) return *inv = 1.0f / x_scale, x_scale;
  *inv = amax > 0.0f ? 127.0f / amax : 0.0f;
  return amax / 127.0f;
}

/* q[0, Kq) = round-half-even(clamp(x * inv)), zero past K; returns the row's scale (q8_row_scale). */
static inline float q8_quantize_row(const float *x, int64_t K, float x_scale, int8_t *q) {
  float amax = 0.0f, inv;
  for (int64_t k = 0; x_scale <= 0.0f && k < K; k++) amax = fmaxf(amax, fabsf(x[k]));
  const float s = q8_row_scale(x_scale, amax, &inv);
  for (int64_t k = 0; k < K; k++) q[k] = (int8_t)nearbyintf(q8_clamp(x[k] * inv));
  for (int64_t k = K; k < q8_kq(K); k++) q[k] = 0;
  return s;
}

/* y[0, N) = fma(sum_k q[k] * w[n,k], s * scale[n], bias[n]): one quantized row against every column,
 * before the activation. */
static inline void q8_dot_row(const int8_t *q, float s, const bertc_qweight *w, const float *bias, float *y,
                              int64_t N, int64_t K, int64_t nr) {
  const int64_t Kq = q8_kq(K);
  for (int64_t n = 0; n < N; n++) {
    const int8_t *col = w->w + (n / nr) * Kq * nr + (n % nr) * 4;
    int32_t acc = 0;
    for (int64_t g = 0; g < Kq / 4; g++)
      for (int64_t i = 0; i < 4; i++) acc += (int32_t)q[4 * g + i] * col[g * 4 * nr + i];
    y[n] = fmaf((float)acc, s * w->scale[n], bias ? bias[n] : 0.0f);
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
  int64_t M, N, K, Kq, panels, row_block;
  int act;
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

/* The first pass: rows [lo, hi) of x into the work buffer, row by row. */
static inline void q8_quantize_rows(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  const q8_rows_args *a = raw;
  for (int64_t m = lo; m < hi; m++)
    q8_scales(a->work, a->M, a->K)[m] = q8_quantize_row(a->x + m * a->K, a->K, a->w->x_scale,
                                                                 q8_rows(a->work) + m * q8_kq(a->K));
}

static inline void q8_dot_rows(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  const q8_rows_args *a = raw;
  for (int64_t m = lo; m < hi; m++) {
    float *y = a->y + m * a->N;
    q8_dot_row(q8_rows(a->work) + m * q8_kq(a->K), q8_scales(a->work, a->M, a->K)[m], a->w, a->bias, y, a->N, a->K,
               a->nr);
    a->epilogue(y, a->res ? a->res + m * a->N : NULL, a->N, a->act);
  }
}

static inline void q8_linear_rows(bertc_pool *p, q8_rows_args *a) {
  bertc_parallel_rows(p, a->M, q8_quantize_rows, a);
  bertc_parallel_rows(p, a->M, q8_dot_rows, a);
}

#endif
