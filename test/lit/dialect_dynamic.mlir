// RUN: bertc-opt %s --split-input-file | FileCheck %s

// A dynamic sequence length (?) verifies wherever both sides are the sequence: the ops of one
// encoder layer on tensor<1x?x32xf32> parse and print unchanged.
// CHECK-LABEL: func.func @layer
// CHECK-SAME: (%[[X:.*]]: tensor<1x?x32xf32>, %[[M:.*]]: tensor<1x?xi64>) -> tensor<1x?x32xf32>
// CHECK: "bertc.linear"(%[[X]], %{{.*}}, %{{.*}}) {{.*}} -> tensor<1x?x96xf32>
// CHECK: "bertc.attention"(%{{.*}}, %[[M]]) {{.*}} : (tensor<1x?x96xf32>, tensor<1x?xi64>) -> tensor<1x?x32xf32>
// CHECK: "bertc.layer_norm"({{.*}}) {{.*}} : (tensor<1x?x32xf32>, tensor<32xf32>, tensor<32xf32>, tensor<1x?x32xf32>) -> tensor<1x?x32xf32>
// CHECK: "bertc.gelu"({{.*}}) {approximate = "none"} : (tensor<1x?x64xf32>) -> tensor<1x?x64xf32>
func.func @layer(%x: tensor<1x?x32xf32>, %mask: tensor<1x?xi64>) -> tensor<1x?x32xf32> {
  %w = "bertc.weight"() {name = "qkv.weight"} : () -> tensor<96x32xf32>
  %b = "bertc.weight"() {name = "qkv.bias"} : () -> tensor<96xf32>
  %qkv = "bertc.linear"(%x, %w, %b) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x?x32xf32>, tensor<96x32xf32>, tensor<96xf32>) -> tensor<1x?x96xf32>
  %ctx = "bertc.attention"(%qkv, %mask) {num_heads = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 0, 0, 0, 0, 0>, scale = 2.500000e-01 : f32, window = 0 : i64} : (tensor<1x?x96xf32>, tensor<1x?xi64>) -> tensor<1x?x32xf32>
  %g = "bertc.weight"() {name = "ln.weight"} : () -> tensor<32xf32>
  %be = "bertc.weight"() {name = "ln.bias"} : () -> tensor<32xf32>
  %n = "bertc.layer_norm"(%ctx, %g, %be, %x) {eps = 9.99999996E-13 : f32, operandSegmentSizes = array<i32: 1, 1, 1, 1>} : (tensor<1x?x32xf32>, tensor<32xf32>, tensor<32xf32>, tensor<1x?x32xf32>) -> tensor<1x?x32xf32>
  %w1 = "bertc.weight"() {name = "fc1.weight"} : () -> tensor<64x32xf32>
  %h = "bertc.linear"(%n, %w1) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x?x32xf32>, tensor<64x32xf32>) -> tensor<1x?x64xf32>
  %a = "bertc.gelu"(%h) {approximate = "none"} : (tensor<1x?x64xf32>) -> tensor<1x?x64xf32>
  %w2 = "bertc.weight"() {name = "fc2.weight"} : () -> tensor<32x64xf32>
  %o = "bertc.linear"(%a, %w2, %n) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 1>} : (tensor<1x?x64xf32>, tensor<32x64xf32>, tensor<1x?x32xf32>) -> tensor<1x?x32xf32>
  return %o : tensor<1x?x32xf32>
}

// -----

// Eager attention's pieces: heads split by reshape (the ? stays one ?), scores [1,2,?,?] over the
// same length on both axes, a [1,1,?,?] mask bias broadcast against them.
// CHECK-LABEL: func.func @eager
// CHECK: "bertc.reshape"(%{{.*}}) : (tensor<1x?x32xf32>) -> tensor<1x?x2x16xf32>
// CHECK: "bertc.matmul"(%{{.*}}, %{{.*}}) : (tensor<1x2x?x16xf32>, tensor<1x2x16x?xf32>) -> tensor<1x2x?x?xf32>
// CHECK: "bertc.mask_bias"(%{{.*}}) {{.*}} : (tensor<1x?xi64>) -> tensor<1x1x?x?xf32>
// CHECK: "bertc.add"(%{{.*}}, %{{.*}}) : (tensor<1x2x?x?xf32>, tensor<1x1x?x?xf32>) -> tensor<1x2x?x?xf32>
// CHECK: "bertc.mul"(%{{.*}}, %{{.*}}) : (tensor<1x2x?x?xf32>, tensor<f32>) -> tensor<1x2x?x?xf32>
// CHECK: "bertc.softmax"
func.func @eager(%q: tensor<1x?x32xf32>, %mask: tensor<1x?xi64>) -> tensor<1x2x?x?xf32> {
  %q4 = "bertc.reshape"(%q) : (tensor<1x?x32xf32>) -> tensor<1x?x2x16xf32>
  %qh = "bertc.transpose"(%q4) {perm = array<i64: 0, 2, 1, 3>} : (tensor<1x?x2x16xf32>) -> tensor<1x2x?x16xf32>
  %kt = "bertc.transpose"(%qh) {perm = array<i64: 0, 1, 3, 2>} : (tensor<1x2x?x16xf32>) -> tensor<1x2x16x?xf32>
  %s = "bertc.matmul"(%qh, %kt) : (tensor<1x2x?x16xf32>, tensor<1x2x16x?xf32>) -> tensor<1x2x?x?xf32>
  %bias = "bertc.mask_bias"(%mask) {fill = -3.40282347E+38 : f32, window = 0 : i64} : (tensor<1x?xi64>) -> tensor<1x1x?x?xf32>
  %sb = "bertc.add"(%s, %bias) : (tensor<1x2x?x?xf32>, tensor<1x1x?x?xf32>) -> tensor<1x2x?x?xf32>
  %c = "bertc.constant"() {value = dense<2.500000e-01> : tensor<f32>} : () -> tensor<f32>
  %sc = "bertc.mul"(%sb, %c) : (tensor<1x2x?x?xf32>, tensor<f32>) -> tensor<1x2x?x?xf32>
  %p = "bertc.softmax"(%sc) : (tensor<1x2x?x?xf32>) -> tensor<1x2x?x?xf32>
  return %p : tensor<1x2x?x?xf32>
}

// -----

// Embeddings at a run-time length: position ids are the first L entries of a [1, 300] table, the
// pooler reads the [CLS] row (a static slice of the dynamic dimension, checked at run time).
// CHECK-LABEL: func.func @embeddings
// CHECK: "bertc.slice"(%{{.*}}) {dim = 1 : i64, start = 0 : i64} : (tensor<1x300xi64>) -> tensor<1x?xi64>
// CHECK: "bertc.embedding"(%{{.*}}, %{{.*}}) : (tensor<300x32xf32>, tensor<1x?xi64>) -> tensor<1x?x32xf32>
// CHECK: "bertc.add"(%{{.*}}, %{{.*}}) : (tensor<1x?x32xf32>, tensor<1x?x32xf32>) -> tensor<1x?x32xf32>
// CHECK: "bertc.slice"(%{{.*}}) {dim = 1 : i64, start = 0 : i64} : (tensor<1x?x32xf32>) -> tensor<1x1x32xf32>
// CHECK: "bertc.reshape"(%{{.*}}) : (tensor<1x1x32xf32>) -> tensor<1x32xf32>
func.func @embeddings(%ids: tensor<1x?xi64>) -> tensor<1x32xf32> {
  %table = "bertc.weight"() {name = "position_ids"} : () -> tensor<1x300xi64>
  %pos = "bertc.slice"(%table) {dim = 1 : i64, start = 0 : i64} : (tensor<1x300xi64>) -> tensor<1x?xi64>
  %wp = "bertc.weight"() {name = "position_embeddings.weight"} : () -> tensor<300x32xf32>
  %ww = "bertc.weight"() {name = "word_embeddings.weight"} : () -> tensor<120x32xf32>
  %ep = "bertc.embedding"(%wp, %pos) : (tensor<300x32xf32>, tensor<1x?xi64>) -> tensor<1x?x32xf32>
  %ew = "bertc.embedding"(%ww, %ids) : (tensor<120x32xf32>, tensor<1x?xi64>) -> tensor<1x?x32xf32>
  %e = "bertc.add"(%ew, %ep) : (tensor<1x?x32xf32>, tensor<1x?x32xf32>) -> tensor<1x?x32xf32>
  %cls = "bertc.slice"(%e) {dim = 1 : i64, start = 0 : i64} : (tensor<1x?x32xf32>) -> tensor<1x1x32xf32>
  %r = "bertc.reshape"(%cls) : (tensor<1x1x32xf32>) -> tensor<1x32xf32>
  return %r : tensor<1x32xf32>
}
