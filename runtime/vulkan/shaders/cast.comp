#version 450
// y = float(x) for an int64 x (bertc.cast: a mask or ids used as numbers); the low word holds the value.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform P { uint x, y, n; } p;

void main() {
  const uint stride = gl_NumWorkGroups.x * WG_X;
  for (uint i = gl_GlobalInvocationID.x; i < p.n; i += stride) ST(p.y + i, float(LD_I64(p.x, i)));
}
