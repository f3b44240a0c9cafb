/* The contract between the emitted dispatch list (--emit-vulkan, src/model_vulkan.c in an artifact)
 * and the Vulkan executor (vulkan.c). Internal.
 *
 * One device buffer holds the arena at [0, arena_bytes) and weights.bin from weights_offset on;
 * every shader binds it at set 0, binding 0 and finds its operands by word offsets in its push
 * constants (shaders/common.glsl). A pipeline is a shader with its specialization constants (ids
 * 0.. in order: workgroup x, workgroup y, then the shader's tile sizes); an op is one dispatch. */
#ifndef BERTC_VK_PROGRAM_H
#define BERTC_VK_PROGRAM_H

#include <stdint.h>

#include "../src/program.h"

enum {
  BERTC_VK_NEEDS_F16 = 1, /* storageBuffer16BitAccess and shaderFloat16 (--dtype fp16) */
  BERTC_VK_NEEDS_I8 = 2   /* storageBuffer8BitAccess (--dtype int8: gemm_i8 loads int8 weights, widening them) */
};
#define BERTC_VK_MAX_SPEC 8
#define BERTC_VK_MAX_PUSH 32 /* 128 bytes: the smallest maxPushConstantsSize Vulkan allows */

typedef struct {
  const char *name;    /* shaders/NAME.spv in the artifact */
  const char *sha256;  /* of that file: the runtime refuses any other */
} bertc_vk_shader;

typedef struct {
  int32_t shader;      /* index into shaders[] */
  int32_t num_spec;
  uint32_t spec[BERTC_VK_MAX_SPEC];
} bertc_vk_pipeline;

typedef struct {
  int32_t pipeline;    /* index into pipelines[] */
  uint32_t groups[3];  /* workgroup counts */
  int32_t num_push;
  uint32_t push[BERTC_VK_MAX_PUSH];
} bertc_vk_dispatch;

/* A push constant or workgroup count of a dynamic-length program (header.dynamic) that follows the run's
 * length L: before a run of L tokens the executor sets dispatches[dispatch].push[index] (BERTC_VK_PUSH) or
 * .groups[index] (BERTC_VK_GROUPS) to value(L) = coef[0] + coef[1]*L + coef[2]*L*L, a workgroup count
 * to ceil(value(L) / per) clamped to 1..65535 (GEMM rows in tiles of 64: {0, 1, 0} and per 64). The
 * dispatch table itself holds every value at the bound (header.seq_len). */
enum { BERTC_VK_PUSH = 0, BERTC_VK_GROUPS = 1 };
typedef struct {
  int32_t dispatch;    /* index into dispatches[] */
  int32_t what;        /* BERTC_VK_PUSH | BERTC_VK_GROUPS */
  int32_t index;       /* push constant 0..num_push-1, or workgroups x, y, z (0..2) */
  int64_t coef[3];
  int64_t per;         /* 1 for a push constant */
} bertc_vk_seq_size;

typedef struct {
  bertc_program_header header;
  int64_t weights_offset;      /* bytes into the device buffer: header.arena_bytes rounded up to 64 */
  int num_shaders;
  const bertc_vk_shader *shaders;
  int num_pipelines;
  const bertc_vk_pipeline *pipelines;
  const bertc_vk_dispatch *dispatches;  /* [header.num_ops]: op i is dispatch i, timed by timestamps i and i + 1 */
  int num_seq_sizes;                    /* 0 in a static program */
  const bertc_vk_seq_size *seq_sizes;   /* [num_seq_sizes], in dispatch order */
  uint32_t needs;                       /* BERTC_VK_NEEDS_* */
  uint32_t shared_bytes;                /* the most shared memory one workgroup uses */
  uint32_t max_invocations;             /* the largest workgroup */
} bertc_vk_program;

extern const bertc_vk_program bertc_vk_compiled_program;

#endif
