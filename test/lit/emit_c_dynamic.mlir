// RUN: bertc-opt %s --split-input-file --plan-memory --emit-c | FileCheck %s

// A run-time length (tensor<1x?x..>, bounded by bertc.max_seq_len = 16): model_run reads the run's
// length L, and every size that has it is a C expression in L, so a run of L tokens does L rows of
// each GEMM and attends over L keys. The arena, the attention scratch and the header's seq_len are
// at the bound; the header says the program is dynamic, and the output slot's last field names the
// dimension that is L (bertc_output reports the run's length there). The ops table shows ? for L.
// A pool is sized by the op's work at this length: L x 8 x 4 multiply-adds, L x 8 elements.
// CHECK: static void model_run(const bertc_exec *x) {
// CHECK: const int64_t L = x->seq;
// CHECK-NEXT: (void)L;
// CHECK: /* bertc.linear [1, ?, 8] */
// CHECK-NEXT: BERTC_TIMED(0, bertc_linear(bertc_pool_sized(p, (int64_t)(32*L), BERTC_SERIAL_MACS), A(float, {{[0-9]+}}), W(float, 0), NULL, NULL, A(float, {{[0-9]+}}), (L), 8, 4, BERTC_ACT_GELU));
// CHECK: BERTC_TIMED(1, bertc_layer_norm(bertc_pool_sized(p, (int64_t)(8*L), BERTC_SERIAL_ELEMENTS), A(float, {{[0-9]+}}), A(float, {{[0-9]+}}), W(float, {{[0-9]+}}), W(float, {{[0-9]+}}), A(float, {{[0-9]+}}), (L), 8, 9.999999960041972e-13f));
// CHECK: BERTC_TIMED(3, bertc_attention(p, A(float, [[QKV:[0-9]+]]), 24, A(float, [[QKV]]) + 16, 24, A(int64_t, {{[0-9]+}}), NULL, 0, NULL, 0, A(float, {{[0-9]+}}), 1, (L), 8, 2, 0.5f));
// Scores [1, 2, L, L]: a softmax over 2*L rows of L each.
// CHECK: BERTC_TIMED(4, bertc_softmax(bertc_pool_sized(p, (int64_t)(2*L*L), BERTC_SERIAL_ELEMENTS), A(float, {{[0-9]+}}), A(float, {{[0-9]+}}), (2*L), (L)));
// CHECK: static const bertc_tensor_slot outputs[] = {
// CHECK-NEXT: {"output_0", {{[0-9]+}}, 3, {1, 16, 8, 0}, 1},
// CHECK: {"bertc.linear [1, ?, 8]", "bertc_linear"},
// CHECK: .header.seq_len = 16,
// CHECK-NEXT: .header.dynamic = 1,
// CHECK: .scratch_floats = MAX2(MAX2(MAX2(64, BERTC_SCRATCH_ATTENTION(16, 4)), BERTC_SCRATCH_LINEAR(4)), BERTC_SCRATCH_LINEAR(8)),
module attributes {bertc.max_seq_len = 16 : i64} {
  func.func @main(%ids: tensor<1x?xi64>, %mask: tensor<1x?xi64>, %x: tensor<1x?x4xf32>, %s: tensor<1x2x?x?xf32>) -> tensor<1x?x8xf32> {
    %w = "bertc.weight"() {name = "fc.weight"} : () -> tensor<8x4xf32>
    %g = "bertc.weight"() {name = "ln.weight"} : () -> tensor<8xf32>
    %b = "bertc.weight"() {name = "ln.bias"} : () -> tensor<8xf32>
    %wqkv = "bertc.weight"() {name = "qkv.weight"} : () -> tensor<24x8xf32>
    %h = "bertc.linear"(%x, %w) {activation = "gelu", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x?x4xf32>, tensor<8x4xf32>) -> tensor<1x?x8xf32>
    %n = "bertc.layer_norm"(%h, %g, %b, %h) {eps = 9.99999996E-13 : f32, operandSegmentSizes = array<i32: 1, 1, 1, 1>} : (tensor<1x?x8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<1x?x8xf32>) -> tensor<1x?x8xf32>
    %qkv = "bertc.linear"(%n, %wqkv) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x?x8xf32>, tensor<24x8xf32>) -> tensor<1x?x24xf32>
    %a = "bertc.attention"(%qkv, %mask) {num_heads = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 0, 0, 0, 0, 0>, scale = 5.000000e-01 : f32, window = 0 : i64} : (tensor<1x?x24xf32>, tensor<1x?xi64>) -> tensor<1x?x8xf32>
    %p = "bertc.softmax"(%s) : (tensor<1x2x?x?xf32>) -> tensor<1x2x?x?xf32>
    return %a : tensor<1x?x8xf32>
  }
}

// -----

// A rotary of the fused Q|K rows (RoFormer's, after fuse-attention) takes its tables whole ([bound, D]: a run reads
// their first L rows, and two reads of one table are stored once) and the run's length: B, L, C, D, columns, style.
// CHECK: static void model_run
// CHECK: /* bertc.rotary [1, ?, 24] */
// CHECK-NEXT: BERTC_TIMED(0, bertc_rotary(bertc_pool_sized(p, (int64_t)(24*L), BERTC_SERIAL_ELEMENTS), A(float, {{[0-9]+}}), W(float, [[COS:[0-9]+]]), W(float, [[SIN:[0-9]+]]), A(float, {{[0-9]+}}), 1, (L), 24, 4, 16, 1));
// CHECK: BERTC_TIMED(1, bertc_rotary(bertc_pool_sized(p, (int64_t)(24*L), BERTC_SERIAL_ELEMENTS), A(float, {{[0-9]+}}), W(float, [[COS]]), W(float, [[SIN]]), A(float, {{[0-9]+}}), 1, (L), 24, 4, 24, 0));
module attributes {bertc.max_seq_len = 16 : i64} {
  func.func @main(%ids: tensor<1x?xi64>, %mask: tensor<1x?xi64>, %qkv: tensor<1x?x24xf32>) -> tensor<1x?x24xf32> {
    %cos = "bertc.weight"() {name = "constant.0"} : () -> tensor<16x4xf32>
    %sin = "bertc.weight"() {name = "constant.1"} : () -> tensor<16x4xf32>
    %r = "bertc.rotary"(%qkv, %cos, %sin) {columns = 16 : i64, style = "interleaved"} : (tensor<1x?x24xf32>, tensor<16x4xf32>, tensor<16x4xf32>) -> tensor<1x?x24xf32>
    %cos2 = "bertc.weight"() {name = "constant.0"} : () -> tensor<16x4xf32>
    %sin2 = "bertc.weight"() {name = "constant.1"} : () -> tensor<16x4xf32>
    %h = "bertc.rotary"(%r, %cos2, %sin2) {columns = 24 : i64, style = "halves"} : (tensor<1x?x24xf32>, tensor<16x4xf32>, tensor<16x4xf32>) -> tensor<1x?x24xf32>
    return %h : tensor<1x?x24xf32>
  }
}

// -----

// MobileBERT's trigram at the run's length: B, L, E (a row's last position takes zeros for its next).
// CHECK: /* bertc.trigram [2, ?, 12] */
// CHECK-NEXT: BERTC_TIMED(0, bertc_trigram(A(float, {{[0-9]+}}), A(float, {{[0-9]+}}), 2, (L), 4));
module attributes {bertc.max_seq_len = 16 : i64} {
  func.func @main(%ids: tensor<2x?xi64>, %mask: tensor<2x?xi64>, %x: tensor<2x?x4xf32>) -> tensor<2x?x12xf32> {
    %t = "bertc.trigram"(%x) : (tensor<2x?x4xf32>) -> tensor<2x?x12xf32>
    return %t : tensor<2x?x12xf32>
  }
}

// -----

// ConvBERT's convolutions over the sequence at the run's length: B, L, C, then k (the depthwise weight [C, k] stored
// as [k, C], "kn", so that each tap reads a row of C), and the span convolution's heads and k.
// CHECK: /* bertc.depthwise_conv1d [2, ?, 4] */
// CHECK-NEXT: BERTC_TIMED(0, bertc_depthwise_conv1d(p, A(float, {{[0-9]+}}), W(float, 0), A(float, {{[0-9]+}}), 2, (L), 4, 9));
// CHECK: /* bertc.span_conv [2, ?, 4] */
// CHECK-NEXT: BERTC_TIMED(1, bertc_span_conv(p, A(float, {{[0-9]+}}), A(float, {{[0-9]+}}), A(float, {{[0-9]+}}), 2, (L), 4, 2, 9));
module attributes {bertc.max_seq_len = 16 : i64} {
  func.func @main(%ids: tensor<2x?xi64>, %mask: tensor<2x?xi64>, %x: tensor<2x?x4xf32>, %k: tensor<2x?x2x9xf32>) -> tensor<2x?x4xf32> {
    %w = "bertc.weight"() {name = "depthwise.weight"} : () -> tensor<4x9xf32>
    %d = "bertc.depthwise_conv1d"(%x, %w) : (tensor<2x?x4xf32>, tensor<4x9xf32>) -> tensor<2x?x4xf32>
    %s = "bertc.span_conv"(%d, %k) : (tensor<2x?x4xf32>, tensor<2x?x2x9xf32>) -> tensor<2x?x4xf32>
    return %s : tensor<2x?x4xf32>
  }
}

// -----

// EuroBERT's RMSNorm at the run's length: rows L, width 4, eps.
// CHECK: /* bertc.rms_norm [1, ?, 4] */
// CHECK-NEXT: BERTC_TIMED(0, bertc_rms_norm(bertc_pool_sized(p, (int64_t)(4*L), BERTC_SERIAL_ELEMENTS), A(float, {{[0-9]+}}), W(float, 0), A(float, {{[0-9]+}}), (L), 4, 9.999999747378752e-06f));
module attributes {bertc.max_seq_len = 16 : i64} {
  func.func @main(%ids: tensor<1x?xi64>, %mask: tensor<1x?xi64>, %x: tensor<1x?x4xf32>) -> tensor<1x?x4xf32> {
    %g = "bertc.weight"() {name = "norm.weight"} : () -> tensor<4xf32>
    %n = "bertc.rms_norm"(%x, %g) {eps = 1.0E-5 : f32} : (tensor<1x?x4xf32>, tensor<4xf32>) -> tensor<1x?x4xf32>
    return %n : tensor<1x?x4xf32>
  }
}

// -----

// DeBERTa's relative gather at a run-time length: L rows of L scores per batch-head, the table sized at the bound.
// CHECK: static void model_run
// CHECK: bertc_relative_gather(A(float, {{[0-9]+}}), W(int64_t, {{[0-9]+}}), A(float, {{[0-9]+}}), 4, (L), 32, 16));
module attributes {bertc.max_seq_len = 16 : i64} {
  func.func @main(%x: tensor<4x?x32xf32>) -> tensor<4x?x32xf32> {
    %t = "bertc.weight"() {name = "c2p.table"} : () -> tensor<31xi64>
    %0 = "bertc.relative_gather"(%x, %t) : (tensor<4x?x32xf32>, tensor<31xi64>) -> tensor<4x?x?xf32>
    %1 = "bertc.matmul"(%0, %x) : (tensor<4x?x?xf32>, tensor<4x?x32xf32>) -> tensor<4x?x32xf32>
    return %1 : tensor<4x?x32xf32>
  }
}

// -----

// ESM-2's token dropout at a run-time length: the kernel counts each row's <mask> tokens and real ones over
// the run's L, and the embeddings take the factor by a broadcasting mul.
// CHECK: BERTC_TIMED(0, bertc_token_dropout(A(int64_t, {{[0-9]+}}), A(int64_t, {{[0-9]+}}), A(float, {{[0-9]+}}), 2, (L), 32, 0.8799999952316284f));
// CHECK-NEXT: /* bertc.mul [2, ?, 8] */
module attributes {bertc.max_seq_len = 16 : i64} {
  func.func @main(%x: tensor<2x?x8xf32>, %ids: tensor<2x?xi64>, %mask: tensor<2x?xi64>) -> tensor<2x?x8xf32> {
    %f = "bertc.token_dropout"(%ids, %mask) {keep = 0.879999995 : f32, token = 32 : i64} : (tensor<2x?xi64>, tensor<2x?xi64>) -> tensor<2x?x1xf32>
    %0 = "bertc.mul"(%x, %f) : (tensor<2x?x8xf32>, tensor<2x?x1xf32>) -> tensor<2x?x8xf32>
    return %0 : tensor<2x?x8xf32>
  }
}
