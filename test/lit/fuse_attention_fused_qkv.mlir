// RUN: bertc-opt %s --split-input-file --fuse-attention | FileCheck %s
// RUN: bertc-opt %s --split-input-file --fuse-attention --plan-memory --emit-c | FileCheck %s --check-prefix=C

// ModernBERT: one projection without bias gives the Q|K|V rows [1,4,24], which raise-torch slices into
// three [1,4,8] column blocks; the mask has a local window of 2 (keys within one position). The rows
// are the attention's input as they are (no concat, no new GEMM), and the window rides on the attention.
// CHECK-LABEL: func.func @fused_rows_window
// CHECK: %[[QKV:.*]] = "bertc.linear"(%arg0, %{{.*}}) {{.*}} -> tensor<1x4x24xf32>
// CHECK-NOT: bertc.concat
// CHECK: %[[A:.*]] = "bertc.attention"(%[[QKV]], %arg1) {num_heads = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 0, 0, 0, 0, 0>, scale = 5.000000e-01 : f32, window = 2 : i64} : (tensor<1x4x24xf32>, tensor<1x4xi64>) -> tensor<1x4x8xf32>
// CHECK: return %[[A]]
// CHECK-NOT: bertc.slice
// CHECK-NOT: bertc.mask_bias
// C: bertc_attention(p, A(float, [[QKV:[0-9]+]]), 24, A(float, [[QKV]]) + 16, 24, A(int64_t, {{[0-9]+}}), NULL, 0, NULL, 2, A(float, {{[0-9]+}}), 1, 4, 8, 2, 0.5f)
func.func @fused_rows_window(%x: tensor<1x4x8xf32>, %mask: tensor<1x4xi64>) -> tensor<1x4x8xf32> {
  %w = "bertc.weight"() {name = "attn.Wqkv.weight"} : () -> tensor<24x8xf32>
  %qkv = "bertc.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x4x8xf32>, tensor<24x8xf32>) -> tensor<1x4x24xf32>
  %q = "bertc.slice"(%qkv) {dim = 2 : i64, start = 0 : i64} : (tensor<1x4x24xf32>) -> tensor<1x4x8xf32>
  %k = "bertc.slice"(%qkv) {dim = 2 : i64, start = 8 : i64} : (tensor<1x4x24xf32>) -> tensor<1x4x8xf32>
  %v = "bertc.slice"(%qkv) {dim = 2 : i64, start = 16 : i64} : (tensor<1x4x24xf32>) -> tensor<1x4x8xf32>
  %q4 = "bertc.reshape"(%q) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %qh = "bertc.transpose"(%q4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %k4 = "bertc.reshape"(%k) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %kh = "bertc.transpose"(%k4) {perm = array<i64: 0, 2, 3, 1>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %v4 = "bertc.reshape"(%v) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %vh = "bertc.transpose"(%v4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %s = "bertc.matmul"(%qh, %kh) : (tensor<1x2x4x4xf32>, tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %c = "bertc.constant"() {value = dense<5.000000e-01> : tensor<f32>} : () -> tensor<f32>
  %ss = "bertc.mul"(%s, %c) : (tensor<1x2x4x4xf32>, tensor<f32>) -> tensor<1x2x4x4xf32>
  %bias = "bertc.mask_bias"(%mask) {fill = -3.40282347E+38 : f32, window = 2 : i64} : (tensor<1x4xi64>) -> tensor<1x1x4x4xf32>
  %sb = "bertc.add"(%ss, %bias) : (tensor<1x2x4x4xf32>, tensor<1x1x4x4xf32>) -> tensor<1x2x4x4xf32>
  %p = "bertc.softmax"(%sb) : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %o = "bertc.matmul"(%p, %vh) : (tensor<1x2x4x4xf32>, tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %ot = "bertc.transpose"(%o) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x2x4x4xf32>) -> tensor<1x4x2x4xf32>
  %r = "bertc.reshape"(%ot) : (tensor<1x4x2x4xf32>) -> tensor<1x4x8xf32>
  return %r : tensor<1x4x8xf32>
}

// -----

// Negative: the column blocks read in another order (K's columns first) are not Q|K|V rows: nothing fuses.
// CHECK-LABEL: func.func @blocks_out_of_order
// CHECK-NOT: bertc.attention
// CHECK: bertc.softmax
func.func @blocks_out_of_order(%x: tensor<1x4x8xf32>, %mask: tensor<1x4xi64>) -> tensor<1x4x8xf32> {
  %w = "bertc.weight"() {name = "attn.Wqkv.weight"} : () -> tensor<24x8xf32>
  %qkv = "bertc.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x4x8xf32>, tensor<24x8xf32>) -> tensor<1x4x24xf32>
  %q = "bertc.slice"(%qkv) {dim = 2 : i64, start = 8 : i64} : (tensor<1x4x24xf32>) -> tensor<1x4x8xf32>
  %k = "bertc.slice"(%qkv) {dim = 2 : i64, start = 0 : i64} : (tensor<1x4x24xf32>) -> tensor<1x4x8xf32>
  %v = "bertc.slice"(%qkv) {dim = 2 : i64, start = 16 : i64} : (tensor<1x4x24xf32>) -> tensor<1x4x8xf32>
  %q4 = "bertc.reshape"(%q) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %qh = "bertc.transpose"(%q4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %k4 = "bertc.reshape"(%k) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %kh = "bertc.transpose"(%k4) {perm = array<i64: 0, 2, 3, 1>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %v4 = "bertc.reshape"(%v) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %vh = "bertc.transpose"(%v4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %s = "bertc.matmul"(%qh, %kh) : (tensor<1x2x4x4xf32>, tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
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
