// Shared by every bertc compute shader (runtime/vulkan/shaders/*.comp).
//
// One storage buffer holds everything: the arena first, then the weights (runtime/vulkan/vulkan.c).
// Operands are word offsets into it (4 bytes; an int64 value is two words, low word first), sent
// in push constants, so one descriptor set serves every dispatch. Workgroup and tile sizes are
// specialization constants: ids 0 and 1 are the workgroup's x and y; each shader numbers its own
// from 2. The compiler chooses their values per target (bertc/targets.py, GpuParams).
layout(local_size_x_id = 0, local_size_y_id = 1) in;
layout(constant_id = 0) const uint WG_X = 64;
layout(constant_id = 1) const uint WG_Y = 1;

layout(std430, set = 0, binding = 0) buffer Words { uint w[]; };

#define LD(i) uintBitsToFloat(w[i])
#define ST(i, v) w[i] = floatBitsToUint(v)
#define LD_I64(base, e) int(w[(base) + 2u * (e)])  // low word of int64 element e at word offset base
#define NONE 0xffffffffu             // an absent operand (no bias, no residual)
#define SYNC() memoryBarrierShared(); barrier()

const uint ACT_NONE = 0u, ACT_GELU = 1u, ACT_GELU_TANH = 2u, ACT_TANH = 3u, ACT_RELU = 4u, ACT_SILU = 5u;

// erf by Abramowitz & Stegun 7.1.26 refined with one more term (max abs error ~1.2e-7, as the
// C library's erff to float precision); GLSL has no erf.
float bertc_erf(float x) {
  float a = abs(x);
  float t = 1.0 / (1.0 + 0.5 * a);
  float y = t * exp(-a * a - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
            t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
            t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0.0 ? 1.0 - y : y - 1.0;
}

// tanh without overflow: the built-in may give NaN for large |x| on some drivers
float bertc_tanh(float x) {
  float e = exp(-2.0 * min(abs(x), 20.0));
  float t = (1.0 - e) / (1.0 + e);
  return x < 0.0 ? -t : t;
}

float activate(float v, uint act) {
  if (act == ACT_GELU) return 0.5 * v * (1.0 + bertc_erf(v * 0.70710678118654752));
  if (act == ACT_GELU_TANH) return 0.5 * v * (1.0 + bertc_tanh(0.79788456080286536 * (v + 0.044715 * v * v * v)));
  if (act == ACT_TANH) return bertc_tanh(v);
  if (act == ACT_RELU) return v > 0.0 ? v : 0.0;
  if (act == ACT_SILU) return v / (1.0 + exp(-max(v, -80.0)));  // clamped: e^88 overflows float on some drivers
  return v;
}
