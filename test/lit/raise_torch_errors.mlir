// RUN: not bertc-opt %s --raise-torch 2>&1 | FileCheck %s

// An op with no lowering is an error naming the op and where it came from.
// CHECK: error: unsupported op 'torch.aten.sin' at model.py:42
func.func @unsupported(%arg0: !torch.vtensor<[4],f32>) -> !torch.vtensor<[4],f32> {
  %0 = torch.aten.sin %arg0 : !torch.vtensor<[4],f32> -> !torch.vtensor<[4],f32> loc("model.py":42:8)
  return %0 : !torch.vtensor<[4],f32>
}
