/* A fixed thread pool: workers sleep on a condition variable between ops (no spinning that
 * would steal a core from the next runtime), and each parallel call ends in a barrier. */
#ifndef BERTC_POOL_H
#define BERTC_POOL_H

#include <stdint.h>

typedef struct bertc_pool bertc_pool;

/* fn(arg, lo, hi) handles rows [lo, hi); rows are split evenly over the threads. */
typedef void (*bertc_rows_fn)(void *arg, int64_t lo, int64_t hi, float *scratch);

bertc_pool *bertc_pool_create(int threads, int64_t scratch_floats);
void bertc_pool_destroy(bertc_pool *p);
int bertc_pool_threads(const bertc_pool *p);
void bertc_parallel_rows(bertc_pool *p, int64_t rows, bertc_rows_fn fn, void *arg);

#endif
