// RUN: bertc-opt %s --split-input-file --raise-torch | FileCheck %s

// Linear + GELU: torch ops become bertc ops on builtin tensors; weights keep their names.
// CHECK-LABEL: func.func @mlp
// CHECK-SAME: (%[[X:.*]]: tensor<1x8x32xf32>) -> tensor<1x8x64xf32>
// CHECK: %[[W:.*]] = "bertc.weight"() {name = "fc.weight"} : () -> tensor<64x32xf32>
// CHECK: %[[B:.*]] = "bertc.weight"() {name = "fc.bias"} : () -> tensor<64xf32>
// CHECK: %[[L:.*]] = "bertc.linear"(%[[X]], %[[W]], %[[B]]) {activation = "none"
// CHECK: "bertc.gelu"(%[[L]]) {approximate = "none"}
// CHECK-NOT: torch.
func.func @mlp(%arg0: !torch.vtensor<[1,8,32],f32>) -> !torch.vtensor<[1,8,64],f32> {
  %w = "bertc.weight"() {name = "fc.weight"} : () -> !torch.vtensor<[64,32],f32>
  %b = "bertc.weight"() {name = "fc.bias"} : () -> !torch.vtensor<[64],f32>
  %0 = torch.aten.linear %arg0, %w, %b : !torch.vtensor<[1,8,32],f32>, !torch.vtensor<[64,32],f32>, !torch.vtensor<[64],f32> -> !torch.vtensor<[1,8,64],f32>
  %false = torch.constant.bool false
  %p = torch.constant.float 1.000000e-01
  %1 = torch.aten.dropout %0, %p, %false : !torch.vtensor<[1,8,64],f32>, !torch.float, !torch.bool -> !torch.vtensor<[1,8,64],f32>
  %str = torch.constant.str "none"
  %2 = torch.aten.gelu %1, %str : !torch.vtensor<[1,8,64],f32>, !torch.str -> !torch.vtensor<[1,8,64],f32>
  return %2 : !torch.vtensor<[1,8,64],f32>
}

// -----

// sdpa is raised to its eager form, so fuse-attention has one pattern to match.
// CHECK-LABEL: func.func @sdpa
// CHECK: %[[BIAS:.*]] = "bertc.mask_bias"(%arg3) {fill = 0xFF800000 : f32, window = 0 : i64}
// CHECK: %[[KT:.*]] = "bertc.transpose"(%arg1) {perm = array<i64: 0, 1, 3, 2>}
// CHECK: %[[S:.*]] = "bertc.matmul"(%arg0, %[[KT]])
// CHECK: %[[C:.*]] = "bertc.constant"() {value = dense<2.500000e-01> : tensor<f32>}
// CHECK: %[[SS:.*]] = "bertc.mul"(%[[S]], %[[C]])
// CHECK: %[[SB:.*]] = "bertc.add"(%[[SS]], %[[BIAS]])
// CHECK: %[[P:.*]] = "bertc.softmax"(%[[SB]])
// CHECK: "bertc.matmul"(%[[P]], %arg2)
func.func @sdpa(%q: !torch.vtensor<[1,2,4,16],f32>, %k: !torch.vtensor<[1,2,4,16],f32>, %v: !torch.vtensor<[1,2,4,16],f32>, %m: !torch.vtensor<[1,4],si64>) -> !torch.vtensor<[1,2,4,16],f32> {
  %shape = torch.prim.ListConstruct : () -> !torch.list<int>
  %keep = torch.operator "torch.bertc.keep_mask"(%m, %shape) : (!torch.vtensor<[1,4],si64>, !torch.list<int>) -> !torch.vtensor<[1,1,4,4],i1>
  %f0 = torch.constant.float 0.000000e+00
  %false = torch.constant.bool false
  %none = torch.constant.none
  %0 = torch.aten.scaled_dot_product_attention %q, %k, %v, %keep, %f0, %false, %none, %false : !torch.vtensor<[1,2,4,16],f32>, !torch.vtensor<[1,2,4,16],f32>, !torch.vtensor<[1,2,4,16],f32>, !torch.vtensor<[1,1,4,4],i1>, !torch.float, !torch.bool, !torch.none, !torch.bool -> !torch.vtensor<[1,2,4,16],f32>
  return %0 : !torch.vtensor<[1,2,4,16],f32>
}

// -----

// Tensor literals become bertc.constant with signless element types (torch's are signed),
// splat or not; a 0-d float literal keeps its value for the passes that read it.
// CHECK-LABEL: func.func @literals
// CHECK: "bertc.constant"() {value = dense<0> : tensor<1x1xi64>} : () -> tensor<1x1xi64>
// CHECK: "bertc.constant"() {value = dense<{{\[\[}}0, 1, 2]]> : tensor<1x3xi64>} : () -> tensor<1x3xi64>
// CHECK: "bertc.constant"() {value = dense<1.250000e-01> : tensor<f32>} : () -> tensor<f32>
func.func @literals() -> (!torch.vtensor<[1,1],si64>, !torch.vtensor<[1,3],si64>, !torch.vtensor<[],f32>) {
  %0 = torch.vtensor.literal(dense<0> : tensor<1x1xsi64>) : !torch.vtensor<[1,1],si64>
  %1 = torch.vtensor.literal(dense<[[0, 1, 2]]> : tensor<1x3xsi64>) : !torch.vtensor<[1,3],si64>
  %2 = torch.vtensor.literal(dense<1.250000e-01> : tensor<f32>) : !torch.vtensor<[],f32>
  return %0, %1, %2 : !torch.vtensor<[1,1],si64>, !torch.vtensor<[1,3],si64>, !torch.vtensor<[],f32>
}

// -----

// ERNIE's `inputs_embeds.to(device)` (to.dtype_layout: f32, strided, cpu) converts nothing: the add reads %arg0.
// CHECK-LABEL: func.func @to_device
// CHECK-NEXT: %[[S:.*]] = "bertc.add"(%arg0, %arg0)
// CHECK-NEXT: return %[[S]]
func.func @to_device(%arg0: !torch.vtensor<[1,8,32],f32>) -> !torch.vtensor<[1,8,32],f32> {
  %int6 = torch.constant.int 6
  %int0 = torch.constant.int 0
  %cpu = torch.constant.device "cpu"
  %none = torch.constant.none
  %false = torch.constant.bool false
  %0 = torch.aten.to.dtype_layout %arg0, %int6, %int0, %cpu, %none, %false, %false, %none : !torch.vtensor<[1,8,32],f32>, !torch.int, !torch.int, !torch.Device, !torch.none, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[1,8,32],f32>
  %int1 = torch.constant.int 1
  %1 = torch.aten.add.Tensor %0, %arg0, %int1 : !torch.vtensor<[1,8,32],f32>, !torch.vtensor<[1,8,32],f32>, !torch.int -> !torch.vtensor<[1,8,32],f32>
  return %1 : !torch.vtensor<[1,8,32],f32>
}

// -----

// A rotary embedding (canonicalize-rotary's bertc::rotary) on heads split from a projection's rows rotates the
// rows themselves, the split and transpose rebuilt after it, so fuse-attention still sees the projection.
// CHECK-LABEL: func.func @rotary_on_projection_rows
// CHECK: %[[Q:.*]] = "bertc.linear"
// CHECK: %[[R:.*]] = "bertc.rotary"(%[[Q]], %{{.*}}, %{{.*}}) {columns = 8 : i64, style = "interleaved"} : (tensor<1x4x8xf32>, tensor<4x4xf32>, tensor<4x4xf32>) -> tensor<1x4x8xf32>
// CHECK: %[[S:.*]] = "bertc.reshape"(%[[R]]) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
// CHECK: "bertc.transpose"(%[[S]]) {perm = array<i64: 0, 2, 1, 3>}
func.func @rotary_on_projection_rows(%x: !torch.vtensor<[1,4,8],f32>) -> !torch.vtensor<[1,2,4,4],f32> {
  %w = "bertc.weight"() {name = "q.weight"} : () -> !torch.vtensor<[8,8],f32>
  %none = torch.constant.none
  %q = torch.aten.linear %x, %w, %none : !torch.vtensor<[1,4,8],f32>, !torch.vtensor<[8,8],f32>, !torch.none -> !torch.vtensor<[1,4,8],f32>
  %int1 = torch.constant.int 1
  %int2 = torch.constant.int 2
  %int4 = torch.constant.int 4
  %intm1 = torch.constant.int -1
  %shape = torch.prim.ListConstruct %int1, %int4, %intm1, %int4 : (!torch.int, !torch.int, !torch.int, !torch.int) -> !torch.list<int>
  %q4 = torch.aten.view %q, %shape : !torch.vtensor<[1,4,8],f32>, !torch.list<int> -> !torch.vtensor<[1,4,2,4],f32>
  %qh = torch.aten.transpose.int %q4, %int1, %int2 : !torch.vtensor<[1,4,2,4],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,2,4,4],f32>
  %cos = "bertc.weight"() {name = "constant.0"} : () -> !torch.vtensor<[4,4],f32>
  %sin = "bertc.weight"() {name = "constant.1"} : () -> !torch.vtensor<[4,4],f32>
  %true = torch.constant.bool true
  %r = torch.operator "torch.bertc.rotary"(%qh, %cos, %sin, %true) : (!torch.vtensor<[1,2,4,4],f32>, !torch.vtensor<[4,4],f32>, !torch.vtensor<[4,4],f32>, !torch.bool) -> !torch.vtensor<[1,2,4,4],f32>
  return %r : !torch.vtensor<[1,2,4,4],f32>
}

// -----

// ESM scales its query heads before rotating them (halves): the scale moves past the rotation, and heads that
// are not a projection's split rows are transposed into rows and back.
// CHECK-LABEL: func.func @rotary_scaled_heads
// CHECK: %[[T:.*]] = "bertc.transpose"(%arg0) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x2x4x4xf32>) -> tensor<1x4x2x4xf32>
// CHECK: %[[ROWS:.*]] = "bertc.reshape"(%[[T]]) : (tensor<1x4x2x4xf32>) -> tensor<1x4x8xf32>
// CHECK: "bertc.rotary"(%[[ROWS]], %{{.*}}, %{{.*}}) {columns = 8 : i64, style = "halves"}
// CHECK: %[[H:.*]] = "bertc.transpose"
// CHECK: "bertc.mul"(%[[H]], %{{.*}}) : (tensor<1x2x4x4xf32>, tensor<f32>) -> tensor<1x2x4x4xf32>
func.func @rotary_scaled_heads(%qh: !torch.vtensor<[1,2,4,4],f32>) -> !torch.vtensor<[1,2,4,4],f32> {
  %scale = torch.constant.float 5.000000e-01
  %qs = torch.aten.mul.Scalar %qh, %scale : !torch.vtensor<[1,2,4,4],f32>, !torch.float -> !torch.vtensor<[1,2,4,4],f32>
  %cos = "bertc.weight"() {name = "constant.0"} : () -> !torch.vtensor<[6,4],f32>
  %sin = "bertc.weight"() {name = "constant.1"} : () -> !torch.vtensor<[6,4],f32>
  %false = torch.constant.bool false
  %r = torch.operator "torch.bertc.rotary"(%qs, %cos, %sin, %false) : (!torch.vtensor<[1,2,4,4],f32>, !torch.vtensor<[6,4],f32>, !torch.vtensor<[6,4],f32>, !torch.bool) -> !torch.vtensor<[1,2,4,4],f32>
  return %r : !torch.vtensor<[1,2,4,4],f32>
}

// -----

// An i64 tensor beside a float one (ESM's embeddings * attention_mask.unsqueeze(-1)) is promoted as torch
// promotes it: one bertc.cast to f32, and the mul is then all f32.
// CHECK-LABEL: func.func @mask_times_embeddings
// CHECK: %[[M:.*]] = "bertc.reshape"(%arg1) : (tensor<1x4xi64>) -> tensor<1x4x1xi64>
// CHECK: %[[F:.*]] = "bertc.cast"(%[[M]]) : (tensor<1x4x1xi64>) -> tensor<1x4x1xf32>
// CHECK: "bertc.mul"(%arg0, %[[F]]) : (tensor<1x4x8xf32>, tensor<1x4x1xf32>) -> tensor<1x4x8xf32>
func.func @mask_times_embeddings(%arg0: !torch.vtensor<[1,4,8],f32>, %arg1: !torch.vtensor<[1,4],si64>) -> !torch.vtensor<[1,4,8],f32> {
  %int-1 = torch.constant.int -1
  %0 = torch.aten.unsqueeze %arg1, %int-1 : !torch.vtensor<[1,4],si64>, !torch.int -> !torch.vtensor<[1,4,1],si64>
  %1 = torch.aten.mul.Tensor %arg0, %0 : !torch.vtensor<[1,4,8],f32>, !torch.vtensor<[1,4,1],si64> -> !torch.vtensor<[1,4,8],f32>
  return %1 : !torch.vtensor<[1,4,8],f32>
}

// -----

// ESM-2's token dropout (canonicalize-token-dropout's op): one factor per token, 0 at <mask> (id 32),
// times the embeddings by a broadcasting mul.
// CHECK-LABEL: func.func @token_dropout
// CHECK: %[[F:.*]] = "bertc.token_dropout"(%arg1, %arg2) {keep = 0.879999995 : f32, token = 32 : i64} : (tensor<2x?xi64>, tensor<2x?xi64>) -> tensor<2x?x1xf32>
// CHECK: "bertc.mul"(%arg0, %[[F]]) : (tensor<2x?x8xf32>, tensor<2x?x1xf32>) -> tensor<2x?x8xf32>
func.func @token_dropout(%arg0: !torch.vtensor<[2,?,8],f32>, %arg1: !torch.vtensor<[2,?],si64>, %arg2: !torch.vtensor<[2,?],si64>) -> !torch.vtensor<[2,?,8],f32> {
  %int32 = torch.constant.int 32
  %keep = torch.constant.float 8.800000e-01
  %0 = torch.operator "torch.bertc.token_dropout"(%arg1, %arg2, %int32, %keep) : (!torch.vtensor<[2,?],si64>, !torch.vtensor<[2,?],si64>, !torch.int, !torch.float) -> !torch.vtensor<[2,?,1],f32>
  %1 = torch.aten.mul.Tensor %arg0, %0 : !torch.vtensor<[2,?,8],f32>, !torch.vtensor<[2,?,1],f32> -> !torch.vtensor<[2,?,8],f32>
  return %1 : !torch.vtensor<[2,?,8],f32>
}
