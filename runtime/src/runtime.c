/* The CPU backend (backend.h): one arena allocated at open, the thread pool, and the emitted program's
 * model_run over the weights mapped in place. */
#include <stdlib.h>

#include "../kernels/kernels.h"
#include "backend.h"

struct bertc_backend_state {
  bertc_exec exec; /* what model_run reads: the arena, the weights, the pool, the op timers */
};

static const bertc_program *const prog = &bertc_compiled_program;

static void cpu_close(bertc_backend_state *s) {
  bertc_pool_destroy(s->exec.pool);
  free(s->exec.arena);
  free(s);
}

static bertc_status cpu_open(const bertc_backend_args *a, bertc_backend_state **out) {
  bertc_backend_state *s = calloc(1, sizeof *s);
  if (s) {
    s->exec.weights = a->weights;
    s->exec.op_seconds = a->op_seconds;
    s->exec.arena = aligned_alloc(64, (size_t)((prog->header.arena_bytes + 63) / 64 * 64 + 64));
    s->exec.pool = bertc_pool_create(a->threads, prog->scratch_floats, &prog->tuning);
  }
  if (!s || !s->exec.arena || !s->exec.pool) {
    if (s) cpu_close(s);
    return fail(a->error, BERTC_ERR_MEMORY, "cannot allocate the %lld-byte arena", (long long)prog->header.arena_bytes);
  }
  *out = s;
  return BERTC_OK;
}

static char *cpu_inputs(bertc_backend_state *s, int64_t offsets[3]) {
  offsets[0] = prog->header.ids_offset;
  offsets[1] = prog->header.mask_offset;
  offsets[2] = prog->header.types_offset;
  return s->exec.arena;
}

static bertc_status cpu_run(bertc_backend_state *s, int64_t seq) {
  s->exec.seq = seq;
  bertc_pool_begin(s->exec.pool); /* workers spin between this run's ops, and sleep after it */
  prog->run(&s->exec);
  bertc_pool_end(s->exec.pool);
  return BERTC_OK;
}

static const float *cpu_output(const bertc_backend_state *s, int i) {
  return (const float *)(s->exec.arena + prog->header.outputs[i].offset);
}

static const char *cpu_kernel(int i, const char **impl) {
  if (i >= prog->num_kernels) return NULL;
  if (impl) *impl = bertc_kernel_impl(prog->kernels[i]);
  return prog->kernels[i];
}

static const char *cpu_device(const bertc_backend_state *s) { return "cpu"; }

static double cpu_handoff_us(bertc_backend_state *s, int calls) { return bertc_pool_handoff_us(s->exec.pool, calls); }

static const bertc_backend cpu = {.program = &bertc_compiled_program.header, .keeps_weights = 1, .open = cpu_open,
                                  .inputs = cpu_inputs, .run = cpu_run, .output = cpu_output,
                                  .kernel = cpu_kernel, .device = cpu_device, .handoff_us = cpu_handoff_us,
                                  .close = cpu_close};

const bertc_backend *bertc_backend_of_program(void) { return &cpu; }
