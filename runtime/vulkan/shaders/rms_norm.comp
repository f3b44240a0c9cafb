#version 450
// y = x * rsqrt(mean(x^2) + eps) * gamma over rows of n (RMSNorm), one workgroup per row (grid-stride over
// rows): layer_norm.comp without the mean's pass and without beta.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform P { uint x, gamma, y, rows, n, eps; } p;

shared float red[WG_X];

float reduce_sum(float v, uint tid) {
  red[tid] = v;
  SYNC();
  for (uint s = WG_X / 2; s > 0; s >>= 1) {
    if (tid < s) red[tid] += red[tid + s];
    SYNC();
  }
  float r = red[0];
  SYNC();
  return r;
}

void main() {
  const uint tid = gl_LocalInvocationID.x;
  for (uint r = gl_WorkGroupID.x; r < p.rows; r += gl_NumWorkGroups.x) {
    const uint x = p.x + r * p.n, y = p.y + r * p.n;
    float sq = 0.0;
    for (uint i = tid; i < p.n; i += WG_X) {
      float v = LD(x + i);
      sq += v * v;
    }
    const float inv = inversesqrt(reduce_sum(sq, tid) / float(p.n) + uintBitsToFloat(p.eps));
    for (uint i = tid; i < p.n; i += WG_X) ST(y + i, LD(x + i) * inv * LD(p.gamma + i));
  }
}
