/* Block-sparse linear (bertc_linear_sparse; the format is in kernels.h), one implementation for
 * every SIMD ISA, written with GCC/Clang generic vectors. The ISA file that includes it defines
 *   SPARSE_VREG_BYTES  bytes of one vector register: 16 (NEON), 32 (AVX2), 64 (AVX-512)
 *   SPARSE_VREGS       how many the ISA has: 16 (AVX2), 32 (AVX-512, NEON)
 *   sparse_epilogue(y, bias, res, n, act)  y[0:n] = act(y + bias) + res in place (bias/res may be NULL)
 *   SPARSE_CHAINS      optionally, the independent FMA chains that keep its FMA pipes busy (8)
 * and gets a strong bertc_linear_sparse (its bertc_kernel_impl lists it).
 *
 * Two register tiles, by the block's r against the L = SPARSE_VREG_BYTES / 4 lanes of a register:
 * - r = L, 2L or 4L (4, 8, 16 on NEON; 8, 16 on AVX2; 16, 32 on AVX-512): vectorised over
 *   N. MR rows x r columns of accumulators; each block column is r / L vector loads of weights and MR
 *   broadcasts of x, one per row, each feeding r / L FMAs. A tile of at most 4 or 8 rows takes a tile of those.
 * - r = 1, 2, 4, 8 below L: vectorised over M. r columns x MR = V * L rows of accumulators; each
 *   block column is V vector loads of x (MR rows at one k) and r broadcast weights, each feeding V
 *   FMAs. The tile of y comes out transposed ([column][row]) and goes to y 16 columns at a time
 *   through L x L register transposes. When r * V accumulators are too few to hide the FMA latency, S sets of them take
 *   alternate blocks and are summed at the end. A last row tile takes the fewest of V / 4, V / 2 (the tail tile),
 *   3 V / 4 or V registers that hold its rows, so it computes less padding; on AVX-512 17-24 rows take one register
 *   and a half one (256 bits, sparse_hvec).
 * - any other r: a scalar loop (correct, not fast).
 * Both vector tiles read x from a packed copy of the row tile, xp[k * MR + row] (rows past M and
 * columns past K zero, so the padding of a block reads zeros, never another row or past the end),
 * so a block's MR values of x are adjacent and its address is one multiply away from index[b].
 * Rows past M are computed into the padding and not stored.
 *
 * Threads: the work items are equal shares of the row tiles' work laid end to end, a short last tile weighing what
 * its tile computes (sparse_items), or where a GEMM of 1 MiB has a short last tile chunks of block rows for every row
 * tile (bertc_linear_sparse); block rows are cut at equal shares of the blocks (plus one per block row, for its stores
 * and epilogue) by the offsets prefix sums, so a thread's share of the FMAs is even when the density differs between
 * block rows or the last row tile is a short one. A thread packs each row tile once for all its consecutive items,
 * then sweeps their block rows. The
 * weights are not blocked for the cache: each 4r-byte weight vector feeds MR FMAs, so streaming them
 * from L2 or L3 keeps up with the FMAs once the next block row's are prefetched.
 *
 * Speed against the dense packed GEMM (12x32 tile), 1 thread, M = 128, MiniLM's (K, N), Zen 5 with
 * AVX-512: 16x1 blocks at density 0.25 run 3.1-3.5x faster, at 0.1 6.6-7.5x; 8x1 3.2-3.3x and 6.2-6.7x;
 * 4x1 2.7x and 5.5-5.8x; 1x4 2.0x and 3.8x (r = 1 loads x once per FMA), 1.4x and 3.6x at K = 1536,
 * where its packed x no longer fits L1. */
#ifndef BERTC_SPARSE_GEMM_H
#define BERTC_SPARSE_GEMM_H

#include <string.h>

#include "kernels.h"

#define SPARSE_INLINE static inline __attribute__((always_inline))
#define SPARSE_L (SPARSE_VREG_BYTES / 4)
#define SPARSE_MR_MAX 32 /* rows of packed x; BERTC_SCRATCH_SPARSE holds 32 x (K + c) */
#define SPARSE_ACC_MAX 32 /* accumulator registers, an upper bound for the arrays below */
#define SPARSE_T_COLS 16  /* columns of the transposed y tile of the by-rows kernel */

/* A native register of floats; aligned(4) because a block inside values is only 4r-byte aligned. And half of one. */
typedef float sparse_vec __attribute__((vector_size(SPARSE_VREG_BYTES), aligned(4)));
typedef float sparse_hvec __attribute__((vector_size(SPARSE_VREG_BYTES / 2), aligned(4)));

#define SPARSE_MIN(a, b) ((a) < (b) ? (a) : (b))
/* Rows of the by-columns tile with NV = r / L registers per row: what the registers leave after NV
 * weight vectors, a broadcast and one spare, at most 16 (AVX-512 16; AVX2 12, 5; NEON 16, 13, 6). */
#define SPARSE_MR_COLS(NV) SPARSE_MIN((SPARSE_VREGS - (NV) - 3) / (NV), 16)
/* Row registers V of the by-rows tile for r < L: r * V accumulators + V x vectors + a weight. */
#define SPARSE_V_ROWS(R) SPARSE_MIN((SPARSE_VREGS - 4) / ((R) + 1), SPARSE_MR_MAX / SPARSE_L)
/* Accumulator sets: at least SPARSE_CHAINS independent FMA chains (FMA latency x FMA pipes). */
#ifndef SPARSE_CHAINS
#define SPARSE_CHAINS 8
#endif
#define SPARSE_SETS(R, V) ((R) * (V) >= SPARSE_CHAINS ? 1 : SPARSE_CHAINS / ((R) * (V)))
/* The by-rows tail tile's row registers: half the tile's (sparse_tile_rows), which sparse_few_for weighs. */
#define SPARSE_V_TAIL(R) (SPARSE_V_ROWS(R) / 2)

typedef struct sparse_args sparse_args;
/* Rows [m0, m0 + rows) x block rows [i0, i1), epilogue included. */
typedef void (*sparse_tile_fn)(const sparse_args *a, float *scratch, int64_t m0, int64_t rows, int64_t i0, int64_t i1);

struct sparse_args {
  const float *x, *bias, *res;
  const bertc_block_sparse *w;
  float *y;
  int64_t M, N, K, kpad; /* kpad: K rounded up to c, the packed columns */
  int act, mr;           /* mr: rows per tile */
  int64_t chunks;        /* work items: equal shares of the tiles' work (by_tiles), else chunks of block rows */
  int by_tiles;          /* items split the row tiles' work (sparse_items), else each a chunk for every tile */
  int64_t tiles, last_rows, work; /* by_tiles: the row tiles, the last one's rows, their sparse_tile_weight sum */
  sparse_tile_fn tile;   /* a tile's function picks the registers its rows need (sparse_tile_rows, _cols) */
  uint64_t call;         /* this call's number (sparse_call_number), which sparse_pack_once tags a packed tile with */
};

SPARSE_INLINE sparse_vec sparse_load(const float *p) { return *(const sparse_vec *)p; }
SPARSE_INLINE void sparse_store(float *p, sparse_vec v) { *(sparse_vec *)p = v; }

/* Two-source shuffles interleaving the low (high) halves of a and b: NEON's zip1/zip2, AVX-512's
 * vpermt2ps. */
#if SPARSE_L == 4
#define SPARSE_ZIP_LO 0, 4, 1, 5
#define SPARSE_ZIP_HI 2, 6, 3, 7
#elif SPARSE_L == 8
#define SPARSE_ZIP_LO 0, 8, 1, 9, 2, 10, 3, 11
#define SPARSE_ZIP_HI 4, 12, 5, 13, 6, 14, 7, 15
#else
#define SPARSE_ZIP_LO 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23
#define SPARSE_ZIP_HI 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31
#endif

/* v[i][j] -> v[j][i] for an L x L block: log2(L) rounds that zip row i with row i + L/2 into rows
 * 2i and 2i + 1 (a perfect shuffle of the rows, which after log2(L) rounds is the transpose). */
SPARSE_INLINE void sparse_transpose(sparse_vec *v) {
#pragma GCC unroll 4
  for (int round = 1; round < SPARSE_L; round *= 2) {
    sparse_vec t[SPARSE_L];
#pragma GCC unroll 8
    for (int i = 0; i < SPARSE_L / 2; i++) {
      t[2 * i] = __builtin_shufflevector(v[i], v[i + SPARSE_L / 2], SPARSE_ZIP_LO);
      t[2 * i + 1] = __builtin_shufflevector(v[i], v[i + SPARSE_L / 2], SPARSE_ZIP_HI);
    }
#pragma GCC unroll 16
    for (int i = 0; i < SPARSE_L; i++) v[i] = t[i];
  }
}

/* dst[j * dst_stride + i] = src[i * src_stride + j] for i, j < L: an L x L transpose through registers. */
SPARSE_INLINE void sparse_transpose_copy(const float *src, int64_t src_stride, float *dst, int64_t dst_stride) {
  sparse_vec v[SPARSE_L];
#pragma GCC unroll 16
  for (int i = 0; i < SPARSE_L; i++) v[i] = sparse_load(src + i * src_stride);
  sparse_transpose(v);
#pragma GCC unroll 16
  for (int j = 0; j < SPARSE_L; j++) sparse_store(dst + j * dst_stride, v[j]);
}

/* xp[k * mr + m] = x[m0 + m, k]; zero for m >= rows or k >= K. L x L blocks go through registers
 * (a strided scalar copy costs more than the FMAs at low density), the rows left over and the zero rows up to mr
 * too, staged in a zeroed block: copied one by one, 12 rows of a 16-row tile cost more than the tile's FMAs (16x1
 * blocks, 4 layers of 384 at 20%, Zen 4: 12 tokens 1.2x and 1.6x as long as 16 at 1 and 2 threads, each thread
 * packing its items' x). The columns left over are copied one by one. */
static void sparse_pack_x(const sparse_args *a, float *xp, int64_t mr, int64_t m0, int64_t rows) {
  const int64_t K = a->K, full = rows / SPARSE_L * SPARSE_L;
  const float *x = a->x + m0 * K;
  int64_t k0 = 0;
  for (; k0 + SPARSE_L <= K; k0 += SPARSE_L) {
    for (int64_t m = 0; m < full; m += SPARSE_L) sparse_transpose_copy(x + m * K + k0, K, xp + k0 * mr + m, mr);
    for (int64_t m = full; m < mr; m += SPARSE_L) {
      float part[SPARSE_L * SPARSE_L], t[SPARSE_L * SPARSE_L];
      const int64_t have = SPARSE_MIN(rows > m ? rows - m : 0, SPARSE_L), width = SPARSE_MIN(mr - m, SPARSE_L);
      for (int64_t i = 0; i < have; i++) memcpy(part + i * SPARSE_L, x + (m + i) * K + k0, sizeof(float) * SPARSE_L);
      memset(part + have * SPARSE_L, 0, sizeof(float) * (size_t)((SPARSE_L - have) * SPARSE_L));
      if (width == SPARSE_L) {
        sparse_transpose_copy(part, SPARSE_L, xp + k0 * mr + m, mr);
        continue;
      }
      sparse_transpose_copy(part, SPARSE_L, t, SPARSE_L); /* the last rows of a tile of mr, not a multiple of L */
      for (int64_t j = 0; j < SPARSE_L; j++) memcpy(xp + (k0 + j) * mr + m, t + j * SPARSE_L, sizeof(float) * (size_t)width);
    }
  }
  for (; k0 < a->kpad; k0++)
    for (int64_t m = 0; m < mr; m++) xp[k0 * mr + m] = m < rows && k0 < K ? x[m * K + k0] : 0.0f;
}

/* The row tile from m0 packed once a call on each thread (kernels.h sparse_tile_ready): packed at each of a thread's
 * pool chunks, 2 threads did as many packs as the 1-thread run's FMAs at 8 tokens of 4 layers of 384 at 10%. */
static _Thread_local sparse_ready sparse_packed;

SPARSE_INLINE void sparse_pack_once(const sparse_args *a, float *xp, int64_t mr, int64_t m0, int64_t rows) {
  if (!sparse_tile_ready(&sparse_packed, a->call, m0)) sparse_pack_x(a, xp, mr, m0, rows);
}

static void sparse_epilogue_rows(const sparse_args *a, int64_t m0, int64_t rows, int64_t i0, int64_t i1) {
  const int64_t r = a->w->r, n0 = i0 * r, n1 = i1 * r < a->N ? i1 * r : a->N;
  for (int64_t m = m0; m < m0 + rows; m++)
    sparse_epilogue(a->y + m * a->N + n0, a->bias ? a->bias + n0 : NULL, a->res ? a->res + m * a->N + n0 : NULL,
                    n1 - n0, a->act);
}

/* ---- by columns: r = NV * L --------------------------------------------------------------- */
/* Block row i for rows [m0, m0 + rows): y[., i r .. i r + r), the columns below N. C is the block's
 * c when it is a compile-time constant, else 0 and w->c is read. */
SPARSE_INLINE void sparse_block_row_cols(const int MR, const int NV, const int C, const sparse_args *a,
                                         const float *xp, int64_t m0, int64_t rows, int64_t i) {
  const bertc_block_sparse *w = a->w;
  const int64_t R = NV * SPARSE_L, c = C ? C : w->c, b0 = w->offsets[i], nb = w->offsets[i + 1] - b0;
  const int32_t *idx = w->index + b0;
  const float *wv = w->values + b0 * c * R;
  sparse_vec acc[SPARSE_ACC_MAX];
#pragma GCC unroll 32
  for (int t = 0; t < MR * NV; t++) acc[t] = (sparse_vec){0};
  /* The x address of block b + 1 is formed during block b: with each broadcast's address waiting
   * on that block's index load, the loads queue behind it and the FMAs run ~25% slower (Zen 5).
   * The next block row's weights are prefetched as this one's are read, so that the first row
   * tile, which brings them from L3 or memory, does not wait for them. */
  const float *xnext = nb > 0 ? xp + (int64_t)idx[0] * MR : xp;
  for (int64_t b = 0; b < nb; b++) {
    const float *xk = xnext;
    xnext = xp + (int64_t)idx[b + 1 < nb ? b + 1 : b] * MR;
    for (int64_t l = 0; l < c; l++, xk += MR, wv += R) {
      __builtin_prefetch(wv + nb * c * R); /* the same place in the next block row, about */
      sparse_vec wr[4];
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++) wr[v] = sparse_load(wv + v * SPARSE_L);
#pragma GCC unroll 32
      for (int m = 0; m < MR; m++) {
        const float xs = xk[m];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[m * NV + v] += wr[v] * xs;
      }
    }
  }
  const int64_t cols = a->N - i * R < R ? a->N - i * R : R;
  float *y = a->y + m0 * a->N + i * R;
#pragma GCC unroll 32
  for (int m = 0; m < MR; m++) {
    if (m >= rows) break;
    if (cols == R) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++) sparse_store(y + m * a->N + v * SPARSE_L, acc[m * NV + v]);
    } else { /* the last block row, past N */
      float part[4 * SPARSE_L];
#pragma GCC unroll 4
      for (int v = 0; v < NV; v++) sparse_store(part + v * SPARSE_L, acc[m * NV + v]);
      memcpy(y + m * a->N, part, (size_t)cols * sizeof(float));
    }
  }
}

/* A tile of 4 or 8 rows where that holds the rows, else of MR: the last tile of 17-24 tokens of 16x1 blocks (AVX-512)
 * computes 4 or 8 rows, not 16 (hidden-768 encoder at 50%, 1 thread, Zen 4: 16, 17, 24 tokens 7.1, 11.0, 11.2 ms,
 * 13.8 with the 16-row tile). A 12-row tile ran no faster than 16 rows at 9-12, the weights streamed from memory. */
SPARSE_INLINE void sparse_tile_cols(const int NV, const int C, const sparse_args *a, float *xp, int64_t m0,
                                    int64_t rows, int64_t i0, int64_t i1) {
  const int MR = SPARSE_MR_COLS(NV), mt = rows <= 4 && MR > 4 ? 4 : rows <= 8 && MR > 8 ? 8 : MR;
  sparse_pack_once(a, xp, mt, m0, rows);
  if (mt == 4) for (int64_t i = i0; i < i1; i++) sparse_block_row_cols(4, NV, C, a, xp, m0, rows, i);
  else if (mt == 8) for (int64_t i = i0; i < i1; i++) sparse_block_row_cols(8, NV, C, a, xp, m0, rows, i);
  else for (int64_t i = i0; i < i1; i++) sparse_block_row_cols(MR, NV, C, a, xp, m0, rows, i);
  sparse_epilogue_rows(a, m0, rows, i0, i1);
}

/* ---- by rows: r < L ----------------------------------------------------------------------- */
/* acc[j * V + v] += the block's c columns: x rows at xk (MR per column), weights at wb (R per column); with H, the
 * L / 2 rows after the V registers' in half a register, hacc[j]. */
SPARSE_INLINE void sparse_block_rows(const int R, const int V, const int H, const int C, int64_t c, const float *xk,
                                     const float *wb, sparse_vec *acc, sparse_hvec *hacc) {
  const int MR = V * SPARSE_L + H * SPARSE_L / 2;
  for (int64_t l = 0; l < (C ? C : c); l++, xk += MR, wb += R) {
    sparse_vec xv[SPARSE_MR_MAX / SPARSE_L];
    sparse_hvec xh = {0};
#pragma GCC unroll 8
    for (int v = 0; v < V; v++) xv[v] = sparse_load(xk + v * SPARSE_L);
    if (H) xh = *(const sparse_hvec *)(xk + V * SPARSE_L);
#pragma GCC unroll 8
    for (int j = 0; j < R; j++) {
      const float ws = wb[j];
#pragma GCC unroll 8
      for (int v = 0; v < V; v++) acc[j * V + v] += xv[v] * ws;
      if (H) hacc[j] += xh * ws;
    }
  }
}

/* The blocks of block row i into t[j * MR + m] (column j of the block row, row m of the tile).
 * Blocks go round-robin to S accumulator sets; the x addresses are formed S blocks ahead and the
 * next block row's weights prefetched, as in sparse_block_row_cols. */
SPARSE_INLINE void sparse_block_row_rows(const int R, const int V, const int H, const int S, const int C,
                                         const sparse_args *a, const float *xp, int64_t i, float *t) {
  const int MR = V * SPARSE_L + H * SPARSE_L / 2;
  const bertc_block_sparse *w = a->w;
  const int64_t c = C ? C : w->c, b0 = w->offsets[i], nb = w->offsets[i + 1] - b0;
  const int32_t *idx = w->index + b0;
  const float *wv = w->values + b0 * c * R;
  sparse_vec acc[SPARSE_ACC_MAX]; /* acc[(s * R + j) * V + v] */
  sparse_hvec hacc[SPARSE_ACC_MAX]; /* hacc[s * R + j] */
#pragma GCC unroll 32
  for (int q = 0; q < S * R * V; q++) acc[q] = (sparse_vec){0};
#pragma GCC unroll 32
  for (int q = 0; q < S * R * H; q++) hacc[q] = (sparse_hvec){0};
  int64_t b = 0;
  if (nb >= S) {
    const float *xs[SPARSE_ACC_MAX];
#pragma GCC unroll 8
    for (int s = 0; s < S; s++) xs[s] = xp + (int64_t)idx[s] * MR;
    for (; b + S <= nb; b += S) {
#pragma GCC unroll 8
      for (int s = 0; s < S; s++) {
        const float *xk = xs[s];
        xs[s] = xp + (int64_t)idx[b + s + S < nb ? b + s + S : nb - 1] * MR;
        __builtin_prefetch(wv + (b + s + nb) * c * R);
        sparse_block_rows(R, V, H, C, c, xk, wv + (b + s) * c * R, acc + s * R * V, hacc + s * R);
      }
    }
  }
  for (; b < nb; b++) sparse_block_rows(R, V, H, C, c, xp + (int64_t)idx[b] * MR, wv + b * c * R, acc, hacc);
#pragma GCC unroll 8
  for (int s = 1; s < S; s++) {
#pragma GCC unroll 32
    for (int q = 0; q < R * V; q++) acc[q] += acc[s * R * V + q];
#pragma GCC unroll 8
    for (int q = 0; q < R * H; q++) hacc[q] += hacc[s * R + q];
  }
#pragma GCC unroll 8
  for (int j = 0; j < R; j++) {
#pragma GCC unroll 8
    for (int v = 0; v < V; v++) sparse_store(t + j * MR + v * SPARSE_L, acc[j * V + v]);
    if (H) *(sparse_hvec *)(t + j * MR + V * SPARSE_L) = hacc[j];
  }
}

/* y[m, j] = t[j * mr + m] for m < rows, j < cols: L x L blocks through registers, the ragged
 * edges one by one. */
static void sparse_store_transposed(const float *t, int64_t mr, float *y, int64_t ldy, int64_t rows, int64_t cols) {
  const int64_t full_rows = rows / SPARSE_L * SPARSE_L, full_cols = cols / SPARSE_L * SPARSE_L;
  for (int64_t j0 = 0; j0 < full_cols; j0 += SPARSE_L)
    for (int64_t m0 = 0; m0 < full_rows; m0 += SPARSE_L) sparse_transpose_copy(t + j0 * mr + m0, mr, y + m0 * ldy + j0, ldy);
  for (int64_t m = 0; m < rows; m++)
    for (int64_t j = m < full_rows ? full_cols : 0; j < cols; j++) y[m * ldy + j] = t[j * mr + m];
}

SPARSE_INLINE void sparse_tile_rows_v(const int R, const int V, const int H, const int C, const sparse_args *a,
                                      float *scratch, int64_t m0, int64_t rows, int64_t i0, int64_t i1) {
  const int MR = V * SPARSE_L + H * SPARSE_L / 2, G = SPARSE_T_COLS / R; /* G block rows per t */
  float *xp = scratch, *t = scratch + SPARSE_MR_MAX * (a->K + a->w->c);
  sparse_pack_once(a, xp, MR, m0, rows);
  for (int64_t g = i0; g < i1; g += G) {
    const int64_t gn = i1 - g < G ? i1 - g : G;
    for (int64_t i = g; i < g + gn; i++)
      sparse_block_row_rows(R, V, H, SPARSE_SETS(R, V + H), C, a, xp, i, t + (i - g) * R * MR);
    const int64_t n0 = g * R, cols = a->N - n0 < gn * R ? a->N - n0 : gn * R;
    sparse_store_transposed(t, MR, a->y + m0 * a->N + n0, a->N, rows, cols);
  }
  sparse_epilogue_rows(a, m0, rows, i0, i1);
}

/* The fewest of a quarter, half, three quarters or all of the V row registers (whole ones) that hold the rows: a last
 * tile of 9-16 rows computes 16, not 32 (2 layers of 768 at 1x4@0.5, 9 tokens, Zen 5: 6.9 -> 3.5 ms at 1 thread), and
 * where V is 4 (AVX2) or 8 (NEON) 17-24 rows compute 24. AVX-512's 2 registers take one and a half (256 bits) for
 * 17-24 rows: the same instructions as two where a core runs 512-bit FMAs whole, three quarters of the work on Zen 4
 * (cost.sparse_tile prices it by the CPU: avx512_split). Not for 1-8 rows, which the grid of bertc calibrate times. */
SPARSE_INLINE void sparse_tile_rows(const int R, const int V, const int C, const sparse_args *a, float *scratch,
                                    int64_t m0, int64_t rows, int64_t i0, int64_t i1) {
  const int64_t need = (rows + SPARSE_L - 1) / SPARSE_L, halves = SPARSE_L == 16 && V == 2;
  if (halves && rows > 16 && rows <= 24) sparse_tile_rows_v(R, 1, 1, C, a, scratch, m0, rows, i0, i1);
  else if (V % 4 == 0 && need <= V / 4) sparse_tile_rows_v(R, V % 4 ? 1 : V / 4, 0, C, a, scratch, m0, rows, i0, i1);
  else if (V % 2 == 0 && need <= V / 2) sparse_tile_rows_v(R, V % 2 ? 1 : V / 2, 0, C, a, scratch, m0, rows, i0, i1);
  else if (V % 4 == 0 && need <= 3 * V / 4)
    sparse_tile_rows_v(R, V % 4 ? 1 : 3 * V / 4, 0, C, a, scratch, m0, rows, i0, i1);
  else sparse_tile_rows_v(R, V, 0, C, a, scratch, m0, rows, i0, i1);
}

/* ---- few rows, r < L: by columns, r accumulators per row ------------------------------------ */
/* The by-rows tile computes MR = V * L rows (its tail tile MR / 2) whatever M is: at the few tokens of real
 * text most of its FMAs are padding (AVX-512, 8x1 blocks at M = 1: 1 row of 32; a pruned BERT-base layer ran 1.7x
 * slower than the dense one). Here each of the MF (= M, at most SPARSE_FEW_MAX) rows keeps r accumulators (an r-lane
 * vector for r = 4, 8), x is read in place, and each weight is read once for all the rows: the weights'
 * stream sets the speed, as in the dense GEMM at a few rows. */
#define SPARSE_FEW_MAX 8
/* An r-lane register for r = 4, 8 (half or a quarter of an AVX-512 one, half of an AVX2 one); r = 1, 2 use
 * the first lanes of a 4-lane one. */
typedef float sparse_few_vec __attribute__((vector_size(32), aligned(4)));
typedef float sparse_few_vec4 __attribute__((vector_size(16), aligned(4)));
SPARSE_INLINE void sparse_tile_few(const int R, const int MF, const sparse_args *a, float *scratch, int64_t m0,
                                   int64_t rows, int64_t i0, int64_t i1) {
  const bertc_block_sparse *w = a->w;
  const int64_t c = w->c, K = a->K, N = a->N;
  const float *x = a->x + m0 * K;
  for (int64_t i = i0; i < i1; i++) {
    const int64_t b0 = w->offsets[i], nb = w->offsets[i + 1] - b0;
    const int32_t *idx = w->index + b0;
    const float *wv = w->values + b0 * c * R;
    sparse_few_vec acc8[SPARSE_FEW_MAX];
    sparse_few_vec4 acc4[SPARSE_FEW_MAX];
    float acc1[SPARSE_FEW_MAX][2];
#pragma GCC unroll 8
    for (int m = 0; m < MF; m++) {
      acc8[m] = (sparse_few_vec){0};
      acc4[m] = (sparse_few_vec4){0};
      acc1[m][0] = acc1[m][1] = 0.0f;
    }
    int64_t b = 0;
    if (R == 1 && c == 4) { /* 1x4: a block is one 4-lane FMA per row, four blocks on four chains */
      sparse_few_vec4 q[4][SPARSE_FEW_MAX];
#pragma GCC unroll 8
      for (int m = 0; m < MF; m++) q[0][m] = q[1][m] = q[2][m] = q[3][m] = (sparse_few_vec4){0};
      for (; b + 4 <= nb && idx[b + 3] <= K - 4 && idx[b + 2] <= K - 4 && idx[b + 1] <= K - 4 && idx[b] <= K - 4;
           b += 4) {
        __builtin_prefetch(wv + (b + nb) * 4);
#pragma GCC unroll 4
        for (int u = 0; u < 4; u++) {
          const sparse_few_vec4 wr = *(const sparse_few_vec4 *)(wv + (b + u) * 4);
#pragma GCC unroll 8
          for (int m = 0; m < MF; m++) q[u][m] += wr * *(const sparse_few_vec4 *)(x + m * K + idx[b + u]);
        }
      }
#pragma GCC unroll 8
      for (int m = 0; m < MF; m++) {
        const sparse_few_vec4 t = q[0][m] + q[1][m] + q[2][m] + q[3][m];
        acc1[m][0] = t[0] + t[1] + t[2] + t[3];
      }
    }
    for (; b < nb; b++) {
      const float *wb = wv + b * c * R, *xb = x + idx[b];
      const int64_t lc = K - idx[b] < c ? K - idx[b] : c; /* the last block may pass K: its padding is not read */
      __builtin_prefetch(wb + nb * c * R);                /* the same place in the next block row, about */
      for (int64_t l = 0; l < lc; l++, wb += R) {
        if (R == 8) {
          const sparse_few_vec wr = *(const sparse_few_vec *)wb;
#pragma GCC unroll 8
          for (int m = 0; m < MF; m++) acc8[m] += wr * xb[m * K + l];
        } else if (R == 4) {
          const sparse_few_vec4 wr = *(const sparse_few_vec4 *)wb;
#pragma GCC unroll 8
          for (int m = 0; m < MF; m++) acc4[m] += wr * xb[m * K + l];
        } else {
#pragma GCC unroll 8
          for (int m = 0; m < MF; m++)
#pragma GCC unroll 2
            for (int j = 0; j < R; j++) acc1[m][j] += wb[j] * xb[m * K + l];
        }
      }
    }
    const int64_t cols = N - i * R < R ? N - i * R : R;
#pragma GCC unroll 8
    for (int m = 0; m < MF; m++) {
      float out[8];
      if (R == 8) *(sparse_few_vec *)out = acc8[m];
      else if (R == 4) *(sparse_few_vec4 *)out = acc4[m];
      else out[0] = acc1[m][0], out[1] = acc1[m][1];
      for (int64_t j = 0; j < cols; j++) a->y[(m0 + m) * N + i * R + j] = out[j];
    }
  }
  sparse_epilogue_rows(a, m0, rows, i0, i1);
}

/* ---- any other block: scalar ---------------------------------------------------------------- */
static void sparse_tile_generic(const sparse_args *a, float *scratch, int64_t m0, int64_t rows, int64_t i0,
                                int64_t i1) {
  const bertc_block_sparse *w = a->w;
  const int64_t r = w->r, c = w->c, N = a->N, K = a->K;
  for (int64_t m = m0; m < m0 + rows; m++) {
    const float *x = a->x + m * K;
    float *y = a->y + m * N;
    for (int64_t i = i0; i < i1; i++) {
      const int64_t cols = N - i * r < r ? N - i * r : r;
      for (int64_t j = 0; j < cols; j++) y[i * r + j] = 0.0f;
      for (int64_t b = w->offsets[i]; b < w->offsets[i + 1]; b++)
        for (int64_t l = 0; l < c && w->index[b] + l < K; l++) {
          const float xv = x[w->index[b] + l], *v = w->values + (b * c + l) * r;
          for (int64_t j = 0; j < cols; j++) y[i * r + j] += xv * v[j];
        }
    }
  }
  sparse_epilogue_rows(a, m0, rows, i0, i1);
}

/* ---- instantiations and dispatch ------------------------------------------------------------ */
#define SPARSE_COLS_FN(NV, C)                                                                       \
  static void sparse_cols_##NV##_##C(const sparse_args *a, float *s, int64_t m0, int64_t rows, int64_t i0, \
                                     int64_t i1) {                                                  \
    sparse_tile_cols(NV, C, a, s, m0, rows, i0, i1);                                                \
  }
#define SPARSE_ROWS_FN(R, C)                                                                        \
  static void sparse_rows_##R##_##C(const sparse_args *a, float *s, int64_t m0, int64_t rows, int64_t i0, \
                                    int64_t i1) {                                                   \
    sparse_tile_rows(R, SPARSE_V_ROWS(R), C, a, s, m0, rows, i0, i1);                               \
  }
SPARSE_COLS_FN(1, 1) SPARSE_COLS_FN(1, 0) SPARSE_COLS_FN(2, 1) SPARSE_COLS_FN(2, 0)
SPARSE_COLS_FN(4, 1) SPARSE_COLS_FN(4, 0)
SPARSE_ROWS_FN(1, 1) SPARSE_ROWS_FN(1, 4) SPARSE_ROWS_FN(1, 0) SPARSE_ROWS_FN(2, 1) SPARSE_ROWS_FN(2, 0)
#if SPARSE_L > 4
SPARSE_ROWS_FN(4, 1) SPARSE_ROWS_FN(4, 0)
#endif
#if SPARSE_L > 8
SPARSE_ROWS_FN(8, 1) SPARSE_ROWS_FN(8, 0)
#endif
#define SPARSE_FEW_FN(R, MF)                                                                        \
  static void sparse_few_##R##_##MF(const sparse_args *a, float *s, int64_t m0, int64_t rows, int64_t i0,   \
                                    int64_t i1) {                                                   \
    sparse_tile_few(R, MF, a, s, m0, rows, i0, i1);                                                 \
  }
#define SPARSE_FEW_FNS(R)                                                                           \
  SPARSE_FEW_FN(R, 1) SPARSE_FEW_FN(R, 2) SPARSE_FEW_FN(R, 3) SPARSE_FEW_FN(R, 4) SPARSE_FEW_FN(R, 5)       \
  SPARSE_FEW_FN(R, 6) SPARSE_FEW_FN(R, 7) SPARSE_FEW_FN(R, 8)
SPARSE_FEW_FNS(1) SPARSE_FEW_FNS(2) SPARSE_FEW_FNS(4) SPARSE_FEW_FNS(8)
#undef SPARSE_COLS_FN
#undef SPARSE_ROWS_FN
#undef SPARSE_FEW_FN
#undef SPARSE_FEW_FNS

/* The tile function for an r x c block, and its rows per tile; for the by-rows tile, the rows of its half-height
 * tile too (*tail_mr; 0 where it has none: sparse_few_for weighs it). */
#define SPARSE_BY_ROWS(R, FULL)                                                                     \
  do {                                                                                              \
    *mr = SPARSE_V_ROWS(R) * SPARSE_L;                                                              \
    *tail_mr = SPARSE_V_TAIL(R) * SPARSE_L;                                                         \
    return FULL;                                                                                    \
  } while (0)
static sparse_tile_fn sparse_tile_for(int64_t r, int64_t c, int *mr, int *tail_mr) {
  const int c1 = c == 1;
  *tail_mr = 0;
  if (r == SPARSE_L || r == 2 * SPARSE_L || (r == 4 * SPARSE_L && r <= 16)) {
    const int nv = (int)(r / SPARSE_L);
    *mr = nv == 1 ? SPARSE_MR_COLS(1) : nv == 2 ? SPARSE_MR_COLS(2) : SPARSE_MR_COLS(4);
    if (nv == 1) return c1 ? sparse_cols_1_1 : sparse_cols_1_0;
    if (nv == 2) return c1 ? sparse_cols_2_1 : sparse_cols_2_0;
    return c1 ? sparse_cols_4_1 : sparse_cols_4_0;
  }
  switch (r) {
    case 1:
      if (c1) SPARSE_BY_ROWS(1, sparse_rows_1_1);
      if (c == 4) SPARSE_BY_ROWS(1, sparse_rows_1_4);
      SPARSE_BY_ROWS(1, sparse_rows_1_0);
    case 2:
      if (c1) SPARSE_BY_ROWS(2, sparse_rows_2_1);
      SPARSE_BY_ROWS(2, sparse_rows_2_0);
#if SPARSE_L > 4
    case 4:
      if (c1) SPARSE_BY_ROWS(4, sparse_rows_4_1);
      SPARSE_BY_ROWS(4, sparse_rows_4_0);
#endif
#if SPARSE_L > 8
    case 8:
      if (c1) SPARSE_BY_ROWS(8, sparse_rows_8_1);
      SPARSE_BY_ROWS(8, sparse_rows_8_0);
#endif
    default: *mr = 16; return sparse_tile_generic;
  }
}
#undef SPARSE_BY_ROWS

/* The few-rows tile for an r < L block at M <= SPARSE_FEW_MAX rows, where it does less work than the
 * by-rows tile: that one's FMAs are L lanes over MR rows, this one's r lanes (4 for 1x4 blocks) over M rows,
 * so break-even is at M = MR r / L in FMAs. On AVX2 an r x 1 block's FMAs here (one chain a row, each after a
 * broadcast load) cost about twice the by-rows tile's: its break-even is at half of that, and by rows from there
 * (4x1 blocks at 50%, 5 layers of 704, 1 thread: 1-8 rows 4.5, 4.8, 5.4, 6.3, 7.1, 10.4, 9.8, 10.8 ms, by rows
 * 5.9 ms; at 4 rows by rows was 8-10% faster in four models), as for the r = 1, 2 blocks, whose FMAs here are
 * scalar. AVX-512 (Zen 4 runs a 512-bit FMA as two halves) breaks even at M = MR r / L: 4x1 blocks at 8 rows
 * 15.6 ms, by rows 15.4 (README, Sparsity). 1x4 blocks keep four chains a row. NULL: by rows.
 * AVX-512, BERT-base-sized layers (6 x 768, FFN 3072), 1 thread, 1-4 tokens: 8x1 and 2:4 blocks 2.1-3.4x
 * faster than by rows, now faster than dense; 4x1 1.35-2.6x; 1x4 at 1 token 0.28x of dense's speed with
 * scalar FMAs, 1.48x with the four 4-lane chains.
 * Against the 16-row tail tile (AVX-512: half the FMAs of the 32-row one), an r x 1 block's few-rows FMAs cost
 * about twice its FMAs there, as on AVX2: by rows from M = r / 2 + 1 (2 x 768 layers at 50%, 1 thread, Zen 5: 8x1
 * blocks at 4-8 rows 1.29, 1.35, 1.52, 1.71, 2.12 ms here, 1.29, 1.35, 1.34, 1.34, 1.34 by rows; 4x1 at 2-4 rows
 * 1.87, 1.97, 2.23 here, 1.98, 2.03, 1.97 by rows). 1x4 blocks stay here to 8 rows (5-7 rows: 2.1, 2.5, 2.9 ms
 * here, 3.6, 3.4, 3.4 by rows: the tail tile's x loads, one per FMA, set its speed). */
static sparse_tile_fn sparse_few_for(int64_t r, int64_t c, int64_t M, int mr, int tail_mr) {
#define SPARSE_FEW_ROW(R) \
  {sparse_few_##R##_1, sparse_few_##R##_2, sparse_few_##R##_3, sparse_few_##R##_4, sparse_few_##R##_5, \
   sparse_few_##R##_6, sparse_few_##R##_7, sparse_few_##R##_8}
  static const sparse_tile_fn few[4][SPARSE_FEW_MAX] = {SPARSE_FEW_ROW(1), SPARSE_FEW_ROW(2), SPARSE_FEW_ROW(4),
                                                        SPARSE_FEW_ROW(8)};
#undef SPARSE_FEW_ROW
  const int which = r == 1 ? 0 : r == 2 ? 1 : r == 4 ? 2 : r == 8 ? 3 : -1;
  if (which < 0 || r >= SPARSE_L || M < 1 || M > SPARSE_FEW_MAX) return NULL;
  const int chains = r == 1 && c == 4, avx2_rx1 = r >= 4 && SPARSE_L == 8; /* 1x4's four chains; AVX2's r x 1 */
  const int tail_rx1 = r >= 4 && SPARSE_L == 16 && M <= tail_mr; /* AVX-512's r x 1, the tail tile (0: none) */
  const int halved = avx2_rx1 || tail_rx1 || (r < 4 && !chains); /* and the scalar FMAs of r = 1, 2 */
  const int64_t by_rows = (int64_t)(tail_rx1 ? tail_mr : mr) * (chains ? 4 : r);
  const int64_t few_work = (halved ? 2 : 1) * M * SPARSE_L;
  if (avx2_rx1 ? few_work >= by_rows : few_work > by_rows) return NULL;
  return few[which][M - 1];
}

/* A row tile's share of the work where items split the tiles (by_tiles): the rows its tile function computes (a short
 * tile runs a quarter, half or three quarters of the registers: sparse_tile_rows, sparse_tile_cols), plus half a full
 * tile's rows for what a tile costs whatever its rows (a block's index and weights read, once per tile): a 16-row tail
 * tile of 1x4 blocks took 62-70% of a 32-row one's time on the Zen 5 EPYC, which this weighs (16 + 16) / (32 + 16). */
static int64_t sparse_tile_weight(const sparse_args *a, int64_t rows) {
  int64_t done = a->mr; /* a whole tile */
  if (rows >= a->mr) {
  } else if (a->tile == sparse_tile_generic) {
    done = rows; /* a scalar loop over its rows */
  } else if (a->w->r < SPARSE_L) { /* by rows: whole registers of SPARSE_L rows */
    const int64_t v = a->mr / SPARSE_L, need = (rows + SPARSE_L - 1) / SPARSE_L;
    done = SPARSE_L == 16 && v == 2 && rows > 16 && rows <= 24 ? 24
           : v % 4 == 0 && need <= v / 4 ? v / 4 * SPARSE_L
           : v % 2 == 0 && need <= v / 2 ? v / 2 * SPARSE_L
           : v % 4 == 0 && need <= 3 * v / 4 ? 3 * v / 4 * SPARSE_L : a->mr;
  } else { /* by columns: tiles of 4 and 8 rows */
    done = rows <= 4 && a->mr > 4 ? 4 : rows <= 8 && a->mr > 8 ? 8 : a->mr;
  }
  return 2 * done + a->mr; /* in half rows */
}

/* Items [lo, hi). by_tiles: item t is the t-th of `chunks` equal shares of the tiles' work laid end to end (tile j
 * weighing sparse_tile_weight), so a range of items is a run of consecutive tiles' block rows, the first and last in
 * part, and the pool's equal ranges of items are equal work, a short last tile included; each tile in the range is
 * packed once. Else each item is a chunk of block rows for every tile. */
static void sparse_items(void *raw, int64_t lo, int64_t hi, float *scratch) {
  const sparse_args *a = raw;
  const int32_t *offsets = a->w->offsets;
  const int64_t br = a->w->block_rows;
  if (!a->by_tiles) {
    const int64_t i0 = sparse_row_at(offsets, br, lo, a->chunks), i1 = sparse_row_at(offsets, br, hi, a->chunks);
    for (int64_t m0 = 0; m0 < a->M && i0 < i1; m0 += a->mr)
      a->tile(a, scratch, m0, a->M - m0 < a->mr ? a->M - m0 : a->mr, i0, i1);
    return;
  }
  /* on the work axis times `chunks`: item t spans [t, t + 1) * work, tile j [start, start + weight) * chunks */
  const int64_t full = sparse_tile_weight(a, a->mr), p0 = lo * a->work, p1 = hi * a->work;
  for (int64_t j = p0 / (full * a->chunks) < a->tiles ? p0 / (full * a->chunks) : a->tiles - 1; j < a->tiles; j++) {
    const int64_t rows = j == a->tiles - 1 ? a->last_rows : a->mr;
    const int64_t start = j * full * a->chunks;
    const int64_t span = (j == a->tiles - 1 ? sparse_tile_weight(a, rows) : full) * a->chunks;
    if (start >= p1) break;
    const int64_t i0 = sparse_row_at(offsets, br, (p0 > start ? p0 : start) - start, span);
    const int64_t i1 = sparse_row_at(offsets, br, (p1 < start + span ? p1 : start + span) - start, span);
    if (i0 < i1) a->tile(a, scratch, j * a->mr, rows, i0, i1);
  }
}

void bertc_linear_sparse(bertc_pool *p, const float *x, const bertc_block_sparse *w, const float *bias,
                         const float *residual, float *y, int64_t M, int64_t N, int64_t K, int act) {
  sparse_args a = {.x = x, .bias = bias, .res = residual, .w = w, .y = y, .M = M, .N = N, .K = K,
                   .kpad = (K + w->c - 1) / w->c * w->c, .act = act,
                   .call = sparse_call_number()};
  int tail_mr;
  a.tile = sparse_tile_for(w->r, w->c, &a.mr, &tail_mr);
  const sparse_tile_fn few = sparse_few_for(w->r, w->c, M, a.mr, tail_mr);
  if (few) { /* every row in one tile */
    a.tile = few;
    a.mr = (int)M;
  }
  /* Items split the row tiles' work (sparse_items): a thread writes the rows the next op reads on its core. With a
   * short last tile, < 4 tiles a thread and >= 1 MiB of weights, chunks of block rows for every tile instead (hidden
   * 768 at 50%, 2 threads, 17 tokens of 16x1: 1.14-1.20x, by tile 1.07x; hidden 384 at 10%: 0.8x). 4 items a pool
   * chunk. */
  const int64_t tiles = (M + a.mr - 1) / a.mr, threads = bertc_pool_threads(p);
  const int64_t weight_bytes = (int64_t)w->offsets[w->block_rows] * w->r * w->c * (int64_t)sizeof(float);
  a.by_tiles = threads > 1 && tiles > 0 && (M % a.mr == 0 || tiles >= 4 * threads || weight_bytes < (1 << 20));
  a.chunks = sparse_item_count(p, w->block_rows * (a.by_tiles ? tiles : 1));
  if (a.by_tiles) {
    a.tiles = tiles;
    a.last_rows = M - (tiles - 1) * a.mr;
    a.work = (tiles - 1) * sparse_tile_weight(&a, a.mr) + sparse_tile_weight(&a, a.last_rows);
  }
  bertc_parallel_rows(p, a.chunks, sparse_items, &a);
}

#endif
