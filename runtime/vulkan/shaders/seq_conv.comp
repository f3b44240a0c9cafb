#version 450
// ConvBERT's convolutions over the sequence (kernels.h's bertc_depthwise_conv1d and bertc_span_conv) on rows
// x[rows = B*S, C], k taps at s - k/2 .. s + k/2, zeros past the run's length S and before 0. heads 0:
// bertc.depthwise_conv1d, w [C, k] per channel; heads H > 0: bertc.span_conv, w [B*S, H, k] per position and head
// (column c in head c / (C / H)). One invocation per output element.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform P { uint x, w_, out_, rows, S, C, k, heads; } p;

void main() {
  const uint stride = gl_NumWorkGroups.x * WG_X;
  const uint half_ = p.k / 2u;
  for (uint e = gl_GlobalInvocationID.x; e < p.rows * p.C; e += stride) {
    const uint t = e / p.C, c = e % p.C, s = t % p.S;
    const uint wrow = p.heads == 0u ? p.w_ + c * p.k : p.w_ + (t * p.heads + c / (p.C / p.heads)) * p.k;
    float acc = 0.0;
    for (uint j = 0u; j < p.k; j++) {
      if (s + j < half_ || s + j - half_ >= p.S) continue;  // unsigned: s + j - k/2 outside 0..S-1
      acc += LD(wrow + j) * LD(p.x + (t + j - half_) * p.C + c);
    }
    ST(p.out_ + e, acc);
  }
}
