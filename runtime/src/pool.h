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

/* p, or for an op of less work than serial_below (elements, or a GEMM's multiply-adds) a view of p whose calls
 * run on the calling thread alone: splitting so little costs more than it saves. A parallel call wakes the
 * spinning workers and ends in a barrier, and the next op reads on one core what the other wrote: 0.2-0.3 us a
 * call, 1-2 us where the two vCPUs sit far apart, while a layer norm of 4096 elements takes 1 us on a Zen 5 core.
 * On that EPYC's calibration grid 2 threads ran layer norms below 8192 elements 1.5-2x slower than one did, adds
 * and embedding lookups (loads and stores) no faster below 32768, fp32 GEMMs below 32768 multiply-adds (1 us) and
 * int8 ones below 65536 no faster. The generated code sizes the pool of each such op (passes/emit_c.py); the
 * cost model prices these ops as run on one thread (bertc/cost.py SERIAL_BELOW holds the values, priced_as). */
#define BERTC_SERIAL_ELEMENTS 8192       /* norms, softmax, activations, rotary */
#define BERTC_SERIAL_COPY_ELEMENTS 32768 /* adds and the like, embedding lookups */
#define BERTC_SERIAL_MACS 32768          /* fp32 GEMMs, dense or the kept blocks' */
#define BERTC_SERIAL_MACS_I8 65536       /* int8 GEMMs */
bertc_pool *bertc_pool_sized(bertc_pool *p, int64_t work, int64_t serial_below);
/* What a parallel call costs beyond its share of the work, in microseconds, measured now: `calls` calls of a row
 * of 0.2 us per thread, less the same rows run on the calling thread divided among the threads; the median of up
 * to 16 batches of them, so one preempted batch does not move it (bertc_handoff_us). */
double bertc_pool_handoff_us(bertc_pool *p, int calls);
/* Bracket one model run: between the two, idle workers spin for the next op instead of sleeping. */
void bertc_pool_begin(bertc_pool *p);
void bertc_pool_end(bertc_pool *p);

#endif
