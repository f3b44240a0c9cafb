#version 450
// Fused attention, one workgroup per (query, head, batch): qkv [B,S,3H] (Q|K|V, heads contiguous
// inside each), mask [B,S] int64 -> out [B,S,H]. The query and its S scores stay in shared memory
// (S and the head width D are specialization constants, so the arrays are sized per model); a
// query whose keys are all masked gives zeros, as the C kernels do.
// With SEQ_FROM_PUSH (a program of dynamic length, shader attention_seq) S is the bound, sizing the
// score row, and the run's length SEQ <= S comes in a seventh push constant.
// With REL_BIAS (attention_rel, attention_seq_rel: MPNet) two more push constants give a relative-position
// bias table [heads, 2R - 1] (a word offset) and R: the score of query i and key j gains rel[h, R - 1 + j - i].
// With V_APART (attention_v and its _seq/_rel forms: MobileBERT) qkv holds Q|K rows [B,S,2H] and one more push
// constant gives the word offset of V's own rows [B,S,H].
// With WINDOW (the _win variants: ModernBERT's local layers) a last push constant, the window: query i
// attends only to keys j with |i - j| <= window / 2, so the loops run over those keys alone.
// With POSITIONS (the _pos variants: DeBERTa's disentangled attention) six more push constants, after all the
// others: the c2p and p2c scores [B * heads, SEQ, W] (word offsets, NONE where absent), their i64 column tables
// [2R - 1] (word offsets), W and R; before the scale, the score of query i and key j of head h gains
// c2p[(b heads + h, i), c2p_at[R - 1 + j - i]] + p2c[(b heads + h, j), p2c_at[R - 1 + i - j]].
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 2) const uint S = 128;  // the compiled sequence length
layout(constant_id = 3) const uint D = 64;   // head width

#ifdef REL_BIAS
#define REL_FIELDS , rel, R
#else
#define REL_FIELDS
#endif
#ifdef V_APART
#define V_FIELDS , v
#define QK_PARTS 2
#else
#define V_FIELDS
#define QK_PARTS 3
#endif
#ifdef WINDOW
#define WINDOW_FIELD , window
#else
#define WINDOW_FIELD
#endif
#ifdef POSITIONS
#define POS_FIELDS , c2p, p2c, c2p_at, p2c_at, pos_w, pos_r
#else
#define POS_FIELDS
#endif
#ifdef SEQ_FROM_PUSH
layout(push_constant) uniform P {
  uint qkv, mask, out_, H, heads, scale, seq REL_FIELDS V_FIELDS WINDOW_FIELD POS_FIELDS;
} p;
#define SEQ p.seq
#else
layout(push_constant) uniform P { uint qkv, mask, out_, H, heads, scale REL_FIELDS V_FIELDS WINDOW_FIELD POS_FIELDS; } p;
#define SEQ S
#endif

shared float q[D];
shared float sc[S];
shared float red[WG_X];

float reduce_max(float v, uint tid) {
  red[tid] = v;
  SYNC();
  for (uint s = WG_X / 2; s > 0; s >>= 1) {
    if (tid < s) red[tid] = max(red[tid], red[tid + s]);
    SYNC();
  }
  float r = red[0];
  SYNC();
  return r;
}

float reduce_sum(float v, uint tid) {
  red[tid] = v;
  SYNC();
  for (uint s = WG_X / 2; s > 0; s >>= 1) {
    if (tid < s) red[tid] += red[tid + s];
    SYNC();
  }
  float r = red[0];
  SYNC();
  return r;
}

void main() {
  const uint tid = gl_LocalInvocationID.x;
  const uint i = gl_WorkGroupID.x, hd = gl_WorkGroupID.y, b = gl_WorkGroupID.z;
  const uint row = QK_PARTS * p.H, base = p.qkv + b * SEQ * row;
#ifdef V_APART
  const uint v_row = p.H, v_base = p.v + b * SEQ * v_row;
#else
  const uint v_row = row, v_base = base + 2 * p.H;
#endif
  const float scale = uintBitsToFloat(p.scale);
  for (uint d = tid; d < D; d += WG_X) q[d] = LD(base + i * row + hd * D + d);
#ifdef WINDOW
  const uint lo = i > p.window / 2 ? i - p.window / 2 : 0, hi = min(SEQ, i + p.window / 2 + 1);
#else
  const uint lo = 0, hi = SEQ;
#endif
  SYNC();
  float mx = -1.0 / 0.0;
  for (uint j = lo + tid; j < hi; j += WG_X) {
    float s = -1.0 / 0.0;
    if (LD_I64(p.mask, b * SEQ + j) != 0) {
      uint k = base + j * row + p.H + hd * D;
      s = 0.0;
      for (uint d = 0; d < D; d++) s += q[d] * LD(k + d);
#ifdef POSITIONS
      const uint bh = b * p.heads + hd;
      if (p.c2p != NONE) s += LD(p.c2p + (bh * SEQ + i) * p.pos_w + uint(LD_I64(p.c2p_at, p.pos_r - 1 + j - i)));
      if (p.p2c != NONE) s += LD(p.p2c + (bh * SEQ + j) * p.pos_w + uint(LD_I64(p.p2c_at, p.pos_r - 1 + i - j)));
#endif
      s *= scale;
#ifdef REL_BIAS
      s += LD(p.rel + hd * (2 * p.R - 1) + p.R - 1 + j - i);
#endif
    }
    sc[j] = s;
    mx = max(mx, s);
  }
  mx = reduce_max(mx, tid);
  const uint o = p.out_ + (b * SEQ + i) * p.H + hd * D;
  if (isinf(mx)) {  // every key masked
    for (uint d = tid; d < D; d += WG_X) ST(o + d, 0.0);
    return;
  }
  float sum = 0.0;
  for (uint j = lo + tid; j < hi; j += WG_X) {
    float e = isinf(sc[j]) ? 0.0 : exp(sc[j] - mx);
    sc[j] = e;
    sum += e;
  }
  const float inv = 1.0 / reduce_sum(sum, tid);  // its barriers also publish sc[]
  for (uint d = tid; d < D; d += WG_X) {
    float acc = 0.0;
    uint v = v_base + hd * D + d;
    for (uint j = lo; j < hi; j++)
      if (sc[j] != 0.0) acc += sc[j] * LD(v + j * v_row);
    ST(o + d, acc * inv);
  }
}
