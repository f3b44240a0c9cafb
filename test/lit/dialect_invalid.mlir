// RUN: not bertc-opt %s --split-input-file 2>&1 | FileCheck %s

// Every op verifies its shapes and attributes when parsed.
// CHECK: 'bertc.linear' input [2, 5] does not match weight [3, 4] (expects [..., 4])
func.func @linear_k(%x: tensor<2x5xf32>, %w: tensor<3x4xf32>) -> tensor<2x3xf32> {
  %0 = "bertc.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<2x5xf32>, tensor<3x4xf32>) -> tensor<2x3xf32>
  return %0 : tensor<2x3xf32>
}

// -----

// CHECK: 'bertc.attention' hidden size 8 is not divisible by 3 heads
func.func @heads(%qkv: tensor<1x4x24xf32>, %m: tensor<1x4xi64>) -> tensor<1x4x8xf32> {
  %0 = "bertc.attention"(%qkv, %m) {num_heads = 3 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 0, 0, 0, 0, 0>, scale = 1.0 : f32, window = 0 : i64} : (tensor<1x4x24xf32>, tensor<1x4xi64>) -> tensor<1x4x8xf32>
  return %0 : tensor<1x4x8xf32>
}

// -----

// CHECK: 'bertc.attention' window -2 is negative (0: no local window)
func.func @window(%qkv: tensor<1x4x24xf32>, %m: tensor<1x4xi64>) -> tensor<1x4x8xf32> {
  %0 = "bertc.attention"(%qkv, %m) {num_heads = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 0, 0, 0, 0, 0>, scale = 1.0 : f32, window = -2 : i64} : (tensor<1x4x24xf32>, tensor<1x4xi64>) -> tensor<1x4x8xf32>
  return %0 : tensor<1x4x8xf32>
}

// -----

// V's rows apart (MobileBERT's form): Q|K rows [B, S, 2H] and V rows [B, S, H].
// CHECK: 'bertc.attention' v [1, 4, 12] should be [1, 4, 8], the Q|K rows' [B, S, H]
func.func @values_apart(%qk: tensor<1x4x16xf32>, %m: tensor<1x4xi64>, %v: tensor<1x4x12xf32>) -> tensor<1x4x8xf32> {
  %0 = "bertc.attention"(%qk, %m, %v) {num_heads = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 1, 0, 0, 0, 0>, scale = 1.0 : f32, window = 0 : i64} : (tensor<1x4x16xf32>, tensor<1x4xi64>, tensor<1x4x12xf32>) -> tensor<1x4x8xf32>
  return %0 : tensor<1x4x8xf32>
}

// -----

// CHECK: 'bertc.attention' qkv [1, 4, 15] is not [B, S, 2*H] (Q|K, V apart)
func.func @values_apart_odd(%qk: tensor<1x4x15xf32>, %m: tensor<1x4xi64>, %v: tensor<1x4x8xf32>) -> tensor<1x4x8xf32> {
  %0 = "bertc.attention"(%qk, %m, %v) {num_heads = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 1, 0, 0, 0, 0>, scale = 1.0 : f32, window = 0 : i64} : (tensor<1x4x15xf32>, tensor<1x4xi64>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
  return %0 : tensor<1x4x8xf32>
}

// -----

// CHECK: 'bertc.linear' unknown activation 'swish'
func.func @act(%x: tensor<2x4xf32>, %w: tensor<3x4xf32>) -> tensor<2x3xf32> {
  %0 = "bertc.linear"(%x, %w) {activation = "swish", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<2x4xf32>, tensor<3x4xf32>) -> tensor<2x3xf32>
  return %0 : tensor<2x3xf32>
}

// -----

// A missing attribute is rejected at parse time.
// CHECK: error
func.func @missing(%x: tensor<2x4xf32>) -> tensor<2x4xf32> {
  %0 = "bertc.layer_norm"(%x, %x, %x) {operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<2x4xf32>, tensor<2x4xf32>, tensor<2x4xf32>) -> tensor<2x4xf32>
  return %0 : tensor<2x4xf32>
}

// -----

// A sparsity attribute (from --prune-patterns) is checked too.
// CHECK: 'bertc.linear' bertc.sparsity format 'csr' is not sparse or dense
func.func @sparsity_format(%x: tensor<2x4xf32>, %w: tensor<3x4xf32>) -> tensor<2x3xf32> {
  %0 = "bertc.linear"(%x, %w) {activation = "none", bertc.sparsity = {density = 0.5 : f64, format = "csr", pattern = "4x1"}, operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<2x4xf32>, tensor<3x4xf32>) -> tensor<2x3xf32>
  return %0 : tensor<2x3xf32>
}

// -----

// CHECK: 'bertc.linear' bertc.sparsity: bad prune SPEC '4y1': unknown pattern '4y1'
func.func @sparsity_pattern(%x: tensor<2x4xf32>, %w: tensor<3x4xf32>) -> tensor<2x3xf32> {
  %0 = "bertc.linear"(%x, %w) {activation = "none", bertc.sparsity = {density = 0.5 : f64, format = "sparse", pattern = "4y1"}, operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<2x4xf32>, tensor<3x4xf32>) -> tensor<2x3xf32>
  return %0 : tensor<2x3xf32>
}

// -----

// CHECK: 'bertc.linear' bertc.sparsity density 0.0 is not in (0, 1]
func.func @sparsity_density(%x: tensor<2x4xf32>, %w: tensor<3x4xf32>) -> tensor<2x3xf32> {
  %0 = "bertc.linear"(%x, %w) {activation = "none", bertc.sparsity = {density = 0.0 : f64, format = "sparse", pattern = "4x1"}, operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<2x4xf32>, tensor<3x4xf32>) -> tensor<2x3xf32>
  return %0 : tensor<2x3xf32>
}

// -----

// CHECK: 'bertc.rotary' columns 12 is not a multiple of the even head width 8 within 24
func.func @rotary_columns(%x: tensor<1x4x24xf32>, %t: tensor<4x8xf32>) -> tensor<1x4x24xf32> {
  %0 = "bertc.rotary"(%x, %t, %t) {columns = 12 : i64, style = "interleaved"} : (tensor<1x4x24xf32>, tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<1x4x24xf32>
  return %0 : tensor<1x4x24xf32>
}

// -----

// CHECK: 'bertc.rotary' tables of 3 positions are shorter than the sequence (4)
func.func @rotary_short_tables(%x: tensor<1x4x24xf32>, %t: tensor<3x8xf32>) -> tensor<1x4x24xf32> {
  %0 = "bertc.rotary"(%x, %t, %t) {columns = 16 : i64, style = "halves"} : (tensor<1x4x24xf32>, tensor<3x8xf32>, tensor<3x8xf32>) -> tensor<1x4x24xf32>
  return %0 : tensor<1x4x24xf32>
}

// -----

// CHECK: 'bertc.rotary' style 'neox' is not one of ('interleaved', 'halves')
func.func @rotary_style(%x: tensor<1x4x24xf32>, %t: tensor<4x8xf32>) -> tensor<1x4x24xf32> {
  %0 = "bertc.rotary"(%x, %t, %t) {columns = 16 : i64, style = "neox"} : (tensor<1x4x24xf32>, tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<1x4x24xf32>
  return %0 : tensor<1x4x24xf32>
}

// -----

// CHECK: 'bertc.cast' converts i64 to f32, not tensor<4xf32> to tensor<4xi64>
func.func @cast_back(%x: tensor<4xf32>) -> tensor<4xi64> {
  %0 = "bertc.cast"(%x) : (tensor<4xf32>) -> tensor<4xi64>
  return %0 : tensor<4xi64>
}

// -----

// CHECK: 'bertc.mul' operands and result mix element types ['f32', 'i64']: cast to one first
func.func @mixed_mul(%x: tensor<1x4x8xf32>, %m: tensor<1x4x1xi64>) -> tensor<1x4x8xf32> {
  %0 = "bertc.mul"(%x, %m) : (tensor<1x4x8xf32>, tensor<1x4x1xi64>) -> tensor<1x4x8xf32>
  return %0 : tensor<1x4x8xf32>
}

// -----

// CHECK: 'bertc.trigram' result [2, 4, 8] should be [B, S, 3E] for input [2, 4, 4] [B, S, E]
func.func @trigram_width(%x: tensor<2x4x4xf32>) -> tensor<2x4x8xf32> {
  %0 = "bertc.trigram"(%x) : (tensor<2x4x4xf32>) -> tensor<2x4x8xf32>
  return %0 : tensor<2x4x8xf32>
}

// -----

// CHECK: 'bertc.depthwise_conv1d' input [2, 4, 8] and weight [4, 9] are not [B, S, C] and [C, k]
func.func @depthwise_channels(%x: tensor<2x4x8xf32>, %w: tensor<4x9xf32>) -> tensor<2x4x8xf32> {
  %0 = "bertc.depthwise_conv1d"(%x, %w) : (tensor<2x4x8xf32>, tensor<4x9xf32>) -> tensor<2x4x8xf32>
  return %0 : tensor<2x4x8xf32>
}

// -----

// CHECK: 'bertc.depthwise_conv1d' kernel of 8 taps should be odd (k // 2 neighbours each side)
func.func @depthwise_even(%x: tensor<2x4x8xf32>, %w: tensor<8x8xf32>) -> tensor<2x4x8xf32> {
  %0 = "bertc.depthwise_conv1d"(%x, %w) : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  return %0 : tensor<2x4x8xf32>
}

// -----

// CHECK: 'bertc.span_conv' input [2, 4, 8] and kernels [2, 4, 3, 9] are not [B, S, H*D] and [B, S, H, k]
func.func @span_heads(%x: tensor<2x4x8xf32>, %k: tensor<2x4x3x9xf32>) -> tensor<2x4x8xf32> {
  %0 = "bertc.span_conv"(%x, %k) : (tensor<2x4x8xf32>, tensor<2x4x3x9xf32>) -> tensor<2x4x8xf32>
  return %0 : tensor<2x4x8xf32>
}

// -----

// CHECK: 'bertc.rms_norm' gamma must be [8], the input's last dimension
func.func @rms_norm_gamma(%x: tensor<1x4x8xf32>, %g: tensor<4xf32>) -> tensor<1x4x8xf32> {
  %0 = "bertc.rms_norm"(%x, %g) {eps = 1.0E-5 : f32} : (tensor<1x4x8xf32>, tensor<4xf32>) -> tensor<1x4x8xf32>
  return %0 : tensor<1x4x8xf32>
}

// -----

// CHECK: 'bertc.token_dropout' ids [2, 4], mask [2, 4] and result [2, 4] are not [B, S], [B, S] and [B, S, 1]
func.func @token_dropout_rank(%ids: tensor<2x4xi64>, %m: tensor<2x4xi64>) -> tensor<2x4xf32> {
  %0 = "bertc.token_dropout"(%ids, %m) {keep = 0.88 : f32, token = 32 : i64} : (tensor<2x4xi64>, tensor<2x4xi64>) -> tensor<2x4xf32>
  return %0 : tensor<2x4xf32>
}
