// RUN: bertc-opt %s --split-input-file --pack-weights | FileCheck %s
// RUN: bertc-opt %s --split-input-file "--pack-weights{mr=4 nr=16 kc=64}" | FileCheck %s --check-prefix=OPT
// RUN: not bertc-opt %s --split-input-file "--pack-weights{nr=0}" 2>&1 | FileCheck %s --check-prefix=BAD
// RUN: not bertc-opt %s --split-input-file "--pack-weights{mr=17}" 2>&1 | FileCheck %s --check-prefix=BIGMR
// RUN: not bertc-opt %s --split-input-file "--pack-weights{tile=8}" 2>&1 | FileCheck %s --check-prefix=UNKNOWN
// RUN: bertc-opt %s --split-input-file "--pack-weights{dtype=f16}" | FileCheck %s --check-prefix=F16
// RUN: bertc-opt %s --split-input-file "--pack-weights{dtype=i8}" | FileCheck %s --check-prefix=I8
// RUN: sed 's/android-arm64/vulkan/' %s | not bertc-opt - --split-input-file "--pack-weights{dtype=i8}" 2>&1 | FileCheck %s --check-prefix=GPUI8
// RUN: not bertc-opt %s --split-input-file "--pack-weights{dtype=bf16}" 2>&1 | FileCheck %s --check-prefix=BADTYPE
// RUN: sed 's/android-arm64/host/' %s | not bertc-opt - --split-input-file "--pack-weights{dtype=f16}" 2>&1 | FileCheck %s --check-prefix=HOSTF16

// The tile comes from the module's target: android-arm64 is NEON, 8 rows x 12 columns.
// Options override it. A linear whose weight is computed at run time keeps its layout.
// CHECK-LABEL: func.func @mlp
// CHECK: "bertc.linear"(%arg0, %{{.*}}, %{{.*}}) {activation = "gelu", bertc.tile = array<i64: 8, 12, 256>
// CHECK: "bertc.linear"(%{{.*}}, %{{.*}}) {activation = "none", bertc.tile = array<i64: 8, 12, 256>
// CHECK: "bertc.linear"(%arg0, %arg1) {activation = "none", operandSegmentSizes
// OPT: bertc.tile = array<i64: 4, 16, 64>
// BAD: --pack-weights nr=0: expected an integer in 1..4096
// BIGMR: --pack-weights mr=17: expected an integer in 1..16
// UNKNOWN: --pack-weights has no option ['tile']; it takes mr, nr, kc, dtype
// Half-float weights take the target's fp16 tile (NEON 8x24, K spans of 128) and say so; the
// run-time weight stays fp32. Only targets with fp16 kernels accept them.
// F16: "bertc.linear"(%arg0, %{{.*}}, %{{.*}}) {activation = "gelu", bertc.tile = array<i64: 8, 24, 128>, bertc.weight_dtype = "f16"
// F16: "bertc.linear"(%{{.*}}, %{{.*}}) {activation = "none", bertc.tile = array<i64: 8, 24, 128>, bertc.weight_dtype = "f16"
// F16: "bertc.linear"(%arg0, %arg1) {activation = "none", operandSegmentSizes
// int8 weights take the target's int8 tile (ARM64: the SDOT kernel's 8x12) and say so; GPU targets
// have no int8 kernels.
// I8: "bertc.linear"(%arg0, %{{.*}}, %{{.*}}) {activation = "gelu", bertc.tile = array<i64: 8, 12, 256>, bertc.weight_dtype = "i8"
// I8: "bertc.linear"(%{{.*}}, %{{.*}}) {activation = "none", bertc.tile = array<i64: 8, 12, 256>, bertc.weight_dtype = "i8"
// I8: "bertc.linear"(%arg0, %arg1) {activation = "none", operandSegmentSizes
// GPUI8: --pack-weights dtype=i8: target 'vulkan' has no i8 kernels; use f32
// BADTYPE: --pack-weights dtype=bf16: expected f32, f16 or i8
// HOSTF16: --pack-weights dtype=f16: target 'host' has no f16 kernels; use f32
module attributes {bertc.target = "android-arm64"} {
  func.func @mlp(%x: tensor<1x8x32xf32>, %dyn: tensor<16x32xf32>) -> (tensor<1x8x32xf32>, tensor<1x8x16xf32>) {
    %w1 = "bertc.weight"() {name = "fc1.weight"} : () -> tensor<64x32xf32>
    %b1 = "bertc.weight"() {name = "fc1.bias"} : () -> tensor<64xf32>
    %wa = "bertc.weight"() {name = "a.weight"} : () -> tensor<32x32xf32>
    %wb = "bertc.weight"() {name = "b.weight"} : () -> tensor<32x32xf32>
    %w2 = "bertc.concat"(%wa, %wb) {dim = 1 : i64, operandSegmentSizes = array<i32: 2>} : (tensor<32x32xf32>, tensor<32x32xf32>) -> tensor<32x64xf32>
    %h = "bertc.linear"(%x, %w1, %b1) {activation = "gelu", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x8x32xf32>, tensor<64x32xf32>, tensor<64xf32>) -> tensor<1x8x64xf32>
    %y = "bertc.linear"(%h, %w2) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x8x64xf32>, tensor<32x64xf32>) -> tensor<1x8x32xf32>
    %z = "bertc.linear"(%x, %dyn) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x8x32xf32>, tensor<16x32xf32>) -> tensor<1x8x16xf32>
    return %y, %z : tensor<1x8x32xf32>, tensor<1x8x16xf32>
  }
}

// -----

// --calibrate's static int8 input scales (bertc.act_scales, by weight name) land on the int8 linears whose
// every weight has one: the largest of a concat's (fused Q, K, V read one input). A linear with a weight
// that has none keeps its per-row scales at run time; fp32 or fp16 weights take no input scale.
// CHECK-LABEL: func.func @calibrated
// CHECK: "bertc.linear"(%arg0, %{{.*}}) {activation = "none", bertc.tile = array<i64: 8, 12, 256>, bertc.weight_dtype = "i8", bertc.x_scale = 5.000000e-01 : f32
// CHECK: "bertc.linear"(%arg0, %{{.*}}) {activation = "none", bertc.tile = array<i64: 8, 12, 256>, bertc.weight_dtype = "i8", operandSegmentSizes
// F16-LABEL: func.func @calibrated
// F16-NOT: bertc.x_scale
module attributes {bertc.target = "android-arm64", bertc.dtype = "i8", bertc.act_scales = {"l0.q.weight" = 2.5e-01 : f32, "l0.k.weight" = 5.0e-01 : f32, "out.weight" = 1.0 : f32}} {
  func.func @calibrated(%x: tensor<1x8x32xf32>) -> (tensor<1x8x64xf32>, tensor<1x8x32xf32>) {
    %wq = "bertc.weight"() {name = "l0.q.weight"} : () -> tensor<32x32xf32>
    %wk = "bertc.weight"() {name = "l0.k.weight"} : () -> tensor<32x32xf32>
    %wqk = "bertc.concat"(%wq, %wk) {dim = 0 : i64, operandSegmentSizes = array<i32: 2>} : (tensor<32x32xf32>, tensor<32x32xf32>) -> tensor<64x32xf32>
    %qk = "bertc.linear"(%x, %wqk) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x8x32xf32>, tensor<64x32xf32>) -> tensor<1x8x64xf32>
    %wu = "bertc.weight"() {name = "uncalibrated.weight"} : () -> tensor<32x32xf32>
    %u = "bertc.linear"(%x, %wu) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x8x32xf32>, tensor<32x32xf32>) -> tensor<1x8x32xf32>
    return %qk, %u : tensor<1x8x64xf32>, tensor<1x8x32xf32>
  }
}
