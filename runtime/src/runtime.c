/* Loader and executor: checks the artifact, maps the weights, owns the arena and the pool. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../include/bertc.h"
#include "../kernels/kernels.h"
#include "program.h"
#include "sha256.h"

struct bertc_model {
  const bertc_program *prog;
  bertc_exec exec;
  void *weights_map;   /* mmap of weights.bin */
  size_t weights_len;
  int threads;
  int64_t timed_runs;  /* runs summed into exec.op_seconds since open or bertc_reset_op_times */
  char error[512];
};

static _Thread_local char open_error[512];

const char *bertc_open_error(void) { return open_error; }

static bertc_status fail(char *buf, bertc_status code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, 512, fmt, ap);
  va_end(ap);
  return code;
}

static char *read_text(const char *path, size_t limit) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *buf = malloc(limit + 1);
  size_t n = buf ? fread(buf, 1, limit, f) : 0;
  fclose(f);
  if (buf) buf[n] = 0;
  return buf;
}

/* The manifest is JSON written by bertc; the loader needs two facts from it and finds them
 * by key rather than pulling in a JSON parser. */
static int manifest_field(const char *json, const char *scope, const char *key, char *out, size_t cap) {
  const char *s = scope ? strstr(json, scope) : json;
  if (!s) return 0;
  const char *k = strstr(s, key);
  if (!k) return 0;
  k = strchr(k + strlen(key), ':');
  if (!k) return 0;
  k++;
  while (*k == ' ' || *k == '"') k++;
  size_t n = 0;
  while (k[n] && k[n] != '"' && k[n] != ',' && k[n] != '}' && k[n] != '\n' && n + 1 < cap) n++;
  memcpy(out, k, n);
  out[n] = 0;
  return 1;
}

bertc_status bertc_open(const char *dir, int threads, bertc_model **out) {
  const bertc_program *prog = &bertc_compiled_program;
  char path[4096], value[128];
  if (!out || !dir) return fail(open_error, BERTC_ERR_ARGUMENT, "bertc_open: NULL argument");
  *out = NULL;
  if (threads < 1 || threads > 256)
    return fail(open_error, BERTC_ERR_ARGUMENT, "threads must be between 1 and 256 (got %d)", threads);

  snprintf(path, sizeof path, "%s/manifest.json", dir);
  char *manifest = read_text(path, 1 << 20);
  if (!manifest) return fail(open_error, BERTC_ERR_IO, "cannot read %s: %s", path, strerror(errno));
  int version_ok = manifest_field(manifest, NULL, "\"format_version\"", value, sizeof value) &&
                   atoi(value) == prog->format_version;
  int sha_ok = manifest_field(manifest, "\"weights.bin\"", "\"sha256\"", value, sizeof value) &&
               strcmp(value, prog->weights_sha256) == 0;
  free(manifest);
  if (!version_ok)
    return fail(open_error, BERTC_ERR_FORMAT, "%s: format_version is not %d (corrupt, or made by another bertc)",
                path, prog->format_version);
  if (!sha_ok)
    return fail(open_error, BERTC_ERR_FORMAT,
                "%s names other weights than this library was compiled with; recompile the artifact", path);

  snprintf(path, sizeof path, "%s/weights.bin", dir);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return fail(open_error, BERTC_ERR_IO, "cannot open %s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size != prog->weights_bytes) {
    close(fd);
    return fail(open_error, BERTC_ERR_FORMAT, "%s is %lld bytes, expected %lld (truncated or replaced?)", path,
                (long long)st.st_size, (long long)prog->weights_bytes);
  }
  void *map = NULL;
  if (st.st_size > 0) {
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      close(fd);
      return fail(open_error, BERTC_ERR_IO, "cannot map %s: %s", path, strerror(errno));
    }
  }
  close(fd);
  char digest[65];
  bertc_sha256_hex(map, (uint64_t)st.st_size, digest);
  if (strcmp(digest, prog->weights_sha256) != 0) {
    if (map) munmap(map, (size_t)st.st_size);
    return fail(open_error, BERTC_ERR_CHECKSUM, "%s: sha256 %s does not match the compiled %s (altered weights)",
                path, digest, prog->weights_sha256);
  }

  bertc_model *m = calloc(1, sizeof *m);
  if (!m) return fail(open_error, BERTC_ERR_MEMORY, "out of memory");
  m->prog = prog;
  m->weights_map = map;
  m->weights_len = (size_t)st.st_size;
  m->threads = threads;
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

static bertc_status check_and_copy(bertc_model *m, const int64_t *src, int64_t offset, int64_t batch, int64_t seq,
                                   int64_t limit, int64_t fill, const char *what, const char *hint) {
  const bertc_program *p = m->prog;
  int64_t *dst = (int64_t *)(m->exec.arena + offset);
  for (int64_t b = 0; b < p->batch; b++)
    for (int64_t s = 0; s < p->seq_len; s++) {
      int64_t v = (b < batch && s < seq && src) ? src[b * seq + s] : (s < seq && b < batch ? fill : 0);
      if (v < 0 || v >= limit)
        return fail(m->error, BERTC_ERR_INPUT, "%s %lld at [%lld, %lld] is outside [0, %lld)%s", what, (long long)v,
                    (long long)b, (long long)s, (long long)limit, hint);
      dst[b * p->seq_len + s] = v;
    }
  return BERTC_OK;
}

bertc_status bertc_run(bertc_model *m, const int64_t *ids, const int64_t *mask, const int64_t *types, int64_t batch,
                       int64_t seq) {
  if (!m) return BERTC_ERR_ARGUMENT;
  const bertc_program *p = m->prog;
  if (!ids) return fail(m->error, BERTC_ERR_ARGUMENT, "input_ids is NULL");
  if (batch != p->batch)
    return fail(m->error, BERTC_ERR_INPUT, "batch %lld differs from the compiled batch %lld; recompile with --batch",
                (long long)batch, (long long)p->batch);
  if (seq < 1 || seq > p->seq_len)
    return fail(m->error, BERTC_ERR_INPUT,
                "sequence length %lld is outside 1..%lld (the compiled --seq-len); truncate or recompile",
                (long long)seq, (long long)p->seq_len);
  bertc_status st = check_and_copy(m, ids, p->ids_offset, batch, seq, p->vocab_size, 0, "token id",
                                   "; was the artifact compiled from a different tokenizer?");
  if (st == BERTC_OK && p->mask_offset >= 0)
    st = check_and_copy(m, mask, p->mask_offset, batch, seq, 2, 1, "attention mask value", " (expected 0 or 1)");
  if (st == BERTC_OK && p->types_offset >= 0)
    st = check_and_copy(m, types, p->types_offset, batch, seq, p->type_vocab_size > 0 ? p->type_vocab_size : 1, 0,
                        "token type id", "");
  if (st != BERTC_OK) return st;
  bertc_pool_begin(m->exec.pool); /* workers spin between this run's ops, and sleep after it */
  p->run(&m->exec);
  bertc_pool_end(m->exec.pool);
  m->timed_runs++;
  m->error[0] = 0;
  return BERTC_OK;
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
  memset(m->exec.op_seconds, 0, sizeof(double) * (size_t)m->prog->num_ops);
  m->timed_runs = 0;
}

int64_t bertc_batch(const bertc_model *m) { return m ? m->prog->batch : 0; }
int64_t bertc_seq_len(const bertc_model *m) { return m ? m->prog->seq_len : 0; }
int bertc_threads(const bertc_model *m) { return m ? m->threads : 0; }
const char *bertc_last_error(const bertc_model *m) { return m ? m->error : "NULL model"; }

void bertc_close(bertc_model *m) {
  if (!m) return;
  bertc_pool_destroy(m->exec.pool);
  free(m->exec.arena);
  free(m->exec.op_seconds);
  if (m->weights_map) munmap(m->weights_map, m->weights_len);
  free(m);
}
