// RUN: bertc-opt %s --plan-memory | FileCheck %s

// Inputs get slots first; a buffer is reused once its last reader has run; a reshape is a
// view (no offset of its own); weights take no arena space.
// CHECK: module attributes {bertc.arena_bytes = 256 : i64, bertc.live_peak_bytes = 256 : i64}
// CHECK: func.func @chain{{.*}} attributes {bertc.arg_offsets = array<i64: 128>}
// CHECK: %[[A:.*]] = "bertc.linear"{{.*}}bertc.offset = 0 : i64
// CHECK: %[[B:.*]] = "bertc.gelu"(%[[A]]) {approximate = "none", bertc.offset = 128 : i64}
// CHECK: %[[R:.*]] = "bertc.reshape"(%[[B]]) :
// CHECK: "bertc.tanh"(%[[R]]) {bertc.offset = 0 : i64}
func.func @chain(%x: tensor<1x4x4xf32>) -> tensor<16x2xf32> {
  %w = "bertc.weight"() {name = "w"} : () -> tensor<8x4xf32>
  %a = "bertc.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x4x4xf32>, tensor<8x4xf32>) -> tensor<1x4x8xf32>
  %b = "bertc.gelu"(%a) {approximate = "none"} : (tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
  %r = "bertc.reshape"(%b) : (tensor<1x4x8xf32>) -> tensor<16x2xf32>
  %t = "bertc.tanh"(%r) : (tensor<16x2xf32>) -> tensor<16x2xf32>
  return %t : tensor<16x2xf32>
}
