/* Kernel signatures. kernels/ref/ holds the portable versions; ISA folders (avx2/, neon/)
 * provide the same functions for their targets. Shapes are in the arguments; every kernel
 * splits its rows over the pool and returns after the barrier.
 *
 * Rules every implementation keeps (runtime/tests/kernel_check.c holds them to the reference):
 * - outputs never alias inputs (plan-memory gives each live value its own bytes);
 * - attention gives zeros for a query whose keys are all masked (PyTorch would give NaN);
 * - RELU maps NaN to 0, and a softmax row that is all -inf gives NaN. */
#ifndef BERTC_KERNELS_H
#define BERTC_KERNELS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "../src/pool.h"

/* SILU is x * sigmoid(x) (SwiGLU FFNs gate with it: NomicBERT, EuroBERT). */
enum { BERTC_ACT_NONE = 0, BERTC_ACT_GELU = 1, BERTC_ACT_GELU_TANH = 2, BERTC_ACT_TANH = 3, BERTC_ACT_RELU = 4,
       BERTC_ACT_SILU = 5 };
enum { BERTC_ADD = 0, BERTC_SUB = 1, BERTC_MUL = 2, BERTC_DIV = 3 };

/* y[M,N] = act(x[M,K] @ w_kn[K,N] + bias[N]) + residual[M,N]; bias/residual may be NULL.
 * Weights arrive transposed to [K,N] (written so by the compiler) so the inner loop is a
 * contiguous multiply-add over N. */
void bertc_linear(bertc_pool *p, const float *x, const float *w_kn, const float *bias, const float *residual,
                  float *y, int64_t M, int64_t N, int64_t K, int act);

/* Packed GEMM. --pack-weights stores a linear's weight W[N,K] as panels of `nr` output
 * columns: element (k, n) of panel p = n / nr lives at
 *     w_packed[p * K * nr + k * nr + (n % nr)],
 * the last panel zero-padded past N. The tile (mr rows x nr columns per micro-kernel call, kc the
 * K block) is chosen per target by the compiler (bertc/targets.py) and passed in; an ISA kernel
 * handles the tiles its target profile can pick and falls back to the reference loop otherwise.
 * y[M,N] = act(x[M,K] @ W^T + bias[N]) + residual[M,N]; bias/residual may be NULL. */
typedef struct {
  int32_t mr, nr, kc; /* 1 <= mr <= 16 (BERTC_SCRATCH_LINEAR packs 16 rows), nr >= 1, kc >= 1 */
} bertc_gemm_tile;
void bertc_linear_packed(bertc_pool *p, const float *x, const float *w_packed, const float *bias,
                         const float *residual, float *y, int64_t M, int64_t N, int64_t K, int act,
                         const bertc_gemm_tile *tile);
/* fp16 variant (--dtype fp16): the same panel layout, but w_packed holds IEEE binary16 values
 * (uint16_t bits). x, bias, residual and y stay fp32; products and sums are formed in fp16
 * where the target has FP16 arithmetic (ARMv8.2-A), else in fp32 from the widened weights. */
void bertc_linear_packed_f16(bertc_pool *p, const float *x, const uint16_t *w_packed, const float *bias,
                             const float *residual, float *y, int64_t M, int64_t N, int64_t K, int act,
                             const bertc_gemm_tile *tile);

/* int8 weights (--dtype int8). W[N,K] is quantized per output feature, symmetrically:
 * W[n,k] ~ scale[n] * q[n,k] with q in [-qmax, qmax] (127; 63 for AVX2's VPMADDUBSW kernel). q is stored in
 * panels of nr columns with K in groups of four (the bytes one SDOT / VPDPBUSD lane sums), K padded with zeros
 * to Kq = K rounded up to 4:
 *     q[n,k] at w[p * Kq * nr + (k / 4) * 4 * nr + (n % nr) * 4 + k % 4],  p = n / nr,
 * the last panel zero-padded past N. colsum[n] = sum over k of q[n,k] (the activations' zero point times it
 * is taken from the sums). */
typedef struct {
  const int8_t *w;
  const float *scale;     /* [N] */
  const int32_t *colsum;  /* [N] */
  float x_scale;          /* the input's scale calibrated ahead of time (--calibrate), or 0: per row at run time */
  int32_t qmax;           /* |q| <= qmax: 127, or 63 where the target's kernel needs it (AVX2 without VNNI) */
} bertc_qweight;
/* Activations are quantized per row at run time (dynamic), asymmetrically: over the row's range with 0 in it,
 * lo = min(x[m,:], 0) and hi = max(x[m,:], 0), s = (hi - lo) / 255, inv = 255 / (hi - lo), zp =
 * round-half-even(-lo * inv) and [a, b] = [-zp, 255 - zp]; or with one scale for every row (static): s = x_scale,
 * inv = 1 / x_scale, zp = 128 and [a, b] = [-127, 127] (outliers saturate). Either way (int8_gemm.h's
 * q8_row_params; a zero row has s = inv = zp = 0)
 *     qx[m,k] = round-half-even(min(max(x[m,k] * inv, a), b)) + zp, in [0, 255], and
 *     y[m,n] = act(fma((float)sum_k (qx[m,k] - zp) q[n,k], s * scale[n], bias[n])) + residual[m,n].
 * (Per row, asymmetric: all-MiniLM-L6-v2's sentence embeddings keep a cosine to PyTorch of 0.99870 mean, 0.99586 min
 * over the rt-sentiment test snippets, against 0.99682 / 0.98620 with a symmetric [-127, 127] per row.)
 * The integer sums are exact, so every implementation gives the reference's bits before the activation
 * (runtime/tests/kernel_check.c holds them to it); bias/residual may be NULL.
 * work: BERTC_I8_WORK(M, K) bytes the kernel quantizes x into, once, before the GEMM reads it from every
 * thread (emit-c gives every int8 linear the same region past the end of the arena's planned values): the rows,
 * then a scale and a zero point per row. */
#define BERTC_I8_WORK(M, K) ((((M) + 15) / 16 * 16) * ((((K) + 3) / 4 * 4) + 8))
void bertc_linear_packed_i8(bertc_pool *p, const float *x, const bertc_qweight *w, const float *bias,
                            const float *residual, float *y, int64_t M, int64_t N, int64_t K, int act,
                            const bertc_gemm_tile *tile, void *work);

/* Block-sparse weights (--prune-patterns). W[N,K] is cut into r x c blocks (r output features, c inputs);
 * only the kept blocks are stored, in block-row order: */
typedef struct {
  int32_t r, c;            /* block shape: r rows of W (outputs, N) x c columns (inputs, K) */
  int32_t block_rows;      /* ceil(N / r) */
  const int32_t *offsets;  /* [block_rows + 1]: block row i holds blocks offsets[i] .. offsets[i+1]-1 */
  const int32_t *index;    /* [blocks]: first input column of each block, a multiple of c, ascending within a row */
  const float *values;     /* [blocks][c][r]: W[i*r + j, index[b] + l] at values[(b*c + l)*r + j];
                              zero where i*r + j >= N or index[b] + l >= K */
} bertc_block_sparse;
/* y[M,N] = act(x[M,K] @ W^T + bias[N]) + residual[M,N]; bias/residual may be NULL. The arrays are
 * 64-byte aligned at their start; a block inside values is only 4 * r bytes aligned. */
void bertc_linear_sparse(bertc_pool *p, const float *x, const bertc_block_sparse *w, const float *bias,
                         const float *residual, float *y, int64_t M, int64_t N, int64_t K, int act);

/* Block-sparse int8 weights (--dtype int8 with --prune-patterns): bertc_block_sparse's blocks, r x 1 with r = 4, 8
 * or 16, their values int8 with a scale per output feature as bertc_qweight's (from the kept weights), and their
 * column sums. x is quantized per row into work (BERTC_I8_WORK, rows Kq apart) as bertc_linear_packed_i8 does
 * dynamically, and y is its formula:
 *     y[m,n] = act(fma((float)sum over kept k of (qx[m,k] - zp) q[n,k], s * scale[n], bias[n])) + residual[m,n],
 * the integer sums exact, so every implementation gives the reference's bits before the activation. */
typedef struct {
  int32_t r, c, block_rows;
  const int32_t *offsets, *index; /* as bertc_block_sparse's */
  const int8_t *values;           /* [blocks][c][r], as bertc_block_sparse's (group 0 or 1) */
  const float *scale;             /* [N] */
  const int32_t *colsum;          /* [N]: sum of row n's kept q */
  /* 4 (x86: VNNI's VPDPBUSD, or without VNNI VPMADDUBSW, whose weights must then be 7-bit, |q| <= 63): r x 1 blocks,
   * each block row's blocks padded with zero blocks (at its last block's column) to a multiple of 4, and each 4
   * interleaved per output: block b's weight j at values[(b / 4 * r + j) * 4 + b % 4]. 0 or 1: as above. */
  int32_t group;
} bertc_block_sparse_i8;
void bertc_linear_sparse_i8(bertc_pool *p, const float *x, const bertc_block_sparse_i8 *w, const float *bias,
                            const float *residual, float *y, int64_t M, int64_t N, int64_t K, int act, void *work);
/* How many work items a sparse GEMM of ``units`` (block rows, times the row tiles where items split those) cuts for
 * the pool: 4 a pool chunk at more than one thread, as many as there are units at most; one on one thread. */
static inline int64_t sparse_item_count(bertc_pool *p, int64_t units) {
  const int64_t threads = bertc_pool_threads(p);
  const int64_t want = threads > 1 ? 4 * threads * bertc_pool_tuning(p)->chunks_per_thread : 1;
  return want < units ? want : units > 1 ? units : 1;
}
/* The block-sparse GEMMs' items each make a row tile's x ready in the thread's scratch (the fp32 kernel packs it, the
 * int8 one prepares its quantized rows): a call takes a number (sparse_call_number, from 1, per translation unit), and
 * sparse_tile_ready says whether this thread made the tile from m0 ready in that call already, marking it so where
 * not. A thread's next items of the same tile in one parallel call skip the work (2 threads take 2 pool chunks each,
 * and at a few tokens one row tile holds every row); between one call's items a thread runs nothing else. */
typedef struct { uint64_t call; int64_t m0; } sparse_ready;
static inline uint64_t sparse_call_number(void) {
  static _Atomic uint64_t calls;
  return atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed) + 1;
}
static inline int sparse_tile_ready(sparse_ready *last, uint64_t call, int64_t m0) {
  if (last->call == call && last->m0 == m0) return 1;
  last->call = call;
  last->m0 = m0;
  return 0;
}
/* First block row at share num / den of the block rows' cost (its blocks plus one, for its stores and epilogue), of
 * either kind's ``offsets``: how the sparse GEMMs cut their block rows into a thread's share. */
static inline int64_t sparse_row_at(const int32_t *offsets, int64_t block_rows, int64_t num, int64_t den) {
  if (num >= den) return block_rows;
  const int64_t target = ((int64_t)offsets[block_rows] + block_rows) * num;
  int64_t lo = 0, hi = block_rows; /* smallest i with (offsets[i] + i) * den >= target */
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (((int64_t)offsets[mid] + mid) * den >= target) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/* Per-thread scratch the pool hands to every row function, in floats. emit-c sizes it as the
 * maximum over the program's ops of these bounds; kernels may use up to this much. */
#define BERTC_SCRATCH_LINEAR(K) (16 * (K) + 64)                 /* packing up to 16 rows of x */
/* scores of up to 8 queries, K and V of a head, key indices */
#define BERTC_SCRATCH_ATTENTION(S, D) (10 * (S) + 2 * (S) * (D) + 64)
/* up to 32 rows of x over K rounded up to the block's c, plus a 32-row x 16-column output tile */
#define BERTC_SCRATCH_SPARSE(K, C) (32 * ((K) + (C)) + 32 * 16 + 64)
/* int8 blocks: a tile of quantized x transposed (x86): 4 rows, a dword per column, or with VNNI 16 rows, 16 bytes */
#define BERTC_SCRATCH_SPARSE_I8(K) (((K) + 3) / 4 * 16 + 64)

/* The implementation a kernel resolved to when the program was linked: "ref", or the ISA
 * folder's name ("neon", "avx2") for the kernels that folder overrides. The reference
 * definitions are weak symbols, so an ISA file that defines a kernel replaces it. */
const char *bertc_kernel_impl(const char *kernel);

/* out[n, :] = table[ids[n], :]; ids were range-checked by the caller (inputs) or compiler. */
void bertc_embedding(bertc_pool *p, const float *table, const int64_t *ids, float *out, int64_t n, int64_t dim);

/* y = layer_norm(x + residual) over rows of length n. */
void bertc_layer_norm(bertc_pool *p, const float *x, const float *residual, const float *gamma,
                      const float *beta, float *y, int64_t rows, int64_t n, float eps);

/* y = x * rsqrt(mean(x^2) + eps) * gamma over rows of length n (RMSNorm: no centring, no beta). */
void bertc_rms_norm(bertc_pool *p, const float *x, const float *gamma, float *y, int64_t rows, int64_t n, float eps);

/* Q|K rows qk[B,S,qk_row] (Q in the first H columns, K in the next H, heads contiguous inside each), V rows
 * v[B,S,v_row] (V in the first H), mask[B,S] -> out[B,S,H]. One Q|K|V input [B,S,3H] is qk = qkv, v = qkv + 2H,
 * both rows 3H; MobileBERT's values, projected from another input than its queries and keys, are rows of their own
 * (qk_row 2H, v_row H). Scores never leave a per-thread row of S floats. rel (NULL: none) is a relative-position
 * bias [heads, 2 R - 1] (R >= S, MPNet): the score of query i and key j gains rel[h (2R - 1) + R - 1 + j - i]. A
 * window > 0 (ModernBERT's local layers) masks key j of query i where |i - j| > window / 2, as a padded key is;
 * attention_span gives the keys [lo, hi) a query reaches, so a kernel need not look past them; attention_rel_row
 * query i's row of the bias, element j key j's (NULL without one). */
/* DeBERTa's disentangled attention (pos NULL: none): c2p and p2c are [B * heads, S, W] scores of head h's queries
 * (c2p) and keys (p2c) of batch b, at rows (b * heads + h) * S, against W relative positions; i64 tables
 * [2 R - 1] (R >= S) pick their columns. Either may be NULL. Before the scale, the score of query i and key j gains
 * c2p[i, c2p_at[R - 1 + j - i]] + p2c[j, p2c_at[R - 1 + i - j]] (attention_position_score, or over a row of keys
 * attention_position_row), so neither gathered [S, S] term is ever written. */
typedef struct {
  const float *c2p, *p2c;
  const int64_t *c2p_at, *p2c_at;
  int64_t W, R;
} bertc_disentangled;
void bertc_attention(bertc_pool *p, const float *qk, int64_t qk_row, const float *v, int64_t v_row,
                     const int64_t *mask, const float *rel, int64_t R, const bertc_disentangled *pos, int64_t window,
                     float *out, int64_t B, int64_t S, int64_t H, int64_t heads, float scale);
static inline void attention_span(int64_t i, int64_t S, int64_t window, int64_t *lo, int64_t *hi) {
  const int64_t half = window / 2;
  *lo = window > 0 && i > half ? i - half : 0;
  *hi = window > 0 && i + half + 1 < S ? i + half + 1 : S;
}
static inline const float *attention_rel_row(const float *rel, int64_t R, int64_t h, int64_t i) {
  return rel ? rel + h * (2 * R - 1) + R - 1 - i : NULL;
}
static inline float attention_position_score(const bertc_disentangled *pos, int64_t bh, int64_t S, int64_t i,
                                             int64_t j) {
  float s = 0.0f;
  if (pos->c2p) s += pos->c2p[(bh * S + i) * pos->W + pos->c2p_at[pos->R - 1 + j - i]];
  if (pos->p2c) s += pos->p2c[(bh * S + j) * pos->W + pos->p2c_at[pos->R - 1 + i - j]];
  return s;
}
/* scores[j] += factor * attention_position_score(j) for the keys [lo, hi) of query i (a masked key's -inf stays). */
static inline void attention_position_row(const bertc_disentangled *pos, int64_t bh, int64_t S, int64_t i, int64_t lo,
                                          int64_t hi, float factor, float *scores) {
  if (!pos) return;
  const float *c2p = pos->c2p ? pos->c2p + (bh * S + i) * pos->W : NULL;
  const int64_t *c2p_at = pos->c2p_at + pos->R - 1 - i, *p2c_at = pos->p2c_at + pos->R - 1 + i;
  for (int64_t j = lo; j < hi; j++) {
    float s = c2p ? c2p[c2p_at[j]] : 0.0f;
    if (pos->p2c) s += pos->p2c[(bh * S + j) * pos->W + p2c_at[-j]];
    scores[j] += factor * s;
  }
}
void bertc_relative_bias(const float *table, float *out, int64_t B, int64_t heads, int64_t S, int64_t R);
/* out[b, i, j] = x[b, i, table[R - 1 + j - i]]: x [B, S, W], table [2R - 1] columns of x, out [B, S, S] */
void bertc_relative_gather(const float *x, const int64_t *table, float *out, int64_t B, int64_t S, int64_t W,
                           int64_t R);

void bertc_mask_bias(const int64_t *mask, float *out, int64_t B, int64_t Q, int64_t K, float fill);
void bertc_position_ids(const int64_t *ids, int64_t *out, int64_t B, int64_t S, int64_t pad);
/* y = (float)x (bertc.cast: an i64 mask or ids used as numbers, as ESM's embeddings * mask). */
void bertc_cast(const int64_t *x, float *y, int64_t n);
/* ESM's token dropout, a factor per token: out[b, s] = 0 where ids[b, s] == token, else
 * keep / (1 - count(ids[b] == token) / sum(mask[b])). */
void bertc_token_dropout(const int64_t *ids, const int64_t *mask, float *out, int64_t B, int64_t S, int64_t token,
                         float keep);

/* out = a (op) b with broadcasting; shapes padded to rank 4 (strides 0 on broadcast dims). */
void bertc_binary(bertc_pool *p, int op, const float *a, const int64_t a_strides[4], const float *b,
                  const int64_t b_strides[4], float *out, const int64_t out_shape[4]);
void bertc_unary(bertc_pool *p, int act, const float *x, float *y, int64_t n);
void bertc_pow(const float *x, float *y, int64_t n, float exponent);
void bertc_softmax(bertc_pool *p, const float *x, float *y, int64_t rows, int64_t n);
/* Rotary position embedding on rows x[B,S,C] (bertc.rotary): the first `columns` features, in heads of D, with
 * cos/sin rows [s, D] for position s (tables of at least S rows); f and its pair partner g (f^1 when interleaved,
 * f -+ D/2 otherwise): out[f] = x[f] * cos[f] -+ x[g] * sin[f], minus for the first of the pair. The rest copied. */
void bertc_rotary(bertc_pool *p, const float *x, const float *cos, const float *sin, float *out, int64_t B, int64_t S,
                  int64_t C, int64_t D, int64_t columns, int interleaved);
/* out[b, s] = x[b, s + 1] | x[b, s] | x[b, s - 1] for x[B,S,E] (bertc.trigram), zeros past either end: [B,S,3E]. */
void bertc_trigram(const float *x, float *out, int64_t B, int64_t S, int64_t E);
/* ConvBERT's convolutions over the sequence, zeros past the run's length S and before 0 (k odd, taps at s - k/2 ..
 * s + k/2). Plain loops over rows of C, contiguous in c, that the compiler vectorizes; no ISA folder overrides them:
 * both together took 0.4% of a conv-bert-base-wide model's time at 128 tokens (bertc bench, AVX2 host, 1 thread).
 * bertc.depthwise_conv1d: out[b,s,c] = sum_j w_kc[j,c] * x[b, s + j - k/2, c], x and out [B,S,C], the weight
 * [C,k] stored transposed, [k,C]. */
void bertc_depthwise_conv1d(bertc_pool *p, const float *x, const float *w_kc, float *out, int64_t B, int64_t S,
                            int64_t C, int64_t k);
/* bertc.span_conv: out[b,s,h*D+d] = sum_j w[b,s,h,j] * x[b, s + j - k/2, h*D+d], x and out [B,S,C = H*D], the
 * per-position kernels w [B,S,H,k]. */
void bertc_span_conv(bertc_pool *p, const float *x, const float *w, float *out, int64_t B, int64_t S, int64_t C,
                     int64_t H, int64_t k);
/* out = permute(x) for rank <= 4: in_strides are x's strides in out's dimension order. */
void bertc_transpose(const float *x, float *out, const int64_t out_shape[4], const int64_t in_strides[4]);
/* out[b] = a[b] @ bm[b]; a_batch_stride / b_batch_stride may be 0 (broadcast). */
void bertc_matmul(bertc_pool *p, const float *a, const float *bm, float *out, int64_t batch, int64_t M, int64_t N,
                  int64_t K, int64_t a_batch_stride, int64_t b_batch_stride);
/* out = x[outer, start:start+count, inner] from x[outer, dim, inner]; elem bytes generic. */
void bertc_slice(const void *x, void *out, int64_t outer, int64_t dim, int64_t start, int64_t count,
                 int64_t inner, int64_t elem_bytes);

#endif
