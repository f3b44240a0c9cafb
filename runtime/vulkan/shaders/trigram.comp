#version 450
// out[b, s] = x[b, s + 1] | x[b, s] | x[b, s - 1] for x[B,S,E] (bertc.trigram), zeros past either end of the
// row: MobileBERT's embeddings beside their neighbours'. One invocation per output element.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform P { uint x, out_, rows, S, E; } p;

void main() {
  const uint stride = gl_NumWorkGroups.x * WG_X;
  const uint width = 3 * p.E;
  for (uint e = gl_GlobalInvocationID.x; e < p.rows * width; e += stride) {
    const uint t = e / width, part = (e % width) / p.E, f = e % p.E, s = t % p.S;
    // part 0 reads the next position, 1 this one, 2 the previous one
    const bool inside = part == 1 || (part == 0 && s + 1 < p.S) || (part == 2 && s > 0);
    const uint from = t + 1 - part;  // t + 1, t, t - 1 (unsigned: only read when inside)
    w[p.out_ + e] = inside ? w[p.x + from * p.E + f] : 0u;  // words: 0u is +0.0
  }
}
