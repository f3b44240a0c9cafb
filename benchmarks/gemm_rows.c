/* gemm_rows: GFLOP/s of bertc_linear_packed per row count M, for the shapes and thread counts given,
 * in one process, interleaved. benchmarks/gemm_rows.py builds it with the host toolchain's flags and
 * the kernels bertc links for the host (runtime/kernels/ref + the ISA file), runs it and reads its output.
 *
 * Why per M: with dynamic sequence length (issue 17) a GEMM runs on a sentence's real rows, 27 at the
 * median, which is not a multiple of any tile; this shows where the micro-kernel's rate drops.
 *
 * Usage: gemm_rows MR NR KC CHUNKS ROW_BLOCK ROUNDS BATCH_MS COPIES -t T[,T...] -s KxN[,KxN...] -m M[,M...]
 * COPIES > 1 keeps that many packed copies of each weight and cycles through them, one per call, so
 * that (with enough copies to outgrow the last-level cache) every call reads its weights from DRAM,
 * as a model's linears do; COPIES = 1 times the kernel on weights that stay in cache.
 * Prints one line per (threads, K, N, M): "T K N M ms_per_call_median ms_per_call_min max_rel_err". */
#include "kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_ITEMS 4096

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *alloc_floats(int64_t n) {
  const size_t bytes = ((size_t)n * sizeof(float) + 63) / 64 * 64;
  float *p = aligned_alloc(64, bytes);
  if (!p) {
    fprintf(stderr, "gemm_rows: out of memory (%zu bytes)\n", bytes);
    exit(2);
  }
  memset(p, 0, bytes);
  return p;
}

static int parse_list(const char *s, int64_t *out, int max) {
  int n = 0;
  while (*s && n < max) {
    char *end;
    out[n++] = strtoll(s, &end, 10);
    if (*end == 'x') { /* KxN: K then N */
      out[n++] = strtoll(end + 1, &end, 10);
    }
    s = *end == ',' ? end + 1 : end;
    if (end == s && *s) break;
  }
  return n;
}

/* W[N,K] packed as --pack-weights lays it out (kernels.h): panels of nr columns, K-major, the last
 * panel zero-padded. */
static float *pack_weight(const float *w, int64_t N, int64_t K, int nr) {
  const int64_t panels = (N + nr - 1) / nr;
  float *p = alloc_floats(panels * K * nr);
  for (int64_t n = 0; n < N; n++)
    for (int64_t k = 0; k < K; k++) p[(n / nr) * K * nr + k * nr + n % nr] = w[n * K + k];
  return p;
}

typedef struct {
  int threads, shape; /* shape: index into the -s list */
  int64_t K, N, M;
  double *ms; /* per round: ms per call */
  float err;
} item;

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc != 15) {
    fprintf(stderr, "usage: gemm_rows MR NR KC CHUNKS ROW_BLOCK ROUNDS BATCH_MS COPIES -t T,.. -s KxN,.. -m M,..\n");
    return 2;
  }
  const bertc_gemm_tile tile = {atoi(argv[1]), atoi(argv[2]), atoi(argv[3])};
  const bertc_tuning tuning = {atoi(argv[4]), 8, atoi(argv[5])};
  const int rounds = atoi(argv[6]);
  const double batch_ms = atof(argv[7]);
  const int copies = atoi(argv[8]) > 0 ? atoi(argv[8]) : 1;
  int64_t threads[8], shapes[32], ms[512];
  const int nt = parse_list(argv[10], threads, 8), ns = parse_list(argv[12], shapes, 32) / 2,
            nm = parse_list(argv[14], ms, 512);
  int64_t max_k = 0, max_n = 0, max_m = 0;
  for (int s = 0; s < ns; s++) {
    max_k = shapes[2 * s] > max_k ? shapes[2 * s] : max_k;
    max_n = shapes[2 * s + 1] > max_n ? shapes[2 * s + 1] : max_n;
  }
  for (int i = 0; i < nm; i++) max_m = ms[i] > max_m ? ms[i] : max_m;

  bertc_pool *pools[8];
  for (int t = 0; t < nt; t++) {
    pools[t] = bertc_pool_create((int)threads[t], BERTC_SCRATCH_LINEAR(max_k), &tuning);
    if (!pools[t]) {
      fprintf(stderr, "gemm_rows: bertc_pool_create(%lld threads) failed\n", (long long)threads[t]);
      return 2;
    }
  }
  srand(0);
  float *x = alloc_floats(max_m * max_k), *y = alloc_floats(max_m * max_n), *bias = alloc_floats(max_n);
  for (int64_t i = 0; i < max_m * max_k; i++) x[i] = (float)rand() / RAND_MAX - 0.5f;
  for (int64_t i = 0; i < max_n; i++) bias[i] = (float)rand() / RAND_MAX - 0.5f;
  float *w[32], **wp[32];
  for (int s = 0; s < ns; s++) {
    const int64_t K = shapes[2 * s], N = shapes[2 * s + 1];
    w[s] = alloc_floats(N * K);
    for (int64_t i = 0; i < N * K; i++) w[s][i] = (float)rand() / RAND_MAX - 0.5f;
    wp[s] = calloc((size_t)copies, sizeof(float *));
    for (int c = 0; c < copies; c++) wp[s][c] = pack_weight(w[s], N, K, tile.nr);
  }
  int copy = 0; /* the weight copy the next call reads */

  static item items[MAX_ITEMS];
  int n_items = 0;
  for (int t = 0; t < nt; t++)
    for (int s = 0; s < ns; s++)
      for (int i = 0; i < nm && n_items < MAX_ITEMS; i++) {
        item *it = &items[n_items++];
        *it = (item){(int)threads[t], s, shapes[2 * s], shapes[2 * s + 1], ms[i], calloc(rounds, sizeof(double)), 0};
        /* the result against a plain double-precision loop, so a wrong tile cannot report a fast rate */
        bertc_linear_packed(pools[t], x, wp[s][0], bias, NULL, y, it->M, it->N, it->K, BERTC_ACT_NONE, &tile);
        float worst = 0, scale = 1;
        for (int64_t m = 0; m < it->M; m += (it->M > 8 ? it->M / 8 : 1))
          for (int64_t n = 0; n < it->N; n++) {
            double ref = bias[n];
            for (int64_t k = 0; k < it->K; k++) ref += (double)x[m * it->K + k] * w[s][n * it->K + k];
            worst = fmaxf(worst, fabsf((float)ref - y[m * it->N + n]));
            scale = fmaxf(scale, fabsf((float)ref));
          }
        it->err = worst / scale;
      }

  /* Round r visits every item once, starting r * n_items / rounds further along, so that no M is
   * always timed right after the same neighbour. A visit times a batch of calls inside one
   * bertc_pool_begin/end, as the ops of a model run are (workers spin between calls). */
  for (int r = 0; r < rounds; r++) {
    const int start = (int)((int64_t)r * n_items / rounds);
    for (int j = 0; j < n_items; j++) {
      item *it = &items[(start + j) % n_items];
      bertc_pool *p = pools[0];
      for (int t = 0; t < nt; t++)
        if (threads[t] == it->threads) p = pools[t];
      bertc_pool_begin(p);
      bertc_linear_packed(p, x, wp[it->shape][copy], bias, NULL, y, it->M, it->N, it->K, BERTC_ACT_NONE, &tile);
      copy = (copy + 1) % copies;
      int calls = 0;
      const double t0 = now_s();
      double t1 = t0;
      while (calls < 1 || (t1 - t0) * 1e3 < batch_ms) {
        bertc_linear_packed(p, x, wp[it->shape][copy], bias, NULL, y, it->M, it->N, it->K, BERTC_ACT_NONE, &tile);
        copy = (copy + 1) % copies;
        calls++;
        t1 = now_s();
      }
      bertc_pool_end(p);
      it->ms[r] = (t1 - t0) * 1e3 / calls;
    }
  }
  for (int i = 0; i < n_items; i++) {
    item *it = &items[i];
    qsort(it->ms, (size_t)rounds, sizeof(double), cmp_double);
    const double median = rounds % 2 ? it->ms[rounds / 2] : 0.5 * (it->ms[rounds / 2 - 1] + it->ms[rounds / 2]);
    printf("%d %lld %lld %lld %.6f %.6f %.3g\n", it->threads, (long long)it->K, (long long)it->N, (long long)it->M,
           median, it->ms[0], (double)it->err);
    free(it->ms);
  }
  for (int t = 0; t < nt; t++) bertc_pool_destroy(pools[t]);
  for (int s = 0; s < ns; s++) {
    free(w[s]);
    for (int c = 0; c < copies; c++) free(wp[s][c]);
    free(wp[s]);
  }
  free(x);
  free(y);
  free(bias);
  return 0;
}
