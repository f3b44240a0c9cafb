// RUN: bertc-opt %s --split-input-file --fuse-attention | FileCheck %s

// Attention over a run-time length (tensor<1x?x8xf32>): the same fusion as at a static length, and
// the fused ops keep the ?.
// CHECK-LABEL: func.func @fuses
// CHECK: %[[QKV:.*]] = "bertc.linear"(%arg0, %{{.*}}, %{{.*}}) {{.*}} : (tensor<1x?x8xf32>, tensor<24x8xf32>, tensor<24xf32>) -> tensor<1x?x24xf32>
// CHECK: %[[A:.*]] = "bertc.attention"(%[[QKV]], %arg1) {num_heads = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 0, 0, 0, 0, 0>, scale = 5.000000e-01 : f32, window = 0 : i64} : (tensor<1x?x24xf32>, tensor<1x?xi64>) -> tensor<1x?x8xf32>
// CHECK: return %[[A]]
// CHECK-NOT: bertc.softmax
// CHECK-NOT: bertc.matmul
func.func @fuses(%x: tensor<1x?x8xf32>, %mask: tensor<1x?xi64>) -> tensor<1x?x8xf32> {
  %wq = "bertc.weight"() {name = "q.weight"} : () -> tensor<8x8xf32>
  %bq = "bertc.weight"() {name = "q.bias"} : () -> tensor<8xf32>
  %wk = "bertc.weight"() {name = "k.weight"} : () -> tensor<8x8xf32>
  %bk = "bertc.weight"() {name = "k.bias"} : () -> tensor<8xf32>
  %wv = "bertc.weight"() {name = "v.weight"} : () -> tensor<8x8xf32>
  %bv = "bertc.weight"() {name = "v.bias"} : () -> tensor<8xf32>
  %q = "bertc.linear"(%x, %wq, %bq) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x?x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x?x8xf32>
  %q4 = "bertc.reshape"(%q) : (tensor<1x?x8xf32>) -> tensor<1x?x2x4xf32>
  %qh = "bertc.transpose"(%q4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x?x2x4xf32>) -> tensor<1x2x?x4xf32>
  %k = "bertc.linear"(%x, %wk, %bk) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x?x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x?x8xf32>
  %k4 = "bertc.reshape"(%k) : (tensor<1x?x8xf32>) -> tensor<1x?x2x4xf32>
  %kh = "bertc.transpose"(%k4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x?x2x4xf32>) -> tensor<1x2x?x4xf32>
  %kt = "bertc.transpose"(%kh) {perm = array<i64: 0, 1, 3, 2>} : (tensor<1x2x?x4xf32>) -> tensor<1x2x4x?xf32>
  %v = "bertc.linear"(%x, %wv, %bv) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x?x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x?x8xf32>
  %v4 = "bertc.reshape"(%v) : (tensor<1x?x8xf32>) -> tensor<1x?x2x4xf32>
  %vh = "bertc.transpose"(%v4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x?x2x4xf32>) -> tensor<1x2x?x4xf32>
  %s = "bertc.matmul"(%qh, %kt) : (tensor<1x2x?x4xf32>, tensor<1x2x4x?xf32>) -> tensor<1x2x?x?xf32>
  %c = "bertc.constant"() {value = dense<5.000000e-01> : tensor<f32>} : () -> tensor<f32>
  %ss = "bertc.mul"(%s, %c) : (tensor<1x2x?x?xf32>, tensor<f32>) -> tensor<1x2x?x?xf32>
  %bias = "bertc.mask_bias"(%mask) {fill = -3.40282347E+38 : f32, window = 0 : i64} : (tensor<1x?xi64>) -> tensor<1x1x?x?xf32>
  %sb = "bertc.add"(%ss, %bias) : (tensor<1x2x?x?xf32>, tensor<1x1x?x?xf32>) -> tensor<1x2x?x?xf32>
  %p = "bertc.softmax"(%sb) : (tensor<1x2x?x?xf32>) -> tensor<1x2x?x?xf32>
  %o = "bertc.matmul"(%p, %vh) : (tensor<1x2x?x?xf32>, tensor<1x2x?x4xf32>) -> tensor<1x2x?x4xf32>
  %ot = "bertc.transpose"(%o) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x2x?x4xf32>) -> tensor<1x?x2x4xf32>
  %r = "bertc.reshape"(%ot) : (tensor<1x?x2x4xf32>) -> tensor<1x?x8xf32>
  return %r : tensor<1x?x8xf32>
}

// -----

// V projects another input of the same run-time length (MobileBERT's layer input beside its bottleneck): Q|K
// rows of one GEMM, V's linear kept, one attention, as at a static length.
// CHECK-LABEL: func.func @two_inputs
// CHECK-DAG: %[[QK:.*]] = "bertc.linear"(%arg0, %{{.*}}, %{{.*}}) {{.*}} -> tensor<1x?x16xf32>
// CHECK-DAG: %[[V:.*]] = "bertc.linear"(%arg1, %{{.*}}, %{{.*}}) {{.*}} -> tensor<1x?x8xf32>
// CHECK: "bertc.attention"(%[[QK]], %arg2, %[[V]]) {num_heads = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 1, 0, 0, 0, 0>, scale = 5.000000e-01 : f32, window = 0 : i64} : (tensor<1x?x16xf32>, tensor<1x?xi64>, tensor<1x?x8xf32>) -> tensor<1x?x8xf32>
// CHECK-NOT: bertc.softmax
func.func @two_inputs(%x: tensor<1x?x8xf32>, %y: tensor<1x?x8xf32>, %mask: tensor<1x?xi64>) -> tensor<1x?x8xf32> {
  %wq = "bertc.weight"() {name = "q.weight"} : () -> tensor<8x8xf32>
  %bq = "bertc.weight"() {name = "q.bias"} : () -> tensor<8xf32>
  %wk = "bertc.weight"() {name = "k.weight"} : () -> tensor<8x8xf32>
  %bk = "bertc.weight"() {name = "k.bias"} : () -> tensor<8xf32>
  %wv = "bertc.weight"() {name = "v.weight"} : () -> tensor<8x8xf32>
  %bv = "bertc.weight"() {name = "v.bias"} : () -> tensor<8xf32>
  %q = "bertc.linear"(%x, %wq, %bq) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x?x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x?x8xf32>
  %q4 = "bertc.reshape"(%q) : (tensor<1x?x8xf32>) -> tensor<1x?x2x4xf32>
  %qh = "bertc.transpose"(%q4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x?x2x4xf32>) -> tensor<1x2x?x4xf32>
  %k = "bertc.linear"(%x, %wk, %bk) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x?x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x?x8xf32>
  %k4 = "bertc.reshape"(%k) : (tensor<1x?x8xf32>) -> tensor<1x?x2x4xf32>
  %kh = "bertc.transpose"(%k4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x?x2x4xf32>) -> tensor<1x2x?x4xf32>
  %kt = "bertc.transpose"(%kh) {perm = array<i64: 0, 1, 3, 2>} : (tensor<1x2x?x4xf32>) -> tensor<1x2x4x?xf32>
  %v = "bertc.linear"(%y, %wv, %bv) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x?x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x?x8xf32>
  %v4 = "bertc.reshape"(%v) : (tensor<1x?x8xf32>) -> tensor<1x?x2x4xf32>
  %vh = "bertc.transpose"(%v4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x?x2x4xf32>) -> tensor<1x2x?x4xf32>
  %s = "bertc.matmul"(%qh, %kt) : (tensor<1x2x?x4xf32>, tensor<1x2x4x?xf32>) -> tensor<1x2x?x?xf32>
  %c = "bertc.constant"() {value = dense<5.000000e-01> : tensor<f32>} : () -> tensor<f32>
  %ss = "bertc.mul"(%s, %c) : (tensor<1x2x?x?xf32>, tensor<f32>) -> tensor<1x2x?x?xf32>
  %bias = "bertc.mask_bias"(%mask) {fill = -3.40282347E+38 : f32, window = 0 : i64} : (tensor<1x?xi64>) -> tensor<1x1x?x?xf32>
  %sb = "bertc.add"(%ss, %bias) : (tensor<1x2x?x?xf32>, tensor<1x1x?x?xf32>) -> tensor<1x2x?x?xf32>
  %p = "bertc.softmax"(%sb) : (tensor<1x2x?x?xf32>) -> tensor<1x2x?x?xf32>
  %o = "bertc.matmul"(%p, %vh) : (tensor<1x2x?x?xf32>, tensor<1x2x?x4xf32>) -> tensor<1x2x?x4xf32>
  %ot = "bertc.transpose"(%o) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x2x?x4xf32>) -> tensor<1x?x2x4xf32>
  %r = "bertc.reshape"(%ot) : (tensor<1x?x2x4xf32>) -> tensor<1x?x8xf32>
  return %r : tensor<1x?x8xf32>
}
