/* Loader and executor: checks the artifact, maps the weights, owns the arena and the pool. */
#define _GNU_SOURCE
#include <pthread.h>

#include "../include/bertc.h"
#include "../kernels/kernels.h"
#include "loader.h"
#include "program.h"

struct bertc_model {
  const bertc_program *prog;
  bertc_exec exec;
  void *weights_map;   /* mmap of weights.bin */
  size_t weights_len;
  int threads;
  int64_t timed_runs;  /* runs summed into exec.op_seconds since open or bertc_reset_op_times */
  char error[512];
  pthread_mutex_t run_lock; /* one run at a time: the runs share the arena and the pool (bertc.h) */
};

static _Thread_local char open_error[512];

const char *bertc_open_error(void) { return open_error; }

bertc_status bertc_open(const char *dir, int threads, bertc_model **out) {
  const bertc_program *prog = &bertc_compiled_program;
  if (!out || !dir) return fail(open_error, BERTC_ERR_ARGUMENT, "bertc_open: NULL argument");
  *out = NULL;
  if (threads < 1 || threads > 256)
    return fail(open_error, BERTC_ERR_ARGUMENT, "threads must be between 1 and 256 (got %d)", threads);

  void *map = NULL;
  size_t len = 0;
  bertc_status st = open_weights(dir, prog->format_version, prog->weights_sha256, prog->weights_bytes, &map, &len,
                                 open_error);
  if (st != BERTC_OK) return st;
  bertc_model *m = calloc(1, sizeof *m);
  if (!m) return fail(open_error, BERTC_ERR_MEMORY, "out of memory");
  m->prog = prog;
  m->weights_map = map;
  m->weights_len = len;
  m->threads = threads;
  pthread_mutex_init(&m->run_lock, NULL);
  m->exec.weights = map;
  m->exec.arena = aligned_alloc(64, (size_t)((prog->arena_bytes + 63) / 64 * 64 + 64));
  m->exec.pool = bertc_pool_create(threads, prog->scratch_floats, &prog->tuning);
  m->exec.op_seconds = calloc((size_t)prog->num_ops + 1, sizeof(double)); /* + 1: calloc(0) may be NULL */
  if (!m->exec.arena || !m->exec.pool || !m->exec.op_seconds) {
    bertc_close(m);
    return fail(open_error, BERTC_ERR_MEMORY, "cannot allocate the %lld-byte arena", (long long)prog->arena_bytes);
  }
  *out = m;
  return BERTC_OK;
}

bertc_status bertc_run(bertc_model *m, const int64_t *ids, const int64_t *mask, const int64_t *types, int64_t batch,
                       int64_t seq) {
  if (!m) return BERTC_ERR_ARGUMENT;
  const bertc_program *p = m->prog;
  pthread_mutex_lock(&m->run_lock);
  bertc_status st = check_inputs(m->error, m->exec.arena, p->batch, p->seq_len, p->vocab_size, p->type_vocab_size,
                                 p->ids_offset, p->mask_offset, p->types_offset, ids, mask, types, batch, seq);
  if (st == BERTC_OK) {
    bertc_pool_begin(m->exec.pool); /* workers spin between this run's ops, and sleep after it */
    p->run(&m->exec);
    bertc_pool_end(m->exec.pool);
    m->timed_runs++;
    m->error[0] = 0;
  }
  pthread_mutex_unlock(&m->run_lock);
  return st;
}

int bertc_num_outputs(const bertc_model *m) { return m ? m->prog->num_outputs : 0; }

const char *bertc_kernel(const bertc_model *m, int i, const char **impl) {
  if (!m || i < 0 || i >= m->prog->num_kernels) return NULL;
  if (impl) *impl = bertc_kernel_impl(m->prog->kernels[i]);
  return m->prog->kernels[i];
}

const char *bertc_output_name(const bertc_model *m, int i) {
  return m && i >= 0 && i < m->prog->num_outputs ? m->prog->outputs[i].name : NULL;
}

const float *bertc_output(const bertc_model *m, int i, int64_t shape[4], int *rank) {
  if (!m || i < 0 || i >= m->prog->num_outputs) return NULL;
  const bertc_tensor_slot *s = &m->prog->outputs[i];
  if (rank) *rank = s->rank;
  if (shape) memcpy(shape, s->shape, sizeof s->shape);
  return (const float *)(m->exec.arena + s->offset);
}

int bertc_num_ops(const bertc_model *m) { return m ? m->prog->num_ops : 0; }

const char *bertc_op_name(const bertc_model *m, int i) {
  return m && i >= 0 && i < m->prog->num_ops ? m->prog->ops[i].name : NULL;
}

const char *bertc_op_kernel(const bertc_model *m, int i) {
  return m && i >= 0 && i < m->prog->num_ops ? m->prog->ops[i].kernel : NULL;
}

double bertc_op_seconds(const bertc_model *m, int i) {
  return m && i >= 0 && i < m->prog->num_ops ? m->exec.op_seconds[i] : -1.0;
}

int64_t bertc_timed_runs(const bertc_model *m) { return m ? m->timed_runs : 0; }

void bertc_reset_op_times(bertc_model *m) {
  if (!m) return;
  pthread_mutex_lock(&m->run_lock); /* not halfway through a run's timers */
  memset(m->exec.op_seconds, 0, sizeof(double) * (size_t)m->prog->num_ops);
  m->timed_runs = 0;
  pthread_mutex_unlock(&m->run_lock);
}

const char *bertc_device(const bertc_model *m) { return m ? "cpu" : NULL; }
int64_t bertc_batch(const bertc_model *m) { return m ? m->prog->batch : 0; }
int64_t bertc_seq_len(const bertc_model *m) { return m ? m->prog->seq_len : 0; }
int bertc_threads(const bertc_model *m) { return m ? m->threads : 0; }
const char *bertc_last_error(const bertc_model *m) { return m ? m->error : "NULL model"; }

void bertc_close(bertc_model *m) {
  if (!m) return;
  /* A run already inside bertc_run finishes first; a call that starts after this is the caller's bug (bertc.h). */
  pthread_mutex_lock(&m->run_lock);
  pthread_mutex_unlock(&m->run_lock);
  pthread_mutex_destroy(&m->run_lock);
  bertc_pool_destroy(m->exec.pool);
  free(m->exec.arena);
  free(m->exec.op_seconds);
  if (m->weights_map) munmap(m->weights_map, m->weights_len);
  free(m);
}
