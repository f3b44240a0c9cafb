/* The Vulkan backend (../src/backend.h), for artifacts of --target vulkan / android-vulkan: the model of
 * include/bertc.h (implemented once in ../src/api.c) on a GPU. libvulkan is loaded with dlopen (no
 * link-time dependency); a missing library, no device, or a device without a feature the program
 * needs is BERTC_ERR_DEVICE with a message that says what is missing and how to get it.
 *
 * At open: pick a device (BERTC_VULKAN_DEVICE=i picks the i-th, else discrete > integrated >
 * virtual > CPU), check its features and limits, upload the weights once into the one device
 * buffer (the arena first, then the weights), load and check the shaders/ SPIR-V, build one
 * pipeline per (shader, specialization constants) and record one command buffer: copy the inputs
 * in, every dispatch with a barrier after it and a timestamp, copy the outputs out. A run (api.c
 * has put the inputs in their io slots) submits that command buffer, waits, and adds each dispatch's
 * GPU time into the per-op timers (bertc_op_seconds).
 *
 * A dynamic-length program (header.dynamic) runs each length L at L's cost: its seq_sizes table gives
 * the push constants and workgroup counts that follow L, and a run of another length than the last
 * one re-records the command buffer for L (inputs [batch, L], the dispatches sized for L, outputs with
 * L rows). One command buffer, re-recorded, rather than one per length seen: recording ~100 dispatches
 * costs microseconds of CPU against the run's milliseconds, and a cache of up to N buffers would hold
 * driver memory for lengths that may never come back.
 *
 * BERTC_VULKAN_LIBRARY=PATH loads another Vulkan loader; BERTC_VULKAN_DISABLE=shaderFloat16,storageBuffer8BitAccess,...
 * makes the executor treat the device as lacking those features (to test what users of such a
 * device see). */
#define _GNU_SOURCE
#define VK_NO_PROTOTYPES
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <vulkan/vulkan.h>

#include "../src/backend.h"
#include "../src/sha256.h"
#include "vk_program.h"

#define VK_FUNCS(X)                                                                                           \
  X(vkDestroyInstance) X(vkEnumeratePhysicalDevices) X(vkGetPhysicalDeviceProperties)                           \
  X(vkGetPhysicalDeviceFeatures2) X(vkGetPhysicalDeviceQueueFamilyProperties)                                   \
  X(vkGetPhysicalDeviceMemoryProperties) X(vkCreateDevice) X(vkGetDeviceProcAddr)                               \
  X(vkEnumerateDeviceExtensionProperties)
#define VK_DEVICE_FUNCS(X)                                                                                    \
  X(vkDestroyDevice) X(vkGetDeviceQueue) X(vkCreateBuffer) X(vkDestroyBuffer) X(vkGetBufferMemoryRequirements)   \
  X(vkAllocateMemory) X(vkFreeMemory) X(vkBindBufferMemory) X(vkMapMemory) X(vkUnmapMemory)                     \
  X(vkCreateShaderModule) X(vkDestroyShaderModule) X(vkCreateDescriptorSetLayout)                               \
  X(vkDestroyDescriptorSetLayout) X(vkCreatePipelineLayout) X(vkDestroyPipelineLayout)                          \
  X(vkCreateComputePipelines) X(vkDestroyPipeline) X(vkCreateDescriptorPool) X(vkDestroyDescriptorPool)         \
  X(vkAllocateDescriptorSets) X(vkUpdateDescriptorSets) X(vkCreateCommandPool) X(vkDestroyCommandPool)          \
  X(vkAllocateCommandBuffers) X(vkBeginCommandBuffer) X(vkEndCommandBuffer) X(vkCmdBindPipeline)                \
  X(vkCmdBindDescriptorSets) X(vkCmdPushConstants) X(vkCmdDispatch) X(vkCmdPipelineBarrier) X(vkCmdCopyBuffer)  \
  X(vkCmdWriteTimestamp) X(vkCmdResetQueryPool) X(vkCreateQueryPool) X(vkDestroyQueryPool)                      \
  X(vkGetQueryPoolResults) X(vkCreateFence) X(vkDestroyFence) X(vkWaitForFences) X(vkResetFences)               \
  X(vkQueueSubmit) X(vkDeviceWaitIdle)

typedef struct {
  void *lib;
  PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr;
#define DECLARE(f) PFN_##f f;
  VK_FUNCS(DECLARE) VK_DEVICE_FUNCS(DECLARE)
#undef DECLARE
} vk_api;

typedef struct {
  VkBuffer buf;
  VkDeviceMemory mem;
  void *map; /* host-visible buffers only */
} vk_buffer;

typedef struct bertc_backend_state vk_model;

struct bertc_backend_state {
  const bertc_vk_program *prog;
  vk_api vk;
  VkInstance instance;
  VkPhysicalDevice phys;
  VkDevice dev;
  VkQueue queue;
  uint32_t queue_family;
  vk_buffer main, io;           /* main: arena + weights (device-local); io: inputs and outputs (host) */
  int64_t io_in[3], io_out_base; /* offsets in io of ids / mask / types (-1: absent) and of the outputs */
  VkShaderModule *modules;
  VkPipeline *pipelines;
  VkDescriptorSetLayout set_layout;
  VkPipelineLayout layout;
  VkDescriptorPool pool;
  VkDescriptorSet set;
  VkCommandPool cmd_pool;
  VkCommandBuffer cmd;
  int64_t recorded_seq;         /* the length cmd was recorded for */
  VkFence fence;
  VkQueryPool queries;          /* VK_NULL_HANDLE when the queue has no timestamps */
  uint64_t ts_mask;
  double ts_period_ns;
  uint64_t *ts;                 /* [num_ops + 1] */
  double *op_seconds;           /* [num_ops], the model's (api.c) */
  char device[300];
  const char *exts[2];          /* device extensions the program's features need (before Vulkan 1.2) */
  uint32_t num_exts;
  char *error;                  /* the model's message buffer (api.c) */
};

#define HOW_TO_GET_A_DEVICE                                                                               \
  "install the GPU's Vulkan driver, or Mesa's CPU device lavapipe (Debian: apt-get install mesa-vulkan-drivers); " \
  "or run the artifact's CPU build (compile with --fallback cpu, run with --fallback cpu)"

static bertc_status vk_fail(vk_model *m, VkResult r, const char *what) {
  return fail(m->error, r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY ? BERTC_ERR_MEMORY
                                                                                                  : BERTC_ERR_DEVICE,
              "Vulkan: %s failed (VkResult %d) on %s", what, (int)r, m->device);
}
#define VK_TRY(call, what)                      \
  do {                                          \
    VkResult r_ = (call);                       \
    if (r_ != VK_SUCCESS) return vk_fail(m, r_, what); \
  } while (0)

static bertc_status load_library(vk_model *m) {
  const char *env = getenv("BERTC_VULKAN_LIBRARY");
  const char *names[] = {env, "libvulkan.so.1", "libvulkan.so"};
  for (int i = env ? 0 : 1; i < (env ? 1 : 3) && !m->vk.lib; i++) m->vk.lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
  if (!m->vk.lib)
    return fail(m->error, BERTC_ERR_DEVICE,
                "cannot load the Vulkan loader %s (%s): apt-get install libvulkan1 (Android ships it); "
                "a statically linked bertc_run cannot load it at all: build the artifact with the Android NDK "
                "(ANDROID_NDK_HOME)", env ? env : "libvulkan.so.1", dlerror());
  m->vk.vkGetInstanceProcAddr = (PFN_vkGetInstanceProcAddr)dlsym(m->vk.lib, "vkGetInstanceProcAddr");
  if (!m->vk.vkGetInstanceProcAddr)
    return fail(m->error, BERTC_ERR_DEVICE, "the Vulkan loader has no vkGetInstanceProcAddr");
  return BERTC_OK;
}

static bertc_status create_instance(vk_model *m) {
  PFN_vkCreateInstance create = (PFN_vkCreateInstance)m->vk.vkGetInstanceProcAddr(NULL, "vkCreateInstance");
  if (!create) return fail(m->error, BERTC_ERR_DEVICE, "the Vulkan loader has no vkCreateInstance");
  VkApplicationInfo app = {.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .pApplicationName = "bertc",
                           .pEngineName = "bertc", .apiVersion = VK_API_VERSION_1_1};
  VkInstanceCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app};
  VkResult r = create(&ci, NULL, &m->instance);
  if (r == VK_ERROR_INCOMPATIBLE_DRIVER)
    return fail(m->error, BERTC_ERR_DEVICE, "no Vulkan 1.1 driver found: " HOW_TO_GET_A_DEVICE);
  if (r != VK_SUCCESS) return fail(m->error, BERTC_ERR_DEVICE, "vkCreateInstance failed (VkResult %d)", (int)r);
#define LOAD(f)                                                                        \
  m->vk.f = (PFN_##f)m->vk.vkGetInstanceProcAddr(m->instance, #f);                      \
  if (!m->vk.f) return fail(m->error, BERTC_ERR_DEVICE, "the Vulkan loader has no " #f " (Vulkan 1.1 needed)");
  VK_FUNCS(LOAD)
#undef LOAD
  return BERTC_OK;
}

static int disabled(const char *feature) {
  const char *list = getenv("BERTC_VULKAN_DISABLE");
  if (!list) return 0;
  size_t n = strlen(feature);
  for (const char *s = strstr(list, feature); s; s = strstr(s + 1, feature))
    if ((s == list || s[-1] == ',') && (s[n] == 0 || s[n] == ',')) return 1;
  return 0;
}

static int type_rank(VkPhysicalDeviceType t) {
  return t == VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU ? 4 : t == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU ? 3
         : t == VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU ? 2 : t == VK_PHYSICAL_DEVICE_TYPE_CPU ? 1 : 0;
}

/* Choose the device and its compute queue; check what the program needs. */
static bertc_status select_device(vk_model *m) {
  uint32_t n = 0;
  VkResult r = m->vk.vkEnumeratePhysicalDevices(m->instance, &n, NULL);
  if (r != VK_SUCCESS || n == 0)
    return fail(m->error, BERTC_ERR_DEVICE, "no Vulkan device found: " HOW_TO_GET_A_DEVICE);
  VkPhysicalDevice devs[16];
  n = n > 16 ? 16 : n;
  m->vk.vkEnumeratePhysicalDevices(m->instance, &n, devs);
  const char *pick = getenv("BERTC_VULKAN_DEVICE");
  int best = -1, best_rank = -1;
  for (uint32_t i = 0; i < n; i++) {
    VkPhysicalDeviceProperties p;
    m->vk.vkGetPhysicalDeviceProperties(devs[i], &p);
    if (pick ? (uint32_t)atoi(pick) == i : type_rank(p.deviceType) > best_rank) best = (int)i, best_rank = type_rank(p.deviceType);
  }
  if (best < 0)
    return fail(m->error, BERTC_ERR_DEVICE, "BERTC_VULKAN_DEVICE=%s: there are only %u Vulkan devices", pick, n);
  m->phys = devs[best];
  VkPhysicalDeviceProperties props;
  m->vk.vkGetPhysicalDeviceProperties(m->phys, &props);
  snprintf(m->device, sizeof m->device, "vulkan: %s", props.deviceName);

  uint32_t nq = 0;
  m->vk.vkGetPhysicalDeviceQueueFamilyProperties(m->phys, &nq, NULL);
  VkQueueFamilyProperties qf[32];
  nq = nq > 32 ? 32 : nq;
  m->vk.vkGetPhysicalDeviceQueueFamilyProperties(m->phys, &nq, qf);
  m->queue_family = UINT32_MAX;
  for (uint32_t i = 0; i < nq && m->queue_family == UINT32_MAX; i++)
    if (qf[i].queueFlags & VK_QUEUE_COMPUTE_BIT) m->queue_family = i;
  if (m->queue_family == UINT32_MAX)
    return fail(m->error, BERTC_ERR_DEVICE, "%s has no compute queue", props.deviceName);
  uint32_t bits = qf[m->queue_family].timestampValidBits;
  m->ts_mask = bits >= 64 ? ~0ull : bits ? (1ull << bits) - 1 : 0;
  m->ts_period_ns = props.limits.timestampPeriod;

  const bertc_vk_program *prog = m->prog;
  const VkDeviceSize buffer_bytes = (VkDeviceSize)(prog->weights_offset + prog->header.weights_bytes);
  if (buffer_bytes > props.limits.maxStorageBufferRange)
    return fail(m->error, BERTC_ERR_DEVICE,
                "%s binds at most %u bytes as one storage buffer (maxStorageBufferRange); this model needs %llu "
                "(weights + arena): compile with --dtype fp16, a shorter --seq-len, or run the CPU build",
                props.deviceName, props.limits.maxStorageBufferRange, (unsigned long long)buffer_bytes);
  if (prog->shared_bytes > props.limits.maxComputeSharedMemorySize)
    return fail(m->error, BERTC_ERR_DEVICE, "%s has %u bytes of shared memory per workgroup, the shaders need %u "
                "(attention keeps a --seq-len row): compile for --target android-vulkan or a shorter --seq-len",
                props.deviceName, props.limits.maxComputeSharedMemorySize, prog->shared_bytes);
  if (prog->max_invocations > props.limits.maxComputeWorkGroupInvocations)
    return fail(m->error, BERTC_ERR_DEVICE, "%s runs at most %u invocations per workgroup, the shaders use %u: "
                "compile for --target android-vulkan", props.deviceName,
                props.limits.maxComputeWorkGroupInvocations, prog->max_invocations);

  VkPhysicalDeviceShaderFloat16Int8FeaturesKHR f16 = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES_KHR};
  VkPhysicalDevice16BitStorageFeatures s16 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES,
                                              .pNext = &f16};
  VkPhysicalDevice8BitStorageFeaturesKHR s8 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES_KHR,
                                               .pNext = &s16};
  VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, /* 8-bit: only if needed */
                                  .pNext = prog->needs & BERTC_VK_NEEDS_I8 ? (void *)&s8 : (void *)&s16};
  if (prog->needs) m->vk.vkGetPhysicalDeviceFeatures2(m->phys, &f2);
  /* what each --dtype's GEMM shader needs (gemm_i8 only loads int8, widening it: no shaderInt8), and its way out */
  const struct {
    uint32_t need;
    VkBool32 has;
    const char *feature, *ext, *dtype, *instead;
  } feats[] = {{BERTC_VK_NEEDS_F16, s16.storageBuffer16BitAccess, "storageBuffer16BitAccess", "VK_KHR_16bit_storage",
                "fp16", "--dtype fp32"},
               {BERTC_VK_NEEDS_F16, f16.shaderFloat16, "shaderFloat16", VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME,
                "fp16", "--dtype fp32"},
               {BERTC_VK_NEEDS_I8, s8.storageBuffer8BitAccess, "storageBuffer8BitAccess",
                VK_KHR_8BIT_STORAGE_EXTENSION_NAME, "int8", "--dtype fp16 (where the device has shaderFloat16) or fp32"}};
  m->num_exts = 0;
  for (size_t i = 0; i < sizeof feats / sizeof *feats; i++) {
    if (!(prog->needs & feats[i].need)) continue;
    if (!feats[i].has || disabled(feats[i].feature))
      return fail(m->error, BERTC_ERR_DEVICE, "%s lacks %s (%s), which --dtype %s needs: recompile with %s, or run "
                  "the CPU build (an artifact compiled with --fallback cpu: run with --fallback cpu)",
                  props.deviceName, feats[i].feature, feats[i].ext, feats[i].dtype, feats[i].instead);
    /* core from Vulkan 1.2, extensions before (feats[0], 16-bit storage, is core in 1.1) */
    if (props.apiVersion < VK_API_VERSION_1_2 && i > 0) m->exts[m->num_exts++] = feats[i].ext;
  }
  return BERTC_OK;
}

static bertc_status create_device(vk_model *m) {
  float priority = 1.0f;
  VkDeviceQueueCreateInfo q = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                               .queueFamilyIndex = m->queue_family, .queueCount = 1, .pQueuePriorities = &priority};
  const uint32_t needs = m->prog->needs; /* enable what the program needs, chain only those features */
  VkPhysicalDeviceShaderFloat16Int8FeaturesKHR f16 = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES_KHR, .shaderFloat16 = VK_TRUE};
  VkPhysicalDevice16BitStorageFeatures s16 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_16BIT_STORAGE_FEATURES,
                                              .pNext = &f16, .storageBuffer16BitAccess = VK_TRUE};
  VkPhysicalDevice8BitStorageFeaturesKHR s8 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_8BIT_STORAGE_FEATURES_KHR,
                                               .pNext = needs & BERTC_VK_NEEDS_F16 ? &s16 : NULL,
                                               .storageBuffer8BitAccess = VK_TRUE};
  VkDeviceCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
                           .pNext = needs & BERTC_VK_NEEDS_I8 ? (void *)&s8 : needs & BERTC_VK_NEEDS_F16 ? (void *)&s16
                                                                                                        : NULL,
                           .queueCreateInfoCount = 1, .pQueueCreateInfos = &q,
                           .enabledExtensionCount = m->num_exts, .ppEnabledExtensionNames = m->exts};
  VK_TRY(m->vk.vkCreateDevice(m->phys, &ci, NULL, &m->dev), "vkCreateDevice");
#define LOAD(f)                                                                \
  m->vk.f = (PFN_##f)m->vk.vkGetDeviceProcAddr(m->dev, #f);                     \
  if (!m->vk.f) return fail(m->error, BERTC_ERR_DEVICE, "the Vulkan device has no " #f);
  VK_DEVICE_FUNCS(LOAD)
#undef LOAD
  m->vk.vkGetDeviceQueue(m->dev, m->queue_family, 0, &m->queue);
  return BERTC_OK;
}

/* A buffer in memory with `want` properties (and, if possible, `prefer` too). */
static bertc_status buffer_create(vk_model *m, vk_buffer *b, VkDeviceSize size, VkBufferUsageFlags usage,
                                  VkMemoryPropertyFlags want, VkMemoryPropertyFlags prefer) {
  VkBufferCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, .size = size ? size : 4, .usage = usage,
                           .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
  VK_TRY(m->vk.vkCreateBuffer(m->dev, &ci, NULL, &b->buf), "vkCreateBuffer");
  VkMemoryRequirements req;
  m->vk.vkGetBufferMemoryRequirements(m->dev, b->buf, &req);
  VkPhysicalDeviceMemoryProperties mp;
  m->vk.vkGetPhysicalDeviceMemoryProperties(m->phys, &mp);
  uint32_t type = UINT32_MAX;
  for (int pass = 0; pass < 2 && type == UINT32_MAX; pass++)
    for (uint32_t i = 0; i < mp.memoryTypeCount && type == UINT32_MAX; i++) {
      VkMemoryPropertyFlags need = pass == 0 ? want | prefer : want;
      if ((req.memoryTypeBits & (1u << i)) && (mp.memoryTypes[i].propertyFlags & need) == need) type = i;
    }
  if (type == UINT32_MAX) return fail(m->error, BERTC_ERR_DEVICE, "%s has no suitable memory type", m->device);
  VkMemoryAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .allocationSize = req.size,
                             .memoryTypeIndex = type};
  VK_TRY(m->vk.vkAllocateMemory(m->dev, &ai, NULL, &b->mem), "vkAllocateMemory");
  VK_TRY(m->vk.vkBindBufferMemory(m->dev, b->buf, b->mem, 0), "vkBindBufferMemory");
  if (want & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT)
    VK_TRY(m->vk.vkMapMemory(m->dev, b->mem, 0, VK_WHOLE_SIZE, 0, &b->map), "vkMapMemory");
  return BERTC_OK;
}

static void buffer_destroy(vk_model *m, vk_buffer *b) {
  if (b->map) m->vk.vkUnmapMemory(m->dev, b->mem);
  if (b->buf) m->vk.vkDestroyBuffer(m->dev, b->buf, NULL);
  if (b->mem) m->vk.vkFreeMemory(m->dev, b->mem, NULL);
  memset(b, 0, sizeof *b);
}

static void barrier(vk_model *m, VkCommandBuffer cb, VkPipelineStageFlags src, VkAccessFlags src_access,
                    VkPipelineStageFlags dst, VkAccessFlags dst_access) {
  VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER, .srcAccessMask = src_access,
                        .dstAccessMask = dst_access};
  m->vk.vkCmdPipelineBarrier(cb, src, dst, 0, 1, &mb, 0, NULL, 0, NULL);
}

static bertc_status submit_and_wait(vk_model *m, VkCommandBuffer cb) {
  VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &cb};
  VK_TRY(m->vk.vkQueueSubmit(m->queue, 1, &si, m->fence), "vkQueueSubmit");
  VK_TRY(m->vk.vkWaitForFences(m->dev, 1, &m->fence, VK_TRUE, UINT64_MAX), "vkWaitForFences");
  VK_TRY(m->vk.vkResetFences(m->dev, 1, &m->fence), "vkResetFences");
  return BERTC_OK;
}

/* Weights go up once, through a staging buffer freed afterwards. */
static bertc_status upload_weights(vk_model *m, const void *weights) {
  const bertc_vk_program *p = m->prog;
  if (p->header.weights_bytes == 0) return BERTC_OK;
  vk_buffer staging = {0};
  bertc_status st = buffer_create(m, &staging, (VkDeviceSize)p->header.weights_bytes, VK_BUFFER_USAGE_TRANSFER_SRC_BIT,
                                  VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT, 0);
  if (st == BERTC_OK) {
    memcpy(staging.map, weights, (size_t)p->header.weights_bytes);
    VkCommandBufferAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                      .commandPool = m->cmd_pool, .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                      .commandBufferCount = 1};
    VkCommandBuffer cb;
    VkResult r = m->vk.vkAllocateCommandBuffers(m->dev, &ai, &cb);
    if (r != VK_SUCCESS) st = vk_fail(m, r, "vkAllocateCommandBuffers");
    if (st == BERTC_OK) {
      VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                     .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
      m->vk.vkBeginCommandBuffer(cb, &bi);
      VkBufferCopy region = {0, (VkDeviceSize)p->weights_offset, (VkDeviceSize)p->header.weights_bytes};
      m->vk.vkCmdCopyBuffer(cb, staging.buf, m->main.buf, 1, &region);
      barrier(m, cb, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT,
              VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_READ_BIT);
      m->vk.vkEndCommandBuffer(cb);
      st = submit_and_wait(m, cb);
    }
  }
  buffer_destroy(m, &staging);
  return st;
}

static bertc_status load_shader(vk_model *m, const char *dir, const bertc_vk_shader *s, VkShaderModule *out) {
  char path[4096];
  snprintf(path, sizeof path, "%s/shaders/%s.spv", dir, s->name);
  FILE *f = fopen(path, "rb");
  if (!f) return fail(m->error, BERTC_ERR_IO, "cannot open %s: %s", path, strerror(errno));
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint32_t *code = n > 0 && n % 4 == 0 ? malloc((size_t)n) : NULL;
  int ok = code && fread(code, 1, (size_t)n, f) == (size_t)n;
  fclose(f);
  char digest[65];
  if (ok) bertc_sha256_hex(code, (uint64_t)n, digest);
  if (!ok || strcmp(digest, s->sha256) != 0) {
    free(code);
    return fail(m->error, ok ? BERTC_ERR_CHECKSUM : BERTC_ERR_FORMAT,
                "%s is not the SPIR-V this program was compiled with (altered or truncated); recompile", path);
  }
  VkShaderModuleCreateInfo ci = {.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, .codeSize = (size_t)n,
                                 .pCode = code};
  VkResult r = m->vk.vkCreateShaderModule(m->dev, &ci, NULL, out);
  free(code);
  return r == VK_SUCCESS ? BERTC_OK : vk_fail(m, r, "vkCreateShaderModule");
}

static bertc_status create_pipelines(vk_model *m, const char *dir) {
  const bertc_vk_program *p = m->prog;
  m->modules = calloc((size_t)p->num_shaders + 1, sizeof *m->modules);
  m->pipelines = calloc((size_t)p->num_pipelines + 1, sizeof *m->pipelines);
  if (!m->modules || !m->pipelines) return fail(m->error, BERTC_ERR_MEMORY, "out of memory");
  for (int i = 0; i < p->num_shaders; i++) {
    bertc_status st = load_shader(m, dir, &p->shaders[i], &m->modules[i]);
    if (st != BERTC_OK) return st;
  }
  VkDescriptorSetLayoutBinding b = {0, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1, VK_SHADER_STAGE_COMPUTE_BIT, NULL};
  VkDescriptorSetLayoutCreateInfo dl = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO,
                                        .bindingCount = 1, .pBindings = &b};
  VK_TRY(m->vk.vkCreateDescriptorSetLayout(m->dev, &dl, NULL, &m->set_layout), "vkCreateDescriptorSetLayout");
  VkPushConstantRange pc = {VK_SHADER_STAGE_COMPUTE_BIT, 0, 4 * BERTC_VK_MAX_PUSH};
  VkPipelineLayoutCreateInfo pl = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, .setLayoutCount = 1,
                                   .pSetLayouts = &m->set_layout, .pushConstantRangeCount = 1,
                                   .pPushConstantRanges = &pc};
  VK_TRY(m->vk.vkCreatePipelineLayout(m->dev, &pl, NULL, &m->layout), "vkCreatePipelineLayout");
  for (int i = 0; i < p->num_pipelines; i++) {
    const bertc_vk_pipeline *pp = &p->pipelines[i];
    VkSpecializationMapEntry entries[BERTC_VK_MAX_SPEC];
    for (int j = 0; j < pp->num_spec; j++) entries[j] = (VkSpecializationMapEntry){(uint32_t)j, 4u * (uint32_t)j, 4};
    VkSpecializationInfo spec = {(uint32_t)pp->num_spec, entries, 4u * (size_t)pp->num_spec, pp->spec};
    VkComputePipelineCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO, .layout = m->layout,
        .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO, .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                  .module = m->modules[pp->shader], .pName = "main", .pSpecializationInfo = &spec}};
    VK_TRY(m->vk.vkCreateComputePipelines(m->dev, VK_NULL_HANDLE, 1, &ci, NULL, &m->pipelines[i]),
           "vkCreateComputePipelines");
  }
  VkDescriptorPoolSize size = {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1};
  VkDescriptorPoolCreateInfo dp = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO, .maxSets = 1,
                                   .poolSizeCount = 1, .pPoolSizes = &size};
  VK_TRY(m->vk.vkCreateDescriptorPool(m->dev, &dp, NULL, &m->pool), "vkCreateDescriptorPool");
  VkDescriptorSetAllocateInfo da = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO, .descriptorPool = m->pool,
                                    .descriptorSetCount = 1, .pSetLayouts = &m->set_layout};
  VK_TRY(m->vk.vkAllocateDescriptorSets(m->dev, &da, &m->set), "vkAllocateDescriptorSets");
  VkDescriptorBufferInfo bi = {m->main.buf, 0, VK_WHOLE_SIZE};
  VkWriteDescriptorSet wr = {.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET, .dstSet = m->set, .dstBinding = 0,
                             .descriptorCount = 1, .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                             .pBufferInfo = &bi};
  m->vk.vkUpdateDescriptorSets(m->dev, 1, &wr, 0, NULL);
  return BERTC_OK;
}

/* Output slot s's bytes in a run of seq tokens (a dynamic program's output has seq rows in s->seq_dim). */
static int64_t slot_bytes(const bertc_program_header *h, const bertc_tensor_slot *s, int64_t seq) {
  int64_t n = 4;
  for (int d = 0; d < s->rank; d++) n *= h->dynamic && s->seq_dim > 0 && d == s->seq_dim ? seq : s->shape[d];
  return n;
}

/* Output slot s's room in the io buffer: its bytes at the bound, 64-byte aligned. */
static int64_t io_slot_bytes(const bertc_program_header *h, const bertc_tensor_slot *s) {
  return (slot_bytes(h, s, h->seq_len) + 63) / 64 * 64;
}

/* Dispatch i as it runs at length seq: the table's values (those at the bound), with its seq_sizes
 * (the next ones from *next on, which are in dispatch order) evaluated at seq. */
static bertc_vk_dispatch dispatch_at(const bertc_vk_program *p, int i, int64_t seq, int *next) {
  bertc_vk_dispatch d = p->dispatches[i];
  for (; *next < p->num_seq_sizes && p->seq_sizes[*next].dispatch == i; ++*next) {
    const bertc_vk_seq_size *z = &p->seq_sizes[*next];
    int64_t v = z->coef[0] + z->coef[1] * seq + z->coef[2] * seq * seq;
    if (z->what == BERTC_VK_GROUPS) {
      v = (v + z->per - 1) / z->per;
      d.groups[z->index] = (uint32_t)(v < 1 ? 1 : v > 65535 ? 65535 : v); /* the elementwise shaders loop past it */
    } else {
      d.push[z->index] = (uint32_t)v;
    }
  }
  return d;
}

/* The command buffer a run of seq tokens submits: inputs in, the dispatches, outputs out. */
static bertc_status record(vk_model *m, int64_t seq) {
  const bertc_vk_program *p = m->prog;
  if (!m->cmd) {
    VkCommandBufferAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                      .commandPool = m->cmd_pool, .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                      .commandBufferCount = 1};
    VK_TRY(m->vk.vkAllocateCommandBuffers(m->dev, &ai, &m->cmd), "vkAllocateCommandBuffers");
  }
  m->recorded_seq = 0; /* until it is recorded in full */
  VkCommandBuffer cb = m->cmd;
  VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  VK_TRY(m->vk.vkBeginCommandBuffer(cb, &bi), "vkBeginCommandBuffer"); /* resets it: the pool allows that */
  if (m->queries) m->vk.vkCmdResetQueryPool(cb, m->queries, 0, (uint32_t)p->header.num_ops + 1);
  const int64_t in_offsets[3] = {p->header.ids_offset, p->header.mask_offset, p->header.types_offset};
  const VkDeviceSize in_bytes = (VkDeviceSize)(p->header.batch * seq * 8);
  for (int i = 0; i < 3; i++)
    if (in_offsets[i] >= 0) {
      VkBufferCopy c = {(VkDeviceSize)m->io_in[i], (VkDeviceSize)in_offsets[i], in_bytes};
      m->vk.vkCmdCopyBuffer(cb, m->io.buf, m->main.buf, 1, &c);
    }
  barrier(m, cb, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
          VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT);
  m->vk.vkCmdBindDescriptorSets(cb, VK_PIPELINE_BIND_POINT_COMPUTE, m->layout, 0, 1, &m->set, 0, NULL);
  if (m->queries) m->vk.vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, m->queries, 0);
  int bound = -1, next = 0;
  for (int i = 0; i < p->header.num_ops; i++) {
    const bertc_vk_dispatch d = dispatch_at(p, i, seq, &next);
    if (d.pipeline != bound)
      m->vk.vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, m->pipelines[bound = d.pipeline]);
    if (d.num_push)
      m->vk.vkCmdPushConstants(cb, m->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, 4u * (uint32_t)d.num_push, d.push);
    m->vk.vkCmdDispatch(cb, d.groups[0], d.groups[1], d.groups[2]);
    /* every op reads what an earlier one wrote, or writes bytes an earlier one read (the arena is reused) */
    barrier(m, cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT,
            VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
            VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT);
    if (m->queries) m->vk.vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, m->queries, (uint32_t)i + 1);
  }
  int64_t off = m->io_out_base;
  for (int i = 0; i < p->header.num_outputs; i++) {
    const bertc_tensor_slot *s = &p->header.outputs[i];
    VkBufferCopy c = {(VkDeviceSize)s->offset, (VkDeviceSize)off, (VkDeviceSize)slot_bytes(&p->header, s, seq)};
    m->vk.vkCmdCopyBuffer(cb, m->main.buf, m->io.buf, 1, &c);
    off += io_slot_bytes(&p->header, s);
  }
  barrier(m, cb, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT, VK_PIPELINE_STAGE_HOST_BIT,
          VK_ACCESS_HOST_READ_BIT);
  VK_TRY(m->vk.vkEndCommandBuffer(cb), "vkEndCommandBuffer");
  m->recorded_seq = seq;
  return BERTC_OK;
}

static bertc_status open_device(vk_model *m, const char *dir, const void *weights) {
  const bertc_vk_program *p = m->prog;
  bertc_status st = load_library(m);
  if (st == BERTC_OK) st = create_instance(m);
  if (st == BERTC_OK) st = select_device(m);
  if (st == BERTC_OK) st = create_device(m);
  if (st != BERTC_OK) return st;
  VkCommandPoolCreateInfo cp = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT, /* record() again */
                                .queueFamilyIndex = m->queue_family};
  VK_TRY(m->vk.vkCreateCommandPool(m->dev, &cp, NULL, &m->cmd_pool), "vkCreateCommandPool");
  VkFenceCreateInfo fi = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  VK_TRY(m->vk.vkCreateFence(m->dev, &fi, NULL, &m->fence), "vkCreateFence");
  st = buffer_create(m, &m->main, (VkDeviceSize)(p->weights_offset + p->header.weights_bytes),
                     VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT |
                         VK_BUFFER_USAGE_TRANSFER_SRC_BIT,
                     VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0);
  if (st != BERTC_OK) return st;
  int64_t io = 0, in_bytes = (p->header.batch * p->header.seq_len * 8 + 63) / 64 * 64;
  const int64_t in_offsets[3] = {p->header.ids_offset, p->header.mask_offset, p->header.types_offset};
  for (int i = 0; i < 3; i++) m->io_in[i] = in_offsets[i] >= 0 ? (io += in_bytes) - in_bytes : -1;
  m->io_out_base = io;
  for (int i = 0; i < p->header.num_outputs; i++) io += io_slot_bytes(&p->header, &p->header.outputs[i]);
  st = buffer_create(m, &m->io, (VkDeviceSize)io, VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                     VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
                     VK_MEMORY_PROPERTY_HOST_CACHED_BIT); /* outputs are read back by the CPU */
  if (st == BERTC_OK) st = upload_weights(m, weights);
  if (st == BERTC_OK) st = create_pipelines(m, dir);
  if (st != BERTC_OK) return st;
  if (m->ts_mask) {
    VkQueryPoolCreateInfo qi = {.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO, .queryType = VK_QUERY_TYPE_TIMESTAMP,
                                .queryCount = (uint32_t)p->header.num_ops + 1};
    VK_TRY(m->vk.vkCreateQueryPool(m->dev, &qi, NULL, &m->queries), "vkCreateQueryPool");
  }
  return record(m, p->header.seq_len);
}

static void vk_close(vk_model *m) {
  if (m->dev && m->vk.vkDeviceWaitIdle) { /* every device function was loaded */
    m->vk.vkDeviceWaitIdle(m->dev);
    if (m->queries) m->vk.vkDestroyQueryPool(m->dev, m->queries, NULL);
    for (int i = 0; m->pipelines && i < m->prog->num_pipelines; i++)
      if (m->pipelines[i]) m->vk.vkDestroyPipeline(m->dev, m->pipelines[i], NULL);
    for (int i = 0; m->modules && i < m->prog->num_shaders; i++)
      if (m->modules[i]) m->vk.vkDestroyShaderModule(m->dev, m->modules[i], NULL);
    if (m->pool) m->vk.vkDestroyDescriptorPool(m->dev, m->pool, NULL);
    if (m->layout) m->vk.vkDestroyPipelineLayout(m->dev, m->layout, NULL);
    if (m->set_layout) m->vk.vkDestroyDescriptorSetLayout(m->dev, m->set_layout, NULL);
    if (m->cmd_pool) m->vk.vkDestroyCommandPool(m->dev, m->cmd_pool, NULL);
    if (m->fence) m->vk.vkDestroyFence(m->dev, m->fence, NULL);
    buffer_destroy(m, &m->main);
    buffer_destroy(m, &m->io);
    m->vk.vkDestroyDevice(m->dev, NULL);
  }
  if (m->instance && m->vk.vkDestroyInstance) m->vk.vkDestroyInstance(m->instance, NULL);
  if (m->vk.lib) dlclose(m->vk.lib);
  free(m->modules);
  free(m->pipelines);
  free(m->ts);
  free(m);
}

static bertc_status vk_open(const bertc_backend_args *a, vk_model **out) {
  vk_model *m = calloc(1, sizeof *m);
  if (!m) return fail(a->error, BERTC_ERR_MEMORY, "out of memory");
  m->prog = &bertc_vk_compiled_program;
  m->op_seconds = a->op_seconds;
  m->error = a->error;
  snprintf(m->device, sizeof m->device, "vulkan");
  m->ts = calloc((size_t)m->prog->header.num_ops + 1, sizeof *m->ts);
  bertc_status st = m->ts ? open_device(m, a->dir, a->weights) : fail(m->error, BERTC_ERR_MEMORY, "out of memory");
  if (st != BERTC_OK) {
    vk_close(m);
    return st;
  }
  *out = m;
  return BERTC_OK;
}

/* the inputs go to their io slots; the command buffer copies them to the arena */
static char *vk_inputs(vk_model *m, int64_t offsets[3]) {
  memcpy(offsets, m->io_in, sizeof m->io_in);
  return m->io.map;
}

static bertc_status vk_run(vk_model *m, int64_t seq) {
  const bertc_vk_program *p = m->prog;
  bertc_status st = seq == m->recorded_seq ? BERTC_OK : record(m, seq); /* a dynamic program's other length */
  if (st == BERTC_OK) st = submit_and_wait(m, m->cmd);
  if (st != BERTC_OK) return st;
  if (m->queries) {
    const uint32_t n = (uint32_t)p->header.num_ops + 1;
    VkResult r = m->vk.vkGetQueryPoolResults(m->dev, m->queries, 0, n, sizeof(uint64_t) * n, m->ts, sizeof(uint64_t),
                                             VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT);
    if (r != VK_SUCCESS) return vk_fail(m, r, "vkGetQueryPoolResults");
    for (int i = 0; i < p->header.num_ops; i++)
      m->op_seconds[i] += (double)((m->ts[i + 1] - m->ts[i]) & m->ts_mask) * m->ts_period_ns * 1e-9;
  }
  return BERTC_OK;
}

static const float *vk_output(const vk_model *m, int i) {
  int64_t off = m->io_out_base;
  for (int j = 0; j < i; j++) off += io_slot_bytes(&m->prog->header, &m->prog->header.outputs[j]);
  return (const float *)((const char *)m->io.map + off);
}

static const char *vk_kernel(int i, const char **impl) {
  if (i >= bertc_vk_compiled_program.num_shaders) return NULL;
  if (impl) *impl = "vulkan";
  return bertc_vk_compiled_program.shaders[i].name;
}

static const char *vk_device(const vk_model *m) { return m->device; }

static const bertc_backend vulkan = {.program = &bertc_vk_compiled_program.header, .keeps_weights = 0, .open = vk_open,
                                     .inputs = vk_inputs, .run = vk_run, .output = vk_output,
                                     .kernel = vk_kernel, .device = vk_device, .close = vk_close};

const bertc_backend *bertc_backend_of_program(void) { return &vulkan; }
