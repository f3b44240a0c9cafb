#version 450
// out = x[outer, start:start+count, inner] from x[outer, dim, inner], in 4-byte words (an int64
// element is two), so one shader slices every element type.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform P { uint x, out_, outer, dim, start, count, inner_words; } p;

void main() {
  const uint stride = gl_NumWorkGroups.x * WG_X;
  const uint row = p.count * p.inner_words;
  for (uint e = gl_GlobalInvocationID.x; e < p.outer * row; e += stride) {
    uint o = e / row, r = e % row;
    w[p.out_ + e] = w[p.x + (o * p.dim + p.start) * p.inner_words + r];
  }
}
