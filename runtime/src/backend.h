/* The seam between the public C API and the executor that runs a program, as ggml's backend
 * interface: api.c implements include/bertc.h once (argument checks, the per-model run lock, the
 * weights' mapping, the input checks, error strings, the op timers, the accessors), and a backend
 * does only what differs: the CPU one (runtime.c: the arena, the thread pool, the emitted model_run)
 * or the Vulkan one (../vulkan/vulkan.c: the device, its buffers, pipelines and command buffer).
 *
 * An artifact's library links exactly one backend with its program (bertc/toolchain.py, the
 * Makefile's RT_SRC), and that backend defines bertc_backend_of_program. api.c runs inputs and run
 * under the model's lock, one run at a time (bertc.h, "Threads"), so a backend never locks. Internal. */
#ifndef BERTC_BACKEND_H
#define BERTC_BACKEND_H

#include <stdint.h>

#include "../include/bertc.h"
#include "program.h"
#include "status.h"

typedef struct bertc_backend_state bertc_backend_state; /* each backend's own, behind the model */

typedef struct {
  const char *dir;     /* the artifact folder (the Vulkan backend reads its shaders/ there) */
  int threads;         /* 1..256, checked */
  const void *weights; /* weights.bin, mapped and checked; NULL when the program has none */
  double *op_seconds;  /* [num_ops], the model's: run adds each op's time into op_seconds[i] */
  char *error;         /* [BERTC_ERROR_BYTES], the model's until close: open and run write their failures here */
} bertc_backend_args;

typedef struct bertc_backend {
  const bertc_program_header *program; /* the compiled program's header, which its struct starts with */
  /* 1: run reads the weights in place, so the mapping stays until close (CPU); 0: open copies them
   * (to the device), and api.c unmaps them as soon as open returns. */
  int keeps_weights;
  /* On failure, frees whatever it made and leaves *out untouched. */
  bertc_status (*open)(const bertc_backend_args *args, bertc_backend_state **out);
  /* Where run reads its int64 inputs: base + offsets[i] for ids, mask, types; -1: the program has none. */
  char *(*inputs)(bertc_backend_state *s, int64_t offsets[3]);
  /* One run on the inputs just written, at the run's sequence length seq (1..header.seq_len; the
   * compiled length itself unless the program is dynamic); adds into op_seconds. */
  bertc_status (*run)(bertc_backend_state *s, int64_t seq);
  /* Output i's data (0 <= i < num_outputs), valid until the next run. */
  const float *(*output)(const bertc_backend_state *s, int i);
  /* The i-th kernel (or shader) the program calls and its implementation, NULL past the last (i >= 0). */
  const char *(*kernel)(int i, const char **impl);
  const char *(*device)(const bertc_backend_state *s); /* bertc_device's text */
  /* bertc_handoff_us for threads > 1 (NULL: the backend splits no op across CPU threads) */
  double (*handoff_us)(bertc_backend_state *s, int calls);
  void (*close)(bertc_backend_state *s);
} bertc_backend;

/* The backend linked into this library, with its compiled program. */
const bertc_backend *bertc_backend_of_program(void);

#endif
