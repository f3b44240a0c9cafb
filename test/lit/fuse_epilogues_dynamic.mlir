// RUN: bertc-opt %s --split-input-file --fuse-epilogues | FileCheck %s

// The FFN at a run-time length (tensor<1x?x8xf32>) fuses as at a static one: GELU into the first GEMM,
// the residual add into the second, and the types keep the ?.
// CHECK-LABEL: func.func @ffn
// CHECK: %[[H:.*]] = "bertc.linear"(%arg0, %{{.*}}, %{{.*}}) {activation = "gelu", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x?x8xf32>, tensor<16x8xf32>, tensor<16xf32>) -> tensor<1x?x16xf32>
// CHECK: %[[O:.*]] = "bertc.linear"(%[[H]], %{{.*}}, %{{.*}}, %arg0) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 1>}
// CHECK: "bertc.layer_norm"(%[[O]], %{{.*}}, %{{.*}}) {eps = 9.99999996E-13 : f32, operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x?x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<1x?x8xf32>
// CHECK-NOT: bertc.gelu
// CHECK-NOT: bertc.add
func.func @ffn(%x: tensor<1x?x8xf32>) -> tensor<1x?x8xf32> {
  %w1 = "bertc.weight"() {name = "fc1.weight"} : () -> tensor<16x8xf32>
  %b1 = "bertc.weight"() {name = "fc1.bias"} : () -> tensor<16xf32>
  %w2 = "bertc.weight"() {name = "fc2.weight"} : () -> tensor<8x16xf32>
  %b2 = "bertc.weight"() {name = "fc2.bias"} : () -> tensor<8xf32>
  %g = "bertc.weight"() {name = "ln.weight"} : () -> tensor<8xf32>
  %b = "bertc.weight"() {name = "ln.bias"} : () -> tensor<8xf32>
  %h = "bertc.linear"(%x, %w1, %b1) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x?x8xf32>, tensor<16x8xf32>, tensor<16xf32>) -> tensor<1x?x16xf32>
  %a = "bertc.gelu"(%h) {approximate = "none"} : (tensor<1x?x16xf32>) -> tensor<1x?x16xf32>
  %o = "bertc.linear"(%a, %w2, %b2) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x?x16xf32>, tensor<8x16xf32>, tensor<8xf32>) -> tensor<1x?x8xf32>
  %r = "bertc.add"(%o, %x) : (tensor<1x?x8xf32>, tensor<1x?x8xf32>) -> tensor<1x?x8xf32>
  %n = "bertc.layer_norm"(%r, %g, %b) {eps = 9.99999996E-13 : f32, operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x?x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<1x?x8xf32>
  return %n : tensor<1x?x8xf32>
}

// -----

// The embeddings' sum at a run-time length folds into the LayerNorm after it.
// CHECK-LABEL: func.func @embeddings
// CHECK: "bertc.layer_norm"(%arg0, %{{.*}}, %{{.*}}, %arg1) {{.*}} : (tensor<1x?x8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<1x?x8xf32>) -> tensor<1x?x8xf32>
// CHECK-NOT: bertc.add
func.func @embeddings(%a: tensor<1x?x8xf32>, %b: tensor<1x?x8xf32>) -> tensor<1x?x8xf32> {
  %g = "bertc.weight"() {name = "ln.weight"} : () -> tensor<8xf32>
  %be = "bertc.weight"() {name = "ln.bias"} : () -> tensor<8xf32>
  %s = "bertc.add"(%a, %b) : (tensor<1x?x8xf32>, tensor<1x?x8xf32>) -> tensor<1x?x8xf32>
  %n = "bertc.layer_norm"(%s, %g, %be) {eps = 9.99999996E-13 : f32, operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x?x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<1x?x8xf32>
  return %n : tensor<1x?x8xf32>
}

// -----

// A size-1 row broadcast against the run-time length is not a residual: the add stays.
// CHECK-LABEL: func.func @broadcast
// CHECK: "bertc.linear"(%arg0, %{{.*}}) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>}
// CHECK: "bertc.add"
func.func @broadcast(%x: tensor<1x?x8xf32>, %row: tensor<1x1x8xf32>) -> tensor<1x?x8xf32> {
  %w = "bertc.weight"() {name = "fc.weight"} : () -> tensor<8x8xf32>
  %o = "bertc.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x?x8xf32>, tensor<8x8xf32>) -> tensor<1x?x8xf32>
  %r = "bertc.add"(%o, %row) : (tensor<1x?x8xf32>, tensor<1x1x8xf32>) -> tensor<1x?x8xf32>
  return %r : tensor<1x?x8xf32>
}
