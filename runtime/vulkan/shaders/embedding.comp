#version 450
// out[i, :] = table[ids[i], :]: one invocation per output element (grid-stride). The ids were
// range-checked on the host (inputs) or by the compiler (constants).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform P { uint table, ids, out_, n, dim; } p;

void main() {
  const uint stride = gl_NumWorkGroups.x * WG_X;
  for (uint e = gl_GlobalInvocationID.x; e < p.n * p.dim; e += stride) {
    uint i = e / p.dim, d = e % p.dim;
    w[p.out_ + e] = w[p.table + uint(LD_I64(p.ids, i)) * p.dim + d];
  }
}
