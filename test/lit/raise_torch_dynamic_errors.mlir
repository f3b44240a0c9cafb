// RUN: not bertc-opt %s --split-input-file --raise-torch 2>&1 | FileCheck %s

// The last token of a run-time length has no static index: refused, saying why.
// CHECK: select from the end of the run-time length
func.func @last_token(%arg0: !torch.vtensor<[1,?,32],f32>) -> !torch.vtensor<[1,32],f32> {
  %int1 = torch.constant.int 1
  %intm1 = torch.constant.int -1
  %last = torch.aten.select.int %arg0, %int1, %intm1 : !torch.vtensor<[1,?,32],f32>, !torch.int, !torch.int -> !torch.vtensor<[1,32],f32>
  return %last : !torch.vtensor<[1,32],f32>
}

// -----

// CHECK: slice from the end of the run-time length
func.func @tail(%arg0: !torch.vtensor<[1,?,32],f32>) -> !torch.vtensor<[1,?,32],f32> {
  %int1 = torch.constant.int 1
  %intm2 = torch.constant.int -2
  %none = torch.constant.none
  %t = torch.aten.slice.Tensor %arg0, %int1, %intm2, %none, %int1 : !torch.vtensor<[1,?,32],f32>, !torch.int, !torch.int, !torch.none, !torch.int -> !torch.vtensor<[1,?,32],f32>
  return %t : !torch.vtensor<[1,?,32],f32>
}
