// RUN: bertc-opt %s --split-input-file "--prune-patterns=16x1@0.25,*.query=0.5" | FileCheck %s
// RUN: bertc-opt %s --split-input-file "--prune-patterns{force=1}=4x1@0.25,pooler.dense=0.5" --pack-weights | FileCheck %s --check-prefix=FORCE
// RUN: bertc-opt %s --split-input-file "--prune-patterns{spec=2:4}" | FileCheck %s --check-prefix=NM
// RUN: sed 's/android-arm64/host/' %s | bertc-opt - --split-input-file "--prune-patterns=16x1@0.25" | FileCheck %s --check-prefix=HOST
// RUN: sed 's/android-arm64/host/' %s | bertc-opt - --split-input-file "--prune-patterns=1x4@0.75" | FileCheck %s --check-prefix=HOSTDENSE
// RUN: not bertc-opt %s --split-input-file --prune-patterns 2>&1 | FileCheck %s --check-prefix=NOSPEC
// RUN: not bertc-opt %s --split-input-file "--prune-patterns{density=0.5}" 2>&1 | FileCheck %s --check-prefix=UNKNOWN
// RUN: not bertc-opt %s --split-input-file "--prune-patterns=16x2@1.5" 2>&1 | FileCheck %s --check-prefix=BAD
// RUN: sed 's/"android-arm64"/"android-arm64", bertc.dtype = "f16"/' %s | not bertc-opt - --split-input-file "--prune-patterns=16x1@0.5" 2>&1 | FileCheck %s --check-prefix=F16
// RUN: sed 's/"android-arm64"/"host", bertc.dtype = "i8"/' %s | bertc-opt - --split-input-file "--prune-patterns=16x1@0.75" --pack-weights | FileCheck %s --check-prefix=I8DENSE
// RUN: sed 's/"android-arm64"/"host", bertc.dtype = "i8"/' %s | bertc-opt - --split-input-file "--prune-patterns=16x1@0.1" --pack-weights | FileCheck %s --check-prefix=I8SPARSE
// RUN: sed 's/"android-arm64"/"android-arm64", bertc.dtype = "i8"/' %s | not bertc-opt - --split-input-file "--prune-patterns=1x4@0.5" 2>&1 | FileCheck %s --check-prefix=I8REFUSED

// The SPEC's default density covers the linears of the encoder's layers; a rule changes the query
// projection's, so the fused Q|K|V keeps (0.5 + 0.25 + 0.25) / 3 of its weights. The pooler (not in
// a layer) and a weight computed at run time are left alone. android-arm64 has no measured sparse
// rates (no phone here), so the pruned weights stay in the dense layout and no gain is claimed.
// CHECK-LABEL: func.func @encoder
// CHECK: "bertc.linear"(%arg0, %{{.*}}) {activation = "none", bertc.sparsity = {density = 3.333000e-01 : f64, format = "dense", pattern = "16x1"}
// CHECK: "bertc.linear"(%{{.*}}, %{{.*}}, %{{.*}}) {activation = "gelu", bertc.sparsity = {density = 2.500000e-01 : f64, format = "dense", pattern = "16x1"}
// CHECK: "bertc.linear"(%arg0, %{{.*}}) {activation = "none", operandSegmentSizes
// CHECK: "bertc.linear"(%arg0, %arg1) {activation = "none", operandSegmentSizes

// force=1 stores every pruned matrix sparse, and a rule brings the pooler in; pack-weights leaves
// the sparse linears to emit-c (no bertc.tile) and packs the rest.
// FORCE-LABEL: func.func @encoder
// FORCE: "bertc.linear"(%arg0, %{{.*}}) {activation = "none", bertc.sparsity = {density = 2.500000e-01 : f64, format = "sparse", pattern = "4x1"}, operandSegmentSizes
// FORCE: "bertc.linear"(%{{.*}}, %{{.*}}, %{{.*}}) {activation = "gelu", bertc.sparsity = {density = 2.500000e-01 : f64, format = "sparse", pattern = "4x1"}, operandSegmentSizes
// FORCE: "bertc.linear"(%arg0, %{{.*}}) {activation = "none", bertc.sparsity = {density = 5.000000e-01 : f64, format = "sparse", pattern = "4x1"}, operandSegmentSizes
// FORCE: "bertc.linear"(%arg0, %arg1) {activation = "none", operandSegmentSizes

// N:M fixes the density at N/M.
// NM: bertc.sparsity = {density = 5.000000e-01 : f64, format = "dense", pattern = "2:4"}

// On the host the measured rates decide: at 25% the sparse kernel is faster (a gain above 1 is
// claimed and the weight is stored sparse); 1x4 blocks at 75% are slower than dense, so they stay dense.
// HOST: bertc.sparsity = {density = 2.500000e-01 : f64, format = "sparse", gain = {{[1-9](\.[0-9]+)?(e\+00)?}} : f64, pattern = "16x1"}
// HOSTDENSE: bertc.sparsity = {density = 7.500000e-01 : f64, format = "dense", gain = {{(0\.[0-9]+|[0-9]\.[0-9]+e-01)}} : f64, pattern = "1x4"}

// NOSPEC: --prune-patterns needs a SPEC: --prune-patterns=16x1@0.25
// UNKNOWN: --prune-patterns has no option ['density']; write --prune-patterns=SPEC or --prune-patterns{force=1}=SPEC
// BAD: bad prune SPEC '16x2@1.5': density '1.5' is not in (0, 1]
// F16: --prune-patterns: the sparse kernels are fp32 and int8; compile with --dtype fp32 or int8

// int8 (bertc.dtype = "i8"): the same rule on the int8 rates (an estimate on the host, below 1 at 75%); a pruned
// matrix kept dense is packed as int8 with a tile, a sparse one gets the int8 weight type and no tile (int8 blocks);
// on an AVX2 host without VNNI both are 7-bit (bertc.qmax; the blocks then go in groups of 4).
// I8DENSE: "bertc.linear"(%arg0, %{{.*}}) {activation = "none", {{(bertc.qmax = 63 : i32, )?}}bertc.sparsity = {density = 7.500000e-01 : f64, format = "dense", gain = {{(0\.[0-9]+|[0-9]\.[0-9]+e-01)}} : f64, pattern = "16x1"}, bertc.tile = array<i64: {{.*}}>, bertc.weight_dtype = "i8"
// I8SPARSE: "bertc.linear"(%arg0, %{{.*}}) {activation = "none", {{(bertc.qmax = 63 : i32, )?}}bertc.sparsity = {density = 1.000000e-01 : f64, format = "sparse", gain = {{[1-9](\.[0-9]+)?(e\+00)?}} : f64, pattern = "16x1"}, bertc.weight_dtype = "i8", operandSegmentSizes
// I8REFUSED: --prune-patterns 1x4 with --dtype int8: the sparse int8 kernel runs r x 1 blocks with r = 4, 8 or 16
module attributes {bertc.target = "android-arm64"} {
  func.func @encoder(%x: tensor<1x8x32xf32>, %dyn: tensor<16x32xf32>) -> (tensor<1x8x96xf32>, tensor<1x8x64xf32>, tensor<1x8x32xf32>, tensor<1x8x16xf32>) {
    %wq = "bertc.weight"() {name = "encoder.layer.0.attention.self.query.weight"} : () -> tensor<32x32xf32>
    %wk = "bertc.weight"() {name = "encoder.layer.0.attention.self.key.weight"} : () -> tensor<32x32xf32>
    %wv = "bertc.weight"() {name = "encoder.layer.0.attention.self.value.weight"} : () -> tensor<32x32xf32>
    %wqkv = "bertc.concat"(%wq, %wk, %wv) {dim = 0 : i64, operandSegmentSizes = array<i32: 3>} : (tensor<32x32xf32>, tensor<32x32xf32>, tensor<32x32xf32>) -> tensor<96x32xf32>
    %qkv = "bertc.linear"(%x, %wqkv) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x8x32xf32>, tensor<96x32xf32>) -> tensor<1x8x96xf32>
    %wi = "bertc.weight"() {name = "encoder.layer.0.intermediate.dense.weight"} : () -> tensor<64x32xf32>
    %bi = "bertc.weight"() {name = "encoder.layer.0.intermediate.dense.bias"} : () -> tensor<64xf32>
    %h = "bertc.linear"(%x, %wi, %bi) {activation = "gelu", operandSegmentSizes = array<i32: 1, 1, 1, 0>} : (tensor<1x8x32xf32>, tensor<64x32xf32>, tensor<64xf32>) -> tensor<1x8x64xf32>
    %wp = "bertc.weight"() {name = "pooler.dense.weight"} : () -> tensor<32x32xf32>
    %p = "bertc.linear"(%x, %wp) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x8x32xf32>, tensor<32x32xf32>) -> tensor<1x8x32xf32>
    %z = "bertc.linear"(%x, %dyn) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x8x32xf32>, tensor<16x32xf32>) -> tensor<1x8x16xf32>
    return %qkv, %h, %p, %z : tensor<1x8x96xf32>, tensor<1x8x64xf32>, tensor<1x8x32xf32>, tensor<1x8x16xf32>
  }
}

// -----

// A constant weight is masked in the IR: with 4x1 blocks at 50%, the four largest of the eight
// blocks by L2 norm (9, 8, 7, 6: the first two columns of the bottom rows, the last two of the
// top rows) survive. emit-c then calls the sparse kernel on the stored blocks.
// RUN: bertc-opt %s --split-input-file "--prune-patterns{force=1}=4x1@0.5,constant=0.5" | FileCheck %s --check-prefix=CONST
// RUN: bertc-opt %s --split-input-file "--prune-patterns{force=1}=4x1@0.5,constant=0.5" --pack-weights --plan-memory --emit-c | FileCheck %s --check-prefix=EMIT
// CONST-LABEL: func.func @tiny
// CONST: dense<{{\[}}[0.000000e+00, 0.000000e+00, 3.000000e+00, 4.000000e+00], [0.000000e+00, 0.000000e+00, 3.000000e+00, 4.000000e+00], [0.000000e+00, 0.000000e+00, 3.000000e+00, 4.000000e+00], [0.000000e+00, 0.000000e+00, 3.000000e+00, 4.000000e+00], [4.500000e+00, 3.500000e+00, 0.000000e+00, 0.000000e+00], [4.500000e+00, 3.500000e+00, 0.000000e+00, 0.000000e+00], [4.500000e+00, 3.500000e+00, 0.000000e+00, 0.000000e+00], [4.500000e+00, 3.500000e+00, 0.000000e+00, 0.000000e+00]]>
// CONST: bertc.sparsity = {density = 5.000000e-01 : f64, format = "sparse", pattern = "4x1"}
// EMIT: bertc_linear_sparse(bertc_pool_sized(p, (int64_t)32, BERTC_SERIAL_MACS), A(float, {{[0-9]+}}), &(const bertc_block_sparse){4, 1, 2, W(int32_t, 0), W(int32_t, 64), W(float, 128)}, NULL, NULL, A(float, {{[0-9]+}}), 2, 8, 4, BERTC_ACT_NONE)
// EMIT: .scratch_floats = MAX2(64, BERTC_SCRATCH_SPARSE(4, 1)),
// With int8 weights: the blocks as int8 (rows scaled by their kept weights' max: 4 / 127 and 4.5 / 127), the
// scales and the column sums after them, and the int8 work buffer past the planned values; the scratch holds a
// 4-row tile of x transposed (the x86 kernel's; a dword per column of K).
// RUN: sed 's/"android-arm64"/"android-arm64", bertc.dtype = "i8"/' %s | bertc-opt - --split-input-file "--prune-patterns{force=1}=4x1@0.5,constant=0.5" --pack-weights --plan-memory --emit-c | FileCheck %s --check-prefix=EMIT8
// EMIT8: bertc_linear_sparse_i8(bertc_pool_sized(p, (int64_t)32, BERTC_SERIAL_MACS_I8), A(float, {{[0-9]+}}), &(const bertc_block_sparse_i8){4, 1, 2, W(int32_t, 0), W(int32_t, 64), W(int8_t, 128), W(float, 192), W(int32_t, 256), 1}, NULL, NULL, A(float, {{[0-9]+}}), 2, 8, 4, BERTC_ACT_NONE, A(int8_t, {{[0-9]+}}))
// EMIT8: .scratch_floats = MAX2(64, BERTC_SCRATCH_SPARSE_I8(4)),
module attributes {bertc.target = "android-arm64"} {
  func.func @tiny(%x: tensor<1x2x4xf32>) -> tensor<1x2x8xf32> {
    %w = "bertc.constant"() {value = dense<[[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0], [4.5, 3.5, 2.5, 1.5], [4.5, 3.5, 2.5, 1.5], [4.5, 3.5, 2.5, 1.5], [4.5, 3.5, 2.5, 1.5]]> : tensor<8x4xf32>} : () -> tensor<8x4xf32>
    %y = "bertc.linear"(%x, %w) {activation = "none", operandSegmentSizes = array<i32: 1, 1, 0, 0>} : (tensor<1x2x4xf32>, tensor<8x4xf32>) -> tensor<1x2x8xf32>
    return %y : tensor<1x2x8xf32>
  }
}
