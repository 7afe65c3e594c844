"""Scores of prompts for a target continuation: teacher-forced log-probabilities, fluency, exact hard scores."""

from __future__ import annotations

from typing import Any

import torch

from .param import SoftPromptParam


def logits_at(hidden: torch.Tensor, positions: torch.Tensor, head: torch.nn.Module | None) -> torch.Tensor:
    """Next-token logits at ``positions``: ``[batch, pos, d_model or d_vocab] -> [batch, len(positions), d_vocab]``.

    ``head`` is the LM head applied to the final hidden states (None when ``hidden`` already holds logits),
    so only the positions that are scored pay for the ``d_model × d_vocab`` projection.
    """
    h = hidden[:, positions]
    return (head(h) if head is not None else h).float()


def target_logprob(
    hidden: torch.Tensor, param: SoftPromptParam, head: torch.nn.Module | None
) -> torch.Tensor:
    """Σ_t log p(target_t | context, target_<t) per batch element (teacher forcing), ``[batch]``."""
    logits = logits_at(hidden, param.target_positions(), head)  # batch, T, d_vocab
    lp = torch.log_softmax(logits, -1).gather(-1, param.target_ids.unsqueeze(-1)).squeeze(-1)  # batch, T
    return (lp * param.target_mask).sum(1)


def fluency(
    hidden: torch.Tensor, param: SoftPromptParam, ids: torch.Tensor, head: torch.nn.Module | None
) -> torch.Tensor:
    """Mean log-likelihood the model gives the (projected) prompt tokens ``ids``, ``[batch]``.

    Position ``i`` of the prompt is scored from the logits at ``i - 1``; the first prompt token is scored only
    when a prefix precedes it.
    """
    start = param.prompt_start
    first = 0 if start > 0 else 1
    if first >= param.length:
        return hidden.new_zeros(hidden.shape[0], dtype=torch.float32)
    pos = torch.arange(start + first - 1, start + param.length - 1, device=hidden.device)
    logits = logits_at(hidden, pos, head)  # batch, n, d_vocab
    lp = torch.log_softmax(logits, -1).gather(-1, ids[:, first:].unsqueeze(-1)).squeeze(-1)
    return lp.mean(1)


def exact_logprob(module: torch.nn.Module, param: SoftPromptParam, prompt_ids: torch.Tensor) -> torch.Tensor:
    """True Σ log p(target) of discrete prompts: a plain forward pass on token ids, ``[batch]`` (no grad)."""
    seq = param.token_sequence(prompt_ids)
    with torch.no_grad():
        out: Any = module(input_ids=seq, attention_mask=torch.ones_like(seq))
        logits = getattr(out, "logits", out)
        if isinstance(logits, tuple | list):
            logits = logits[0]
        return target_logprob(logits, param, None)


def soft_logprob(module: torch.nn.Module, param: SoftPromptParam, prompt: torch.Tensor) -> torch.Tensor:
    """Σ log p(target) for continuous prompt embeddings ``[batch, length, d_model]`` (no grad)."""
    with torch.no_grad():
        out: Any = module(**param.model_inputs(prompt.detach()))
        logits = getattr(out, "logits", out)
        if isinstance(logits, tuple | list):
            logits = logits[0]
        return target_logprob(logits, param, None)
