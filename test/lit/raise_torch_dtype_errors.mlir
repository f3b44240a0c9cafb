// RUN: not bertc-opt %s --raise-torch 2>&1 | FileCheck %s

// A float tensor made an integer one has no kernel (bertc.cast goes from i64 to f32, as torch promotes a
// mask beside floats): refused, naming the conversion bertc has.
// CHECK: error: dtype conversion tensor<4xf32> -> tensor<4xi64> at model.py:7 is not supported (bertc converts i64 to f32 only
func.func @float_to_int(%arg0: !torch.vtensor<[4],f32>) -> !torch.vtensor<[4],si64> {
  %int4 = torch.constant.int 4
  %false = torch.constant.bool false
  %none = torch.constant.none
  %0 = torch.aten.to.dtype %arg0, %int4, %false, %false, %none : !torch.vtensor<[4],f32>, !torch.int, !torch.bool, !torch.bool, !torch.none -> !torch.vtensor<[4],si64> loc("model.py":7:8)
  return %0 : !torch.vtensor<[4],si64>
}
