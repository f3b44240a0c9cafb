"""passes/seqlen.py: the sizes of a module with a dynamic length are polynomials in the run's length L,
rendered as the C expression the emitted code computes, and the shape helpers both emitters share give
them for ``?`` dimensions and plain ints otherwise (issue 17)."""

from __future__ import annotations

import pytest
from bertc.passes.codegen import binary_strides, matmul_dims, slice_dims, strides, transpose_strides
from bertc.passes.seqlen import Len, at, dims_of, prod
from hypothesis import given
from hypothesis import strategies as st
from torch_mlir import ir

from bertc.errors import BertcError
from bertc.ir import make_context

L = Len.L
coefs = st.dictionaries(st.integers(0, 3), st.integers(-50, 50), max_size=4)


@given(coefs, coefs, st.integers(-20, 20), st.integers(1, 512))
def test_len_arithmetic_agrees_with_ints_at_every_length(a, b, k, n):
    x, y = Len(a), Len(b)
    assert at(x + y, n) == x.at(n) + y.at(n)
    assert at(x * y, n) == x.at(n) * y.at(n)
    assert at(k * x + k, n) == k * x.at(n) + k
    # the C expression evaluates to the same value
    assert eval(str(x).replace("L", str(n))) == x.at(n)


def test_len_renders_c_and_folds_constants():
    assert str(L * L * 12 + 1) == "(12*L*L + 1)"
    assert str(L * 3 + -2) == "(3*L - 2)"
    assert L * 0 == 0 and isinstance(L * 0, int)
    assert prod([1, 2, 3]) == 6 and isinstance(prod([1, 2, 3]), int)
    assert (L * 12) // 4 == L * 3
    with pytest.raises(BertcError, match="not divisible by 2"):
        (L * 3) // 2


IR = """
func.func @main(%x: tensor<1x?x12xf32>, %w: tensor<1x4x?x3xf32>, %s: tensor<1x4x?x?xf32>,
                %m: tensor<1x1x1x?xf32>) {
  return
}
"""


def test_shape_helpers_on_dynamic_dimensions():
    with make_context(), ir.Location.unknown():
        module = ir.Module.parse(IR)
        x, w, s, m = module.body.operations[0].regions[0].blocks[0].arguments
        assert dims_of(x) == [1, L, 12]
        assert strides(dims_of(s)) == [4 * L * L, L * L, L, 1]

        class Op:  # what the helpers read of an op: operands, results and attributes
            def __init__(self, operands, result, **attributes):
                self.operands, self.results, self.attributes = operands, [result], attributes

        # scores [1,4,L,L] x values [1,4,L,3]: the attention's second matmul at a run-time length
        assert matmul_dims(Op([s, w], w)) == (4, L, 3, L, L * L, 3 * L)
        i64 = ir.IntegerType.get_signless(64)
        assert slice_dims(Op([x], x, dim=ir.IntegerAttr.get(i64, 1), start=ir.IntegerAttr.get(i64, 0))) == (1, L, 0, L, 12)
        perm = ir.DenseI64ArrayAttr.get([0, 2, 1, 3])
        assert transpose_strides(Op([w], w, perm=perm)) == ([1, 4, L, 3], [12 * L, 3, 3 * L, 1])
        out, sa, sb = binary_strides(Op([s, m], s))  # scores + the mask bias, broadcast over heads and queries
        assert out == [1, 4, L, L] and sa == [4 * L * L, L * L, L, 1] and sb[1:] == [0, 0, 1]  # (dim 0 is 1 in both: its stride is never used)
