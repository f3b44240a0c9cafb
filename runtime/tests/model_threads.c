/* model_threads: one bertc_model, bertc_run from several threads with no lock of the caller's, under
 * ThreadSanitizer (`make test-sanitize` builds it with an artifact's src/model.c and the runtime). The
 * runs must serialize on the model's own lock (bertc.h, "Threads"): TSan reports any access to the
 * arena, the pool or the timers that the lock does not order, and every run must succeed. Then (once
 * every thread is done with those) each thread, holding a lock of its own across run and read as
 * bertc.h asks, checks its output against the same input's output computed alone.
 *
 *   model_threads ART.bertc   (exit status 0: no race, every run succeeded, every output as computed alone) */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bertc.h"

#define THREADS 4
#define CALLS 12
#define MAX_TOKENS 4096

static bertc_model *model;
static pthread_mutex_t reader = PTHREAD_MUTEX_INITIALIZER; /* the caller's lock across run + read */
static pthread_barrier_t phase; /* no unlocked run may overwrite the outputs while another thread reads them */
static int64_t ids[THREADS][MAX_TOKENS];
static float *alone[THREADS]; /* output 0 of thread t's input, computed before the threads start */
static size_t out_len;

static size_t output_len(void) {
  int64_t shape[4];
  int rank;
  bertc_output(model, 0, shape, &rank);
  size_t n = 1;
  for (int d = 0; d < rank; d++) n *= (size_t)shape[d];
  return n;
}

static void *caller(void *arg) {
  const int t = (int)(intptr_t)arg;
  const int64_t batch = bertc_batch(model), seq = bertc_seq_len(model);
  intptr_t failures = 0;
  for (int i = 0; i < CALLS; i++) /* no lock of ours: bertc_run's own lock serializes these */
    failures += bertc_run(model, ids[t], NULL, NULL, batch, seq) != BERTC_OK;
  pthread_barrier_wait(&phase);
  for (int i = 0; i < CALLS / 4; i++) {
    pthread_mutex_lock(&reader);
    failures += bertc_run(model, ids[t], NULL, NULL, batch, seq) != BERTC_OK;
    failures += memcmp(bertc_output(model, 0, NULL, NULL), alone[t], out_len * sizeof(float)) != 0;
    pthread_mutex_unlock(&reader);
  }
  return (void *)failures;
}

int main(int argc, char **argv) {
  if (argc != 2) { fprintf(stderr, "usage: model_threads ART.bertc\n"); return 2; }
  if (bertc_open(argv[1], 2, &model) != BERTC_OK) {
    fprintf(stderr, "model_threads: %s\n", bertc_open_error());
    return 1;
  }
  const int64_t batch = bertc_batch(model), seq = bertc_seq_len(model);
  if (batch * seq > MAX_TOKENS) {
    fprintf(stderr, "model_threads: the artifact takes more than %d tokens\n", MAX_TOKENS);
    return 2;
  }
  out_len = output_len();
  for (int t = 0; t < THREADS; t++) {
    for (int64_t i = 0; i < batch * seq; i++) ids[t][i] = (t * 31 + i * 7) % 100;
    if (bertc_run(model, ids[t], NULL, NULL, batch, seq) != BERTC_OK) {
      fprintf(stderr, "model_threads: %s\n", bertc_last_error(model));
      return 1;
    }
    alone[t] = malloc(out_len * sizeof(float));
    memcpy(alone[t], bertc_output(model, 0, NULL, NULL), out_len * sizeof(float));
  }
  pthread_barrier_init(&phase, NULL, THREADS);
  pthread_t threads[THREADS];
  for (int t = 0; t < THREADS; t++) pthread_create(&threads[t], NULL, caller, (void *)(intptr_t)t);
  intptr_t failures = 0;
  for (int t = 0; t < THREADS; t++) {
    void *f;
    pthread_join(threads[t], &f);
    failures += (intptr_t)f;
  }
  bertc_close(model);
  for (int t = 0; t < THREADS; t++) free(alone[t]);
  printf("model_threads: %d threads x %d runs of one model, %ld failed or differed\n", THREADS, CALLS + CALLS / 4,
         (long)failures);
  return failures != 0;
}
