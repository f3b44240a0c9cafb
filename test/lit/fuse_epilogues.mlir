// RUN: bertc-opt %s --split-input-file --fuse-epilogues | FileCheck %s

// FFN: GELU into the first GEMM, the residual add into the second, LayerNorm stays.
// CHECK-LABEL: func.func @ffn
// CHECK: %[[H:.*]] = "bertc.linear"(%arg0, %{{.*}}, %{{.*}}) {activation = "gelu", operandSegmentSizes = array<i32: 1, 1, 1, 0>}
// CHECK: %[[O:.*]] = "bertc.linear"(%[[H]], %{{.*}}, %{{.*}}, %arg0) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 1>}
// CHECK: "bertc.layer_norm"(%[[O]], %{{.*}}, %{{.*}}) {eps = 9.99999996E-13 : f32, operandSegmentSizes = array<i32: 1, 1, 1, 0>}
// CHECK-NOT: bertc.gelu
// CHECK-NOT: bertc.add
func.func @ffn(%x: tensor<1x4x8xf32>) -> tensor<1x4x8xf32> {
  %w1 = "bertc.weight"() {name = "fc1.weight"} : () -> tensor<16x8xf32>
  %b1 = "bertc.weight"() {name = "fc1.bias"} : () -> tensor<16xf32>
  %w2 = "bertc.weight"() {name = "fc2.weight"} : () -> tensor<8x16xf32>
  %b2 = "bertc.weight"() {name = "fc2.bias"} : () -> tensor<8xf32>
  %g = "bertc.weight"() {name = "ln.weight"} : () -> tensor<8xf32>
  %b = "bertc.weight"() {name = "ln.bias"} : () -> tensor<8xf32>
  %h = "bertc.linear"(%x, %w1, %b1) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<16x8xf32>, tensor<16xf32>) -> tensor<1x4x16xf32>
  %a = "bertc.gelu"(%h) {approximate = "none"} : (tensor<1x4x16xf32>) -> tensor<1x4x16xf32>
  %o = "bertc.linear"(%a, %w2, %b2) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x16xf32>, tensor<8x16xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  %r = "bertc.add"(%o, %x) : (tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
  %n = "bertc.layer_norm"(%r, %g, %b) {eps = 9.99999996E-13 : f32, operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  return %n : tensor<1x4x8xf32>
}

// -----

// The linear's output is also returned: folding GELU into it would change that output.
// Embedding-style sum feeding a LayerNorm folds into the LayerNorm's residual operand.
// CHECK-LABEL: func.func @shared
// CHECK: "bertc.linear"{{.*}}{activation = "none"
// CHECK: "bertc.gelu"
// CHECK: "bertc.layer_norm"(%arg0, %{{.*}}, %{{.*}}, %arg1) {eps = 9.99999996E-13 : f32, operandSegmentSizes = array<i32: 1, 1, 1, 1>}
func.func @shared(%x: tensor<1x4x8xf32>, %y: tensor<1x4x8xf32>) -> (tensor<1x4x16xf32>, tensor<1x4x16xf32>, tensor<1x4x8xf32>) {
  %w1 = "bertc.weight"() {name = "fc1.weight"} : () -> tensor<16x8xf32>
  %g = "bertc.weight"() {name = "ln.weight"} : () -> tensor<8xf32>
  %b = "bertc.weight"() {name = "ln.bias"} : () -> tensor<8xf32>
  %h = "bertc.linear"(%x, %w1) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x4x8xf32>, tensor<16x8xf32>) -> tensor<1x4x16xf32>
  %a = "bertc.gelu"(%h) {approximate = "none"} : (tensor<1x4x16xf32>) -> tensor<1x4x16xf32>
  %s = "bertc.add"(%x, %y) : (tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
  %n = "bertc.layer_norm"(%s, %g, %b) {eps = 9.99999996E-13 : f32, operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x4x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  return %h, %a, %n : tensor<1x4x16xf32>, tensor<1x4x16xf32>, tensor<1x4x8xf32>
}

// -----

// MobileBERT's FFN: ReLU into the GEMM as GELU is.
// CHECK-LABEL: func.func @relu
// CHECK: "bertc.linear"{{.*}}{activation = "relu"
// CHECK-NOT: "bertc.relu"
func.func @relu(%x: tensor<1x4x8xf32>) -> tensor<1x4x16xf32> {
  %w1 = "bertc.weight"() {name = "fc1.weight"} : () -> tensor<16x8xf32>
  %h = "bertc.linear"(%x, %w1) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x4x8xf32>, tensor<16x8xf32>) -> tensor<1x4x16xf32>
  %a = "bertc.relu"(%h) : (tensor<1x4x16xf32>) -> tensor<1x4x16xf32>
  return %a : tensor<1x4x16xf32>
}

// -----

// A SwiGLU FFN (NomicBERT, EuroBERT): SiLU into the gate's GEMM; its product with the up projection stays a mul.
// CHECK-LABEL: func.func @swiglu
// CHECK: %[[G:.*]] = "bertc.linear"{{.*}}{activation = "silu"
// CHECK: %[[U:.*]] = "bertc.linear"{{.*}}{activation = "none"
// CHECK-NOT: "bertc.silu"
// CHECK: "bertc.mul"(%[[G]], %[[U]])
func.func @swiglu(%x: tensor<1x4x8xf32>) -> tensor<1x4x16xf32> {
  %wg = "bertc.weight"() {name = "gate_proj.weight"} : () -> tensor<16x8xf32>
  %wu = "bertc.weight"() {name = "up_proj.weight"} : () -> tensor<16x8xf32>
  %g = "bertc.linear"(%x, %wg) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x4x8xf32>, tensor<16x8xf32>) -> tensor<1x4x16xf32>
  %s = "bertc.silu"(%g) : (tensor<1x4x16xf32>) -> tensor<1x4x16xf32>
  %u = "bertc.linear"(%x, %wu) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x4x8xf32>, tensor<16x8xf32>) -> tensor<1x4x16xf32>
  %m = "bertc.mul"(%s, %u) : (tensor<1x4x16xf32>, tensor<1x4x16xf32>) -> tensor<1x4x16xf32>
  return %m : tensor<1x4x16xf32>
}
