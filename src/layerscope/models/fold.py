"""Fold eval-mode BatchNorm into the convolution (or linear layer) that feeds it, for the duration of a block.

Optimising an input through a frozen CNN (feature visualisation, prototypes, isolation masks) runs the
BatchNorm layers forward and backward every step although, in eval mode, each is a fixed affine map that can
be merged into the preceding convolution's weights. ``folded_batchnorm(model, run)`` finds conv→BatchNorm
pairs with one read-only discovery pass (a BatchNorm whose input IS a convolution's output tensor), swaps in
folded weights, turns those BatchNorms into identities, checks on the discovery input that the model's output
is unchanged (else it restores everything and folds nothing), and restores the original parameters and
modules in ``finally``. Hooks on the BatchNorm modules (layerscope sites) still fire: the module is called as
before and returns what it returned before.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

_BN = nn.modules.batchnorm._BatchNorm


def _first_tensor(args: tuple[Any, ...]) -> torch.Tensor | None:
    return next((a for a in args if isinstance(a, torch.Tensor)), None)


def find_conv_bn_pairs(model: nn.Module, run: Callable[[], Any]) -> list[tuple[nn.Module, nn.Module]]:
    """``(conv, batchnorm)`` pairs in which the BatchNorm (eval mode) reads the conv's output tensor directly."""
    produced: dict[int, tuple[torch.Tensor, nn.Module]] = {}
    pairs: list[tuple[nn.Module, nn.Module]] = []
    handles = []

    def post(m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        if isinstance(out, torch.Tensor):
            produced[id(out)] = (out, m)

    def pre(m: nn.Module, args: tuple[Any, ...]) -> None:
        x = _first_tensor(args)
        if x is None or m.training or id(x) not in produced or produced[id(x)][0] is not x:
            return
        conv = produced[id(x)][1]
        if not any(b is m for _, b in pairs) and not any(c is conv for c, _ in pairs):
            pairs.append((conv, m))

    for m in model.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear):
            handles.append(m.register_forward_hook(post))
        elif isinstance(m, _BN) and m.track_running_stats and m.running_mean is not None:
            handles.append(m.register_forward_pre_hook(pre))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return pairs


def _folded(conv: Any, bn: Any) -> tuple[torch.Tensor, torch.Tensor]:
    w = conv.weight.detach()
    b = conv.bias.detach() if conv.bias is not None else None
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach()
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach()
    if isinstance(conv, nn.Linear):
        wf = w * scale[:, None]
    else:  # conv weights are [out, in/groups, *k]; transposed convs are not folded (not matched above)
        wf = w * scale.view(-1, *([1] * (w.ndim - 1)))
    bf = shift if b is None else b * scale + shift
    return wf.clone(), bf.clone()


def _identity(x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    return x


@contextlib.contextmanager
def folded_batchnorm(model: nn.Module, run: Callable[[], Any], *, rtol: float = 1e-4) -> Iterator[int]:
    """Fold eval BatchNorms into their convolutions while the block runs; yields the number folded.

    ``run()`` is one forward pass on a representative input (used for discovery and for the check that the
    folded model gives the same output within ``rtol`` of its largest value). Nothing is folded when the model
    is in training mode, has no such pairs, or the check fails (e.g. a conv output is also used unnormalised).
    """
    if model.training or not any(isinstance(m, _BN) for m in model.modules()):
        yield 0
        return
    pairs = find_conv_bn_pairs(model, run)
    saved: list[tuple[nn.Module, nn.Module, Any, Any]] = []

    def restore() -> None:
        for conv, bn, w, b in reversed(saved):
            conv._parameters["weight"] = w
            conv._parameters["bias"] = b
            bn.__dict__.pop("forward", None)
        saved.clear()

    try:
        if pairs:
            with torch.no_grad():
                ref = run()
            for conv, bn in pairs:
                wf, bf = _folded(conv, bn)
                saved.append((conv, bn, conv._parameters["weight"], conv._parameters.get("bias")))
                conv._parameters["weight"] = nn.Parameter(wf, requires_grad=False)
                conv._parameters["bias"] = nn.Parameter(bf, requires_grad=False)
                bn.forward = _identity  # type: ignore[method-assign]
            with torch.no_grad():
                got = run()
            if not _close(ref, got, rtol):
                restore()
        yield len(saved)
    finally:
        restore()


def _close(a: Any, b: Any, rtol: float) -> bool:
    a = getattr(a, "logits", a)
    b = getattr(b, "logits", b)
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor) or a.shape != b.shape:
        return False
    scale = float(a.abs().max()) or 1.0
    return bool((a - b).abs().max() <= rtol * scale + 1e-6)
