"""Objectives of a causal LM read from the final hidden states instead of the full logits.

A next-token objective needs one vocabulary row per target, but the model's head computes logits for every
position, and every derivative pass (each backward, each forward-mode tangent) pays for them again:
``[rows, positions, vocab]`` tangents are the largest tensors of a continuation attribution. With the head
taken out of the model (``headless``), the objective is computed from the hidden state ``h`` at the target
position alone, and log p(y) = h·w_y − logsumexp(h Wᵀ) gets an exact hand-written derivative:

    d log p(y) = (w_y − Σ_v p_v w_v) · dh,

so a derivative pass costs one ``d``-vector product per row instead of a ``vocab × d`` product per position.
The split is used only where the head is a bias-free ``nn.Linear`` child of the model and a one-row check
confirms ``h Wᵀ`` equals the model's own logits (models that scale or soft-cap logits keep the full path).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

#: rows per head product in :func:`token_logprob` (two ``[rows, vocab]`` float32 buffers: ~400 MB at 49k tokens)
_HEAD_ROWS = 1024


def _lse_chunks(
    h: torch.Tensor, weight: torch.Tensor, *, expected: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """logsumexp(h Wᵀ) per row (float32) and, if asked, Σ_v p_v w_v (float32), in row chunks of
    :data:`_HEAD_ROWS` so the ``[rows, vocab]`` buffers stay bounded."""
    lse: list[torch.Tensor] = []
    mean_w: list[torch.Tensor] = []
    for r0 in range(0, h.shape[0], _HEAD_ROWS):
        logits = (h[r0 : r0 + _HEAD_ROWS] @ weight.T).float()
        lse.append(torch.logsumexp(logits, -1))
        if expected:
            mean_w.append((torch.softmax(logits, -1).to(weight.dtype) @ weight).float())
    return torch.cat(lse), (torch.cat(mean_w) if expected else None)


class _TokenLogProb(torch.autograd.Function):
    """log softmax(h Wᵀ)[y] per row (float32), with forward- and reverse-mode rules that never form vocab
    tangents: both use d log p(y) / dh = w_y − Σ_v p_v w_v, computed once in the forward pass."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        h: torch.Tensor, weight: torch.Tensor, tok: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        w_y = weight[tok].float()  # rows, d
        lse, mean_w = _lse_chunks(h, weight, expected=True)
        assert mean_w is not None
        return (h.float() * w_y).sum(-1) - lse, w_y - mean_w  # log p(y), its derivative

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, torch.Tensor]) -> None:
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(output[1])
        ctx.save_for_forward(output[1])
        ctx.h_dtype = inputs[0].dtype

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor, _unused: Any) -> tuple[torch.Tensor, None, None]:
        (direction,) = ctx.saved_tensors
        return (grad.unsqueeze(-1) * direction).to(ctx.h_dtype), None, None

    @staticmethod
    def jvp(ctx: Any, h_t: torch.Tensor, weight_t: Any, tok_t: Any) -> tuple[torch.Tensor, None]:
        (direction,) = ctx.saved_tensors
        return (h_t.float() * direction).sum(-1), None


def token_logprob(
    h: torch.Tensor, weight: torch.Tensor, tok: torch.Tensor, *, grad: bool = True
) -> torch.Tensor:
    """log softmax(h @ weight.T)[rows, tok] for ``h [rows, d]``: ``[rows]``, float32 (head weights get no
    gradient). ``grad=False`` computes the value alone (half the head work; no derivative rules)."""
    if not grad:
        lse, _ = _lse_chunks(h, weight, expected=False)
        return (h.float() * weight[tok].float()).sum(-1) - lse
    return _TokenLogProb.apply(h, weight, tok)[0]


def head_of(model: nn.Module) -> tuple[str, nn.Linear] | None:
    """(attribute name, module) of the model's output head if it is a bias-free Linear child, else None."""
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if not isinstance(head, nn.Linear) or head.bias is not None:
        return None
    for name, child in model.named_children():
        if child is head:
            return name, head
    return None


@contextlib.contextmanager
def headless(model: nn.Module, name: str) -> Iterator[None]:
    """The model with its head ``name`` replaced by the identity: its "logits" are the final hidden states."""
    head = getattr(model, name)
    setattr(model, name, nn.Identity())
    try:
        yield
    finally:
        setattr(model, name, head)
