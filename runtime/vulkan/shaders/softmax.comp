#version 450
// y = softmax(x) over rows of n, one workgroup per row (grid-stride over rows).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform P { uint x, y, rows, n; } p;

shared float red[WG_X];

void main() {
  const uint tid = gl_LocalInvocationID.x;
  for (uint r = gl_WorkGroupID.x; r < p.rows; r += gl_NumWorkGroups.x) {
    const uint x = p.x + r * p.n, y = p.y + r * p.n;
    float mx = -1.0 / 0.0;
    for (uint i = tid; i < p.n; i += WG_X) mx = max(mx, LD(x + i));
    red[tid] = mx;
    SYNC();
    for (uint s = WG_X / 2; s > 0; s >>= 1) {
      if (tid < s) red[tid] = max(red[tid], red[tid + s]);
      SYNC();
    }
    mx = red[0];
    SYNC();
    float sum = 0.0;
    for (uint i = tid; i < p.n; i += WG_X) {
      float e = exp(LD(x + i) - mx);
      ST(y + i, e);
      sum += e;
    }
    red[tid] = sum;
    SYNC();
    for (uint s = WG_X / 2; s > 0; s >>= 1) {
      if (tid < s) red[tid] += red[tid + s];
      SYNC();
    }
    const float inv = 1.0 / red[0];
    SYNC();
    for (uint i = tid; i < p.n; i += WG_X) ST(y + i, LD(y + i) * inv);
  }
}
