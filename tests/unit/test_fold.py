"""Folding eval-mode BatchNorm into convolutions during optimisation: same outputs, everything restored."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from layerscope.models.fold import find_conv_bn_pairs, folded_batchnorm

pytestmark = pytest.mark.usefixtures("one_thread")


def _net(residual_pre_bn: bool = False) -> nn.Module:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
            self.c2, self.b2 = nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
            self.fc, self.bf = nn.Linear(8, 5), nn.BatchNorm1d(5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.b1(self.c1(x)))
            z = self.c2(h)
            h = self.b2(z) + (z if residual_pre_bn else 0)  # the raw conv output used again: must not fold
            return self.bf(self.fc(h.mean((2, 3))))

    torch.manual_seed(0)
    net = Net()
    for bn in (net.b1, net.b2, net.bf):  # non-trivial running statistics and affine parameters
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.5, 0.5)
    return net.eval()


def test_folding_keeps_outputs_and_gradients_and_restores_everything():
    net = _net()
    x = torch.randn(4, 3, 8, 8, requires_grad=True)
    ref = net(x)
    (g_ref,) = torch.autograd.grad(ref.sum(), x)
    params = {n: p for n, p in net.named_parameters()}
    seen = []
    handle = net.b2.register_forward_hook(lambda m, a, out: seen.append(out.detach()))
    assert len(find_conv_bn_pairs(net, lambda: net(x))) == 3
    with folded_batchnorm(net, lambda: net(x)) as n:
        assert n == 3 and net.c2.bias is not None  # a bias-free conv gains the BatchNorm shift
        out = net(x)
        (g,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(seen[-1], seen[0], rtol=1e-5, atol=1e-5)  # hooks on the BatchNorm still fire
    handle.remove()
    assert {n: p for n, p in net.named_parameters()} == params and net.c2.bias is None
    assert all("forward" not in m.__dict__ for m in net.modules())
    torch.testing.assert_close(net(x), ref)


def test_nothing_is_folded_when_the_conv_output_is_reused_or_in_training():
    net = _net(residual_pre_bn=True)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        ref = net(x)
    with folded_batchnorm(net, lambda: net(x)) as n, torch.no_grad():
        assert n == 0  # folding b2 would change the residual; the output check refuses it all
        torch.testing.assert_close(net(x), ref)
    net.train()
    with folded_batchnorm(net, lambda: net(x)) as n:
        assert n == 0


def test_restored_after_an_error():
    net = _net()
    x = torch.randn(2, 3, 8, 8)
    w = net.c1.weight
    with pytest.raises(RuntimeError, match="boom"), folded_batchnorm(net, lambda: net(x)):
        raise RuntimeError("boom")
    assert net.c1.weight is w and "forward" not in net.b1.__dict__
