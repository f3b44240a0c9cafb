#version 450
// out = permute(x), rank <= 4: in_strides are x's strides in out's dimension order.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(push_constant) uniform P { uint x, out_, pad0, pad1; uvec4 shape, st; } p;

void main() {
  const uint stride = gl_NumWorkGroups.x * WG_X;
  const uint total = p.shape.x * p.shape.y * p.shape.z * p.shape.w;
  for (uint e = gl_GlobalInvocationID.x; e < total; e += stride) {
    uvec4 i = uvec4(e / (p.shape.y * p.shape.z * p.shape.w), (e / (p.shape.z * p.shape.w)) % p.shape.y,
                    (e / p.shape.w) % p.shape.z, e % p.shape.w);
    w[p.out_ + e] = w[p.x + i.x * p.st.x + i.y * p.st.y + i.z * p.st.z + i.w * p.st.w];
  }
}
