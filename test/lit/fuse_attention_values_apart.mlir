// RUN: bertc-opt %s --split-input-file --fuse-attention | FileCheck %s
// RUN: bertc-opt %s --split-input-file --fuse-attention --plan-memory --emit-c | FileCheck %s --check-prefix=C

// MobileBERT: Q and K project the shared bottleneck [1,4,8], V the wider layer input [1,4,12]. Q and K become one
// GEMM of Q|K rows [1,4,16], V's linear stays, and the attention takes its rows as a fourth operand.
// CHECK-LABEL: func.func @mobilebert
// CHECK-DAG: %[[W:.*]] = "bertc.concat"(%{{.*}}, %{{.*}}) {dim = 0 : i64, operandSegmentSizes = array<i32: 2>} : (tensor<8x8xf32>, tensor<8x8xf32>) -> tensor<16x8xf32>
// CHECK-DAG: %[[B:.*]] = "bertc.concat"(%{{.*}}, %{{.*}}) {dim = 0 : i64, operandSegmentSizes = array<i32: 2>} : (tensor<8xf32>, tensor<8xf32>) -> tensor<16xf32>
// CHECK-DAG: %[[QK:.*]] = "bertc.linear"(%arg0, %[[W]], %[[B]]) {{.*}} -> tensor<1x4x16xf32>
// CHECK-DAG: %[[V:.*]] = "bertc.linear"(%arg1, %{{.*}}, %{{.*}}) {{.*}} : (tensor<1x4x12xf32>, tensor<8x12xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
// CHECK: %[[A:.*]] = "bertc.attention"(%[[QK]], %arg2, %[[V]]) {num_heads = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 1, 0, 0, 0, 0>, scale = 5.000000e-01 : f32, window = 0 : i64} : (tensor<1x4x16xf32>, tensor<1x4xi64>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
// CHECK: return %[[A]]
// CHECK-NOT: bertc.softmax
// CHECK-NOT: bertc.matmul
// The kernel reads Q|K rows of 2H = 16 floats and V rows of H = 8, each from its own buffer.
// C: bertc_attention(p, A(float, [[QK:[0-9]+]]), 16, A(float, [[V:[0-9]+]]), 8, A(int64_t, {{[0-9]+}}), NULL, 0, NULL, 0, A(float, {{[0-9]+}}), 1, 4, 8, 2, 0.5f)
// C: .scratch_floats = {{.*}}BERTC_SCRATCH_ATTENTION(4, 4)
func.func @mobilebert(%x: tensor<1x4x8xf32>, %y: tensor<1x4x12xf32>, %mask: tensor<1x4xi64>) -> tensor<1x4x8xf32> {
  %wq = "bertc.weight"() {name = "q.weight"} : () -> tensor<8x8xf32>
  %bq = "bertc.weight"() {name = "q.bias"} : () -> tensor<8xf32>
  %wk = "bertc.weight"() {name = "k.weight"} : () -> tensor<8x8xf32>
  %bk = "bertc.weight"() {name = "k.bias"} : () -> tensor<8xf32>
  %wv = "bertc.weight"() {name = "v.weight"} : () -> tensor<8x12xf32>
  %bv = "bertc.weight"() {name = "v.bias"} : () -> tensor<8xf32>
  %q = "bertc.linear"(%x, %wq, %bq) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %q4 = "bertc.reshape"(%q) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %qh = "bertc.transpose"(%q4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %k = "bertc.linear"(%x, %wk, %bk) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %k4 = "bertc.reshape"(%k) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %kh = "bertc.transpose"(%k4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %kt = "bertc.transpose"(%kh) {perm = array<i64: 0, 1, 3, 2>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %v = "bertc.linear"(%y, %wv, %bv) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x12xf32>, tensor<8x12xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %v4 = "bertc.reshape"(%v) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %vh = "bertc.transpose"(%v4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %s = "bertc.matmul"(%qh, %kt) : (tensor<1x2x4x4xf32>, tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %c = "bertc.constant"() {value = dense<5.000000e-01> : tensor<f32>} : () -> tensor<f32>
  %ss = "bertc.mul"(%s, %c) : (tensor<1x2x4x4xf32>, tensor<f32>) -> tensor<1x2x4x4xf32>
  %bias = "bertc.mask_bias"(%mask) {fill = -3.40282347E+38 : f32, window = 0 : i64} : (tensor<1x4xi64>) -> tensor<1x1x4x4xf32>
  %sb = "bertc.add"(%ss, %bias) : (tensor<1x2x4x4xf32>, tensor<1x1x4x4xf32>) -> tensor<1x2x4x4xf32>
  %p = "bertc.softmax"(%sb) : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %o = "bertc.matmul"(%p, %vh) : (tensor<1x2x4x4xf32>, tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %ot = "bertc.transpose"(%o) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x2x4x4xf32>) -> tensor<1x4x2x4xf32>
  %r = "bertc.reshape"(%ot) : (tensor<1x4x2x4xf32>) -> tensor<1x4x8xf32>
  return %r : tensor<1x4x8xf32>
}

// -----

// Only V may project another input: with Q's bias but not K's, Q and K are not one GEMM, and nothing fuses.
// CHECK-LABEL: func.func @qk_biases_differ
// CHECK: bertc.softmax
// CHECK-NOT: bertc.attention
func.func @qk_biases_differ(%x: tensor<1x4x8xf32>, %y: tensor<1x4x12xf32>, %mask: tensor<1x4xi64>) -> tensor<1x4x8xf32> {
  %wq = "bertc.weight"() {name = "q.weight"} : () -> tensor<8x8xf32>
  %bq = "bertc.weight"() {name = "q.bias"} : () -> tensor<8xf32>
  %wk = "bertc.weight"() {name = "k.weight"} : () -> tensor<8x8xf32>
  %wv = "bertc.weight"() {name = "v.weight"} : () -> tensor<8x12xf32>
  %bv = "bertc.weight"() {name = "v.bias"} : () -> tensor<8xf32>
  %q = "bertc.linear"(%x, %wq, %bq) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %q4 = "bertc.reshape"(%q) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %qh = "bertc.transpose"(%q4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %k = "bertc.linear"(%x, %wk) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x4x8xf32>, tensor<8x8xf32>) -> tensor<1x4x8xf32>
  %k4 = "bertc.reshape"(%k) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %kh = "bertc.transpose"(%k4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %kt = "bertc.transpose"(%kh) {perm = array<i64: 0, 1, 3, 2>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %v = "bertc.linear"(%y, %wv, %bv) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x12xf32>, tensor<8x12xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %v4 = "bertc.reshape"(%v) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %vh = "bertc.transpose"(%v4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %s = "bertc.matmul"(%qh, %kt) : (tensor<1x2x4x4xf32>, tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %c = "bertc.constant"() {value = dense<5.000000e-01> : tensor<f32>} : () -> tensor<f32>
  %ss = "bertc.mul"(%s, %c) : (tensor<1x2x4x4xf32>, tensor<f32>) -> tensor<1x2x4x4xf32>
  %bias = "bertc.mask_bias"(%mask) {fill = -3.40282347E+38 : f32, window = 0 : i64} : (tensor<1x4xi64>) -> tensor<1x1x4x4xf32>
  %sb = "bertc.add"(%ss, %bias) : (tensor<1x2x4x4xf32>, tensor<1x1x4x4xf32>) -> tensor<1x2x4x4xf32>
  %p = "bertc.softmax"(%sb) : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %o = "bertc.matmul"(%p, %vh) : (tensor<1x2x4x4xf32>, tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %ot = "bertc.transpose"(%o) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x2x4x4xf32>) -> tensor<1x4x2x4xf32>
  %r = "bertc.reshape"(%ot) : (tensor<1x4x2x4xf32>) -> tensor<1x4x8xf32>
  return %r : tensor<1x4x8xf32>
}
