#version 450
// RoBERTa's position ids: out[b, s] = (number of non-pad ids in ids[b, :s+1]) * (ids[b, s] != pad) + pad,
// int64 out. One invocation per batch row walks its sequence (a running count).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform P { uint ids, out_, B, S, pad; } p;

void main() {
  const uint b = gl_GlobalInvocationID.x;
  if (b >= p.B) return;
  const int pad = int(p.pad);
  int count = 0;
  for (uint s = 0; s < p.S; s++) {
    int keep = LD_I64(p.ids, b * p.S + s) != pad ? 1 : 0;
    count += keep;
    int v = count * keep + pad;
    w[p.out_ + 2u * (b * p.S + s)] = uint(v);
    w[p.out_ + 2u * (b * p.S + s) + 1u] = v < 0 ? 0xffffffffu : 0u;
  }
}
