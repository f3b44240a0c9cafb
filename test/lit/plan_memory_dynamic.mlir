// RUN: not bertc-opt %s --split-input-file --plan-memory 2>&1 | FileCheck %s

// Without a bound there is nothing to lay a run-time length out for: the error names the flag.
// CHECK: error: a dynamic length (?) needs bertc.max_seq_len on the module: compile with --max-seq-len
module {
  func.func @unbounded(%x: tensor<1x?x4xf32>) -> tensor<1x?x4xf32> {
    %t = "bertc.tanh"(%x) : (tensor<1x?x4xf32>) -> tensor<1x?x4xf32>
    return %t : tensor<1x?x4xf32>
  }
}

// -----

// A run-time length (tensor<1x?x4xf32>) is laid out at the module's bound, bertc.max_seq_len = 16:
// the input is 1x16x4 floats (256 bytes, one 512-byte slot shared with the gelu after the linear has
// read it), the linear's and gelu's 1x16x8 are 512 each; the tanh reuses the linear's slot. A run of
// L <= 16 tokens uses the start of each slot.
// CHECK: module attributes {bertc.arena_bytes = 1024 : i64, bertc.live_peak_bytes = 1024 : i64, bertc.max_seq_len = 16 : i64}
// CHECK: func.func @chain{{.*}} attributes {bertc.arg_offsets = array<i64: 512>}
// CHECK: %[[A:.*]] = "bertc.linear"{{.*}}bertc.offset = 0 : i64
// CHECK: %[[B:.*]] = "bertc.gelu"(%[[A]]) {approximate = "none", bertc.offset = 512 : i64}
// CHECK: "bertc.tanh"(%[[B]]) {bertc.offset = 0 : i64}
module attributes {bertc.max_seq_len = 16 : i64} {
  func.func @chain(%x: tensor<1x?x4xf32>) -> tensor<1x?x8xf32> {
    %w = "bertc.weight"() {name = "w"} : () -> tensor<8x4xf32>
    %a = "bertc.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x?x4xf32>, tensor<8x4xf32>) -> tensor<1x?x8xf32>
    %b = "bertc.gelu"(%a) {approximate = "none"} : (tensor<1x?x8xf32>) -> tensor<1x?x8xf32>
    %t = "bertc.tanh"(%b) : (tensor<1x?x8xf32>) -> tensor<1x?x8xf32>
    return %t : tensor<1x?x8xf32>
  }
}
