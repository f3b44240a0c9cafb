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

enum { BERTC_VK_NEEDS_F16 = 1 }; /* storageBuffer16BitAccess and shaderFloat16 (--dtype fp16) */
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

typedef struct {
  bertc_program_header header;
  int64_t weights_offset;      /* bytes into the device buffer: header.arena_bytes rounded up to 64 */
  int num_shaders;
  const bertc_vk_shader *shaders;
  int num_pipelines;
  const bertc_vk_pipeline *pipelines;
  const bertc_vk_dispatch *dispatches;  /* [header.num_ops]: op i is dispatch i, timed by timestamps i and i + 1 */
  uint32_t needs;                       /* BERTC_VK_NEEDS_* */
  uint32_t shared_bytes;                /* the most shared memory one workgroup uses */
  uint32_t max_invocations;             /* the largest workgroup */
} bertc_vk_program;

extern const bertc_vk_program bertc_vk_compiled_program;

#endif
