#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

struct bertc_pool {
  int threads;
  pthread_t *workers;
  float **scratch; /* [threads][scratch_floats] */
  pthread_mutex_t lock;
  pthread_cond_t work;
  /* The caller publishes fn/arg/rows, then bumps generation (release); a worker that sees the
   * new generation (acquire) runs its share and decrements pending. */
  _Atomic uint64_t generation;
  _Atomic int pending;  /* workers still running the current call */
  _Atomic int sleepers; /* workers on the condition variable: the caller must wake them */
  _Atomic int active;   /* inside bertc_pool_begin .. end: idle workers spin */
  _Atomic int stop;
  bertc_rows_fn fn;
  void *arg;
  int64_t rows;
};

typedef struct { bertc_pool *p; int id; } worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void run_share(bertc_pool *p, int id) {
  int64_t chunk = (p->rows + p->threads - 1) / p->threads;
  int64_t lo = chunk * id, hi = lo + chunk < p->rows ? lo + chunk : p->rows;
  if (lo < hi) p->fn(p->arg, lo, hi, p->scratch[id]);
}

/* The next generation after `seen` (or any value once stop is set): spin while a run is active
 * and the spin budget lasts, then sleep. */
static uint64_t next_generation(bertc_pool *p, uint64_t seen) {
  int64_t start = -1;
  for (uint32_t i = 0; atomic_load_explicit(&p->active, memory_order_relaxed); i++) {
    const uint64_t g = atomic_load_explicit(&p->generation, memory_order_acquire);
    if (g != seen || atomic_load_explicit(&p->stop, memory_order_relaxed)) return g;
    cpu_relax();
    if ((i & 1023) == 1023) {
      if (start < 0) start = now_us();
      else if (now_us() - start > BERTC_POOL_SPIN_US) break;
    }
  }
  /* sleepers goes up before generation is read again, and the caller bumps generation before it
   * reads sleepers (both sequentially consistent): either this thread sees the new generation,
   * or the caller sees a sleeper and broadcasts under the lock this thread holds until it waits. */
  pthread_mutex_lock(&p->lock);
  atomic_fetch_add(&p->sleepers, 1);
  uint64_t g;
  while ((g = atomic_load(&p->generation)) == seen && !atomic_load(&p->stop)) pthread_cond_wait(&p->work, &p->lock);
  atomic_fetch_sub(&p->sleepers, 1);
  pthread_mutex_unlock(&p->lock);
  return g;
}

static void *worker_main(void *raw) {
  worker_arg *w = raw;
  bertc_pool *p = w->p;
  uint64_t seen = 0;
  for (;;) {
    seen = next_generation(p, seen);
    if (atomic_load(&p->stop)) break;
    run_share(p, w->id);
    atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
  }
  free(w);
  return NULL;
}

bertc_pool *bertc_pool_create(int threads, int64_t scratch_floats) {
  bertc_pool *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->threads = threads;
  p->workers = calloc((size_t)threads, sizeof *p->workers);
  p->scratch = calloc((size_t)threads, sizeof *p->scratch);
  if (!p->workers || !p->scratch) { bertc_pool_destroy(p); return NULL; }
  for (int i = 0; i < threads; i++) {
    p->scratch[i] = aligned_alloc(64, (size_t)((scratch_floats * 4 + 63) / 64 * 64 + 64));
    if (!p->scratch[i]) { bertc_pool_destroy(p); return NULL; }
  }
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->work, NULL);
  for (int i = 1; i < threads; i++) { /* thread 0 is the caller */
    worker_arg *w = malloc(sizeof *w);
    w->p = p;
    w->id = i;
    pthread_create(&p->workers[i], NULL, worker_main, w);
  }
  return p;
}

void bertc_pool_destroy(bertc_pool *p) {
  if (!p) return;
  if (p->workers) {
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->threads; i++)
      if (p->workers[i]) pthread_join(p->workers[i], NULL);
  }
  if (p->scratch)
    for (int i = 0; i < p->threads; i++) free(p->scratch[i]);
  free(p->scratch);
  free(p->workers);
  free(p);
}

int bertc_pool_threads(const bertc_pool *p) { return p->threads; }

void bertc_pool_begin(bertc_pool *p) { atomic_store_explicit(&p->active, 1, memory_order_relaxed); }

void bertc_pool_end(bertc_pool *p) { atomic_store_explicit(&p->active, 0, memory_order_relaxed); }

void bertc_parallel_rows(bertc_pool *p, int64_t rows, bertc_rows_fn fn, void *arg) {
  if (p->threads == 1 || rows < 2) { fn(arg, 0, rows, p->scratch[0]); return; }
  p->fn = fn;
  p->arg = arg;
  p->rows = rows;
  atomic_store_explicit(&p->pending, p->threads - 1, memory_order_relaxed);
  atomic_fetch_add(&p->generation, 1); /* sequentially consistent: see next_generation */
  if (atomic_load(&p->sleepers) > 0) {
    pthread_mutex_lock(&p->lock);
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
  }
  run_share(p, 0);
  for (uint32_t i = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; i++) {
    cpu_relax(); /* the others are running their shares: the wait is short unless a core is taken */
    if ((i & 4095) == 4095) sched_yield();
  }
}
