"""canonicalize-conv (passes/canonicalize_conv.py): a ConvBERT layer exported for any length loses its conv1d, im2col,
head concatenation and grouped matmuls to bertc::depthwise_conv1d, bertc::span_conv and linears, with the output
unchanged at every length; a depthwise conv1d without ConvBERT's pointwise one after it becomes the op alone."""

from __future__ import annotations

import pytest
import torch
import transformers as T
from bertc.passes.canonicalize_conv import canonicalize_conv
from bertc.passes.canonicalize_inputs import evaluate_nodes
from transformers.models.convbert.modeling_convbert import ConvBertLayer

A = torch.ops.aten


class Layer(torch.nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        cfg = T.ConvBertConfig(hidden_size=32, num_attention_heads=4, intermediate_size=64, num_groups=groups)
        self.layer = ConvBertLayer(cfg)
        with torch.no_grad():  # GroupedLinearLayer's weights are torch.empty until a PreTrainedModel initialises them
            for p in self.parameters():
                p.normal_(0.0, 0.2)

    def forward(self, x):
        return self.layer(x)


class DepthwiseOnly(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(8, 8, 9, groups=8, padding=4, bias=False)

    def forward(self, x):
        return self.conv(x.transpose(1, 2)) * 2.0  # read in the [B, C, S] layout


def _check(module: torch.nn.Module, width: int) -> torch.fx.Graph:
    module = module.eval()
    x = torch.randn(2, 12, width)
    seq = torch.export.Dim("seq", min=2, max=64)
    ep = torch.export.export(module, (x,), dynamic_shapes=({1: seq},), strict=False)
    canonicalize_conv(ep)
    out = next(iter(ep.graph.find_nodes(op="output"))).args[0][0]
    for length in (2, 5, 40):  # shorter than, near and past the 9 taps
        x = torch.randn(2, length, width)
        with torch.no_grad():
            want = module(x)
        assert torch.allclose(evaluate_nodes(ep, [x], {out})[out], want, atol=1e-5), length
    return ep.graph


def _targets(graph: torch.fx.Graph) -> set:
    return {n.target for n in graph.nodes if n.op == "call_function"}


@pytest.mark.parametrize("groups", [1, 2])
def test_convbert_layer(groups):
    torch.manual_seed(0)
    graph = _check(Layer(groups), 32)
    targets = _targets(graph)
    assert {torch.ops.bertc.depthwise_conv1d.default, torch.ops.bertc.span_conv.default} <= targets
    assert not {A.conv1d.default, A.add_.Tensor, A.im2col.default, A.cat.default} & targets
    assert sum(n.target is A.matmul.default for n in graph.nodes) == 2  # the attention's, not the groups'



def test_depthwise_conv_alone():
    torch.manual_seed(0)
    targets = _targets(_check(DepthwiseOnly(), 8))
    assert torch.ops.bertc.depthwise_conv1d.default in targets and A.conv1d.default not in targets
