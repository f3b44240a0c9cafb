#version 450
// ESM's token dropout as a factor per token: out[b, s] = 0 where ids[b, s] == token, else
// keep / (1 - count(ids[b] == token) / sum(mask[b])). One invocation per batch row counts its row, then writes it.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform P { uint ids, mask, out_, B, S, token, keep; } p;

void main() {
  const uint b = gl_GlobalInvocationID.x;
  if (b >= p.B) return;
  const int token = int(p.token);
  int hits = 0, real = 0;
  for (uint s = 0; s < p.S; s++) {
    hits += LD_I64(p.ids, b * p.S + s) == token ? 1 : 0;
    real += LD_I64(p.mask, b * p.S + s);
  }
  const float factor = uintBitsToFloat(p.keep) / (1.0 - float(hits) / float(real));
  for (uint s = 0; s < p.S; s++) ST(p.out_ + b * p.S + s, LD_I64(p.ids, b * p.S + s) == token ? 0.0 : factor);
}
