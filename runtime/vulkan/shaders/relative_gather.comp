#version 450
// out[b, i, j] = x[b, i, table[R - 1 + j - i]] for x [B, S, W] and an i64 table [2R - 1] of columns of x: DeBERTa's
// content-to-position and position-to-content scores, for a length S <= R.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform P { uint x, table, out_, B, S, W, R; } p;

void main() {
  const uint stride = gl_NumWorkGroups.x * WG_X;
  for (uint e = gl_GlobalInvocationID.x; e < p.B * p.S * p.S; e += stride) {
    uint j = e % p.S, row = e / p.S, i = row % p.S;
    w[p.out_ + e] = w[p.x + row * p.W + uint(LD_I64(p.table, p.R - 1 + j - i))];
  }
}
