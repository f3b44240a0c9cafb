/* Batched matmul (bertc_matmul: out[b] = a[b] @ bm[b]), the matmuls fuse-attention leaves (DeBERTa's c2p and p2c
 * scores: Q or K heads [S, D] against W position keys or queries [D, W], per (batch, head)): the work split every
 * SIMD ISA shares. The ISA file that includes it defines
 *   mm_rows(R, a, b, o, N, K)  R (1..4) rows of a [R, K] times b [K, N] into o [R, N], register-tiled over N
 * and gets a strong bertc_matmul (its bertc_kernel_impl lists it). A work item is a block of up to 4 rows of one
 * batch entry: a row of b is read once per 4 rows, not per row. */
#ifndef BERTC_BATCHED_MATMUL_H
#define BERTC_BATCHED_MATMUL_H

#include "kernels.h"

typedef struct { const float *a, *b; float *out; int64_t M, N, K, as, bs; } mm_args;

static void mm_blocks(void *raw, int64_t lo, int64_t hi, float *scratch) {
  (void)scratch;
  const mm_args *m = raw;
  const int64_t blocks = (m->M + 3) / 4;
  for (int64_t t = lo; t < hi; t++) { /* t enumerates (batch, block of 4 rows) */
    const int64_t bi = t / blocks, m0 = (t % blocks) * 4, rows = m->M - m0 < 4 ? m->M - m0 : 4;
    const float *a = m->a + bi * m->as + m0 * m->K, *b = m->b + bi * m->bs;
    float *o = m->out + (bi * m->M + m0) * m->N;
    if (rows == 4) mm_rows(4, a, b, o, m->N, m->K);
    else if (rows == 3) mm_rows(3, a, b, o, m->N, m->K);
    else if (rows == 2) mm_rows(2, a, b, o, m->N, m->K);
    else mm_rows(1, a, b, o, m->N, m->K);
  }
}

void bertc_matmul(bertc_pool *p, const float *a, const float *bm, float *out, int64_t batch, int64_t M, int64_t N,
                  int64_t K, int64_t a_batch_stride, int64_t b_batch_stride) {
  mm_args m = {a, bm, out, M, N, K, a_batch_stride, b_batch_stride};
  bertc_parallel_rows(p, batch * ((M + 3) / 4), mm_blocks, &m);
}

#endif
