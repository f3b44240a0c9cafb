/* The artifact's task head: head.bin (written by bertc/heads.py, whose docstring has the layout) read and
 * checked by head_parse, then applied after each run by head_apply, in fp32 on the CPU whatever ran the
 * encoder: pool the hidden states over the attention mask (or take the pooler output, or each token's state),
 * dense layers, then softmax / sigmoid (classification: "logits" and "probabilities", per text or per token)
 * or L2 normalization ("sentence_embedding").
 * Internal; static functions taking buffers, like loader.h. */
#ifndef BERTC_HEAD_H
#define BERTC_HEAD_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "blob.h"

enum { HEAD_VERSION = 1, HEAD_CLASSIFY = 1, HEAD_EMBED = 2, HEAD_TOKENS = 3, HEAD_MAX_LAYERS = 8, HEAD_MAX_WIDTH = 1 << 16 };
enum { HEAD_POOLER, HEAD_FIRST, HEAD_MEAN, HEAD_MAX, HEAD_MEAN_SQRT, HEAD_EACH };
enum { HEAD_NO_LAST, HEAD_SOFTMAX, HEAD_SIGMOID, HEAD_NORMALIZE };
enum { HEAD_ACT_NONE, HEAD_ACT_RELU, HEAD_ACT_TANH, HEAD_ACT_GELU };

typedef struct {
  uint32_t task, source, last, n_layers, n_labels, width, out_width, widest;
  struct { uint32_t in, out, act; const float *w, *b; } layer[HEAD_MAX_LAYERS];
  const char *label[1 << 12];
  uint32_t label_len[1 << 12];
} bertc_head;

/* Check head.bin's bytes (kept, 4-byte aligned, by the caller while h is used) and point h into them. */
static bertc_status head_parse(const uint8_t *d, size_t len, const char *path, bertc_head *h, char *err) {
  memset(h, 0, sizeof *h);
  const bertc_status checked = blob_check(d, len, 64, "BHED", HEAD_VERSION, "head", path, err);
  if (checked != BERTC_OK) return checked;
  h->task = blob_u32(d + 40);
  h->source = blob_u32(d + 44);
  h->last = blob_u32(d + 48);
  h->n_layers = blob_u32(d + 52);
  h->n_labels = blob_u32(d + 56);
  h->width = blob_u32(d + 60);
  const char *bad = NULL;
  if (h->task < HEAD_CLASSIFY || h->task > HEAD_TOKENS || h->source > HEAD_EACH ||
      (h->task == HEAD_TOKENS) != (h->source == HEAD_EACH) || h->last > HEAD_NORMALIZE ||
      h->n_layers > HEAD_MAX_LAYERS || h->n_labels > (1 << 12) || h->width == 0 || h->width > HEAD_MAX_WIDTH)
    bad = "header";
  size_t at = 64;
  uint32_t width = h->width;
  h->widest = width;
  for (uint32_t i = 0; !bad && i < h->n_layers; i++) {
    if (len - at < 12) { bad = "layer"; break; }
    uint32_t in = blob_u32(d + at), out = blob_u32(d + at + 4), act = blob_u32(d + at + 8);
    at += 12;
    if (in != width || out == 0 || out > HEAD_MAX_WIDTH || act > HEAD_ACT_GELU ||
        ((uint64_t)in + 1) * out * 4 > len - at) { bad = "layer"; break; }
    h->layer[i].in = in;
    h->layer[i].out = out;
    h->layer[i].act = act;
    h->layer[i].w = (const float *)(d + at);
    h->layer[i].b = (const float *)(d + at) + (size_t)in * out;
    at += ((size_t)in + 1) * out * 4;
    width = out;
    if (width > h->widest) h->widest = width;
  }
  h->out_width = width;
  if (!bad && h->task != HEAD_EMBED && h->n_labels != width) bad = "labels";
  for (uint32_t i = 0; !bad && i < h->n_labels; i++) {
    if (len - at < 4 || blob_u32(d + at) > len - at - 4) { bad = "labels"; break; }
    const uint32_t n = blob_u32(d + at);
    h->label[i] = (const char *)d + at + 4;
    h->label_len[i] = n;
    at += 4 + (size_t)n;
  }
  if (!bad && at != len) bad = "length";
  if (bad) return fail(err, BERTC_ERR_FORMAT, "%s: inconsistent %s (damaged?); recompile the artifact", path, bad);
  return BERTC_OK;
}

static float head_act(uint32_t act, float x) {
  switch (act) {
    case HEAD_ACT_RELU: return x > 0 ? x : 0;
    case HEAD_ACT_TANH: return tanhf(x);
    case HEAD_ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    default: return x;
  }
}

/* One row: from hidden [seq, H] with mask (NULL: every position counts) or pooled [H], into out (out_width);
 * scratch holds 2 * widest floats. out2 receives the probabilities of a classifier (out: its logits). */
static void head_row(const bertc_head *h, const float *hidden, const float *pooled, const int64_t *mask, int64_t seq,
                     float *scratch, float *out, float *out2) {
  const uint32_t H = h->width;
  float *x = scratch, *y = scratch + h->widest;
  if (h->source == HEAD_POOLER) memcpy(x, pooled, sizeof *x * H);
  else if (h->source == HEAD_FIRST || h->source == HEAD_EACH) memcpy(x, hidden, sizeof *x * H);
  else {
    double n = 0;
    for (uint32_t j = 0; j < H; j++) x[j] = h->source == HEAD_MAX ? -1e9f : 0.0f; /* sentence-transformers' fill */
    for (int64_t s = 0; s < seq; s++) {
      if (mask && !mask[s]) continue;
      n++;
      const float *r = hidden + s * H;
      for (uint32_t j = 0; j < H; j++) x[j] = h->source == HEAD_MAX ? fmaxf(x[j], r[j]) : x[j] + r[j];
    }
    if (h->source != HEAD_MAX) {
      float scale = (float)(1.0 / (h->source == HEAD_MEAN ? fmax(n, 1e-9) : sqrt(fmax(n, 1e-9))));
      for (uint32_t j = 0; j < H; j++) x[j] *= scale;
    }
  }
  uint32_t width = H;
  for (uint32_t l = 0; l < h->n_layers; l++) {
    const uint32_t in = h->layer[l].in, o = h->layer[l].out;
    for (uint32_t i = 0; i < o; i++) {
      const float *w = h->layer[l].w + (size_t)i * in;
      double acc = h->layer[l].b[i];
      for (uint32_t j = 0; j < in; j++) acc += (double)w[j] * x[j];
      y[i] = head_act(h->layer[l].act, (float)acc);
    }
    float *t = x; x = y; y = t;
    width = o;
  }
  memcpy(out, x, sizeof *out * width);
  if (h->last == HEAD_NORMALIZE) {
    double ss = 0;
    for (uint32_t j = 0; j < width; j++) ss += (double)out[j] * out[j];
    float inv = (float)(1.0 / fmax(sqrt(ss), 1e-12));
    for (uint32_t j = 0; j < width; j++) out[j] *= inv;
  }
  if (h->task == HEAD_EMBED) return;
  float top = out[0];
  for (uint32_t j = 1; j < width; j++) top = fmaxf(top, out[j]);
  double sum = 0;
  for (uint32_t j = 0; j < width; j++) {
    out2[j] = h->last == HEAD_SOFTMAX ? expf(out[j] - top) : h->last == HEAD_SIGMOID ? 1.0f / (1.0f + expf(-out[j])) : out[j];
    sum += out2[j];
  }
  if (h->last == HEAD_SOFTMAX)
    for (uint32_t j = 0; j < width; j++) out2[j] = (float)(out2[j] / sum);
}

#endif
