#version 450
// Tiled GEMM with a fused epilogue: y[b] = act(x[b] @ wkn[b] + bias) + res[b], x [M,K], wkn [K,N]
// (a linear's weight is stored transposed, [K,N]; a matmul's right operand already is).
// A workgroup of WG_X x WG_Y invocations computes a BM x BN tile of y, BM = WG_Y*TM, BN = WG_X*TN:
// each invocation holds TM x TN sums, rows ty + r*WG_Y, columns tx + c*WG_X. K is walked in
// slices of BK staged in shared memory; loads past M, N or K read zeros, so any shape works.
// With WEIGHT_F16 (--dtype fp16) the weights are half floats (VK_KHR_16bit_storage), products are
// summed in fp16 over one BK slice (shaderFloat16) and the slice sums are added in fp32.
// With WEIGHT_I8 (--dtype int8) the weights are int8 (VK_KHR_8bit_storage: a widening load only, no
// shaderInt8 arithmetic) with an fp32 scale per column n; activations and sums stay fp32, and as the
// scale is one per column, sum_k x[m,k] * q[k,n] * scale[n] takes it once, in the epilogue.
#extension GL_GOOGLE_include_directive : require
#ifdef WEIGHT_F16
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_shader_16bit_storage : require
#endif
#ifdef WEIGHT_I8
#extension GL_EXT_shader_8bit_storage : require
#endif
#include "common.glsl"

layout(constant_id = 2) const uint TM = 4;
layout(constant_id = 3) const uint TN = 4;
layout(constant_id = 4) const uint BK = 16;
const uint BM = WG_Y * TM, BN = WG_X * TN;

#ifdef WEIGHT_F16
layout(std430, set = 0, binding = 0) buffer Halves { float16_t h[]; };
#define T float16_t
#define LD_W(i) h[i]
#elif defined(WEIGHT_I8)
layout(std430, set = 0, binding = 0) buffer Bytes { int8_t q[]; };
#define T float
#define LD_W(i) float(int(q[i]))
#else
#define T float
#define LD_W(i) LD(i)
#endif

layout(push_constant) uniform P {
  uint M, N, K, x, wkn, bias, res, y, act;
  uint x_batch, w_batch, y_batch;  // batch strides in elements (w in halves with WEIGHT_F16, bytes with WEIGHT_I8)
#ifdef WEIGHT_I8
  uint scale;  // word offset of the N column scales
#endif
} p;

shared T As[BK * BM];  // As[k * BM + m]
shared T Bs[BK * BN];  // Bs[k * BN + n]

void main() {
  const uint tx = gl_LocalInvocationID.x, ty = gl_LocalInvocationID.y;
  const uint tid = ty * WG_X + tx, threads = WG_X * WG_Y;
  const uint m0 = gl_WorkGroupID.y * BM, n0 = gl_WorkGroupID.x * BN, b = gl_WorkGroupID.z;
  const uint xb = p.x + b * p.x_batch, wb = p.wkn + b * p.w_batch;
  float acc[TM][TN];
  for (uint r = 0; r < TM; r++)
    for (uint c = 0; c < TN; c++) acc[r][c] = 0.0;
  for (uint k0 = 0; k0 < p.K; k0 += BK) {
    for (uint i = tid; i < BK * BM; i += threads) {  // consecutive invocations read consecutive k
      uint mm = i / BK, kk = i % BK, m = m0 + mm, k = k0 + kk;
      As[kk * BM + mm] = T(m < p.M && k < p.K ? LD(xb + m * p.K + k) : 0.0);
    }
    for (uint i = tid; i < BK * BN; i += threads) {  // ... and consecutive n
      uint kk = i / BN, nn = i % BN, n = n0 + nn, k = k0 + kk;
      Bs[kk * BN + nn] = n < p.N && k < p.K ? T(LD_W(wb + k * p.N + n)) : T(0.0);
    }
    SYNC();
    T part[TM][TN];
    for (uint r = 0; r < TM; r++)
      for (uint c = 0; c < TN; c++) part[r][c] = T(0.0);
    for (uint kk = 0; kk < BK; kk++) {
      T a[TM], bv[TN];
      for (uint r = 0; r < TM; r++) a[r] = As[kk * BM + ty + r * WG_Y];
      for (uint c = 0; c < TN; c++) bv[c] = Bs[kk * BN + tx + c * WG_X];
      for (uint r = 0; r < TM; r++)
        for (uint c = 0; c < TN; c++) part[r][c] += a[r] * bv[c];
    }
    for (uint r = 0; r < TM; r++)
      for (uint c = 0; c < TN; c++) acc[r][c] += float(part[r][c]);
    SYNC();
  }
  for (uint r = 0; r < TM; r++) {
    uint m = m0 + ty + r * WG_Y;
    if (m >= p.M) continue;
    for (uint c = 0; c < TN; c++) {
      uint n = n0 + tx + c * WG_X;
      if (n >= p.N) continue;
#ifdef WEIGHT_I8
      acc[r][c] *= LD(p.scale + n);
#endif
      float v = acc[r][c] + (p.bias != NONE ? LD(p.bias + n) : 0.0);
      v = activate(v, p.act);
      uint o = b * p.y_batch + m * p.N + n;
      if (p.res != NONE) v += LD(p.res + o);
      ST(p.y + o, v);
    }
  }
}
