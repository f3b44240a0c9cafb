// RUN: bertc-opt %s --split-input-file --plan-memory --emit-c | FileCheck %s

// One kernel call per op with shapes in the arguments; linear weights are read as [K,N]. Each call
// is timed into op_seconds[i], i counting the ops in order; the ops table names op i and its kernel.
// A GEMM's, norm's or elementwise op's pool is sized by its work (multiply-adds: 4 x 8 x 4; elements: 4 x 8), which
// runs a call below the macro's on the calling thread alone.
// CHECK: #include "kernels.h"
// CHECK: static void model_run(const bertc_exec *x) {
// CHECK: /* bertc.linear [1, 4, 8] */
// CHECK-NEXT: BERTC_TIMED(0, bertc_linear(bertc_pool_sized(p, (int64_t)128, BERTC_SERIAL_MACS), A(float, {{[0-9]+}}), W(float, 0), NULL, NULL, A(float, {{[0-9]+}}), 4, 8, 4, BERTC_ACT_GELU));
// CHECK: BERTC_TIMED(1, bertc_layer_norm(bertc_pool_sized(p, (int64_t)32, BERTC_SERIAL_ELEMENTS), A(float, {{[0-9]+}}), A(float, {{[0-9]+}}), W(float, {{[0-9]+}}), W(float, {{[0-9]+}}), A(float, {{[0-9]+}}), 4, 8, 9.999999960041972e-13f));
// CHECK: BERTC_TIMED(2, bertc_linear(
// CHECK: BERTC_TIMED(3, bertc_attention(p, A(float, [[QKV:[0-9]+]]), 24, A(float, [[QKV]]) + 16, 24, A(int64_t, {{[0-9]+}}), NULL, 0, NULL, 0, A(float, {{[0-9]+}}), 1, 4, 8, 2, 0.5f));
// CHECK: static const char *const kernels[] = {"bertc_attention", "bertc_layer_norm", "bertc_linear"};
// CHECK: static const bertc_op_info ops[] = {
// CHECK-NEXT: {"bertc.linear [1, 4, 8]", "bertc_linear"},
// CHECK-NEXT: {"bertc.layer_norm [1, 4, 8]", "bertc_layer_norm"},
// CHECK-NEXT: {"bertc.linear [1, 4, 24]", "bertc_linear"},
// CHECK-NEXT: {"bertc.attention [1, 4, 8]", "bertc_attention"},
// CHECK-NEXT: };
// CHECK: const bertc_program bertc_compiled_program = {
// CHECK-NEXT: .header.format_version = {{[0-9]+}},
// CHECK: .header.batch = 1,
// CHECK: .header.seq_len = 4,
// Per-thread scratch: the largest kernels.h bound over the ops; the kernel names go in the program.
// CHECK: .scratch_floats = MAX2(MAX2(MAX2(64, BERTC_SCRATCH_ATTENTION(4, 4)), BERTC_SCRATCH_LINEAR(4)), BERTC_SCRATCH_LINEAR(8)),
// The threading split and kernel blocking are the target's (bertc/targets.py).
// CHECK: .tuning = {2, 8, 192},
// CHECK: .header.ids_offset = {{[0-9]+}},
// CHECK: .num_kernels = 3,
// CHECK: .header.num_ops = 4,
// CHECK-NEXT: .header.ops = ops,
func.func @main(%ids: tensor<1x4xi64>, %mask: tensor<1x4xi64>, %x: tensor<1x4x4xf32>) -> tensor<1x4x8xf32> {
  %w = "bertc.weight"() {name = "fc.weight"} : () -> tensor<8x4xf32>
  %g = "bertc.weight"() {name = "ln.weight"} : () -> tensor<8xf32>
  %b = "bertc.weight"() {name = "ln.bias"} : () -> tensor<8xf32>
  %wqkv = "bertc.weight"() {name = "qkv.weight"} : () -> tensor<24x8xf32>
  %h = "bertc.linear"(%x, %w) {activation = "gelu", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x4x4xf32>, tensor<8x4xf32>) -> tensor<1x4x8xf32>
  %n = "bertc.layer_norm"(%h, %g, %b, %h) {eps = 9.99999996E-13 : f32, operandSegmentSizes = array<i32: 1, 1, 1, 1>} : (tensor<1x4x8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
  %qkv = "bertc.linear"(%n, %wqkv) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x4x8xf32>, tensor<24x8xf32>) -> tensor<1x4x24xf32>
  %a = "bertc.attention"(%qkv, %mask) {num_heads = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 0, 0, 0, 0, 0, 0>, scale = 5.000000e-01 : f32, window = 0 : i64} : (tensor<1x4x24xf32>, tensor<1x4xi64>) -> tensor<1x4x8xf32>
  return %a : tensor<1x4x8xf32>
}

// -----

// A linear with bertc.tile (from --pack-weights) calls the packed GEMM with that tile; its
// weight goes to weights.bin as panels: ceil(10/4) = 3 panels of 6x4 floats, 288 bytes after the
// bias (40 bytes, padded to 64), so 352 bytes in all.
// CHECK: BERTC_TIMED(0, bertc_linear_packed(bertc_pool_sized(p, (int64_t)120, BERTC_SERIAL_MACS), A(float, {{[0-9]+}}), W(float, 64), W(float, 0), NULL, A(float, {{[0-9]+}}), 2, 10, 6, BERTC_ACT_NONE, &(const bertc_gemm_tile){2, 4, 128}));
// CHECK: {"bertc.linear [1, 2, 10]", "bertc_linear_packed"},
// CHECK: .header.weights_bytes = 352,
func.func @main(%x: tensor<1x2x6xf32>) -> tensor<1x2x10xf32> {
  %w = "bertc.weight"() {name = "fc.weight"} : () -> tensor<10x6xf32>
  %b = "bertc.weight"() {name = "fc.bias"} : () -> tensor<10xf32>
  %y = "bertc.linear"(%x, %w, %b) {activation = "none", bertc.tile = array<i64: 2, 4, 128>, operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x2x6xf32>, tensor<10x6xf32>, tensor<10xf32>) -> tensor<1x2x10xf32>
  return %y : tensor<1x2x10xf32>
}

// -----

// With bertc.weight_dtype = "i8" (--dtype int8) the packed GEMM is the int8 one: its weight goes to
// weights.bin as kernels.h's bertc_qweight, int8 panels with K in groups of four (3 panels x K = 6
// padded to 8 x 4 columns: 96 bytes at 64), then the 10 scales (at 192) and column sums (at 256).
// It quantizes x into a work buffer past the planned values (y at 0, x at 128: 192 bytes): 2 rows rounded up
// to 16, of K = 6 rounded up to 8 bytes, a scale and a zero point, 256 bytes at 192; it needs no per-thread scratch.
// The qweight's x_scale is 0: x is quantized per row at run time (no bertc.x_scale, no --calibrate).
// CHECK: BERTC_TIMED(0, bertc_linear_packed_i8(bertc_pool_sized(p, (int64_t)120, BERTC_SERIAL_MACS_I8), A(float, {{[0-9]+}}), &(const bertc_qweight){W(int8_t, 64), W(float, 192), W(int32_t, 256), 0.0f, 127}, W(float, 0), NULL, A(float, {{[0-9]+}}), 2, 10, 6, BERTC_ACT_NONE, &(const bertc_gemm_tile){2, 4, 128}, A(int8_t, 192)));
// CHECK: {"bertc.linear [1, 2, 10]", "bertc_linear_packed_i8"},
// CHECK: .header.arena_bytes = 448,
// CHECK: .header.weights_bytes = 296,
// CHECK: .scratch_floats = 64,
func.func @main(%x: tensor<1x2x6xf32>) -> tensor<1x2x10xf32> {
  %w = "bertc.weight"() {name = "fc.weight"} : () -> tensor<10x6xf32>
  %b = "bertc.weight"() {name = "fc.bias"} : () -> tensor<10xf32>
  %y = "bertc.linear"(%x, %w, %b) {activation = "none", bertc.tile = array<i64: 2, 4, 128>, bertc.weight_dtype = "i8", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x2x6xf32>, tensor<10x6xf32>, tensor<10xf32>) -> tensor<1x2x10xf32>
  return %y : tensor<1x2x10xf32>
}

// -----

// A static input scale (bertc.x_scale, from --calibrate) is the qweight's x_scale, as a float literal; bertc.qmax
// (pack-weights, for AVX2's VPMADDUBSW kernel) its weights' bound.
// CHECK: bertc_linear_packed_i8(bertc_pool_sized(p, (int64_t)120, BERTC_SERIAL_MACS_I8), A(float, {{[0-9]+}}), &(const bertc_qweight){W(int8_t, {{[0-9]+}}), W(float, {{[0-9]+}}), W(int32_t, {{[0-9]+}}), 0.25f, 63}, NULL,
func.func @main(%x: tensor<1x2x6xf32>) -> tensor<1x2x10xf32> {
  %w = "bertc.weight"() {name = "fc.weight"} : () -> tensor<10x6xf32>
  %y = "bertc.linear"(%x, %w) {activation = "none", bertc.qmax = 63 : i32, bertc.tile = array<i64: 2, 4, 128>, bertc.weight_dtype = "i8", bertc.x_scale = 2.5e-01 : f32, operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x2x6xf32>, tensor<10x6xf32>) -> tensor<1x2x10xf32>
  return %y : tensor<1x2x10xf32>
}

// -----

// bertc.cast: the i64 mask as floats (one element per token), then the broadcasting mul reads them.
// CHECK: BERTC_TIMED(0, bertc_cast(A(int64_t, {{[0-9]+}}), A(float, {{[0-9]+}}), 4));
// CHECK-NEXT: /* bertc.mul [1, 4, 8] */
// CHECK-NEXT: BERTC_TIMED(1, bertc_binary(bertc_pool_sized(p, (int64_t)32, BERTC_SERIAL_COPY_ELEMENTS), BERTC_MUL, A(float, {{[0-9]+}}), (const int64_t[4]){0, 32, 8, 1}, A(float, {{[0-9]+}}), (const int64_t[4]){0, 4, 1, 0}
func.func @main(%x: tensor<1x4x8xf32>, %m: tensor<1x4x1xi64>) -> tensor<1x4x8xf32> {
  %f = "bertc.cast"(%m) : (tensor<1x4x1xi64>) -> tensor<1x4x1xf32>
  %0 = "bertc.mul"(%x, %f) : (tensor<1x4x8xf32>, tensor<1x4x1xf32>) -> tensor<1x4x8xf32>
  return %0 : tensor<1x4x8xf32>
}

// -----

// bertc.relative_gather (DeBERTa's c2p scores): x [4, 6, 32], its [11]-entry table (R = 6), out [4, 6, 6].
// CHECK: BERTC_TIMED(0, bertc_relative_gather(A(float, {{[0-9]+}}), W(int64_t, {{[0-9]+}}), A(float, {{[0-9]+}}), 4, 6, 32, 6));
func.func @main(%x: tensor<4x6x32xf32>) -> tensor<4x6x6xf32> {
  %t = "bertc.weight"() {name = "c2p.table"} : () -> tensor<11xi64>
  %0 = "bertc.relative_gather"(%x, %t) : (tensor<4x6x32xf32>, tensor<11xi64>) -> tensor<4x6x6xf32>
  return %0 : tensor<4x6x6xf32>
}
