#version 450
// Rotary position embedding on rows x[rows = B*S, C] (bertc.rotary, kernels.h's bertc_rotary): one invocation per
// element. Feature f of a rotated head (f < columns, heads of D) and its pair partner g (f^1 interleaved, f -+ D/2
// otherwise): out[f] = x[f] * cos[s, f] -+ x[g] * sin[s, f], minus for the first of the pair; the rest copied.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform P { uint x, cos_, sin_, out_, rows, S, C, D, columns, interleaved; } p;

void main() {
  const uint stride = gl_NumWorkGroups.x * WG_X;
  const uint half_ = p.interleaved != 0u ? 1u : p.D / 2u;
  for (uint e = gl_GlobalInvocationID.x; e < p.rows * p.C; e += stride) {
    const uint r = e / p.C, col = e % p.C;
    if (col >= p.columns) {
      w[p.out_ + e] = w[p.x + e];
      continue;
    }
    const uint f = col % p.D, head = col - f, t = (r % p.S) * p.D + f;
    const bool first = p.interleaved != 0u ? (f & 1u) == 0u : f < half_;
    const uint g = p.interleaved != 0u ? f ^ 1u : (first ? f + half_ : f - half_);
    const float partner = LD(p.x + r * p.C + head + g);
    ST(p.out_ + e, LD(p.x + e) * LD(p.cos_ + t) + (first ? -partner : partner) * LD(p.sin_ + t));
  }
}
