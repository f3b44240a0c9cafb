/* The public C API (include/bertc.h), once for every backend (backend.h): bertc_open checks the
 * arguments and the artifact and maps the weights before the backend opens; bertc_run checks and
 * copies the inputs into the backend's slots under the model's lock; the accessors read the
 * program's header. */
#define _GNU_SOURCE
#include <pthread.h>

#include "backend.h"
#include "loader.h"
#include "tokenizer.h"

struct bertc_model {
  const bertc_backend *backend;
  bertc_backend_state *state;
  const bertc_program_header *prog;
  void *weights_map;  /* weights.bin's mapping while the backend reads it (keeps_weights), else NULL */
  size_t weights_len;
  double *op_seconds; /* [prog->num_ops]: each op's time, summed over timed_runs runs */
  int64_t timed_runs; /* since open or bertc_reset_op_times */
  int threads;
  int64_t last_seq; /* the length of the last run: a dynamic program's outputs have it (bertc_output) */
  char *tokenizer_file; /* tokenizer.bin's bytes, which tokenizer points into; NULL: the artifact has none */
  bertc_tokenizer tokenizer;
  char error[BERTC_ERROR_BYTES];
  pthread_mutex_t run_lock; /* one run at a time: the runs share the backend's arena or buffers (bertc.h) */
};

static _Thread_local char open_error[BERTC_ERROR_BYTES];
static _Thread_local char text_error[BERTC_ERROR_BYTES];

const char *bertc_open_error(void) { return open_error; }
const char *bertc_text_error(void) { return text_error; }

/* dir/tokenizer.bin, when the artifact has one (a model compiled with a tokenizer bertc reads) */
static bertc_status open_tokenizer(bertc_model *m, const char *dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/tokenizer.bin", dir);
  if (access(path, F_OK) != 0) return BERTC_OK;
  size_t len = 0;
  bertc_status st = read_file(path, TOK_MAX_BYTES, &m->tokenizer_file, &len, m->error);
  if (st == BERTC_OK) st = tok_parse((const uint8_t *)m->tokenizer_file, len, path, &m->tokenizer, m->error);
  return st;
}

bertc_status bertc_open(const char *dir, int threads, bertc_model **out) {
  if (!out || !dir) return fail(open_error, BERTC_ERR_ARGUMENT, "bertc_open: NULL argument");
  *out = NULL;
  if (threads < 1 || threads > 256)
    return fail(open_error, BERTC_ERR_ARGUMENT, "threads must be between 1 and 256 (got %d)", threads);
  const bertc_backend *backend = bertc_backend_of_program();
  const bertc_program_header *prog = backend->program;
  void *map = NULL;
  size_t len = 0;
  bertc_status st = open_weights(dir, prog->format_version, prog->weights_sha256, prog->weights_bytes, &map, &len,
                                 open_error);
  if (st != BERTC_OK) return st;
  bertc_model *m = calloc(1, sizeof *m);
  if (!m) {
    if (map) munmap(map, len);
    return fail(open_error, BERTC_ERR_MEMORY, "out of memory");
  }
  m->backend = backend;
  m->prog = prog;
  m->weights_map = map;
  m->weights_len = len;
  m->threads = threads;
  m->last_seq = prog->seq_len;
  pthread_mutex_init(&m->run_lock, NULL);
  m->op_seconds = calloc((size_t)prog->num_ops + 1, sizeof *m->op_seconds); /* + 1: calloc(0) may be NULL */
  const bertc_backend_args args = {dir, threads, map, m->op_seconds, m->error};
  st = m->op_seconds ? backend->open(&args, &m->state) : fail(m->error, BERTC_ERR_MEMORY, "out of memory");
  if (st == BERTC_OK) st = open_tokenizer(m, dir);
  if (!backend->keeps_weights && map) { /* the backend made its own copy */
    munmap(map, len);
    m->weights_map = NULL;
  }
  if (st != BERTC_OK) {
    memcpy(open_error, m->error, sizeof open_error);
    bertc_close(m);
    return st;
  }
  *out = m;
  return BERTC_OK;
}

bertc_status bertc_run(bertc_model *m, const int64_t *ids, const int64_t *mask, const int64_t *types, int64_t batch,
                       int64_t seq) {
  if (!m) return BERTC_ERR_ARGUMENT;
  const bertc_program_header *p = m->prog;
  pthread_mutex_lock(&m->run_lock);
  int64_t slots[3];
  char *base = m->backend->inputs(m->state, slots);
  bertc_status st = check_inputs(m->error, base, p->batch, p->seq_len, p->dynamic, p->vocab_size,
                                 p->type_vocab_size, slots[0], slots[1], slots[2], ids, mask, types, batch, seq);
  /* a dynamic program runs at the input's length; a static one at its own, shorter inputs padded to it */
  const int64_t run_seq = p->dynamic ? seq : p->seq_len;
  if (st == BERTC_OK) st = m->backend->run(m->state, run_seq);
  if (st == BERTC_OK) {
    m->last_seq = run_seq;
    m->timed_runs++;
    m->error[0] = 0;
  }
  pthread_mutex_unlock(&m->run_lock);
  return st;
}

static bertc_status no_tokenizer(char *err) {
  return fail(err, BERTC_ERR_ARGUMENT, "this artifact has no tokenizer.bin: its model folder had no tokenizer, or one of a "
              "kind bertc does not compile yet (its report.json says which); pass token ids to bertc_run instead");
}

int bertc_has_tokenizer(const bertc_model *m) { return m && m->tokenizer_file; }

bertc_status bertc_tokenize(const bertc_model *m, const char *utf8, int64_t len, int64_t max_tokens, int64_t *ids,
                            int64_t *types, int64_t *count) {
  if (!m || !utf8 || !ids || !types || !count) return fail(text_error, BERTC_ERR_ARGUMENT, "bertc_tokenize: NULL argument");
  if (!m->tokenizer_file) return no_tokenizer(text_error);
  if (len < 0) len = (int64_t)strlen(utf8);
  return tok_encode(&m->tokenizer, utf8, len, ids, types, max_tokens, count, text_error);
}

bertc_status bertc_run_text(bertc_model *m, const char *const *texts, int64_t n) {
  if (!m) return BERTC_ERR_ARGUMENT;
  const int64_t B = m->prog->batch, S = m->prog->seq_len;
  char err[BERTC_ERROR_BYTES] = "";
  bertc_status st = BERTC_OK;
  if (!texts) st = fail(err, BERTC_ERR_ARGUMENT, "bertc_run_text: NULL texts");
  else if (!m->tokenizer_file) st = no_tokenizer(err);
  else if (n != B)
    st = fail(err, BERTC_ERR_INPUT, "%lld texts given, but the artifact was compiled for a batch of %lld: give %lld, or "
              "recompile with --batch %lld", (long long)n, (long long)B, (long long)B, (long long)n);
  int64_t *buf = st == BERTC_OK ? malloc(sizeof *buf * (size_t)(5 * B * S + B)) : NULL;
  if (st == BERTC_OK && !buf) st = fail(err, BERTC_ERR_MEMORY, "out of memory for %lld token ids", (long long)(B * S));
  int64_t seq = 1, *count = buf + 5 * B * S;
  for (int64_t b = 0; st == BERTC_OK && b < B; b++) {
    if (!texts[b]) st = fail(err, BERTC_ERR_ARGUMENT, "bertc_run_text: text %lld is NULL", (long long)b);
    else st = tok_encode(&m->tokenizer, texts[b], (int64_t)strlen(texts[b]), buf + b * S, buf + (B + b) * S, S,
                         &count[b], err);
    if (st == BERTC_OK && count[b] > seq) seq = count[b];
    else if (st != BERTC_OK && B > 1) {
      char why[BERTC_ERROR_BYTES];
      memcpy(why, err, sizeof why);
      snprintf(err, sizeof err, "text %lld: %.480s", (long long)b, why);
    }
  }
  if (st != BERTC_OK) {
    free(buf);
    pthread_mutex_lock(&m->run_lock);
    memcpy(m->error, err, sizeof m->error);
    pthread_mutex_unlock(&m->run_lock);
    return st;
  }
  /* [B, seq]: each row's tokens, then padding that the mask hides */
  int64_t *ids = buf + 2 * B * S, *types = ids + B * seq, *mask = types + B * seq;
  for (int64_t b = 0; b < B; b++)
    for (int64_t s = 0; s < seq; s++) {
      const int in = s < count[b];
      ids[b * seq + s] = in ? buf[b * S + s] : m->tokenizer.pad;
      types[b * seq + s] = in ? buf[(B + b) * S + s] : 0;
      mask[b * seq + s] = in;
    }
  st = bertc_run(m, ids, mask, types, B, seq);
  free(buf);
  return st;
}

int bertc_num_outputs(const bertc_model *m) { return m ? m->prog->num_outputs : 0; }

const char *bertc_output_name(const bertc_model *m, int i) {
  return m && i >= 0 && i < m->prog->num_outputs ? m->prog->outputs[i].name : NULL;
}

const float *bertc_output(const bertc_model *m, int i, int64_t shape[4], int *rank) {
  if (!m || i < 0 || i >= m->prog->num_outputs) return NULL;
  const bertc_tensor_slot *s = &m->prog->outputs[i];
  if (rank) *rank = s->rank;
  if (shape) {
    memcpy(shape, s->shape, sizeof s->shape);
    if (m->prog->dynamic && s->seq_dim > 0) shape[s->seq_dim] = m->last_seq;
  }
  return m->backend->output(m->state, i);
}

const char *bertc_kernel(const bertc_model *m, int i, const char **impl) {
  return m && i >= 0 ? m->backend->kernel(i, impl) : NULL;
}

int bertc_num_ops(const bertc_model *m) { return m ? m->prog->num_ops : 0; }

const char *bertc_op_name(const bertc_model *m, int i) {
  return m && i >= 0 && i < m->prog->num_ops ? m->prog->ops[i].name : NULL;
}

const char *bertc_op_kernel(const bertc_model *m, int i) {
  return m && i >= 0 && i < m->prog->num_ops ? m->prog->ops[i].kernel : NULL;
}

double bertc_op_seconds(const bertc_model *m, int i) {
  return m && i >= 0 && i < m->prog->num_ops ? m->op_seconds[i] : -1.0;
}

int64_t bertc_timed_runs(const bertc_model *m) { return m ? m->timed_runs : 0; }

void bertc_reset_op_times(bertc_model *m) {
  if (!m) return;
  pthread_mutex_lock(&m->run_lock); /* not halfway through a run's timers */
  memset(m->op_seconds, 0, sizeof(double) * (size_t)m->prog->num_ops);
  m->timed_runs = 0;
  pthread_mutex_unlock(&m->run_lock);
}

const char *bertc_device(const bertc_model *m) { return m ? m->backend->device(m->state) : NULL; }
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
  if (m->state) m->backend->close(m->state);
  free(m->op_seconds);
  if (m->weights_map) munmap(m->weights_map, m->weights_len);
  free(m->tokenizer_file);
  free(m);
}
