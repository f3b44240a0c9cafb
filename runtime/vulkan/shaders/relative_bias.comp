#version 450
// out[b, h, i, j] = table[h, R - 1 + j - i] for a table [heads, 2R - 1]: the relative-position bias of unfused
// attention (MPNet's), for a length S <= R.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform P { uint table, out_, B, heads, S, R; } p;

void main() {
  const uint stride = gl_NumWorkGroups.x * WG_X;
  for (uint e = gl_GlobalInvocationID.x; e < p.B * p.heads * p.S * p.S; e += stride) {
    uint j = e % p.S, i = (e / p.S) % p.S, h = (e / (p.S * p.S)) % p.heads;
    w[p.out_ + e] = w[p.table + h * (2 * p.R - 1) + p.R - 1 + j - i];
  }
}
