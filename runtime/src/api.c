/* The public C API (include/bertc.h), once for every backend (backend.h): bertc_open checks the
 * arguments and the artifact and maps the weights before the backend opens; bertc_run checks and
 * copies the inputs into the backend's slots under the model's lock; the accessors read the
 * program's header. */
#define _GNU_SOURCE
#include <pthread.h>

#include "backend.h"
#include "loader.h"
#include "head.h"
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
  char *head_file; /* head.bin's bytes, which head points into; NULL: no task head */
  bertc_head head;
  int head_hidden, head_pooler; /* the outputs the head reads (-1: none) */
  float *head_out;              /* [batch, out_width] for each head output: logits (or the embedding), probabilities */
  int64_t *head_mask;           /* [batch, seq]: the positions the last run's pooling counts */
  float *head_scratch;
  char **labels;                /* the head's label names, NUL-terminated copies in label_text */
  char *label_text;
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

/* dir/head.bin, when the artifact has a task head (a classifier or a sentence-transformers folder) */
static bertc_status open_head(bertc_model *m, const char *dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/head.bin", dir);
  m->head_hidden = m->head_pooler = -1;
  if (access(path, F_OK) != 0) return BERTC_OK;
  size_t len = 0;
  bertc_status st = read_file(path, BERTC_MANIFEST_MAX_BYTES, &m->head_file, &len, m->error);
  if (st == BERTC_OK) st = head_parse((const uint8_t *)m->head_file, len, path, &m->head, m->error);
  if (st != BERTC_OK) return st;
  const bertc_program_header *p = m->prog;
  for (int i = 0; i < p->num_outputs; i++) {
    const bertc_tensor_slot *o = &p->outputs[i];
    if (!strcmp(o->name, "last_hidden_state") && o->rank == 3) m->head_hidden = i;
    if (!strcmp(o->name, "pooler_output") && o->rank == 2) m->head_pooler = i;
  }
  const int reads = m->head.source == HEAD_POOLER ? m->head_pooler : m->head_hidden;
  if (reads < 0 || p->outputs[reads].shape[p->outputs[reads].rank - 1] != m->head.width)
    return fail(m->error, BERTC_ERR_FORMAT, "%s reads %s of width %u, which the program does not output; recompile "
                "the artifact", path, m->head.source == HEAD_POOLER ? "pooler_output" : "last_hidden_state", m->head.width);
  const size_t B = (size_t)p->batch, W = m->head.out_width, rows = m->head.task == HEAD_TOKENS ? (size_t)p->seq_len : 1;
  m->head_out = calloc(2 * B * rows * W, sizeof *m->head_out);
  m->head_mask = calloc(B * (size_t)p->seq_len, sizeof *m->head_mask);
  m->head_scratch = calloc(2 * (size_t)m->head.widest, sizeof *m->head_scratch);
  size_t names = 0;
  for (uint32_t i = 0; i < m->head.n_labels; i++) names += m->head.label_len[i] + 1;
  m->labels = calloc(m->head.n_labels + 1, sizeof *m->labels);
  char *text = m->label_text = m->labels ? malloc(names + 1) : NULL;
  if (!m->head_out || !m->head_mask || !m->head_scratch || !m->labels || !text) {
    return fail(m->error, BERTC_ERR_MEMORY, "out of memory for the task head");
  }
  for (uint32_t i = 0; i < m->head.n_labels; i++) {
    memcpy(text, m->head.label[i], m->head.label_len[i]);
    text[m->head.label_len[i]] = 0;
    m->labels[i] = text;
    text += m->head.label_len[i] + 1;
  }
  return BERTC_OK;
}

/* The head on the run just done: each row pooled over the positions its mask counts. */
static void run_head(bertc_model *m, const int64_t *mask, int64_t batch, int64_t seq, int64_t run_seq) {
  const int64_t B = m->prog->batch, W = m->head.out_width;
  for (int64_t b = 0; b < B; b++)
    for (int64_t s = 0; s < run_seq; s++)
      m->head_mask[b * run_seq + s] = b < batch && s < seq ? (mask ? mask[b * seq + s] != 0 : 1) : 0;
  const float *hidden = m->head_hidden >= 0 ? m->backend->output(m->state, m->head_hidden) : NULL;
  const float *pooled = m->head_pooler >= 0 ? m->backend->output(m->state, m->head_pooler) : NULL;
  if (m->head.task == HEAD_TOKENS) { /* [B, run_seq, W] twice: each token on its own */
    const int64_t T = B * run_seq;
    for (int64_t r = 0; r < T; r++)
      head_row(&m->head, hidden + r * m->head.width, hidden + r * m->head.width, NULL, 1, m->head_scratch,
               m->head_out + r * W, m->head_out + (T + r) * W);
    return;
  }
  for (int64_t b = 0; b < B; b++)
    head_row(&m->head, hidden ? hidden + b * run_seq * m->head.width : NULL, pooled ? pooled + b * m->head.width : NULL,
             m->head_mask + b * run_seq, run_seq, m->head_scratch, m->head_out + b * W, m->head_out + (B + b) * W);
}

static int head_outputs(const bertc_model *m) { return m->head_file ? (m->head.task == HEAD_EMBED ? 1 : 2) : 0; }

const char *bertc_label(const bertc_model *m, int i) {
  return m && m->labels && i >= 0 && (uint32_t)i < m->head.n_labels ? m->labels[i] : NULL;
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
  if (st == BERTC_OK) st = open_head(m, dir);
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
  if (st == BERTC_OK && m->head_file) run_head(m, mask, batch, seq, run_seq);
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

int64_t bertc_text_max_tokens(const bertc_model *m) {
  if (!m || !m->tokenizer_file) return 0;
  return m->prog->seq_len < m->tokenizer.max_length ? m->prog->seq_len : m->tokenizer.max_length;
}

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
    else st = tok_encode(&m->tokenizer, texts[b], (int64_t)strlen(texts[b]), buf + b * S, buf + (B + b) * S,
                         bertc_text_max_tokens(m), &count[b], err);
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

int bertc_num_outputs(const bertc_model *m) { return m ? m->prog->num_outputs + head_outputs(m) : 0; }

const char *bertc_output_name(const bertc_model *m, int i) {
  if (!m || i < 0 || i >= bertc_num_outputs(m)) return NULL;
  if (i < m->prog->num_outputs) return m->prog->outputs[i].name;
  return m->head.task == HEAD_EMBED ? "sentence_embedding" : i == m->prog->num_outputs ? "logits" : "probabilities";
}

const float *bertc_output(const bertc_model *m, int i, int64_t shape[4], int *rank) {
  if (!m || i < 0 || i >= bertc_num_outputs(m)) return NULL;
  if (i >= m->prog->num_outputs) { /* the head's: [batch, width], or [batch, seq, width] per token */
    const int tokens = m->head.task == HEAD_TOKENS;
    const int64_t B = m->prog->batch, W = m->head.out_width, S = tokens ? m->last_seq : 1;
    if (rank) *rank = tokens ? 3 : 2;
    if (shape) {
      shape[0] = B;
      shape[1] = tokens ? S : W;
      shape[2] = tokens ? W : 0;
      shape[3] = 0;
    }
    return m->head_out + (i - m->prog->num_outputs) * B * S * W;
  }
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

double bertc_handoff_us(bertc_model *m, int calls) {
  if (!m || calls < 1 || calls > 1000000 || !m->backend->handoff_us) return -1.0;
  pthread_mutex_lock(&m->run_lock); /* the pool is the runs' */
  const double us = m->backend->handoff_us(m->state, calls);
  pthread_mutex_unlock(&m->run_lock);
  return us;
}
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
  free(m->head_file);
  free(m->head_out);
  free(m->head_mask);
  free(m->head_scratch);
  free(m->labels);
  free(m->label_text);
  free(m);
}
