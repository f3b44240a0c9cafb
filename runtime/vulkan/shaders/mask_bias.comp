#version 450
// out[b, q, k] = mask[b, k] != 0 ? 0 : fill (the additive attention mask of unfused attention).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform P { uint mask, out_, B, Q, K, fill; } p;

void main() {
  const uint stride = gl_NumWorkGroups.x * WG_X;
  for (uint e = gl_GlobalInvocationID.x; e < p.B * p.Q * p.K; e += stride) {
    uint b = e / (p.Q * p.K), k = e % p.K;
    w[p.out_ + e] = LD_I64(p.mask, b * p.K + k) != 0 ? 0u : p.fill;
  }
}
