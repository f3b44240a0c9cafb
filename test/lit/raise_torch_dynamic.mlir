// RUN: bertc-opt %s --split-input-file --raise-torch | FileCheck %s

// A dynamic sequence length (torch.export with a Dim) stays ?: the position ids are the first L of
// their buffer (the run-time size only feeds the slice's end), the mask stand-in's shape list holds
// the size too, and the result keeps ?.
// CHECK-LABEL: func.func @embeddings
// CHECK-SAME: (%[[IDS:.*]]: tensor<1x?xi64>, %[[M:.*]]: tensor<1x?xi64>) -> (tensor<1x?x32xf32>, tensor<1x1x?x?xf32>)
// CHECK: "bertc.mask_bias"(%[[M]]) {{.*}} : (tensor<1x?xi64>) -> tensor<1x1x?x?xf32>
// CHECK: %[[POS:.*]] = "bertc.slice"(%{{.*}}) {dim = 1 : i64, start = 0 : i64} : (tensor<1x300xi64>) -> tensor<1x?xi64>
// CHECK: "bertc.embedding"(%{{.*}}, %[[IDS]]) : (tensor<120x32xf32>, tensor<1x?xi64>) -> tensor<1x?x32xf32>
// CHECK: "bertc.embedding"(%{{.*}}, %[[POS]]) : (tensor<300x32xf32>, tensor<1x?xi64>) -> tensor<1x?x32xf32>
// CHECK: "bertc.add"({{.*}}) : (tensor<1x?x32xf32>, tensor<1x?x32xf32>) -> tensor<1x?x32xf32>
// CHECK-NOT: torch.
func.func @embeddings(%arg0: !torch.vtensor<[1,?],si64>, %arg1: !torch.vtensor<[1,?],si64>) -> (!torch.vtensor<[1,?,32],f32>, !torch.vtensor<[1,1,?,?],f32>) {
  %int1 = torch.constant.int 1
  %int0 = torch.constant.int 0
  %len = torch.aten.size.int %arg1, %int1 : !torch.vtensor<[1,?],si64>, !torch.int -> !torch.int
  %shape = torch.prim.ListConstruct %int1, %int1, %len, %len : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %fill = torch.constant.float -3.4028234663852886E+38
  %bias = torch.operator "torch.bertc.mask_bias"(%arg1, %shape, %fill) : (!torch.vtensor<[1,?],si64>, !torch.list<int>, !torch.float) -> !torch.vtensor<[1,1,?,?],f32>
  %table = "bertc.weight"() {name = "embeddings.position_ids"} : () -> !torch.vtensor<[1,300],si64>
  %pos = torch.aten.slice.Tensor %table, %int1, %int0, %len, %int1 : !torch.vtensor<[1,300],si64>, !torch.int, !torch.int, !torch.int, !torch.int -> !torch.vtensor<[1,?],si64>
  %ww = "bertc.weight"() {name = "embeddings.word_embeddings.weight"} : () -> !torch.vtensor<[120,32],f32>
  %wp = "bertc.weight"() {name = "embeddings.position_embeddings.weight"} : () -> !torch.vtensor<[300,32],f32>
  %intm1 = torch.constant.int -1
  %false = torch.constant.bool false
  %e0 = torch.aten.embedding %ww, %arg0, %int0, %false, %false : !torch.vtensor<[120,32],f32>, !torch.vtensor<[1,?],si64>, !torch.int, !torch.bool, !torch.bool -> !torch.vtensor<[1,?,32],f32>
  %e1 = torch.aten.embedding %wp, %pos, %intm1, %false, %false : !torch.vtensor<[300,32],f32>, !torch.vtensor<[1,?],si64>, !torch.int, !torch.bool, !torch.bool -> !torch.vtensor<[1,?,32],f32>
  %e = torch.aten.add.Tensor %e0, %e1, %int1 : !torch.vtensor<[1,?,32],f32>, !torch.vtensor<[1,?,32],f32>, !torch.int -> !torch.vtensor<[1,?,32],f32>
  return %e, %bias : !torch.vtensor<[1,?,32],f32>, !torch.vtensor<[1,1,?,?],f32>
}

// -----

// Heads split with the run-time size in the view's shape list; the pooler's [CLS] row is a static
// slice of the dynamic dimension.
// CHECK-LABEL: func.func @heads_and_pooler
// CHECK: "bertc.reshape"(%{{.*}}) : (tensor<1x?x32xf32>) -> tensor<1x?x2x16xf32>
// CHECK: "bertc.transpose"(%{{.*}}) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x?x2x16xf32>) -> tensor<1x2x?x16xf32>
// CHECK: "bertc.slice"(%{{.*}}) {dim = 1 : i64, start = 0 : i64} : (tensor<1x?x32xf32>) -> tensor<1x1x32xf32>
// CHECK: "bertc.reshape"(%{{.*}}) : (tensor<1x1x32xf32>) -> tensor<1x32xf32>
func.func @heads_and_pooler(%arg0: !torch.vtensor<[1,?,32],f32>) -> (!torch.vtensor<[1,2,?,16],f32>, !torch.vtensor<[1,32],f32>) {
  %int0 = torch.constant.int 0
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %intm1 = torch.constant.int -1
  %int16 = torch.constant.int 16
  %len = torch.aten.size.int %arg0, %int1 : !torch.vtensor<[1,?,32],f32>, !torch.int -> !torch.int
  %shape = torch.prim.ListConstruct %int1, %len, %intm1, %int16 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %v = torch.aten.view %arg0, %shape : !torch.vtensor<[1,?,32],f32>, !torch.list<int> -> !torch.vtensor<[1,?,2,16],f32>
  %t = torch.aten.transpose.int %v, %int1, %int2 : !torch.vtensor<[1,?,2,16],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,2,?,16],f32>
  %cls = torch.aten.select.int %arg0, %int1, %int0 : !torch.vtensor<[1,?,32],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,32],f32>
  return %t, %cls : !torch.vtensor<[1,2,?,16],f32>, !torch.vtensor<[1,32],f32>
}

// -----

// MobileBERT's trigram (canonicalize-trigram's bertc::trigram: each embedding beside its neighbours') keeps the
// run's length; its ReLU FFN is bertc.relu.
// CHECK-LABEL: func.func @trigram_and_relu
// CHECK: %[[T:.*]] = "bertc.trigram"(%arg0) : (tensor<2x?x4xf32>) -> tensor<2x?x12xf32>
// CHECK: "bertc.relu"(%[[T]]) : (tensor<2x?x12xf32>) -> tensor<2x?x12xf32>
func.func @trigram_and_relu(%x: !torch.vtensor<[2,?,4],f32>) -> !torch.vtensor<[2,?,12],f32> {
  %t = torch.operator "torch.bertc.trigram"(%x) : (!torch.vtensor<[2,?,4],f32>) -> !torch.vtensor<[2,?,12],f32>
  %r = torch.aten.relu %t : !torch.vtensor<[2,?,12],f32> -> !torch.vtensor<[2,?,12],f32>
  return %r : !torch.vtensor<[2,?,12],f32>
}

// -----

// A SwiGLU FFN's gate: aten.silu is bertc.silu.
// CHECK-LABEL: func.func @silu
// CHECK: "bertc.silu"(%arg0) : (tensor<1x?x8xf32>) -> tensor<1x?x8xf32>
func.func @silu(%x: !torch.vtensor<[1,?,8],f32>) -> !torch.vtensor<[1,?,8],f32> {
  %s = torch.aten.silu %x : !torch.vtensor<[1,?,8],f32> -> !torch.vtensor<[1,?,8],f32>
  return %s : !torch.vtensor<[1,?,8],f32>
}

// -----

// EuroBERT's RMSNorm (canonicalize-norms' aten.rms_norm) is one bertc.rms_norm; without a weight, gamma is ones.
// CHECK-LABEL: func.func @rms_norm
// CHECK: "bertc.rms_norm"(%arg0, %{{.*}}) {eps = 9.99999974E-6 : f32} : (tensor<1x?x8xf32>, tensor<8xf32>) -> tensor<1x?x8xf32>
// CHECK: %[[ONES:.*]] = "bertc.constant"() {value = dense<1.000000e+00> : tensor<8xf32>}
// CHECK: "bertc.rms_norm"(%arg0, %[[ONES]]) {eps = 1.1920929E-7 : f32}
func.func @rms_norm(%x: !torch.vtensor<[1,?,8],f32>, %w: !torch.vtensor<[8],f32>) -> (!torch.vtensor<[1,?,8],f32>, !torch.vtensor<[1,?,8],f32>) {
  %int8 = torch.constant.int 8
  %shape = torch.prim.ListConstruct %int8 : (!torch.int) -> !torch.list<int>
  %eps = torch.constant.float 1.000000e-05
  %none = torch.constant.none
  %a = torch.aten.rms_norm %x, %shape, %w, %eps : !torch.vtensor<[1,?,8],f32>, !torch.list<int>, !torch.vtensor<[8],f32>, !torch.float -> !torch.vtensor<[1,?,8],f32>
  %b = torch.aten.rms_norm %x, %shape, %none, %none : !torch.vtensor<[1,?,8],f32>, !torch.list<int>, !torch.none, !torch.none -> !torch.vtensor<[1,?,8],f32>
  return %a, %b : !torch.vtensor<[1,?,8],f32>, !torch.vtensor<[1,?,8],f32>
}

// -----

// ConvBERT (canonicalize-conv's bertc::depthwise_conv1d and bertc::span_conv) keeps the run's length: the
// depthwise conv of the hidden states by a [C, k] weight, and the span convolution of the conv rows by
// per-position kernels [B, L, heads, k]; its aten.multiply is bertc.mul.
// CHECK-LABEL: func.func @convbert_convolutions
// CHECK: %[[D:.*]] = "bertc.depthwise_conv1d"(%arg0, %arg1) : (tensor<2x?x4xf32>, tensor<4x9xf32>) -> tensor<2x?x4xf32>
// CHECK: %[[M:.*]] = "bertc.mul"(%[[D]], %arg0) : (tensor<2x?x4xf32>, tensor<2x?x4xf32>) -> tensor<2x?x4xf32>
// CHECK: "bertc.span_conv"(%[[M]], %arg2) : (tensor<2x?x4xf32>, tensor<2x?x2x9xf32>) -> tensor<2x?x4xf32>
func.func @convbert_convolutions(%x: !torch.vtensor<[2,?,4],f32>, %w: !torch.vtensor<[4,9],f32>,
                                 %k: !torch.vtensor<[2,?,2,9],f32>) -> !torch.vtensor<[2,?,4],f32> {
  %d = torch.operator "torch.bertc.depthwise_conv1d"(%x, %w) : (!torch.vtensor<[2,?,4],f32>, !torch.vtensor<[4,9],f32>) -> !torch.vtensor<[2,?,4],f32>
  %m = torch.operator "torch.aten.multiply.Tensor"(%d, %x) : (!torch.vtensor<[2,?,4],f32>, !torch.vtensor<[2,?,4],f32>) -> !torch.vtensor<[2,?,4],f32>
  %s = torch.operator "torch.bertc.span_conv"(%m, %k) : (!torch.vtensor<[2,?,4],f32>, !torch.vtensor<[2,?,2,9],f32>) -> !torch.vtensor<[2,?,4],f32>
  return %s : !torch.vtensor<[2,?,4],f32>
}
