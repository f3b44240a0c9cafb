#include "pool.h"

#include <pthread.h>
#include <stdlib.h>

struct bertc_pool {
  int threads;
  pthread_t *workers;
  float **scratch;            /* [threads][scratch_floats] */
  pthread_mutex_t lock;
  pthread_cond_t work, done;
  uint64_t generation;        /* bumped per parallel call */
  int pending, stop;
  bertc_rows_fn fn;
  void *arg;
  int64_t rows;
};

typedef struct { bertc_pool *p; int id; } worker_arg;

static void run_share(bertc_pool *p, int id) {
  int64_t chunk = (p->rows + p->threads - 1) / p->threads;
  int64_t lo = chunk * id, hi = lo + chunk < p->rows ? lo + chunk : p->rows;
  if (lo < hi) p->fn(p->arg, lo, hi, p->scratch[id]);
}

static void *worker_main(void *raw) {
  worker_arg *w = raw;
  bertc_pool *p = w->p;
  uint64_t seen = 0;
  for (;;) {
    pthread_mutex_lock(&p->lock);
    while (p->generation == seen && !p->stop) pthread_cond_wait(&p->work, &p->lock);
    if (p->stop) { pthread_mutex_unlock(&p->lock); break; }
    seen = p->generation;
    pthread_mutex_unlock(&p->lock);
    run_share(p, w->id);
    pthread_mutex_lock(&p->lock);
    if (--p->pending == 0) pthread_cond_signal(&p->done);
    pthread_mutex_unlock(&p->lock);
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
  pthread_cond_init(&p->done, NULL);
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
    p->stop = 1;
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

void bertc_parallel_rows(bertc_pool *p, int64_t rows, bertc_rows_fn fn, void *arg) {
  if (p->threads == 1 || rows < 2) { fn(arg, 0, rows, p->scratch[0]); return; }
  pthread_mutex_lock(&p->lock);
  p->fn = fn;
  p->arg = arg;
  p->rows = rows;
  p->pending = p->threads - 1;
  p->generation++;
  pthread_cond_broadcast(&p->work);
  pthread_mutex_unlock(&p->lock);
  run_share(p, 0);
  pthread_mutex_lock(&p->lock);
  while (p->pending) pthread_cond_wait(&p->done, &p->lock);
  pthread_mutex_unlock(&p->lock);
}
