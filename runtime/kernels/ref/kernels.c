/* Portable reference kernels: plain C the compiler vectorises. Every ISA variant is tested
 * against these. Each is a weak symbol, so an ISA folder's definition replaces it at link time
 * (see bertc_kernel_impl). */
#include "../kernels.h"
#include "../int8_gemm.h"

#include <math.h>
#include <string.h>

#define BERTC_WEAK __attribute__((weak))

BERTC_WEAK const char *bertc_kernel_impl(const char *kernel) {
  (void)kernel;
  return "ref";
}

static float activate(float v, int act) {
  switch (act) {
    case BERTC_ACT_GELU: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    case BERTC_ACT_GELU_TANH: {
      float inner = 0.79788456080286536f * (v + 0.044715f * v * v * v);
      return 0.5f * v * (1.0f + tanhf(inner));
    }
    case BERTC_ACT_TANH: return tanhf(v);
    case BERTC_ACT_RELU: return v > 0 ? v : 0;
    case BERTC_ACT_SILU: return v / (1.0f + expf(-v));
    default: return v;
  }
}

/* ---- linear ------------------------------------------------------------------------ */
typedef struct {
  const float *x, *w, *bias, *res;
  float *y;
  int64_t N, K;
  int act;
} linear_args;

#define LINEAR_ROWS 4
static void linear_rows(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  const linear_args *a = raw;
  const int64_t N = a->N, K = a->K;
  for (int64_t m0 = lo; m0 < hi; m0 += LINEAR_ROWS) {
    int64_t rows = hi - m0 < LINEAR_ROWS ? hi - m0 : LINEAR_ROWS;
    for (int64_t r = 0; r < rows; r++) {
      float *y = a->y + (m0 + r) * N;
      if (a->bias) memcpy(y, a->bias, (size_t)N * sizeof(float));
      else memset(y, 0, (size_t)N * sizeof(float));
    }
    if (rows == LINEAR_ROWS) {
      float *y0 = a->y + m0 * N, *y1 = y0 + N, *y2 = y1 + N, *y3 = y2 + N;
      const float *x0 = a->x + m0 * K, *x1 = x0 + K, *x2 = x1 + K, *x3 = x2 + K;
      for (int64_t k = 0; k < K; k++) {
        const float *w = a->w + k * N;
        const float c0 = x0[k], c1 = x1[k], c2 = x2[k], c3 = x3[k];
        for (int64_t n = 0; n < N; n++) {
          const float wv = w[n];
          y0[n] += c0 * wv;
          y1[n] += c1 * wv;
          y2[n] += c2 * wv;
          y3[n] += c3 * wv;
        }
      }
    } else {
      for (int64_t r = 0; r < rows; r++) {
        float *y = a->y + (m0 + r) * N;
        const float *x = a->x + (m0 + r) * K;
        for (int64_t k = 0; k < K; k++) {
          const float *w = a->w + k * N;
          const float c = x[k];
          for (int64_t n = 0; n < N; n++) y[n] += c * w[n];
        }
      }
    }
    for (int64_t r = 0; r < rows; r++) {
      float *y = a->y + (m0 + r) * N;
      const float *res = a->res ? a->res + (m0 + r) * N : NULL;
      if (a->act != BERTC_ACT_NONE)
        for (int64_t n = 0; n < N; n++) y[n] = activate(y[n], a->act);
      if (res)
        for (int64_t n = 0; n < N; n++) y[n] += res[n];
    }
  }
}

BERTC_WEAK void bertc_linear(bertc_pool *p, const float *x, const float *w_kn, const float *bias, const float *residual,
                  float *y, int64_t M, int64_t N, int64_t K, int act) {
  linear_args a = {x, w_kn, bias, residual, y, N, K, act};
  bertc_parallel_rows(p, M, linear_rows, &a);
}

/* ---- embedding ---------------------------------------------------------------------- */
typedef struct { const float *table; const int64_t *ids; float *out; int64_t dim; } embed_args;
/* ---- packed linear: any tile; the layout is the one kernels.h documents ---------------- */
typedef struct {
  const float *x, *w, *bias, *res;
  const uint16_t *w16; /* binary16 weights (bertc_linear_packed_f16), or NULL: w holds them */
  float *y;
  int64_t N, K;
  int act, nr;
} packed_args;

/* IEEE binary16 bits -> float, exactly (every half is a float), without _Float16 so that any
 * C compiler builds the reference. Selects rather than branches, so the loop below vectorises. */
static inline float half_to_float(uint16_t h) {
  const uint32_t em = h & 0x7fffu; /* exponent and mantissa */
  /* normal: rebias the exponent 15 -> 127; inf and nan (exponent 31) go to 255, payload kept */
  uint32_t bits = (em << 13) + (em >= 0x7c00u ? 224u << 23 : 112u << 23);
  float v;
  memcpy(&v, &bits, sizeof v);
  v = em < 0x400u ? (float)em * 0x1p-24f : v; /* zero and subnormals: mant * 2^-24, exact */
  memcpy(&bits, &v, sizeof bits);
  bits |= (uint32_t)(h & 0x8000u) << 16;
  memcpy(&v, &bits, sizeof v);
  return v;
}

/* One loop for both weight types: `f16` is a constant in each caller, so the branch folds away. */
static inline __attribute__((always_inline)) void packed_rows_of(const packed_args *a, int64_t lo, int64_t hi,
                                                                 int f16) {
  const int64_t N = a->N, K = a->K, nr = a->nr;
  const float *w32 = a->w;
  const uint16_t *w16 = a->w16;
  for (int64_t m = lo; m < hi; m++) {
    const float *x = a->x + m * K;
    float *y = a->y + m * N;
    for (int64_t n0 = 0; n0 < N; n0 += nr) {
      const int64_t panel = (n0 / nr) * K * nr;
      const int64_t cols = N - n0 < nr ? N - n0 : nr;
      for (int64_t j = 0; j < cols; j++) y[n0 + j] = a->bias ? a->bias[n0 + j] : 0.0f;
      for (int64_t k = 0; k < K; k++) {
        const float xv = x[k];
        const int64_t w = panel + k * nr;
        for (int64_t j = 0; j < cols; j++) y[n0 + j] += xv * (f16 ? half_to_float(w16[w + j]) : w32[w + j]);
      }
    }
    for (int64_t n = 0; n < N; n++) {
      float v = activate(y[n], a->act);
      y[n] = a->res ? v + a->res[m * N + n] : v;
    }
  }
}

static void packed_rows(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  packed_rows_of(raw, lo, hi, 0);
}

static void packed_rows_f16(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  packed_rows_of(raw, lo, hi, 1);
}

BERTC_WEAK void bertc_linear_packed(bertc_pool *p, const float *x, const float *w_packed, const float *bias,
                                    const float *residual, float *y, int64_t M, int64_t N, int64_t K, int act,
                                    const bertc_gemm_tile *tile) {
  packed_args a = {x, w_packed, bias, residual, NULL, y, N, K, act, tile->nr};
  bertc_parallel_rows(p, M, packed_rows, &a);
}

/* Widens each weight and sums in fp32: the expected values for an fp16 kernel, and what runs on
 * targets without FP16 arithmetic. */
BERTC_WEAK void bertc_linear_packed_f16(bertc_pool *p, const float *x, const uint16_t *w_packed, const float *bias,
                                        const float *residual, float *y, int64_t M, int64_t N, int64_t K, int act,
                                        const bertc_gemm_tile *tile) {
  packed_args a = {x, NULL, bias, residual, w_packed, y, N, K, act, tile->nr};
  bertc_parallel_rows(p, M, packed_rows_f16, &a);
}

/* ---- int8 linear: ../int8_gemm.h's row functions, one row at a time ------------------------ */
static void q8_ref_epilogue(float *y, const float *res, int64_t n, int act) {
  for (int64_t i = 0; i < n; i++) {
    const float v = activate(y[i], act);
    y[i] = res ? v + res[i] : v;
  }
}

BERTC_WEAK void bertc_linear_packed_i8(bertc_pool *p, const float *x, const bertc_qweight *w, const float *bias,
                                       const float *residual, float *y, int64_t M, int64_t N, int64_t K, int act,
                                       const bertc_gemm_tile *tile, void *work) {
  q8_rows_args a = {x, bias, residual, w, y, work, M, N, K, tile->nr, act, q8_ref_epilogue};
  q8_linear_rows(p, &a);
}

BERTC_WEAK void bertc_linear_sparse_i8(bertc_pool *p, const float *x, const bertc_block_sparse_i8 *w, const float *bias,
                                       const float *residual, float *y, int64_t M, int64_t N, int64_t K, int act,
                                       void *work) {
  q8s_args a = {bias, residual, w, y, work, M, N, K, 1, act, q8_ref_epilogue, q8s_sums_ref, NULL, 0x80, Q8S_MR, 0};
  q8_linear_sparse(p, x, &a);
}

/* ---- block-sparse linear: the format kernels.h documents ------------------------------ */
typedef struct {
  const float *x, *bias, *res;
  const bertc_block_sparse *w;
  float *y;
  int64_t N, K;
  int act;
} sparse_args;

/* One row of y at a time: zero it, add each kept block's products (skipping the padding past N
 * and K, so x is never read out of bounds), then the epilogue. */
static void sparse_rows(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  const sparse_args *a = raw;
  const bertc_block_sparse *w = a->w;
  const int64_t N = a->N, K = a->K, r = w->r, c = w->c;
  for (int64_t m = lo; m < hi; m++) {
    const float *x = a->x + m * K;
    float *y = a->y + m * N;
    memset(y, 0, (size_t)N * sizeof(float));
    for (int64_t i = 0; i < w->block_rows; i++)
      for (int64_t b = w->offsets[i]; b < w->offsets[i + 1]; b++)
        for (int64_t l = 0; l < c && w->index[b] + l < K; l++) {
          const float xv = x[w->index[b] + l];
          const float *v = w->values + (b * c + l) * r;
          for (int64_t j = 0; j < r && i * r + j < N; j++) y[i * r + j] += xv * v[j];
        }
    for (int64_t n = 0; n < N; n++) {
      const float v = activate(y[n] + (a->bias ? a->bias[n] : 0.0f), a->act);
      y[n] = a->res ? v + a->res[m * N + n] : v;
    }
  }
}

BERTC_WEAK void bertc_linear_sparse(bertc_pool *p, const float *x, const bertc_block_sparse *w, const float *bias,
                                    const float *residual, float *y, int64_t M, int64_t N, int64_t K, int act) {
  sparse_args a = {x, bias, residual, w, y, N, K, act};
  bertc_parallel_rows(p, M, sparse_rows, &a);
}

static void embed_rows(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  const embed_args *a = raw;
  for (int64_t i = lo; i < hi; i++)
    memcpy(a->out + i * a->dim, a->table + a->ids[i] * a->dim, (size_t)a->dim * sizeof(float));
}
BERTC_WEAK void bertc_embedding(bertc_pool *p, const float *table, const int64_t *ids, float *out, int64_t n, int64_t dim) {
  embed_args a = {table, ids, out, dim};
  bertc_parallel_rows(p, n, embed_rows, &a);
}

/* ---- layer norm --------------------------------------------------------------------- */
typedef struct { const float *x, *res, *g, *b; float *y; int64_t n; float eps; } ln_args;
static void ln_rows(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  const ln_args *a = raw;
  const int64_t n = a->n;
  for (int64_t r = lo; r < hi; r++) {
    const float *x = a->x + r * n;
    const float *res = a->res ? a->res + r * n : NULL;
    float *y = a->y + r * n;
    double sum = 0, sq = 0; /* double: rows of 768+ values, errors must stay ~1e-6 */
    for (int64_t i = 0; i < n; i++) {
      float v = x[i] + (res ? res[i] : 0.0f);
      y[i] = v;
      sum += v;
    }
    double mean = sum / (double)n;
    for (int64_t i = 0; i < n; i++) {
      double d = y[i] - mean;
      sq += d * d;
    }
    float inv = (float)(1.0 / sqrt(sq / (double)n + a->eps));
    float mf = (float)mean;
    for (int64_t i = 0; i < n; i++) y[i] = (y[i] - mf) * inv * a->g[i] + a->b[i];
  }
}
BERTC_WEAK void bertc_layer_norm(bertc_pool *p, const float *x, const float *residual, const float *gamma,
                      const float *beta, float *y, int64_t rows, int64_t n, float eps) {
  ln_args a = {x, residual, gamma, beta, y, n, eps};
  bertc_parallel_rows(p, rows, ln_rows, &a);
}

typedef struct { const float *x, *g; float *y; int64_t n; float eps; } rms_args;
static void rms_rows(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  const rms_args *a = raw;
  const int64_t n = a->n;
  for (int64_t r = lo; r < hi; r++) {
    const float *x = a->x + r * n;
    float *y = a->y + r * n;
    double sq = 0; /* double, as layer_norm's sums */
    for (int64_t i = 0; i < n; i++) sq += (double)x[i] * x[i];
    const float inv = (float)(1.0 / sqrt(sq / (double)n + a->eps));
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * inv * a->g[i];
  }
}
BERTC_WEAK void bertc_rms_norm(bertc_pool *p, const float *x, const float *gamma, float *y, int64_t rows, int64_t n,
                               float eps) {
  rms_args a = {x, gamma, y, n, eps};
  bertc_parallel_rows(p, rows, rms_rows, &a);
}

/* ---- attention ---------------------------------------------------------------------- */
typedef struct {
  const float *qk, *v; /* Q|K rows of qk_row floats, V rows of v_row floats */
  int64_t qk_row, v_row;
  const int64_t *mask;
  const float *rel; /* [heads, 2R - 1] or NULL */
  int64_t R;
  const bertc_disentangled *pos; /* DeBERTa's c2p / p2c scores, or NULL */
  int64_t window;
  float *out;
  int64_t S, H, heads;
  float scale;
} attn_args;

static void attn_rows(void *raw, int64_t lo, int64_t hi, float *scores) {
  const attn_args *a = raw;
  const int64_t S = a->S, H = a->H, D = H / a->heads, row = a->qk_row;
  for (int64_t t = lo; t < hi; t++) { /* t enumerates (batch, head, query) */
    const int64_t i = t % S, h = (t / S) % a->heads, b = t / (S * a->heads);
    const float *base = a->qk + b * S * row, *vbase = a->v + b * S * a->v_row + h * D;
    const float *q = base + i * row + h * D;
    const int64_t *mask = a->mask + b * S;
    const float *rel = attention_rel_row(a->rel, a->R, h, i); /* rel[j]: key j's bias */
    int64_t lo, hi; /* the keys in the query's window: the rest count as masked */
    attention_span(i, S, a->window, &lo, &hi);
    float mx = -INFINITY;
    for (int64_t j = lo; j < hi; j++) {
      if (!mask[j]) { scores[j] = -INFINITY; continue; }
      const float *k = base + j * row + H + h * D;
      float s = 0;
      for (int64_t d = 0; d < D; d++) s += q[d] * k[d];
      if (a->pos) s += attention_position_score(a->pos, b * a->heads + h, S, i, j);
      s *= a->scale;
      if (rel) s += rel[j];
      scores[j] = s;
      if (s > mx) mx = s;
    }
    float *o = a->out + (b * S + i) * H + h * D;
    memset(o, 0, (size_t)D * sizeof(float));
    if (mx == -INFINITY) continue; /* every key masked: PyTorch gives NaN, we give zeros */
    float sum = 0;
    for (int64_t j = lo; j < hi; j++) {
      float e = mask[j] ? expf(scores[j] - mx) : 0.0f;
      scores[j] = e;
      sum += e;
    }
    const float inv = 1.0f / sum;
    for (int64_t j = lo; j < hi; j++) {
      if (scores[j] == 0.0f) continue;
      const float w = scores[j] * inv;
      const float *v = vbase + j * a->v_row;
      for (int64_t d = 0; d < D; d++) o[d] += w * v[d];
    }
  }
}

BERTC_WEAK void bertc_attention(bertc_pool *p, const float *qk, int64_t qk_row, const float *v, int64_t v_row,
                                const int64_t *mask, const float *rel, int64_t R, const bertc_disentangled *pos,
                                int64_t window, float *out, int64_t B, int64_t S, int64_t H, int64_t heads, float scale) {
  attn_args a = {qk, v, qk_row, v_row, mask, rel, R, pos, window, out, S, H, heads, scale};
  bertc_parallel_rows(p, B * heads * S, attn_rows, &a);
}

/* ---- small ops ---------------------------------------------------------------------- */
BERTC_WEAK void bertc_mask_bias(const int64_t *mask, float *out, int64_t B, int64_t Q, int64_t K, float fill) {
  for (int64_t b = 0; b < B; b++)
    for (int64_t q = 0; q < Q; q++)
      for (int64_t k = 0; k < K; k++) out[(b * Q + q) * K + k] = mask[b * K + k] ? 0.0f : fill;
}

BERTC_WEAK void bertc_relative_bias(const float *table, float *out, int64_t B, int64_t heads, int64_t S, int64_t R) {
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < heads; h++)
      for (int64_t i = 0; i < S; i++)
        for (int64_t j = 0; j < S; j++) out[((b * heads + h) * S + i) * S + j] = table[h * (2 * R - 1) + R - 1 + j - i];
}

BERTC_WEAK void bertc_relative_gather(const float *x, const int64_t *table, float *out, int64_t B, int64_t S,
                                      int64_t W, int64_t R) {
  for (int64_t r = 0; r < B * S; r++)
    for (int64_t j = 0; j < S; j++) out[r * S + j] = x[r * W + table[R - 1 + j - r % S]];
}

BERTC_WEAK void bertc_cast(const int64_t *x, float *y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = (float)x[i];
}

BERTC_WEAK void bertc_token_dropout(const int64_t *ids, const int64_t *mask, float *out, int64_t B, int64_t S,
                                    int64_t token, float keep) {
  for (int64_t b = 0; b < B; b++) {
    int64_t hits = 0, real = 0;
    for (int64_t s = 0; s < S; s++) {
      hits += ids[b * S + s] == token;
      real += mask[b * S + s];
    }
    /* as torch: the share in float, 1 - share, then keep over it (a row of no real token divides 0 by 0, as there) */
    const float factor = keep / (1.0f - (float)hits / (float)real);
    for (int64_t s = 0; s < S; s++) out[b * S + s] = ids[b * S + s] == token ? 0.0f : factor;
  }
}

BERTC_WEAK void bertc_position_ids(const int64_t *ids, int64_t *out, int64_t B, int64_t S, int64_t pad) {
  for (int64_t b = 0; b < B; b++) {
    int64_t count = 0;
    for (int64_t s = 0; s < S; s++) {
      int64_t keep = ids[b * S + s] != pad;
      count += keep;
      out[b * S + s] = count * keep + pad;
    }
  }
}

typedef struct {
  int op;
  const float *a, *b;
  const int64_t *as, *bs, *shape;
  float *out;
} binary_args;

static void binary_rows(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  const binary_args *r = raw;
  const int64_t *sh = r->shape;
  for (int64_t t = lo; t < hi; t++) { /* t enumerates the first three dims */
    int64_t i0 = t / (sh[1] * sh[2]), i1 = (t / sh[2]) % sh[1], i2 = t % sh[2];
    const float *a = r->a + i0 * r->as[0] + i1 * r->as[1] + i2 * r->as[2];
    const float *b = r->b + i0 * r->bs[0] + i1 * r->bs[1] + i2 * r->bs[2];
    float *o = r->out + t * sh[3];
    const int64_t sa = r->as[3], sb = r->bs[3];
    for (int64_t i = 0; i < sh[3]; i++) {
      float x = a[i * sa], y = b[i * sb];
      o[i] = r->op == BERTC_ADD ? x + y : r->op == BERTC_SUB ? x - y : r->op == BERTC_MUL ? x * y : x / y;
    }
  }
}

BERTC_WEAK void bertc_binary(bertc_pool *p, int op, const float *a, const int64_t a_strides[4], const float *b,
                  const int64_t b_strides[4], float *out, const int64_t out_shape[4]) {
  binary_args r = {op, a, b, a_strides, b_strides, out_shape, out};
  bertc_parallel_rows(p, out_shape[0] * out_shape[1] * out_shape[2], binary_rows, &r);
}

typedef struct { const float *x; float *y; int act; } unary_args;
static void unary_rows(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  const unary_args *a = raw;
  for (int64_t i = lo; i < hi; i++) a->y[i] = activate(a->x[i], a->act);
}
BERTC_WEAK void bertc_unary(bertc_pool *p, int act, const float *x, float *y, int64_t n) {
  unary_args a = {x, y, act};
  bertc_parallel_rows(p, n, unary_rows, &a);
}

BERTC_WEAK void bertc_pow(const float *x, float *y, int64_t n, float exponent) {
  for (int64_t i = 0; i < n; i++) y[i] = exponent == 3.0f ? x[i] * x[i] * x[i] : exponent == 2.0f ? x[i] * x[i] : powf(x[i], exponent);
}

typedef struct { const float *x; float *y; int64_t n; } softmax_args;
static void softmax_rows(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  const softmax_args *a = raw;
  for (int64_t r = lo; r < hi; r++) {
    const float *x = a->x + r * a->n;
    float *y = a->y + r * a->n;
    float mx = -INFINITY, sum = 0;
    for (int64_t i = 0; i < a->n; i++) mx = x[i] > mx ? x[i] : mx;
    for (int64_t i = 0; i < a->n; i++) sum += (y[i] = expf(x[i] - mx));
    for (int64_t i = 0; i < a->n; i++) y[i] /= sum;
  }
}
BERTC_WEAK void bertc_softmax(bertc_pool *p, const float *x, float *y, int64_t rows, int64_t n) {
  softmax_args a = {x, y, n};
  bertc_parallel_rows(p, rows, softmax_rows, &a);
}

typedef struct { const float *x, *cos, *sin; float *out; int64_t S, C, D, columns; int interleaved; } rotary_args;
static void rotary_rows(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  const rotary_args *a = raw;
  const int64_t D = a->D, half = a->interleaved ? 1 : D / 2;
  for (int64_t r = lo; r < hi; r++) {
    const float *x = a->x + r * a->C, *c = a->cos + (r % a->S) * D, *s = a->sin + (r % a->S) * D;
    float *o = a->out + r * a->C;
    for (int64_t h = 0; h < a->columns; h += D)
      for (int64_t f = 0; f < D; f++) {
        /* f's partner: the other of its pair (f ^ 1 interleaved; f +- D/2 in halves), subtracted by the first */
        const int first = a->interleaved ? !(f & 1) : f < half;
        const int64_t g = a->interleaved ? f ^ 1 : first ? f + half : f - half;
        const float turned = first ? -x[h + g] : x[h + g];
        o[h + f] = x[h + f] * c[f] + turned * s[f];
      }
    for (int64_t f = a->columns; f < a->C; f++) o[f] = x[f];
  }
}
BERTC_WEAK void bertc_rotary(bertc_pool *p, const float *x, const float *cos, const float *sin, float *out, int64_t B,
                             int64_t S, int64_t C, int64_t D, int64_t columns, int interleaved) {
  rotary_args a = {x, cos, sin, out, S, C, D, columns, interleaved};
  bertc_parallel_rows(p, B * S, rotary_rows, &a);
}

BERTC_WEAK void bertc_trigram(const float *x, float *out, int64_t B, int64_t S, int64_t E) {
  const size_t row = (size_t)E * sizeof(float);
  for (int64_t t = 0; t < B * S; t++, out += 3 * E) { /* t enumerates (batch, position) */
    const int64_t s = t % S;
    if (s + 1 < S) memcpy(out, x + (t + 1) * E, row); else memset(out, 0, row);
    memcpy(out + E, x + t * E, row);
    if (s > 0) memcpy(out + 2 * E, x + (t - 1) * E, row); else memset(out + 2 * E, 0, row);
  }
}

/* The rows (b, s) of the two sequence convolutions: out's row t is a sum of the k rows around it within its
 * sequence, row s + j - k/2 weighted by column block h's factor wt(t, j, h) (the depthwise conv's per channel). */
typedef struct { const float *x, *w; float *out; int64_t S, C, H, k; int span; } seqconv_args;
static void seqconv_rows(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  const seqconv_args *a = raw;
  const int64_t C = a->C, k = a->k, D = a->C / a->H;
  for (int64_t t = lo; t < hi; t++) { /* t enumerates (batch, position) */
    float *o = a->out + t * C;
    for (int64_t c = 0; c < C; c++) o[c] = 0.0f;
    const int64_t s = t % a->S;
    for (int64_t j = 0; j < k; j++) {
      const int64_t from = s + j - k / 2;
      if (from < 0 || from >= a->S) continue;
      const float *xr = a->x + (t + j - k / 2) * C;
      if (!a->span) { /* depthwise: the weight's row j, [k, C] */
        const float *w = a->w + j * C;
        for (int64_t c = 0; c < C; c++) o[c] += w[c] * xr[c];
        continue;
      }
      for (int64_t h = 0; h < a->H; h++) {
        const float wt = a->w[(t * a->H + h) * k + j];
        for (int64_t d = h * D; d < (h + 1) * D; d++) o[d] += wt * xr[d];
      }
    }
  }
}

BERTC_WEAK void bertc_depthwise_conv1d(bertc_pool *p, const float *x, const float *w_kc, float *out, int64_t B,
                                       int64_t S, int64_t C, int64_t k) {
  seqconv_args a = {x, w_kc, out, S, C, 1, k, 0};
  bertc_parallel_rows(p, B * S, seqconv_rows, &a);
}

BERTC_WEAK void bertc_span_conv(bertc_pool *p, const float *x, const float *w, float *out, int64_t B, int64_t S,
                                int64_t C, int64_t H, int64_t k) {
  seqconv_args a = {x, w, out, S, C, H, k, 1};
  bertc_parallel_rows(p, B * S, seqconv_rows, &a);
}

BERTC_WEAK void bertc_transpose(const float *x, float *out, const int64_t sh[4], const int64_t st[4]) {
  for (int64_t a = 0; a < sh[0]; a++)
    for (int64_t b = 0; b < sh[1]; b++)
      for (int64_t c = 0; c < sh[2]; c++) {
        const float *src = x + a * st[0] + b * st[1] + c * st[2];
        for (int64_t d = 0; d < sh[3]; d++) *out++ = src[d * st[3]];
      }
}

typedef struct { const float *a, *b; float *out; int64_t M, N, K, as, bs; } matmul_args;
static void matmul_rows(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  const matmul_args *r = raw;
  for (int64_t t = lo; t < hi; t++) { /* t enumerates (batch, row) */
    int64_t bi = t / r->M, m = t % r->M;
    const float *a = r->a + bi * r->as + m * r->K;
    const float *b = r->b + bi * r->bs;
    float *o = r->out + t * r->N;
    memset(o, 0, (size_t)r->N * sizeof(float));
    for (int64_t k = 0; k < r->K; k++)
      for (int64_t n = 0; n < r->N; n++) o[n] += a[k] * b[k * r->N + n];
  }
}
BERTC_WEAK void bertc_matmul(bertc_pool *p, const float *a, const float *bm, float *out, int64_t batch, int64_t M, int64_t N,
                  int64_t K, int64_t a_batch_stride, int64_t b_batch_stride) {
  matmul_args r = {a, bm, out, M, N, K, a_batch_stride, b_batch_stride};
  bertc_parallel_rows(p, batch * M, matmul_rows, &r);
}

BERTC_WEAK void bertc_slice(const void *x, void *out, int64_t outer, int64_t dim, int64_t start, int64_t count,
                 int64_t inner, int64_t elem_bytes) {
  const char *src = x;
  char *dst = out;
  size_t chunk = (size_t)(count * inner * elem_bytes);
  for (int64_t o = 0; o < outer; o++)
    memcpy(dst + o * chunk, src + ((o * dim + start) * inner) * elem_bytes, chunk);
}
