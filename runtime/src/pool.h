/* A fixed thread pool. bertc_pool_begin wakes the workers; inside a model run (bertc_pool_begin .. bertc_pool_end) idle workers spin
 * for the next op, briefly (BERTC_POOL_SPIN_US, then they sleep), because waking a sleeping
 * thread costs tens of microseconds per op; outside a run they sleep on a condition variable at
 * once, so a finished run never steals a core from whatever runs next. Each parallel call ends
 * in a barrier. */
#ifndef BERTC_POOL_H
#define BERTC_POOL_H

#include <stdint.h>

typedef struct bertc_pool bertc_pool;

/* fn(arg, lo, hi) handles rows [lo, hi). A call cuts its rows into chunks_per_thread chunks per
 * thread, which the threads claim as they come, so fn sees several [lo, hi) per thread, in any order. */
typedef void (*bertc_rows_fn)(void *arg, int64_t lo, int64_t hi, float *scratch);

/* How long an idle worker spins between the ops of one run before it sleeps. */
#define BERTC_POOL_SPIN_US 2000

/* Parameters the compiler chooses per target (bertc/targets.py, emitted into the program) that the
 * pool and the kernels read at run time; a later tuner and the cost model read the same values. */
typedef struct {
  int32_t chunks_per_thread; /* the threading split: 1..64 chunks of each op's rows per thread */
  int32_t attention_block;   /* queries per fused-attention block where the kernel blocks them: 4 or 8 */
  int32_t gemm_row_block;    /* rows of x per GEMM work item where the kernel splits M (x86; int8 on ARM64): >= 1 */
} bertc_tuning;
#define BERTC_TUNING_DEFAULT {2, 8, 192}

/* tuning: NULL for BERTC_TUNING_DEFAULT. NULL on out-of-range values. */
bertc_pool *bertc_pool_create(int threads, int64_t scratch_floats, const bertc_tuning *tuning);
const bertc_tuning *bertc_pool_tuning(const bertc_pool *p);
void bertc_pool_destroy(bertc_pool *p);
int bertc_pool_threads(const bertc_pool *p);
void bertc_parallel_rows(bertc_pool *p, int64_t rows, bertc_rows_fn fn, void *arg);
/* Bracket one model run: between the two, idle workers spin for the next op instead of sleeping. */
void bertc_pool_begin(bertc_pool *p);
void bertc_pool_end(bertc_pool *p);

#endif
