"""Attention as explanation: patterns from ``blocks.{i}.attn.pattern``, attention rollout and attention flow
(Abnar & Zuidema 2020)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from ..errors import ConfigError
from ..models.subject import Subject
from ..result import Result
from ._inputs import prepare_text

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go


def attention_patterns(subject: Subject, text: str) -> tuple[list[str], np.ndarray]:
    """Tokens and attention probabilities ``[n_layers, n_heads, pos, pos]`` of one text (rows attend to columns)."""
    from ..capture import capture

    if not subject.n_layers:
        raise ConfigError(f"{subject.name} has no transformer blocks with attention patterns")
    prep = prepare_text(subject, [text])
    sites = [f"blocks.{i}.attn.pattern" for i in range(subject.n_layers)]
    with torch.no_grad(), capture(subject, sites, stop=True) as tr:
        subject.forward(prep.inputs)
    pats = torch.stack([tr[s][0] for s in sites]).float().cpu().numpy()  # layers, heads, pos, pos
    return prep.tokens[0], pats


def _augmented(patterns: np.ndarray, residual: float) -> np.ndarray:
    """Head-mean attention with the residual connection, row-normalised: ``[layers, pos, pos]``."""
    a = patterns.mean(1)
    eye = np.eye(a.shape[-1])[None]
    a = residual * eye + (1 - residual) * a
    return a / a.sum(-1, keepdims=True)


def attention_rollout(patterns: np.ndarray, *, residual: float = 0.5) -> np.ndarray:
    """Rollout ``R_l = Â_l … Â_1`` with ``Â = residual·I + (1 − residual)·mean_heads(A)`` row-normalised.

    Returns ``[n_layers, pos, pos]``: row i of ``R_l`` is how much token i at layer l draws on each input token.
    """
    if patterns.ndim != 4 or patterns.shape[-1] != patterns.shape[-2]:
        raise ConfigError(f"patterns must be [layers, heads, pos, pos], got {patterns.shape}")
    a = _augmented(patterns, residual)
    out = np.zeros_like(a)
    r = np.eye(a.shape[-1])
    for layer in range(a.shape[0]):
        r = a[layer] @ r
        out[layer] = r
    return out


def attention_flow(patterns: np.ndarray, *, position: int = 0, residual: float = 0.5) -> np.ndarray:
    """Attention flow: max-flow from each input token to token ``position`` at the last layer.

    The layered graph has a node per (layer, token) and an edge (l, j) → (l+1, i) with capacity Â_l[i, j];
    returns ``[pos]`` flow values (one max-flow problem per input token, solved with networkx).
    """
    import networkx as nx

    a = _augmented(patterns, residual)
    L, P, _ = a.shape
    if not -P <= position < P:
        raise ConfigError(f"position {position} is out of range for {P} tokens")
    position %= P
    g = nx.DiGraph()
    for layer in range(L):
        for i in range(P):
            for j in range(P):
                if a[layer, i, j] > 0:
                    g.add_edge((layer, j), (layer + 1, i), capacity=float(a[layer, i, j]))
    return np.array([nx.maximum_flow_value(g, (0, j), (L, position)) for j in range(P)])


@dataclasses.dataclass(frozen=True)
class AttentionResult(Result):
    """Attention patterns of one text with rollout and flow.

    Attributes:
        model, text, tokens: what was read.
        patterns: ``[n_layers, n_heads, pos, pos]`` float16 probabilities.
        rollout: ``[n_layers, pos, pos]``.
        flow: ``[pos]`` attention flow into ``position`` at the last layer (NaN when not computed).
        position: the output token whose sources rollout/flow rows describe.
    """

    model: str
    text: str
    tokens: list[str]
    patterns: np.ndarray
    rollout: np.ndarray
    flow: np.ndarray
    position: int

    title: ClassVar[str] = "Attention rollout and flow"

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(
            {
                "position": np.arange(len(self.tokens)),
                "token": self.tokens,
                "rollout": self.rollout[-1, self.position],
                "flow": self.flow,
                "last_layer_attention": self.patterns[-1].astype(np.float32).mean(0)[self.position],
            }
        )

    def figure(self) -> go.Figure:
        from ..report.figures import heatmap

        labels = [f"{i}:{t}" for i, t in enumerate(self.tokens)]
        return heatmap(
            self.rollout[:, self.position, :],
            x=labels,
            y=[f"layer {i}" for i in range(self.rollout.shape[0])],
            title=f"Attention rollout into token {self.position} ({self.tokens[self.position]!r}) by layer",
            x_title="input token",
            colorbar_title="rollout",
            diverging=False,
        )

    def view_html(self, *, top_k: int = 8) -> str:
        """The interactive head view + model view as an HTML fragment (``Report.add_section(html=...)``)."""
        from .attention_view import attention_view_html

        return attention_view_html(
            self.tokens, self.patterns.astype(np.float32), top_k=top_k, title=f"{self.model}: attention"
        )

    def summary(self) -> str:
        r = self.rollout[-1, self.position]
        top = int(np.argmax(r))
        return (
            f"{len(self.tokens)} tokens, {self.patterns.shape[0]} layers × {self.patterns.shape[1]} heads; "
            f"rollout into {self.tokens[self.position]!r} is largest from {self.tokens[top]!r} ({r[top]:.2f})."
        )


def attention(
    subject: Subject, text: str, *, position: int | None = None, residual: float = 0.5, flow: bool = True
) -> AttentionResult:
    """Attention patterns, rollout and (for inputs up to 64 tokens) flow of one text.

    ``position`` defaults to the first token ([CLS]) for encoders and the last token for causal LMs.
    """
    if not 0 <= residual < 1:
        raise ConfigError(f"residual must be in [0, 1), got {residual}")
    tokens, pats = attention_patterns(subject, text)
    P = len(tokens)
    pos = (P - 1 if subject.kind == "causal_lm" else 0) if position is None else position
    if not -P <= pos < P:
        raise ConfigError(f"position {pos} is out of range for {P} tokens")
    pos %= P
    roll = attention_rollout(pats, residual=residual)
    fl = attention_flow(pats, position=pos, residual=residual) if flow and P <= 64 else np.full(P, np.nan)
    return AttentionResult(
        model=subject.name,
        text=text,
        tokens=list(tokens),
        patterns=pats.astype(np.float16),
        rollout=roll,
        flow=fl,
        position=pos,
    )
