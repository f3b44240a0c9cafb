// RUN: bertc-opt %s --split-input-file --fuse-attention | FileCheck %s
// RUN: bertc-opt %s --split-input-file --fuse-attention --plan-memory --emit-c | FileCheck %s --check-prefix=C

// DeBERTa-v2/v3: heads merged into the batch ([B*n, S, D]), K divided by the scale, and two more terms on the
// scores, each divided by it too: c2p (Q against the position keys, its columns picked by relative position) and
// p2c (K against the position queries, picked and transposed). The GEMMs stay, on Q and K sliced from the fused
// rows; the attention reads their [B*n, S, W] scores and the two column tables, so no gather, no [B*n, S, S] sum
// and no softmax is left.
// CHECK-LABEL: func.func @deberta
// CHECK: %[[QKV:.*]] = "bertc.linear"(%arg0, %{{.*}}, %{{.*}}) {{.*}} -> tensor<1x4x24xf32>
// CHECK: "bertc.slice"(%[[QKV]]) {dim = 2 : i64, start = 0 : i64}
// CHECK: %[[QPOS:.*]] = "bertc.matmul"(%{{.*}}, %{{.*}}) : (tensor<2x4x4xf32>, tensor<2x4x6xf32>) -> tensor<2x4x6xf32>
// CHECK: "bertc.slice"(%[[QKV]]) {dim = 2 : i64, start = 8 : i64}
// CHECK: %[[KPOS:.*]] = "bertc.matmul"(%{{.*}}, %{{.*}}) : (tensor<2x4x4xf32>, tensor<2x4x6xf32>) -> tensor<2x4x6xf32>
// CHECK: %[[A:.*]] = "bertc.attention"(%[[QKV]], %arg1, %[[QPOS]], %{{.*}}, %[[KPOS]], %{{.*}}) {num_heads = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 0, 1, 1, 1, 1>, scale = 0.333333343 : f32, window = 0 : i64}
// CHECK: return %[[A]]
// CHECK-NOT: bertc.relative_gather
// CHECK-NOT: bertc.softmax
// The C kernel takes them as one bertc_disentangled: c2p, p2c, their tables, W = 6 and R = 4 (2R - 1 = 7).
// C: bertc_attention(p, A(float, [[QKV:[0-9]+]]), 24, A(float, [[QKV]]) + 16, 24, A(int64_t, {{[0-9]+}}), NULL, 0, &(const bertc_disentangled){A(float, {{[0-9]+}}), A(float, {{[0-9]+}}), W(int64_t, {{[0-9]+}}), W(int64_t, {{[0-9]+}}), 6, 4}, 0, A(float, {{[0-9]+}}), 1, 4, 8, 2, 0.3333333432674408f)
func.func @deberta(%x: tensor<1x4x8xf32>, %mask: tensor<1x4xi64>) -> tensor<1x4x8xf32> {
  %wq = "bertc.weight"() {name = "q.weight"} : () -> tensor<8x8xf32>
  %bq = "bertc.weight"() {name = "q.bias"} : () -> tensor<8xf32>
  %q = "bertc.linear"(%x, %wq, %bq) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %q4 = "bertc.reshape"(%q) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %qt = "bertc.transpose"(%q4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %qh = "bertc.reshape"(%qt) : (tensor<1x2x4x4xf32>) -> tensor<2x4x4xf32>
  %wk = "bertc.weight"() {name = "k.weight"} : () -> tensor<8x8xf32>
  %bk = "bertc.weight"() {name = "k.bias"} : () -> tensor<8xf32>
  %k = "bertc.linear"(%x, %wk, %bk) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %k4 = "bertc.reshape"(%k) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %kt = "bertc.transpose"(%k4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %kh = "bertc.reshape"(%kt) : (tensor<1x2x4x4xf32>) -> tensor<2x4x4xf32>
  %wv = "bertc.weight"() {name = "v.weight"} : () -> tensor<8x8xf32>
  %bv = "bertc.weight"() {name = "v.bias"} : () -> tensor<8xf32>
  %v = "bertc.linear"(%x, %wv, %bv) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %v4 = "bertc.reshape"(%v) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %vt = "bertc.transpose"(%v4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %vh = "bertc.reshape"(%vt) : (tensor<1x2x4x4xf32>) -> tensor<2x4x4xf32>
  %s = "bertc.constant"() {value = dense<3.000000e+00> : tensor<f32>} : () -> tensor<f32>
  %s2 = "bertc.constant"() {value = dense<2.000000e+00> : tensor<f32>} : () -> tensor<f32>
  %zero = "bertc.constant"() {value = dense<0.000000e+00> : tensor<f32>} : () -> tensor<f32>
  %kT = "bertc.transpose"(%kh) {perm = array<i64: 0, 2, 1>} : (tensor<2x4x4xf32>) -> tensor<2x4x4xf32>
  %kTs = "bertc.div"(%kT, %s) : (tensor<2x4x4xf32>, tensor<f32>) -> tensor<2x4x4xf32>
  %qk = "bertc.matmul"(%qh, %kTs) : (tensor<2x4x4xf32>, tensor<2x4x4xf32>) -> tensor<2x4x4xf32>
  %posk = "bertc.weight"() {name = "pos_key"} : () -> tensor<2x4x6xf32>
  %ci = "bertc.weight"() {name = "c2p_index"} : () -> tensor<7xi64>
  %c2p = "bertc.matmul"(%qh, %posk) : (tensor<2x4x4xf32>, tensor<2x4x6xf32>) -> tensor<2x4x6xf32>
  %c2pg = "bertc.relative_gather"(%c2p, %ci) : (tensor<2x4x6xf32>, tensor<7xi64>) -> tensor<2x4x4xf32>
  %c2ps = "bertc.div"(%c2pg, %s) : (tensor<2x4x4xf32>, tensor<f32>) -> tensor<2x4x4xf32>
  %acc = "bertc.add"(%c2ps, %zero) : (tensor<2x4x4xf32>, tensor<f32>) -> tensor<2x4x4xf32>
  %posq = "bertc.weight"() {name = "pos_query"} : () -> tensor<2x4x6xf32>
  %pi = "bertc.weight"() {name = "p2c_index"} : () -> tensor<7xi64>
  %p2c = "bertc.matmul"(%kh, %posq) : (tensor<2x4x4xf32>, tensor<2x4x6xf32>) -> tensor<2x4x6xf32>
  %p2cg = "bertc.relative_gather"(%p2c, %pi) : (tensor<2x4x6xf32>, tensor<7xi64>) -> tensor<2x4x4xf32>
  %p2ct = "bertc.transpose"(%p2cg) {perm = array<i64: 0, 2, 1>} : (tensor<2x4x4xf32>) -> tensor<2x4x4xf32>
  %p2cs = "bertc.div"(%p2ct, %s) : (tensor<2x4x4xf32>, tensor<f32>) -> tensor<2x4x4xf32>
  %pos = "bertc.add"(%acc, %p2cs) : (tensor<2x4x4xf32>, tensor<2x4x4xf32>) -> tensor<2x4x4xf32>
  %sc = "bertc.add"(%qk, %pos) : (tensor<2x4x4xf32>, tensor<2x4x4xf32>) -> tensor<2x4x4xf32>
  %sc4 = "bertc.reshape"(%sc) : (tensor<2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %bias = "bertc.mask_bias"(%mask) {fill = -3.40282347E+38 : f32, window = 0 : i64} : (tensor<1x4xi64>) -> tensor<1x1x1x4xf32>
  %sb = "bertc.add"(%sc4, %bias) : (tensor<1x2x4x4xf32>, tensor<1x1x1x4xf32>) -> tensor<1x2x4x4xf32>
  %p = "bertc.softmax"(%sb) : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %p3 = "bertc.reshape"(%p) : (tensor<1x2x4x4xf32>) -> tensor<2x4x4xf32>
  %o = "bertc.matmul"(%p3, %vh) : (tensor<2x4x4xf32>, tensor<2x4x4xf32>) -> tensor<2x4x4xf32>
  %o4 = "bertc.reshape"(%o) : (tensor<2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %ot = "bertc.transpose"(%o4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x2x4x4xf32>) -> tensor<1x4x2x4xf32>
  %r = "bertc.reshape"(%ot) : (tensor<1x4x2x4xf32>) -> tensor<1x4x8xf32>
  return %r : tensor<1x4x8xf32>
}
// -----

// p2c divided by another scale (2) than Q K^T and c2p (3): the kernel scales all three terms by 1/3, so K's heads
// are multiplied by 3/2 before p2c's GEMM.
// CHECK-LABEL: func.func @p2c_scaled_apart
// CHECK: "bertc.slice"(%{{.*}}) {dim = 2 : i64, start = 8 : i64}
// CHECK: %[[RATIO:.*]] = "bertc.constant"() {value = dense<1.500000e+00> : tensor<f32>}
// CHECK: %[[KH:.*]] = "bertc.mul"(%{{.*}}, %[[RATIO]])
// CHECK: %[[KPOS:.*]] = "bertc.matmul"(%[[KH]], %{{.*}})
// CHECK: "bertc.attention"({{.*}}, %[[KPOS]], %{{.*}}) {{.*}} scale = 0.333333343 : f32
// CHECK-NOT: bertc.relative_gather
// CHECK-NOT: bertc.softmax
func.func @p2c_scaled_apart(%x: tensor<1x4x8xf32>, %mask: tensor<1x4xi64>) -> tensor<1x4x8xf32> {
  %wq = "bertc.weight"() {name = "q.weight"} : () -> tensor<8x8xf32>
  %bq = "bertc.weight"() {name = "q.bias"} : () -> tensor<8xf32>
  %q = "bertc.linear"(%x, %wq, %bq) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %q4 = "bertc.reshape"(%q) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %qt = "bertc.transpose"(%q4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %qh = "bertc.reshape"(%qt) : (tensor<1x2x4x4xf32>) -> tensor<2x4x4xf32>
  %wk = "bertc.weight"() {name = "k.weight"} : () -> tensor<8x8xf32>
  %bk = "bertc.weight"() {name = "k.bias"} : () -> tensor<8xf32>
  %k = "bertc.linear"(%x, %wk, %bk) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %k4 = "bertc.reshape"(%k) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %kt = "bertc.transpose"(%k4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %kh = "bertc.reshape"(%kt) : (tensor<1x2x4x4xf32>) -> tensor<2x4x4xf32>
  %wv = "bertc.weight"() {name = "v.weight"} : () -> tensor<8x8xf32>
  %bv = "bertc.weight"() {name = "v.bias"} : () -> tensor<8xf32>
  %v = "bertc.linear"(%x, %wv, %bv) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %v4 = "bertc.reshape"(%v) : (tensor<1x4x8xf32>) -> tensor<1x4x2x4xf32>
  %vt = "bertc.transpose"(%v4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x4x2x4xf32>) -> tensor<1x2x4x4xf32>
  %vh = "bertc.reshape"(%vt) : (tensor<1x2x4x4xf32>) -> tensor<2x4x4xf32>
  %s = "bertc.constant"() {value = dense<3.000000e+00> : tensor<f32>} : () -> tensor<f32>
  %s2 = "bertc.constant"() {value = dense<2.000000e+00> : tensor<f32>} : () -> tensor<f32>
  %zero = "bertc.constant"() {value = dense<0.000000e+00> : tensor<f32>} : () -> tensor<f32>
  %kT = "bertc.transpose"(%kh) {perm = array<i64: 0, 2, 1>} : (tensor<2x4x4xf32>) -> tensor<2x4x4xf32>
  %kTs = "bertc.div"(%kT, %s) : (tensor<2x4x4xf32>, tensor<f32>) -> tensor<2x4x4xf32>
  %qk = "bertc.matmul"(%qh, %kTs) : (tensor<2x4x4xf32>, tensor<2x4x4xf32>) -> tensor<2x4x4xf32>
  %posk = "bertc.weight"() {name = "pos_key"} : () -> tensor<2x4x6xf32>
  %ci = "bertc.weight"() {name = "c2p_index"} : () -> tensor<7xi64>
  %c2p = "bertc.matmul"(%qh, %posk) : (tensor<2x4x4xf32>, tensor<2x4x6xf32>) -> tensor<2x4x6xf32>
  %c2pg = "bertc.relative_gather"(%c2p, %ci) : (tensor<2x4x6xf32>, tensor<7xi64>) -> tensor<2x4x4xf32>
  %c2ps = "bertc.div"(%c2pg, %s) : (tensor<2x4x4xf32>, tensor<f32>) -> tensor<2x4x4xf32>
  %acc = "bertc.add"(%c2ps, %zero) : (tensor<2x4x4xf32>, tensor<f32>) -> tensor<2x4x4xf32>
  %posq = "bertc.weight"() {name = "pos_query"} : () -> tensor<2x4x6xf32>
  %pi = "bertc.weight"() {name = "p2c_index"} : () -> tensor<7xi64>
  %p2c = "bertc.matmul"(%kh, %posq) : (tensor<2x4x4xf32>, tensor<2x4x6xf32>) -> tensor<2x4x6xf32>
  %p2cg = "bertc.relative_gather"(%p2c, %pi) : (tensor<2x4x6xf32>, tensor<7xi64>) -> tensor<2x4x4xf32>
  %p2ct = "bertc.transpose"(%p2cg) {perm = array<i64: 0, 2, 1>} : (tensor<2x4x4xf32>) -> tensor<2x4x4xf32>
  %p2cs = "bertc.div"(%p2ct, %s2) : (tensor<2x4x4xf32>, tensor<f32>) -> tensor<2x4x4xf32>
  %pos = "bertc.add"(%acc, %p2cs) : (tensor<2x4x4xf32>, tensor<2x4x4xf32>) -> tensor<2x4x4xf32>
  %sc = "bertc.add"(%qk, %pos) : (tensor<2x4x4xf32>, tensor<2x4x4xf32>) -> tensor<2x4x4xf32>
  %sc4 = "bertc.reshape"(%sc) : (tensor<2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %bias = "bertc.mask_bias"(%mask) {fill = -3.40282347E+38 : f32, window = 0 : i64} : (tensor<1x4xi64>) -> tensor<1x1x1x4xf32>
  %sb = "bertc.add"(%sc4, %bias) : (tensor<1x2x4x4xf32>, tensor<1x1x1x4xf32>) -> tensor<1x2x4x4xf32>
  %p = "bertc.softmax"(%sb) : (tensor<1x2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %p3 = "bertc.reshape"(%p) : (tensor<1x2x4x4xf32>) -> tensor<2x4x4xf32>
  %o = "bertc.matmul"(%p3, %vh) : (tensor<2x4x4xf32>, tensor<2x4x4xf32>) -> tensor<2x4x4xf32>
  %o4 = "bertc.reshape"(%o) : (tensor<2x4x4xf32>) -> tensor<1x2x4x4xf32>
  %ot = "bertc.transpose"(%o4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x2x4x4xf32>) -> tensor<1x4x2x4xf32>
  %r = "bertc.reshape"(%ot) : (tensor<1x4x2x4xf32>) -> tensor<1x4x8xf32>
  return %r : tensor<1x4x8xf32>
}
