/* pool_check: the thread pool (src/pool.c) under ThreadSanitizer, which `make test-sanitize` builds it
 * for. Runs the pool the way a model does (bertc_pool_begin, parallel calls of varying row counts,
 * bertc_pool_end, with pauses long enough for the workers to go to sleep between runs), and after
 * each call checks that every row was written once, by the call that just returned: the barrier at
 * the end of bertc_parallel_rows is what makes the next op's reads safe. TSan reports any access the
 * pool's atomics do not order; the checks catch a row lost or written late.
 *
 *   cc -std=gnu11 -O1 -g -fsanitize=thread -Iruntime/src runtime/tests/pool_check.c runtime/src/pool.c \
 *     -o pool_check -pthread && ./pool_check */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pool.h"

#define MAX_ROWS 700
#define COLS 5
#define SERIAL_BELOW 350 /* the work (here rows) below which a sized pool runs a call on the caller alone */

typedef struct {
  float *out; /* [rows][COLS] */
  int stamp;  /* which call: a row left from an earlier call shows */
} job;

static void fill_rows(void *arg, int64_t lo, int64_t hi, float *scratch) {
  const job *j = arg;
  for (int64_t r = lo; r < hi; r++) {
    scratch[0] = (float)r; /* the thread's own scratch, as the attention kernel uses it */
    for (int c = 0; c < COLS; c++) j->out[r * COLS + c] += (float)(j->stamp * 1000 + c) + scratch[0] - (float)r;
  }
}

static int check_call(bertc_pool *pool, float *out, int64_t rows, int stamp) {
  memset(out, 0, sizeof(float) * MAX_ROWS * COLS);
  job j = {out, stamp};
  bertc_parallel_rows(pool, rows, fill_rows, &j);
  for (int64_t r = 0; r < rows; r++)
    for (int c = 0; c < COLS; c++)
      if (out[r * COLS + c] != (float)(stamp * 1000 + c)) {
        fprintf(stderr, "pool_check: call %d, row %lld col %d is %g, expected %d (lost or written twice)\n", stamp,
                (long long)r, c, out[r * COLS + c], stamp * 1000 + c);
        return 0;
      }
  return 1;
}

int main(void) {
  float *out = malloc(sizeof(float) * MAX_ROWS * COLS);
  int calls = 0;
  const int thread_counts[] = {2, 3, 5};
  const int chunks[] = {1, 2, 7};
  for (int ti = 0; ti < 3; ti++)
    for (int ci = 0; ci < 3; ci++) {
      bertc_tuning tuning = BERTC_TUNING_DEFAULT;
      tuning.chunks_per_thread = chunks[ci];
      bertc_pool *pool = bertc_pool_create(thread_counts[ti], 4, &tuning);
      if (!pool) { fprintf(stderr, "pool_check: bertc_pool_create failed\n"); return 1; }
      for (int run = 0; run < 12; run++) {
        bertc_pool_begin(pool);
        for (int op = 0; op < 8; op++) {
          const int64_t rows = 1 + (run * 131 + op * 37 + ti) % MAX_ROWS;
          /* every other op sized as a model's are (bertc_pool_sized): below its work, a one-thread view */
          bertc_pool *use = op % 2 ? bertc_pool_sized(pool, rows, SERIAL_BELOW) : pool;
          const int want = op % 2 && rows < SERIAL_BELOW ? 1 : thread_counts[ti];
          if (bertc_pool_threads(use) != want) {
            fprintf(stderr, "pool_check: a pool sized for %lld rows has %d threads, expected %d\n", (long long)rows,
                    bertc_pool_threads(use), want);
            return 1;
          }
          if (!check_call(use, out, rows, ++calls)) return 1;
        }
        bertc_pool_end(pool);
        /* the hand-off probe between runs: a cost, never negative, and none through a one-thread view */
        const double handoff = bertc_pool_handoff_us(pool, 20);
        if (!(handoff >= 0.0) || bertc_pool_handoff_us(bertc_pool_sized(pool, 0, 1), 20) != 0.0) {
          fprintf(stderr, "pool_check: bertc_pool_handoff_us gave %g on %d threads\n", handoff, thread_counts[ti]);
          return 1;
        }
        if (run % 4 == 3) { /* past BERTC_POOL_SPIN_US: the workers go to sleep, and the next run wakes them */
          struct timespec pause = {0, (BERTC_POOL_SPIN_US + 3000) * 1000L};
          nanosleep(&pause, NULL);
        }
      }
      bertc_pool_destroy(pool);
    }
  free(out);
  printf("pool_check: %d parallel calls on 2, 3 and 5 threads (half of them sized: the small ones on one), every row "
         "written once by its own call\n", calls);
  return 0;
}
