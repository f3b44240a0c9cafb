#version 450
// y = layer_norm(x + residual) over rows of n, one workgroup per row (grid-stride over rows).
// Two passes, the mean first, then the centred squares, as the C reference does.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform P { uint x, res, gamma, beta, y, rows, n, eps; } p;

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
    float sum = 0.0;
    for (uint i = tid; i < p.n; i += WG_X) {
      float v = LD(x + i) + (p.res != NONE ? LD(p.res + r * p.n + i) : 0.0);
      ST(y + i, v);  // read back by this same invocation below
      sum += v;
    }
    const float mean = reduce_sum(sum, tid) / float(p.n);
    float sq = 0.0;
    for (uint i = tid; i < p.n; i += WG_X) {
      float d = LD(y + i) - mean;
      sq += d * d;
    }
    const float inv = inversesqrt(reduce_sum(sq, tid) / float(p.n) + uintBitsToFloat(p.eps));
    for (uint i = tid; i < p.n; i += WG_X) ST(y + i, (LD(y + i) - mean) * inv * LD(p.gamma + i) + LD(p.beta + i));
  }
}
