// RUN: not bertc-opt %s --split-input-file 2>&1 | FileCheck %s

// The relative-position bias table is [heads, 2N - 1] with N at least the sequence length.
// CHECK: 'bertc.attention' rel_bias [2, 5] should be [2, 2N - 1] with N >= the sequence length
func.func @table_too_short(%qkv: tensor<1x4x24xf32>, %m: tensor<1x4xi64>, %t: tensor<2x5xf32>) -> tensor<1x4x8xf32> {
  %0 = "bertc.attention"(%qkv, %m, %t) {num_heads = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 0, 0, 0, 0, 0>, scale = 1.0 : f32, window = 0 : i64} : (tensor<1x4x24xf32>, tensor<1x4xi64>, tensor<2x5xf32>) -> tensor<1x4x8xf32>
  return %0 : tensor<1x4x8xf32>
}

// -----

// CHECK: 'bertc.attention' rel_bias [3, 9] should be [2, 2N - 1] with N >= the sequence length
func.func @table_of_other_heads(%qkv: tensor<1x4x24xf32>, %m: tensor<1x4xi64>, %t: tensor<3x9xf32>) -> tensor<1x4x8xf32> {
  %0 = "bertc.attention"(%qkv, %m, %t) {num_heads = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 0, 0, 0, 0, 0>, scale = 1.0 : f32, window = 0 : i64} : (tensor<1x4x24xf32>, tensor<1x4xi64>, tensor<3x9xf32>) -> tensor<1x4x8xf32>
  return %0 : tensor<1x4x8xf32>
}

// -----

// CHECK: 'bertc.relative_bias' table [2, 8] and result [1, 2, 4, 4] are not [H, 2N - 1] and [B, H, L, L]
func.func @even_table(%t: tensor<2x8xf32>) -> tensor<1x2x4x4xf32> {
  %0 = "bertc.relative_bias"(%t) : (tensor<2x8xf32>) -> tensor<1x2x4x4xf32>
  return %0 : tensor<1x2x4x4xf32>
}

// -----

// CHECK: 'bertc.relative_bias' table [2, 5] is too short for length 4
func.func @short_table(%t: tensor<2x5xf32>) -> tensor<1x2x4x4xf32> {
  %0 = "bertc.relative_bias"(%t) : (tensor<2x5xf32>) -> tensor<1x2x4x4xf32>
  return %0 : tensor<1x2x4x4xf32>
}

// -----

// DeBERTa's relative gather: x [B, L, W], a [2N - 1] table of columns, out [B, L, L].
// CHECK: 'bertc.relative_gather' input [4, 6, 32], table [11] and result [4, 6, 32] are not [B, L, W], [2N - 1] and [B, L, L]
func.func @gather_keeps_width(%x: tensor<4x6x32xf32>, %t: tensor<11xi64>) -> tensor<4x6x32xf32> {
  %0 = "bertc.relative_gather"(%x, %t) : (tensor<4x6x32xf32>, tensor<11xi64>) -> tensor<4x6x32xf32>
  return %0 : tensor<4x6x32xf32>
}

// -----

// CHECK: 'bertc.relative_gather' table [9] is too short for length 6
func.func @gather_short_table(%x: tensor<4x6x32xf32>, %t: tensor<9xi64>) -> tensor<4x6x6xf32> {
  %0 = "bertc.relative_gather"(%x, %t) : (tensor<4x6x32xf32>, tensor<9xi64>) -> tensor<4x6x6xf32>
  return %0 : tensor<4x6x6xf32>
}

// -----

// CHECK: 'bertc.relative_gather' table tensor<11xf32> should hold i64 column indices
func.func @gather_float_table(%x: tensor<4x6x32xf32>, %t: tensor<11xf32>) -> tensor<4x6x6xf32> {
  %0 = "bertc.relative_gather"(%x, %t) : (tensor<4x6x32xf32>, tensor<11xf32>) -> tensor<4x6x6xf32>
  return %0 : tensor<4x6x6xf32>
}

// -----

// DeBERTa's c2p scores come with their column table.
// CHECK: 'bertc.attention' c2p and c2p_index come together
func.func @c2p_without_table(%qkv: tensor<1x4x24xf32>, %m: tensor<1x4xi64>, %c: tensor<2x4x6xf32>) -> tensor<1x4x8xf32> {
  %0 = "bertc.attention"(%qkv, %m, %c) {num_heads = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 0, 1, 0, 0, 0>, scale = 1.0 : f32, window = 0 : i64} : (tensor<1x4x24xf32>, tensor<1x4xi64>, tensor<2x4x6xf32>) -> tensor<1x4x8xf32>
  return %0 : tensor<1x4x8xf32>
}

// -----

// One row of scores per (batch, head, query): [B * heads, S, W].
// CHECK: 'bertc.attention' p2c [1, 4, 6] should be [B * heads, S, W] = [1 * 2, 4, W]
func.func @p2c_of_one_head(%qkv: tensor<1x4x24xf32>, %m: tensor<1x4xi64>, %p: tensor<1x4x6xf32>, %t: tensor<7xi64>) -> tensor<1x4x8xf32> {
  %0 = "bertc.attention"(%qkv, %m, %p, %t) {num_heads = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 0, 0, 0, 1, 1>, scale = 1.0 : f32, window = 0 : i64} : (tensor<1x4x24xf32>, tensor<1x4xi64>, tensor<1x4x6xf32>, tensor<7xi64>) -> tensor<1x4x8xf32>
  return %0 : tensor<1x4x8xf32>
}

// -----

// CHECK: 'bertc.attention' c2p_index tensor<5xi64> should be i64 [2N - 1] with N >= the sequence length
func.func @c2p_table_too_short(%qkv: tensor<1x4x24xf32>, %m: tensor<1x4xi64>, %c: tensor<2x4x6xf32>, %t: tensor<5xi64>) -> tensor<1x4x8xf32> {
  %0 = "bertc.attention"(%qkv, %m, %c, %t) {num_heads = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 0, 1, 1, 0, 0>, scale = 1.0 : f32, window = 0 : i64} : (tensor<1x4x24xf32>, tensor<1x4xi64>, tensor<2x4x6xf32>, tensor<5xi64>) -> tensor<1x4x8xf32>
  return %0 : tensor<1x4x8xf32>
}
