/* The contract between the emitted model code (emit-c) and the runtime. Internal. */
#ifndef BERTC_PROGRAM_H
#define BERTC_PROGRAM_H

#include <stdint.h>

#include "pool.h"

typedef struct {
  char *arena;          /* [arena_bytes], 64-byte aligned */
  const char *weights;  /* weights.bin, mapped */
  bertc_pool *pool;
} bertc_exec;

typedef struct {
  const char *name;
  int64_t offset;  /* bytes into the arena */
  int rank;
  int64_t shape[4];
} bertc_tensor_slot;

typedef struct {
  int format_version;
  int64_t arena_bytes;
  int64_t weights_bytes;
  const char *weights_sha256;  /* hex */
  int64_t batch, seq_len;
  int64_t vocab_size, type_vocab_size;
  int64_t scratch_floats;      /* per-thread scratch the kernels need (attention rows) */
  bertc_tuning tuning;         /* the target's threading split and kernel blocking (bertc/targets.py) */
  int64_t ids_offset, mask_offset, types_offset; /* arena slots of the int64 inputs, -1 if unused */
  int num_outputs;
  const bertc_tensor_slot *outputs;
  int num_kernels;
  const char *const *kernels; /* the kernel functions model_run calls, for reports */
  void (*run)(const bertc_exec *x);
} bertc_program;

extern const bertc_program bertc_compiled_program;

#endif
