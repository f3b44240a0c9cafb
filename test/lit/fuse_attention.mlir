// RUN: bertc-opt %s --split-input-file --fuse-attention | FileCheck %s

// Eager attention on three projections of one input: one QKV GEMM and one attention op.
// CHECK-LABEL: func.func @fuses
// CHECK-DAG: %[[W:.*]] = "bertc.concat"(%{{.*}}, %{{.*}}, %{{.*}}) {dim = 0 : i64, operandSegmentSizes = array<i32: 3>} : (tensor<8x8xf32>, tensor<8x8xf32>, tensor<8x8xf32>) -> tensor<24x8xf32>
// CHECK-DAG: %[[B:.*]] = "bertc.concat"(%{{.*}}, %{{.*}}, %{{.*}}) {dim = 0 : i64, operandSegmentSizes = array<i32: 3>} : (tensor<8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<24xf32>
// CHECK: %[[QKV:.*]] = "bertc.linear"(%arg0, %[[W]], %[[B]]) {{.*}} -> tensor<1x4x24xf32>
// CHECK: %[[A:.*]] = "bertc.attention"(%[[QKV]], %arg1) {num_heads = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 0, 0, 0, 0, 0>, scale = 5.000000e-01 : f32, window = 0 : i64} : (tensor<1x4x24xf32>, tensor<1x4xi64>) -> tensor<1x4x8xf32>
// CHECK: return %[[A]]
// CHECK-NOT: bertc.softmax
// CHECK-NOT: bertc.matmul
func.func @fuses(%x: tensor<1x4x8xf32>, %mask: tensor<1x4xi64>) -> tensor<1x4x8xf32> {
  %wq = "bertc.weight"() {name = "q.weight"} : () -> tensor<8x8xf32>
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

// K projects a different input (cross-attention): nothing fuses.
// CHECK-LABEL: func.func @different_inputs
// CHECK: bertc.softmax
// CHECK-NOT: bertc.attention
func.func @different_inputs(%x: tensor<1x4x8xf32>, %mask: tensor<1x4xi64>, %y: tensor<1x4x8xf32>) -> tensor<1x4x8xf32> {
  %wq = "bertc.weight"() {name = "q.weight"} : () -> tensor<8x8xf32>
  %bq = "bertc.weight"() {name = "q.bias"} : () -> tensor<8xf32>
  %wk = "bertc.weight"() {name = "k.weight"} : () -> tensor<8x8xf32>
  %bk = "bertc.weight"() {name = "k.bias"} : () -> tensor<8xf32>
  %wv = "bertc.weight"() {name = "v.weight"} : () -> tensor<8x8xf32>
  %bv = "bertc.weight"() {name = "v.bias"} : () -> tensor<8xf32>
  %q = "bertc.linear"(%x, %wq, %bq) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %q4 = "bertc.reshape"(%q) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %qh = "bertc.transpose"(%q4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %k = "bertc.linear"(%y, %wk, %bk) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %k4 = "bertc.reshape"(%k) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %kh = "bertc.transpose"(%k4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %kt = "bertc.transpose"(%kh) {perm = array<i64: 0, 1, 3, 2>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %v = "bertc.linear"(%x, %wv, %bv) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
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

// No padding-mask bias: not the pattern the attention kernel implements.
// CHECK-LABEL: func.func @no_mask
// CHECK: bertc.softmax
// CHECK-NOT: bertc.attention
func.func @no_mask(%x: tensor<1x4x8xf32>, %mask: tensor<1x4xi64>) -> tensor<1x4x8xf32> {
  %wq = "bertc.weight"() {name = "q.weight"} : () -> tensor<8x8xf32>
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
  %ss = "bertc.mul"(%s, %c) : (tensor<1x2x4x4xf32>, tensor<f32>) -> tensor<1x2x4x4xf32>
  %p = "bertc.softmax"(%ss) : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %o = "bertc.matmul"(%p, %vh) : (tensor<1x2x4x4xf32>, tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %ot = "bertc.transpose"(%o) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x2x4x4xf32>) -> tensor<1x4x2x4xf32>
  %r = "bertc.reshape"(%ot) : (tensor<1x4x2x4xf32>) -> tensor<1x4x8xf32>
  return %r : tensor<1x4x8xf32>
}

// -----

// RoFormer: Q and K rotated alike (the same tables, each read by its own bertc.weight) between projection and
// split. One rotary of the Q|K columns of the fused rows (V's copied) takes their place before the attention.
// CHECK-LABEL: func.func @rotary_fuses
// CHECK: %[[QKV:.*]] = "bertc.linear"(%arg0, %{{.*}}, %{{.*}}) {{.*}} -> tensor<1x4x24xf32>
// CHECK: %[[R:.*]] = "bertc.rotary"(%[[QKV]], %{{.*}}, %{{.*}}) {columns = 16 : i64, style = "interleaved"} : (tensor<1x4x24xf32>, tensor<6x4xf32>, tensor<6x4xf32>) -> tensor<1x4x24xf32>
// CHECK: %[[A:.*]] = "bertc.attention"(%[[R]], %arg1) {num_heads = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 0, 0, 0, 0, 0>, scale = 5.000000e-01 : f32, window = 0 : i64}
// CHECK: return %[[A]]
// CHECK-NOT: columns = 8
func.func @rotary_fuses(%x: tensor<1x4x8xf32>, %mask: tensor<1x4xi64>) -> tensor<1x4x8xf32> {
  %wq = "bertc.weight"() {name = "q.weight"} : () -> tensor<8x8xf32>
  %bq = "bertc.weight"() {name = "q.bias"} : () -> tensor<8xf32>
  %wk = "bertc.weight"() {name = "k.weight"} : () -> tensor<8x8xf32>
  %bk = "bertc.weight"() {name = "k.bias"} : () -> tensor<8xf32>
  %wv = "bertc.weight"() {name = "v.weight"} : () -> tensor<8x8xf32>
  %bv = "bertc.weight"() {name = "v.bias"} : () -> tensor<8xf32>
  %cos = "bertc.weight"() {name = "constant.0"} : () -> tensor<6x4xf32>
  %sin = "bertc.weight"() {name = "constant.1"} : () -> tensor<6x4xf32>
  %sin2 = "bertc.weight"() {name = "constant.1"} : () -> tensor<6x4xf32>
  %q0 = "bertc.linear"(%x, %wq, %bq) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %q = "bertc.rotary"(%q0, %cos, %sin) {columns = 8 : i64, style = "interleaved"} : (tensor<1x4x8xf32>, tensor<6x4xf32>, tensor<6x4xf32>) -> tensor<1x4x8xf32>
  %q4 = "bertc.reshape"(%q) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %qh = "bertc.transpose"(%q4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %k0 = "bertc.linear"(%x, %wk, %bk) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %k = "bertc.rotary"(%k0, %cos, %sin2) {columns = 8 : i64, style = "interleaved"} : (tensor<1x4x8xf32>, tensor<6x4xf32>, tensor<6x4xf32>) -> tensor<1x4x8xf32>
  %k4 = "bertc.reshape"(%k) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %kh = "bertc.transpose"(%k4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %kt = "bertc.transpose"(%kh) {perm = array<i64: 0, 1, 3, 2>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %v = "bertc.linear"(%x, %wv, %bv) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
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

// Only Q rotated, or K by other tables: the rotations differ, nothing fuses.
// CHECK-LABEL: func.func @rotary_only_q
// CHECK: bertc.softmax
// CHECK-NOT: bertc.attention
func.func @rotary_only_q(%x: tensor<1x4x8xf32>, %mask: tensor<1x4xi64>) -> tensor<1x4x8xf32> {
  %wq = "bertc.weight"() {name = "q.weight"} : () -> tensor<8x8xf32>
  %bq = "bertc.weight"() {name = "q.bias"} : () -> tensor<8xf32>
  %wk = "bertc.weight"() {name = "k.weight"} : () -> tensor<8x8xf32>
  %bk = "bertc.weight"() {name = "k.bias"} : () -> tensor<8xf32>
  %wv = "bertc.weight"() {name = "v.weight"} : () -> tensor<8x8xf32>
  %bv = "bertc.weight"() {name = "v.bias"} : () -> tensor<8xf32>
  %cos = "bertc.weight"() {name = "constant.0"} : () -> tensor<6x4xf32>
  %sin = "bertc.weight"() {name = "constant.1"} : () -> tensor<6x4xf32>
  %sin2 = "bertc.weight"() {name = "constant.1"} : () -> tensor<6x4xf32>
  %q0 = "bertc.linear"(%x, %wq, %bq) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %q = "bertc.rotary"(%q0, %cos, %sin) {columns = 8 : i64, style = "interleaved"} : (tensor<1x4x8xf32>, tensor<6x4xf32>, tensor<6x4xf32>) -> tensor<1x4x8xf32>
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

// CHECK-LABEL: func.func @rotary_other_tables
// CHECK: bertc.softmax
// CHECK-NOT: bertc.attention
func.func @rotary_other_tables(%x: tensor<1x4x8xf32>, %mask: tensor<1x4xi64>) -> tensor<1x4x8xf32> {
  %wq = "bertc.weight"() {name = "q.weight"} : () -> tensor<8x8xf32>
  %bq = "bertc.weight"() {name = "q.bias"} : () -> tensor<8xf32>
  %wk = "bertc.weight"() {name = "k.weight"} : () -> tensor<8x8xf32>
  %bk = "bertc.weight"() {name = "k.bias"} : () -> tensor<8xf32>
  %wv = "bertc.weight"() {name = "v.weight"} : () -> tensor<8x8xf32>
  %bv = "bertc.weight"() {name = "v.bias"} : () -> tensor<8xf32>
  %cos = "bertc.weight"() {name = "constant.0"} : () -> tensor<6x4xf32>
  %sin = "bertc.weight"() {name = "constant.1"} : () -> tensor<6x4xf32>
  %sin2 = "bertc.weight"() {name = "constant.2"} : () -> tensor<6x4xf32>
  %q0 = "bertc.linear"(%x, %wq, %bq) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %q = "bertc.rotary"(%q0, %cos, %sin) {columns = 8 : i64, style = "interleaved"} : (tensor<1x4x8xf32>, tensor<6x4xf32>, tensor<6x4xf32>) -> tensor<1x4x8xf32>
  %q4 = "bertc.reshape"(%q) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %qh = "bertc.transpose"(%q4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %k0 = "bertc.linear"(%x, %wk, %bk) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %k = "bertc.rotary"(%k0, %cos, %sin2) {columns = 8 : i64, style = "interleaved"} : (tensor<1x4x8xf32>, tensor<6x4xf32>, tensor<6x4xf32>) -> tensor<1x4x8xf32>
  %k4 = "bertc.reshape"(%k) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %kh = "bertc.transpose"(%k4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %kt = "bertc.transpose"(%kh) {perm = array<i64: 0, 1, 3, 2>} : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %v = "bertc.linear"(%x, %wv, %bv) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
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

// Q also read before the attention ends (ConvBERT: its query times the key convolution, after the three
// projections): that reader takes Q's columns of the merged rows, which move up before it; no GEMM of Q alone remains.
// CHECK-LABEL: func.func @query_read_twice
// CHECK: %[[QKV:.*]] = "bertc.linear"(%arg0, %{{.*}}, %{{.*}}) {{.*}} -> tensor<1x4x24xf32>
// CHECK-NEXT: %[[Q:.*]] = "bertc.slice"(%[[QKV]]) {dim = 2 : i64, start = 0 : i64} : (tensor<1x4x24xf32>) -> tensor<1x4x8xf32>
// CHECK-NOT: "bertc.linear"
// CHECK: %[[C:.*]] = "bertc.mul"(%arg0, %[[Q]])
// CHECK: %[[A:.*]] = "bertc.attention"(%[[QKV]], %arg1)
// CHECK: return %[[A]], %[[C]]
func.func @query_read_twice(%x: tensor<1x4x8xf32>, %mask: tensor<1x4xi64>) -> (tensor<1x4x8xf32>, tensor<1x4x8xf32>) {
  %wq = "bertc.weight"() {name = "q.weight"} : () -> tensor<8x8xf32>
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
  %conv = "bertc.mul"(%x, %q) : (tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
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
  return %r, %conv : tensor<1x4x8xf32>, tensor<1x4x8xf32>
}
