// RUN: bertc-opt %s --split-input-file --plan-memory --emit-vulkan | FileCheck %s

// One dispatch per op. Workgroup and tile sizes are specialization constants chosen by the target
// (bertc/targets.py, GpuParams), never constants in the shader text: for vulkan the GEMM runs
// 8x8 invocations of 8x8 outputs (64x64 tiles, K slices of 32); attention, one workgroup of 64
// per (query, head, batch) with the sequence length (5) and head width (4) sizing its shared arrays.
// CHECK: Target vulkan; shaders (runtime/vulkan/shaders/): attention (attention.comp), gemm (gemm.comp), layer_norm (layer_norm.comp).
// CHECK: static const bertc_vk_shader shaders[] = {
// CHECK-NEXT: {"attention", BERTC_SPV_SHA256_attention},
// CHECK-NEXT: {"gemm", BERTC_SPV_SHA256_gemm},
// CHECK-NEXT: {"layer_norm", BERTC_SPV_SHA256_layer_norm},
// CHECK: static const bertc_vk_pipeline pipelines[] = {
// CHECK-NEXT: /* 0 */ {0, 4, {64, 1, 5, 4}},  /* attention */
// CHECK-NEXT: /* 1 */ {1, 5, {8, 8, 8, 8, 32}},  /* gemm */
// CHECK-NEXT: /* 2 */ {2, 2, {64, 1}},  /* layer_norm */
// Push constants: M, N, K, then word offsets (x, [K,N] weights, bias, residual, y), the activation
// (1: GELU) and three batch strides; NONE marks an absent bias or residual. Workgroups: ceil(N/64) x
// ceil(M/64); a layer norm gets one workgroup per row, attention (S, heads, B).
// CHECK: static const bertc_vk_dispatch dispatches[] = {
// CHECK-NEXT: /* 0: bertc.linear [1, 5, 8] */ {1, {1, 1, 1}, 12, {5, 8, 6, [[X:[0-9]+]], [[W:[0-9]+]], [[B:[0-9]+]], NONE, [[H:[0-9]+]], 1, 0, 0, 0}},
// CHECK-NEXT: /* 1: bertc.layer_norm [1, 5, 8] */ {2, {5, 1, 1}, 8, {[[H]], [[H]], {{[0-9]+}}, {{[0-9]+}}, [[N:[0-9]+]], 5, 8, 730643660}},
// CHECK-NEXT: /* 2: bertc.linear [1, 5, 24] */ {1, {1, 1, 1}, 12, {5, 24, 8, [[N]], {{[0-9]+}}, NONE, NONE, [[QKV:[0-9]+]], 0, 0, 0, 0}},
// CHECK-NEXT: /* 3: bertc.attention [1, 5, 8] */ {0, {5, 2, 1}, 6, {[[QKV]], {{[0-9]+}}, {{[0-9]+}}, 8, 2, 1056964608}},
// CHECK: static const bertc_op_info ops[] = {
// CHECK-NEXT: {"bertc.linear [1, 5, 8]", "gemm"},
// CHECK-NEXT: {"bertc.layer_norm [1, 5, 8]", "layer_norm"},
// The arena comes first in the device buffer, weights.bin after it (64-byte aligned).
// CHECK: .header.arena_bytes = [[ARENA:[0-9]+]],
// CHECK-NEXT: .weights_offset = [[ARENA]],
// CHECK: .header.num_ops = 4,
// CHECK: .needs = 0,
// CHECK-NEXT: .shared_bytes = 16384,
// CHECK-NEXT: .max_invocations = 64,
module attributes {bertc.target = "vulkan"} {
func.func @main(%ids: tensor<1x5xi64>, %mask: tensor<1x5xi64>, %x: tensor<1x5x6xf32>) -> tensor<1x5x8xf32> {
  %w = "bertc.weight"() {name = "fc.weight"} : () -> tensor<8x6xf32>
  %b = "bertc.weight"() {name = "fc.bias"} : () -> tensor<8xf32>
  %g = "bertc.weight"() {name = "ln.weight"} : () -> tensor<8xf32>
  %be = "bertc.weight"() {name = "ln.bias"} : () -> tensor<8xf32>
  %wqkv = "bertc.weight"() {name = "qkv.weight"} : () -> tensor<24x8xf32>
  %h = "bertc.linear"(%x, %w, %b) {activation = "gelu", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x5x6xf32>, tensor<8x6xf32>, tensor<8xf32>) -> tensor<1x5x8xf32>
  %n = "bertc.layer_norm"(%h, %g, %be, %h) {eps = 9.99999996E-13 : f32, operandSegmentSizes = array<i32: 1, 1, 1, 1>} : (tensor<1x5x8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<1x5x8xf32>) -> tensor<1x5x8xf32>
  %qkv = "bertc.linear"(%n, %wqkv) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x5x8xf32>, tensor<24x8xf32>) -> tensor<1x5x24xf32>
  %a = "bertc.attention"(%qkv, %mask) {num_heads = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 0, 0, 0, 0, 0>, scale = 5.000000e-01 : f32, window = 0 : i64} : (tensor<1x5x24xf32>, tensor<1x5xi64>) -> tensor<1x5x8xf32>
  return %a : tensor<1x5x8xf32>
}
}

// -----

// android-vulkan: 8x8-invocation GEMM workgroups (32x32 tiles) within the 128 invocations and 16 KiB
// that every Vulkan device has. fp16 (bertc.dtype = "f16"): the gemm_f16 shader (gemm.comp built
// with -DWEIGHT_F16); its weight offset counts halves, and the program needs the device's fp16 features.
// CHECK: Target android-vulkan; shaders (runtime/vulkan/shaders/): gemm_f16 (gemm.comp -DWEIGHT_F16).
// CHECK: /* 0 */ {0, 5, {8, 8, 4, 4, 16}},  /* gemm_f16 */
// CHECK: /* 0: bertc.linear [1, 40, 70] */ {0, {3, 2, 1}, 12, {40, 70, 6, {{[0-9]+}}, {{[0-9]+}}, NONE, NONE, {{[0-9]+}}, 0, 0, 0, 0}},
// CHECK: .needs = BERTC_VK_NEEDS_F16,
// CHECK-NEXT: .shared_bytes = 2048,
// CHECK-NEXT: .max_invocations = 64,
module attributes {bertc.target = "android-vulkan", bertc.dtype = "f16"} {
func.func @main(%ids: tensor<1x40xi64>, %x: tensor<1x40x6xf32>) -> tensor<1x40x70xf32> {
  %w = "bertc.weight"() {name = "fc.weight"} : () -> tensor<70x6xf32>
  %y = "bertc.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x40x6xf32>, tensor<70x6xf32>) -> tensor<1x40x70xf32>
  return %y : tensor<1x40x70xf32>
}
}

// -----

// int8 (bertc.dtype = "i8"): the gemm_i8 shader (gemm.comp -DWEIGHT_I8) reads a constant weight as [K, N] bytes, its
// offset in bytes, and the scales' word offset in a 13th push constant; the program needs storageBuffer8BitAccess. A
// weight computed at run time stays fp32 (gemm).
// CHECK: Target android-vulkan; shaders (runtime/vulkan/shaders/): gemm (gemm.comp), gemm_i8 (gemm.comp -DWEIGHT_I8).
// CHECK: /* 1 */ {1, 5, {8, 8, 4, 4, 16}},  /* gemm_i8 */
// CHECK: /* 0: bertc.linear [1, 40, 70] */ {1, {3, 2, 1}, 13, {40, 70, 6, {{[0-9]+}}, {{[0-9]+}}, NONE, NONE, {{[0-9]+}}, 0, 0, 0, 0, {{[0-9]+}}}},
// CHECK-NEXT: /* 1: bertc.linear [1, 40, 5] */ {0, {1, 2, 1}, 12, {40, 5, 70, {{[0-9]+}}, {{[0-9]+}}, NONE, NONE, {{[0-9]+}}, 0, 0, 0, 0}},
// CHECK: .needs = BERTC_VK_NEEDS_I8,
// CHECK-NEXT: .shared_bytes = 4096,
module attributes {bertc.target = "android-vulkan", bertc.dtype = "i8"} {
func.func @main(%ids: tensor<1x40xi64>, %x: tensor<1x40x6xf32>, %v: tensor<5x70xf32>) -> tensor<1x40x5xf32> {
  %w = "bertc.weight"() {name = "fc.weight"} : () -> tensor<70x6xf32>
  %y = "bertc.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x40x6xf32>, tensor<70x6xf32>) -> tensor<1x40x70xf32>
  %z = "bertc.linear"(%y, %v) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x40x70xf32>, tensor<5x70xf32>) -> tensor<1x40x5xf32>
  return %z : tensor<1x40x5xf32>
}
}

// -----

// V's rows apart from the Q|K rows (MobileBERT): the attention_v shader (attention.comp built with -DV_APART) reads
// Q|K rows of 2H and takes V's word offset in a seventh push constant.
// CHECK: Target vulkan; shaders (runtime/vulkan/shaders/): attention_v (attention.comp -DV_APART), gemm (gemm.comp).
// CHECK: /* 0 */ {0, 4, {64, 1, 5, 4}},  /* attention_v */
// CHECK: /* 0: bertc.linear [1, 5, 16] */ {1, {1, 1, 1}, 12, {5, 16, 8, {{[0-9]+}}, {{[0-9]+}}, NONE, NONE, [[QK:[0-9]+]], 0, 0, 0, 0}},
// CHECK-NEXT: /* 1: bertc.linear [1, 5, 8] */ {1, {1, 1, 1}, 12, {5, 8, 6, {{[0-9]+}}, {{[0-9]+}}, NONE, NONE, [[V:[0-9]+]], 0, 0, 0, 0}},
// CHECK-NEXT: /* 2: bertc.attention [1, 5, 8] */ {0, {5, 2, 1}, 7, {[[QK]], {{[0-9]+}}, {{[0-9]+}}, 8, 2, 1056964608, [[V]]}},
module attributes {bertc.target = "vulkan"} {
func.func @main(%mask: tensor<1x5xi64>, %x: tensor<1x5x8xf32>, %y: tensor<1x5x6xf32>) -> tensor<1x5x8xf32> {
  %wqk = "bertc.weight"() {name = "qk.weight"} : () -> tensor<16x8xf32>
  %wv = "bertc.weight"() {name = "v.weight"} : () -> tensor<8x6xf32>
  %qk = "bertc.linear"(%x, %wqk) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x5x8xf32>, tensor<16x8xf32>) -> tensor<1x5x16xf32>
  %v = "bertc.linear"(%y, %wv) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x5x6xf32>, tensor<8x6xf32>) -> tensor<1x5x8xf32>
  %a = "bertc.attention"(%qk, %mask, %v) {num_heads = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 1, 0, 0, 0, 0>, scale = 5.000000e-01 : f32, window = 0 : i64} : (tensor<1x5x16xf32>, tensor<1x5xi64>, tensor<1x5x8xf32>) -> tensor<1x5x8xf32>
  return %a : tensor<1x5x8xf32>
}
}

// -----

// DeBERTa's disentangled attention with its c2p term alone: attention.comp's POSITIONS variant, its six push
// constants after the others: c2p's scores, NONE for the absent p2c (and its table), c2p's table, W = 6, R = 4.
// CHECK: Target vulkan; shaders (runtime/vulkan/shaders/): attention_pos (attention.comp -DPOSITIONS).
// CHECK: /* 0: bertc.attention [1, 4, 8] */ {0, {4, 2, 1}, 12, {[[QKV:[0-9]+]], {{[0-9]+}}, {{[0-9]+}}, 8, 2, 1051372203, [[QPOS:[0-9]+]], NONE, {{[0-9]+}}, NONE, 6, 4}},
module attributes {bertc.target = "vulkan"} {
func.func @main(%qkv: tensor<1x4x24xf32>, %mask: tensor<1x4xi64>, %c2p: tensor<2x4x6xf32>) -> tensor<1x4x8xf32> {
  %ci = "bertc.weight"() {name = "c2p_index"} : () -> tensor<7xi64>
  %a = "bertc.attention"(%qkv, %mask, %c2p, %ci) {num_heads = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 0, 1, 1, 0, 0>, scale = 0.333333343 : f32, window = 0 : i64} : (tensor<1x4x24xf32>, tensor<1x4xi64>, tensor<2x4x6xf32>, tensor<7xi64>) -> tensor<1x4x8xf32>
  return %a : tensor<1x4x8xf32>
}
}
