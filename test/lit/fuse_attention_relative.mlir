// RUN: bertc-opt %s --split-input-file --fuse-attention | FileCheck %s
// RUN: bertc-opt %s --split-input-file --fuse-attention --plan-memory --emit-c | FileCheck %s --check-prefix=C

// MPNet: the scores gain a relative-position bias (a [heads, 2N - 1] table) before the mask. The table becomes
// the fused attention's third operand, and the kernel reads it: no [B, heads, S, S] bias is ever made.
// CHECK-LABEL: func.func @mpnet
// CHECK: %[[QKV:.*]] = "bertc.linear"(%arg0, %{{.*}}, %{{.*}}) {{.*}} -> tensor<1x4x24xf32>
// CHECK: %[[A:.*]] = "bertc.attention"(%[[QKV]], %arg1, %{{.*}}) {num_heads = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 0, 0, 0, 0, 0>, scale = 5.000000e-01 : f32, window = 0 : i64} : (tensor<1x4x24xf32>, tensor<1x4xi64>, tensor<2x9xf32>) -> tensor<1x4x8xf32>
// CHECK: return %[[A]]
// CHECK-NOT: bertc.relative_bias
// CHECK-NOT: bertc.softmax
// The C kernel takes the table and its span R = 5 (2R - 1 = 9 columns).
// C: bertc_attention(p, A(float, [[QKV:[0-9]+]]), 24, A(float, [[QKV]]) + 16, 24, A(int64_t, {{[0-9]+}}), W(float, {{[0-9]+}}), 5, NULL, 0, A(float, {{[0-9]+}}), 1, 4, 8, 2, 0.5f)
func.func @mpnet(%x: tensor<1x4x8xf32>, %mask: tensor<1x4xi64>) -> tensor<1x4x8xf32> {
  %wq = "bertc.weight"() {name = "q.weight"} : () -> tensor<8x8xf32>
  %table = "bertc.weight"() {name = "relative_bias.table"} : () -> tensor<2x9xf32>
  %bq = "bertc.weight"() {name = "q.bias"} : () -> tensor<8xf32>
  %wk = "bertc.weight"() {name = "k.weight"} : () -> tensor<8x8xf32>
  %bk = "bertc.weight"() {name = "k.bias"} : () -> tensor<8xf32>
  %wv = "bertc.weight"() {name = "v.weight"} : () -> tensor<8x8xf32>
  %bv = "bertc.weight"() {name = "v.bias"} : () -> tensor<8xf32>
  %q = "bertc.linear"(%x, %wq, %bq) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %q4 = "bertc.reshape"(%q) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %qh = "bertc.transpose"(%q4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %k = "bertc.linear"(%x, %wk, %bk) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %k4 = "bertc.reshape"(%k) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %kh = "bertc.transpose"(%k4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %kt = "bertc.transpose"(%kh) {perm = array<i64: 0, 1, 3, 2>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %v = "bertc.linear"(%x, %wv, %bv) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %v4 = "bertc.reshape"(%v) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %vh = "bertc.transpose"(%v4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %s = "bertc.matmul"(%qh, %kt) : (tensor<1x2x4x4xf32>, tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %c = "bertc.constant"() {value = dense<5.000000e-01> : tensor<f32>} : () -> tensor<f32>
  %ss0 = "bertc.mul"(%s, %c) : (tensor<1x2x4x4xf32>, tensor<f32>) -> tensor<1x2x4x4xf32>
  %rb = "bertc.relative_bias"(%table) : (tensor<2x9xf32>) -> tensor<1x2x4x4xf32>
  %ss = "bertc.add"(%ss0, %rb) : (tensor<1x2x4x4xf32>, tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %bias = "bertc.mask_bias"(%mask) {fill = -3.40282347E+38 : f32, window = 0 : i64} : (tensor<1x4xi64>) -> tensor<1x1x4x4xf32>
  %sb = "bertc.add"(%ss, %bias) : (tensor<1x2x4x4xf32>, tensor<1x1x4x4xf32>) -> tensor<1x2x4x4xf32>
  %p = "bertc.softmax"(%sb) : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %o = "bertc.matmul"(%p, %vh) : (tensor<1x2x4x4xf32>, tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %ot = "bertc.transpose"(%o) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x2x4x4xf32>) -> tensor<1x4x2x4xf32>
  %r = "bertc.reshape"(%ot) : (tensor<1x4x2x4xf32>) -> tensor<1x4x8xf32>
  return %r : tensor<1x4x8xf32>
}

// -----

// A table of one row broadcast over the heads is not the kernel's [heads, 2N - 1]: nothing fuses, and the bias
// is made by its own kernel.
// CHECK-LABEL: func.func @one_table_for_all_heads
// CHECK: "bertc.relative_bias"
// CHECK: bertc.softmax
// C: bertc_relative_bias(W(float, {{[0-9]+}}), A(float, {{[0-9]+}}), 1, 1, 4, 5)
func.func @one_table_for_all_heads(%x: tensor<1x4x8xf32>, %mask: tensor<1x4xi64>) -> tensor<1x4x8xf32> {
  %wq = "bertc.weight"() {name = "q.weight"} : () -> tensor<8x8xf32>
  %table = "bertc.weight"() {name = "relative_bias.table"} : () -> tensor<1x9xf32>
  %bq = "bertc.weight"() {name = "q.bias"} : () -> tensor<8xf32>
  %wk = "bertc.weight"() {name = "k.weight"} : () -> tensor<8x8xf32>
  %bk = "bertc.weight"() {name = "k.bias"} : () -> tensor<8xf32>
  %wv = "bertc.weight"() {name = "v.weight"} : () -> tensor<8x8xf32>
  %bv = "bertc.weight"() {name = "v.bias"} : () -> tensor<8xf32>
  %q = "bertc.linear"(%x, %wq, %bq) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %q4 = "bertc.reshape"(%q) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %qh = "bertc.transpose"(%q4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %k = "bertc.linear"(%x, %wk, %bk) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %k4 = "bertc.reshape"(%k) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %kh = "bertc.transpose"(%k4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %kt = "bertc.transpose"(%kh) {perm = array<i64: 0, 1, 3, 2>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %v = "bertc.linear"(%x, %wv, %bv) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %v4 = "bertc.reshape"(%v) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %vh = "bertc.transpose"(%v4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %s = "bertc.matmul"(%qh, %kt) : (tensor<1x2x4x4xf32>, tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %c = "bertc.constant"() {value = dense<5.000000e-01> : tensor<f32>} : () -> tensor<f32>
  %ss0 = "bertc.mul"(%s, %c) : (tensor<1x2x4x4xf32>, tensor<f32>) -> tensor<1x2x4x4xf32>
  %rb = "bertc.relative_bias"(%table) : (tensor<1x9xf32>) -> tensor<1x1x4x4xf32>
  %ss = "bertc.add"(%ss0, %rb) : (tensor<1x2x4x4xf32>, tensor<1x1x4x4xf32>) -> tensor<1x2x4x4xf32>
  %bias = "bertc.mask_bias"(%mask) {fill = -3.40282347E+38 : f32, window = 0 : i64} : (tensor<1x4xi64>) -> tensor<1x1x4x4xf32>
  %sb = "bertc.add"(%ss, %bias) : (tensor<1x2x4x4xf32>, tensor<1x1x4x4xf32>) -> tensor<1x2x4x4xf32>
  %p = "bertc.softmax"(%sb) : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %o = "bertc.matmul"(%p, %vh) : (tensor<1x2x4x4xf32>, tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %ot = "bertc.transpose"(%o) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x2x4x4xf32>) -> tensor<1x4x2x4xf32>
  %r = "bertc.reshape"(%ot) : (tensor<1x4x2x4xf32>) -> tensor<1x4x8xf32>
  return %r : tensor<1x4x8xf32>
}
