// RUN: bertc-opt %s --split-input-file --plan-memory --emit-vulkan | FileCheck %s

// A run-time length (tensor<1x?x8xf32>, bound bertc.max_seq_len = 16): the dispatch table holds every
// value at the bound, and the seq_sizes table the ones that follow the run's length L, as coefficients
// of 1, L and L*L that the executor evaluates before a run (vk_program.h). GEMM rows are L, in
// ceil(L / 64) row tiles; attention is attention.comp with -DSEQ_FROM_PUSH, its shared score row sized
// for the bound (16) and L in its seventh push constant, one workgroup per query (L). The scores of a
// matmul are L x L (batch stride L*L, the third coefficient), softmax runs 2*L rows of L, the second
// matmul sums over K = L keys, the mask bias writes L*L elements.
// CHECK: shaders (runtime/vulkan/shaders/): attention_seq (attention.comp -DSEQ_FROM_PUSH), gemm (gemm.comp), mask_bias (mask_bias.comp), softmax (softmax.comp).
// CHECK: /* 0 */ {0, 4, {64, 1, 16, 4}},  /* attention_seq */
// CHECK: static const bertc_vk_dispatch dispatches[] = {
// CHECK-NEXT: /* 0: bertc.linear [1, ?, 24] */ {1, {1, 1, 1}, 12, {16, 24, 8, {{[0-9]+}}, {{[0-9]+}}, NONE, NONE, {{[0-9]+}}, 0, 0, 0, 0}},
// CHECK-NEXT: /* 1: bertc.attention [1, ?, 8] */ {0, {16, 2, 1}, 7, {[[QKV:[0-9]+]], {{[0-9]+}}, {{[0-9]+}}, 8, 2, 1056964608, 16}},
// CHECK-NEXT: /* 2: bertc.matmul [2, ?, ?] */ {1, {1, 1, 2}, 12, {16, 16, 4, {{[0-9]+}}, {{[0-9]+}}, NONE, NONE, {{[0-9]+}}, 0, 64, 64, 256}},
// CHECK-NEXT: /* 3: bertc.softmax [2, ?, ?] */ {3, {32, 1, 1}, 4, {[[SCORES:[0-9]+]], {{[0-9]+}}, 32, 16}},
// CHECK-NEXT: /* 4: bertc.matmul [2, ?, 4] */ {1, {1, 1, 2}, 12, {16, 4, 16, {{[0-9]+}}, {{[0-9]+}}, NONE, NONE, {{[0-9]+}}, 0, 256, 64, 64}},
// CHECK-NEXT: /* 5: bertc.mask_bias [1, 1, ?, ?] */ {2, {1, 1, 1}, 6, {[[MASK:[0-9]+]], {{[0-9]+}}, 1, 16, 16, 3323740160}},
// CHECK: static const bertc_vk_seq_size seq_sizes[] = {
// CHECK-NEXT: /* 0: bertc.linear push[0] = (L) */ {0, BERTC_VK_PUSH, 0, {0, 1, 0}, 1},
// CHECK-NEXT: /* 0: bertc.linear groups.y = ceil((L) / 64) */ {0, BERTC_VK_GROUPS, 1, {0, 1, 0}, 64},
// CHECK-NEXT: /* 1: bertc.attention push[6] = (L) */ {1, BERTC_VK_PUSH, 6, {0, 1, 0}, 1},
// CHECK-NEXT: /* 1: bertc.attention groups.x = ceil((L) / 1) */ {1, BERTC_VK_GROUPS, 0, {0, 1, 0}, 1},
// CHECK-NEXT: /* 2: bertc.matmul push[0] = (L) */ {2, BERTC_VK_PUSH, 0, {0, 1, 0}, 1},
// CHECK-NEXT: /* 2: bertc.matmul push[1] = (L) */ {2, BERTC_VK_PUSH, 1, {0, 1, 0}, 1},
// CHECK-NEXT: /* 2: bertc.matmul push[9] = (4*L) */ {2, BERTC_VK_PUSH, 9, {0, 4, 0}, 1},
// CHECK-NEXT: /* 2: bertc.matmul push[10] = (4*L) */ {2, BERTC_VK_PUSH, 10, {0, 4, 0}, 1},
// CHECK-NEXT: /* 2: bertc.matmul push[11] = (L*L) */ {2, BERTC_VK_PUSH, 11, {0, 0, 1}, 1},
// CHECK-NEXT: /* 2: bertc.matmul groups.x = ceil((L) / 64) */ {2, BERTC_VK_GROUPS, 0, {0, 1, 0}, 64},
// CHECK-NEXT: /* 2: bertc.matmul groups.y = ceil((L) / 64) */ {2, BERTC_VK_GROUPS, 1, {0, 1, 0}, 64},
// CHECK-NEXT: /* 3: bertc.softmax push[2] = (2*L) */ {3, BERTC_VK_PUSH, 2, {0, 2, 0}, 1},
// CHECK-NEXT: /* 3: bertc.softmax push[3] = (L) */ {3, BERTC_VK_PUSH, 3, {0, 1, 0}, 1},
// CHECK-NEXT: /* 3: bertc.softmax groups.x = ceil((2*L) / 1) */ {3, BERTC_VK_GROUPS, 0, {0, 2, 0}, 1},
// CHECK-NEXT: /* 4: bertc.matmul push[0] = (L) */ {4, BERTC_VK_PUSH, 0, {0, 1, 0}, 1},
// CHECK-NEXT: /* 4: bertc.matmul push[2] = (L) */ {4, BERTC_VK_PUSH, 2, {0, 1, 0}, 1},
// CHECK-NEXT: /* 4: bertc.matmul push[9] = (L*L) */ {4, BERTC_VK_PUSH, 9, {0, 0, 1}, 1},
// CHECK-NEXT: /* 4: bertc.matmul push[10] = (4*L) */ {4, BERTC_VK_PUSH, 10, {0, 4, 0}, 1},
// CHECK-NEXT: /* 4: bertc.matmul push[11] = (4*L) */ {4, BERTC_VK_PUSH, 11, {0, 4, 0}, 1},
// CHECK-NEXT: /* 4: bertc.matmul groups.y = ceil((L) / 64) */ {4, BERTC_VK_GROUPS, 1, {0, 1, 0}, 64},
// CHECK-NEXT: /* 5: bertc.mask_bias push[3] = (L) */ {5, BERTC_VK_PUSH, 3, {0, 1, 0}, 1},
// CHECK-NEXT: /* 5: bertc.mask_bias push[4] = (L) */ {5, BERTC_VK_PUSH, 4, {0, 1, 0}, 1},
// CHECK-NEXT: /* 5: bertc.mask_bias groups.x = ceil((L*L) / 256) */ {5, BERTC_VK_GROUPS, 0, {0, 0, 1}, 256},
// CHECK-NEXT: };
// CHECK: .header.seq_len = 16,
// CHECK-NEXT: .header.dynamic = 1,
// CHECK: .dispatches = dispatches,
// CHECK-NEXT: .num_seq_sizes = 23,
// CHECK-NEXT: .seq_sizes = seq_sizes,
// CHECK-NEXT: .needs = 0,
module attributes {bertc.target = "vulkan", bertc.max_seq_len = 16 : i64} {
func.func @main(%mask: tensor<1x?xi64>, %x: tensor<1x?x8xf32>, %a: tensor<2x?x4xf32>, %b: tensor<2x4x?xf32>, %v: tensor<2x?x4xf32>) -> (tensor<1x?x8xf32>, tensor<2x?x4xf32>) {
  %wqkv = "bertc.weight"() {name = "qkv.weight"} : () -> tensor<24x8xf32>
  %qkv = "bertc.linear"(%x, %wqkv) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x?x8xf32>, tensor<24x8xf32>) -> tensor<1x?x24xf32>
  %att = "bertc.attention"(%qkv, %mask) {num_heads = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 0, 0, 0, 0, 0>, scale = 5.000000e-01 : f32, window = 0 : i64} : (tensor<1x?x24xf32>, tensor<1x?xi64>) -> tensor<1x?x8xf32>
  %s = "bertc.matmul"(%a, %b) : (tensor<2x?x4xf32>, tensor<2x4x?xf32>) -> tensor<2x?x?xf32>
  %p = "bertc.softmax"(%s) : (tensor<2x?x?xf32>) -> tensor<2x?x?xf32>
  %o = "bertc.matmul"(%p, %v) : (tensor<2x?x?xf32>, tensor<2x?x4xf32>) -> tensor<2x?x4xf32>
  %mb = "bertc.mask_bias"(%mask) {fill = -1.0e4 : f32, window = 0 : i64} : (tensor<1x?xi64>) -> tensor<1x1x?x?xf32>
  return %att, %o : tensor<1x?x8xf32>, tensor<2x?x4xf32>
}
}

// -----

// A static module's program has no seq_sizes table (and no .header.dynamic): its source is what it was
// before dynamic lengths.
// CHECK-LABEL: Target vulkan; shaders (runtime/vulkan/shaders/): attention (attention.comp).
// CHECK-NOT: seq_sizes
// CHECK-NOT: dynamic
// CHECK: .max_invocations = 64,
module attributes {bertc.target = "vulkan"} {
func.func @main(%mask: tensor<1x5xi64>, %qkv: tensor<1x5x24xf32>) -> tensor<1x5x8xf32> {
  %att = "bertc.attention"(%qkv, %mask) {num_heads = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 0, 0, 0, 0, 0>, scale = 5.000000e-01 : f32, window = 0 : i64} : (tensor<1x5x24xf32>, tensor<1x5xi64>) -> tensor<1x5x8xf32>
  return %att : tensor<1x5x8xf32>
}
}

// -----

// MobileBERT's trigram: one invocation per output element, 2*L*12 of them in workgroups of 256 (rows 2*L, L, E pushed).
// CHECK-LABEL: shaders (runtime/vulkan/shaders/): trigram (trigram.comp).
// CHECK: /* 0: bertc.trigram [2, ?, 12] */ {0, {2, 1, 1}, 5, {{[{][0-9]+}}, {{[0-9]+}}, 32, 16, 4}},
// CHECK: /* 0: bertc.trigram push[2] = (2*L) */ {0, BERTC_VK_PUSH, 2, {0, 2, 0}, 1},
// CHECK-NEXT: /* 0: bertc.trigram push[3] = (L) */ {0, BERTC_VK_PUSH, 3, {0, 1, 0}, 1},
// CHECK-NEXT: /* 0: bertc.trigram groups.x = ceil((24*L) / 256) */ {0, BERTC_VK_GROUPS, 0, {0, 24, 0}, 256},
module attributes {bertc.target = "vulkan", bertc.max_seq_len = 16 : i64} {
func.func @main(%ids: tensor<2x?xi64>, %mask: tensor<2x?xi64>, %x: tensor<2x?x4xf32>) -> tensor<2x?x12xf32> {
  %t = "bertc.trigram"(%x) : (tensor<2x?x4xf32>) -> tensor<2x?x12xf32>
  return %t : tensor<2x?x12xf32>
}
}

// -----

// ConvBERT's convolutions: seq_conv.comp, one invocation per output element, 2*L*4 of them (rows 2*L, L, C, k and
// heads pushed: heads 0 is the depthwise conv's per-channel weight [C, k], as stored).
// CHECK-LABEL: shaders (runtime/vulkan/shaders/): seq_conv (seq_conv.comp).
// CHECK: /* 0: bertc.depthwise_conv1d [2, ?, 4] */ {0, {1, 1, 1}, 8, {{[{][0-9]+}}, {{[0-9]+}}, {{[0-9]+}}, 32, 16, 4, 9, 0}},
// CHECK: /* 1: bertc.span_conv [2, ?, 4] */ {0, {1, 1, 1}, 8, {{[{][0-9]+}}, {{[0-9]+}}, {{[0-9]+}}, 32, 16, 4, 9, 2}},
// CHECK: /* 0: bertc.depthwise_conv1d push[3] = (2*L) */ {0, BERTC_VK_PUSH, 3, {0, 2, 0}, 1},
// CHECK-NEXT: /* 0: bertc.depthwise_conv1d push[4] = (L) */ {0, BERTC_VK_PUSH, 4, {0, 1, 0}, 1},
// CHECK-NEXT: /* 0: bertc.depthwise_conv1d groups.x = ceil((8*L) / 256) */ {0, BERTC_VK_GROUPS, 0, {0, 8, 0}, 256},
module attributes {bertc.target = "vulkan", bertc.max_seq_len = 16 : i64} {
func.func @main(%ids: tensor<2x?xi64>, %mask: tensor<2x?xi64>, %x: tensor<2x?x4xf32>, %k: tensor<2x?x2x9xf32>) -> tensor<2x?x4xf32> {
  %w = "bertc.weight"() {name = "depthwise.weight"} : () -> tensor<4x9xf32>
  %d = "bertc.depthwise_conv1d"(%x, %w) : (tensor<2x?x4xf32>, tensor<4x9xf32>) -> tensor<2x?x4xf32>
  %s = "bertc.span_conv"(%d, %k) : (tensor<2x?x4xf32>, tensor<2x?x2x9xf32>) -> tensor<2x?x4xf32>
  return %s : tensor<2x?x4xf32>
}
}

// -----

// EuroBERT's RMSNorm: one workgroup per row (rows L, width 4, eps's bits pushed).
// CHECK-LABEL: shaders (runtime/vulkan/shaders/): rms_norm (rms_norm.comp).
// CHECK: /* 0: bertc.rms_norm [1, ?, 4] */
// CHECK: /* 0: bertc.rms_norm push[3] = (L) */
module attributes {bertc.target = "vulkan", bertc.max_seq_len = 16 : i64} {
func.func @main(%ids: tensor<1x?xi64>, %mask: tensor<1x?xi64>, %x: tensor<1x?x4xf32>) -> tensor<1x?x4xf32> {
  %g = "bertc.weight"() {name = "norm.weight"} : () -> tensor<4xf32>
  %n = "bertc.rms_norm"(%x, %g) {eps = 1.0E-5 : f32} : (tensor<1x?x4xf32>, tensor<4xf32>) -> tensor<1x?x4xf32>
  return %n : tensor<1x?x4xf32>
}
}
