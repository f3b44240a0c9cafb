#version 450
// y = act(x) (GELU, tanh-GELU, tanh, ReLU, SiLU) or, with act = POW, y = x ^ exponent; one invocation
// per element (grid-stride).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

const uint POW = 100u;
layout(push_constant) uniform P { uint act, x, y, n, exponent; } p;

void main() {
  const uint stride = gl_NumWorkGroups.x * WG_X;
  const float e = uintBitsToFloat(p.exponent);
  for (uint i = gl_GlobalInvocationID.x; i < p.n; i += stride) {
    float v = LD(p.x + i);
    if (p.act == POW) {  // GLSL's pow is undefined for x < 0: integer exponents keep the sign rule
      bool odd = e == floor(e) && mod(e, 2.0) == 1.0;
      v = e == 2.0 ? v * v : e == 3.0 ? v * v * v : (odd && v < 0.0 ? -pow(-v, e) : pow(abs(v), e));
    } else {
      v = activate(v, p.act);
    }
    ST(p.y + i, v);
  }
}
