#version 450
// out = a (op) b with broadcasting over rank 4 (stride 0 on a broadcast dimension), one
// invocation per output element (grid-stride). op: 0 add, 1 sub, 2 mul, 3 div.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform P { uint op, a, b, out_; uvec4 shape, as_, bs; } p;

void main() {
  const uint stride = gl_NumWorkGroups.x * WG_X;
  const uint total = p.shape.x * p.shape.y * p.shape.z * p.shape.w;
  for (uint e = gl_GlobalInvocationID.x; e < total; e += stride) {
    uvec4 i = uvec4(e / (p.shape.y * p.shape.z * p.shape.w), (e / (p.shape.z * p.shape.w)) % p.shape.y,
                    (e / p.shape.w) % p.shape.z, e % p.shape.w);
    float x = LD(p.a + i.x * p.as_.x + i.y * p.as_.y + i.z * p.as_.z + i.w * p.as_.w);
    float y = LD(p.b + i.x * p.bs.x + i.y * p.bs.y + i.z * p.bs.z + i.w * p.bs.w);
    ST(p.out_ + e, p.op == 0u ? x + y : p.op == 1u ? x - y : p.op == 2u ? x * y : x / y);
  }
}
