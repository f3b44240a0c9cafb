/* The contract between the emitted model code (emit-c) and the runtime. Internal. */
#ifndef BERTC_PROGRAM_H
#define BERTC_PROGRAM_H

#include <stdint.h>
#include <time.h>

#include "pool.h"

typedef struct {
  char *arena;          /* [arena_bytes], 64-byte aligned */
  const char *weights;  /* weights.bin, mapped */
  bertc_pool *pool;
  double *op_seconds;   /* [num_ops], the model's own: time spent in each op, summed over runs */
  int64_t seq;          /* this run's sequence length: the sizes of a dynamic program are expressions in it */
} bertc_exec;

/* model_run wraps every kernel call in BERTC_TIMED. CLOCK_MONOTONIC is a vDSO read (tens of ns),
 * against microseconds for the smallest op; the caller's clock covers the whole op, all threads
 * included, because every parallel call ends in the pool's barrier. */
static inline double bertc_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}
#define BERTC_TIMED(i, ...)                      \
  do {                                           \
    double bertc_t0_ = bertc_now();              \
    __VA_ARGS__;                                 \
    x->op_seconds[i] += bertc_now() - bertc_t0_; \
  } while (0)

typedef struct {
  const char *name;    /* the op and its result shape: "bertc.linear [1, 128, 1536]" */
  const char *kernel;  /* the kernel function it calls: "bertc_linear_packed" */
} bertc_op_info;

typedef struct {
  const char *name;
  int64_t offset;  /* bytes into the arena */
  int rank;
  int64_t shape[4]; /* of a dynamic program, at its bound (header.seq_len) in dimension seq_dim */
  /* The dimension that is the run's length in a dynamic program ([batch, L, hidden]: 1), which
   * bertc_output reports at the last run's length; 0: none (dimension 0 is the batch, never the length). */
  int seq_dim;
} bertc_tensor_slot;
/* A static program's slot initialisers ({"name", offset, rank, {dims}}) leave seq_dim out, so 0, and its
 * emitted source stays what it was before dynamic lengths; -Wextra would call that a missing initialiser. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

/* What every program says about itself, whichever backend runs it: what bertc_open checks the artifact
 * against, the input shapes and slots bertc_run checks and fills, and the outputs and ops the accessors
 * of bertc.h name. Both program structs (bertc_program below, bertc_vk_program in
 * ../vulkan/vk_program.h) start with it, and api.c reads only this (backend.h). */
typedef struct {
  int format_version;
  int64_t arena_bytes;
  int64_t weights_bytes;
  const char *weights_sha256;  /* hex */
  int64_t batch, seq_len;
  /* 1: any length 1..seq_len runs at its own cost (compiled with --max-seq-len seq_len): the inputs are
   * [batch, seq] unpadded and run(state, seq) sizes every op for seq; 0: seq_len is the one length run,
   * shorter inputs are padded to it. */
  int dynamic;
  int64_t vocab_size, type_vocab_size;
  int64_t ids_offset, mask_offset, types_offset; /* arena slots of the int64 inputs, -1 if unused */
  int num_outputs;
  const bertc_tensor_slot *outputs;
  int num_ops;
  const bertc_op_info *ops;    /* [num_ops], in run order: op i is timed into op_seconds[i] */
} bertc_program_header;

typedef struct {
  bertc_program_header header;
  int64_t scratch_floats;      /* per-thread scratch the kernels need (attention rows) */
  bertc_tuning tuning;         /* the target's threading split and kernel blocking (bertc/targets.py) */
  int num_kernels;
  const char *const *kernels; /* the kernel functions model_run calls, for reports */
  void (*run)(const bertc_exec *x);
} bertc_program;

extern const bertc_program bertc_compiled_program;

#endif
