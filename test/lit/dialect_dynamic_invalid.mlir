// RUN: not bertc-opt %s --split-input-file 2>&1 | FileCheck %s

// A dynamic length is only ever equal to itself: ? against a static size is a mismatch.
// CHECK: 'bertc.attention' mask [1, 8] should be [1, ?]
func.func @mask_static(%qkv: tensor<1x?x96xf32>, %m: tensor<1x8xi64>) -> tensor<1x?x32xf32> {
  %0 = "bertc.attention"(%qkv, %m) {num_heads = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 0, 0, 0, 0, 0>, scale = 1.0 : f32, window = 0 : i64} : (tensor<1x?x96xf32>, tensor<1x8xi64>) -> tensor<1x?x32xf32>
  return %0 : tensor<1x?x32xf32>
}

// -----

// CHECK: 'bertc.linear' result [1, 8, 64] should be [1, ?, 64]
func.func @linear_result(%x: tensor<1x?x32xf32>, %w: tensor<64x32xf32>) -> tensor<1x8x64xf32> {
  %0 = "bertc.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x?x32xf32>, tensor<64x32xf32>) -> tensor<1x8x64xf32>
  return %0 : tensor<1x8x64xf32>
}

// -----

// The hidden size stays static: a dynamic K cannot meet a weight.
// CHECK: 'bertc.linear' input [1, 8, ?] does not match weight [64, 32] (expects [..., 32])
func.func @linear_k(%x: tensor<1x8x?xf32>, %w: tensor<64x32xf32>) -> tensor<1x8x64xf32> {
  %0 = "bertc.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x8x?xf32>, tensor<64x32xf32>) -> tensor<1x8x64xf32>
  return %0 : tensor<1x8x64xf32>
}

// -----

// A size-1 operand broadcasts to ?, but ? does not broadcast to a static size.
// CHECK: 'bertc.add' [1, ?, 32] and [1, 8, 32] do not broadcast to [1, ?, 32]
func.func @add(%a: tensor<1x?x32xf32>, %b: tensor<1x8x32xf32>) -> tensor<1x?x32xf32> {
  %0 = "bertc.add"(%a, %b) : (tensor<1x?x32xf32>, tensor<1x8x32xf32>) -> tensor<1x?x32xf32>
  return %0 : tensor<1x?x32xf32>
}

// -----

// CHECK: 'bertc.add' [1, ?, 32] and [1, 1, 32] do not broadcast to [1, 1, 32]
func.func @add_one(%a: tensor<1x?x32xf32>, %b: tensor<1x1x32xf32>) -> tensor<1x1x32xf32> {
  %0 = "bertc.add"(%a, %b) : (tensor<1x?x32xf32>, tensor<1x1x32xf32>) -> tensor<1x1x32xf32>
  return %0 : tensor<1x1x32xf32>
}

// -----

// The length must stay one ?: a reshape may not lose it, fix it, or change the static part.
// CHECK: 'bertc.reshape' cannot reshape [1, ?, 32] to [1, 8, 32]
func.func @reshape_fix(%x: tensor<1x?x32xf32>) -> tensor<1x8x32xf32> {
  %0 = "bertc.reshape"(%x) : (tensor<1x?x32xf32>) -> tensor<1x8x32xf32>
  return %0 : tensor<1x8x32xf32>
}

// -----

// CHECK: 'bertc.reshape' cannot reshape [1, ?, 32] to [1, ?, 2, 8]
func.func @reshape_size(%x: tensor<1x?x32xf32>) -> tensor<1x?x2x8xf32> {
  %0 = "bertc.reshape"(%x) : (tensor<1x?x32xf32>) -> tensor<1x?x2x8xf32>
  return %0 : tensor<1x?x2x8xf32>
}

// -----

// ? from ? is the whole length, so it cannot start past 0.
// CHECK: 'bertc.slice' slice of [1, ?, 32] at dim 1 start 1 cannot give [1, ?, 32]
func.func @slice_shift(%x: tensor<1x?x32xf32>) -> tensor<1x?x32xf32> {
  %0 = "bertc.slice"(%x) {dim = 1 : i64, start = 1 : i64} : (tensor<1x?x32xf32>) -> tensor<1x?x32xf32>
  return %0 : tensor<1x?x32xf32>
}

// -----

// CHECK: 'bertc.matmul' cannot multiply [1, 2, ?, 16] by [1, 2, 8, 16]
func.func @matmul(%a: tensor<1x2x?x16xf32>, %b: tensor<1x2x8x16xf32>) -> tensor<1x2x?x16xf32> {
  %0 = "bertc.matmul"(%a, %b) : (tensor<1x2x?x16xf32>, tensor<1x2x8x16xf32>) -> tensor<1x2x?x16xf32>
  return %0 : tensor<1x2x?x16xf32>
}
