"""Subword -> word alignment and pooling of ``[batch, pos, d]`` activations into stored items.

Alignment works on character offsets, so it holds for any fast tokenizer (WordPiece, BPE, SentencePiece),
for words split differently in context, special tokens and truncation: a token maps to the word holding
its first non-space character, or to -1 (special tokens, whitespace-only tokens). Words left with no
token (truncated away) are reported, never asserted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from ..errors import ConfigError

Pooling = Literal[
    "token",
    "word_first",
    "word_last",
    "word_mean",
    "sentence_mean",
    "sentence_first",
    "sentence_last",
    "sentence_max",
    "last_token",
]
POOLINGS: tuple[str, ...] = (
    "token",
    "word_first",
    "word_last",
    "word_mean",
    "sentence_mean",
    "sentence_first",
    "sentence_last",
    "sentence_max",
    "last_token",
)
_ALIASES = {
    "word": "word_first",
    "sentence": "sentence_mean",
    "mean": "sentence_mean",
    "cls": "sentence_first",
    "first": "sentence_first",
    "last": "sentence_last",
    "max": "sentence_max",
    "tokens": "token",
}


def check_pooling(pooling: str) -> str:
    """Normalise a pooling name (aliases: word, sentence, mean, cls, first, last, max) or raise ConfigError."""
    p = _ALIASES.get(pooling, pooling)
    if p not in POOLINGS:
        raise ConfigError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    return p


def align_tokens_to_words(
    text: str,
    offsets: Sequence[tuple[int, int]],
    special: Sequence[int],
    word_spans: Sequence[tuple[int, int]],
) -> np.ndarray:
    """Per token, the index of the word it belongs to (or -1).

    Args:
        text: the example's text.
        offsets: per token, its ``(start, end)`` character span (``(0, 0)`` for added tokens).
        special: per token, 1 for special tokens.
        word_spans: per word, its ``(start, end)`` character span in ``text``.
    """
    n = len(offsets)
    out = np.full(n, -1, dtype=np.int32)
    if not word_spans or n == 0:
        return out
    spans = np.asarray(word_spans, dtype=np.int64).reshape(-1, 2)
    starts, ends = spans[:, 0], spans[:, 1]
    for t, ((a, b), sp) in enumerate(zip(offsets, special, strict=True)):
        if sp or b <= a:
            continue
        piece = text[a:b]
        lead = len(piece) - len(piece.lstrip())
        if lead == len(piece):
            continue
        p = a + lead
        j = int(np.searchsorted(starts, p, side="right")) - 1
        if j >= 0 and p < ends[j]:
            out[t] = j
    return out


@dataclasses.dataclass(frozen=True)
class ExamplePlan:
    """What one example contributes to the store: its item positions and word ids."""

    length: int  # number of tokens (after truncation)
    positions: np.ndarray  # per item: token position (first token of a word; -1 for mean/max)
    word_ids: np.ndarray  # per item: word index (-1 where not a word item)
    token_to_word: np.ndarray  # per token: word index or -1
    dropped_words: int  # words with no token (truncation)


def plan_example(pooling: str, tok2word: np.ndarray, n_words: int, length: int) -> ExamplePlan:
    """Which items an example yields under ``pooling``."""
    dropped = 0
    if pooling == "token":
        positions = np.arange(length, dtype=np.int32)
        word_ids = tok2word[:length].astype(np.int32)
    elif pooling.startswith("word_"):
        valid = tok2word >= 0
        words_present = np.unique(tok2word[valid])
        dropped = n_words - len(words_present)
        if pooling == "word_last":
            # last occurrence of each word: search reversed
            rev = tok2word[::-1]
            pos = [length - 1 - int(np.argmax(rev == w)) for w in words_present]
        else:
            pos = [int(np.argmax(tok2word == w)) for w in words_present]
        positions = np.asarray(pos, dtype=np.int32)
        word_ids = words_present.astype(np.int32)
        if pooling == "word_mean":
            positions = np.asarray([int(np.argmax(tok2word == w)) for w in words_present], dtype=np.int32)
    elif pooling == "sentence_first":
        positions, word_ids = np.zeros(1, np.int32), np.full(1, -1, np.int32)
    elif pooling in ("sentence_last", "last_token"):
        positions, word_ids = np.full(1, length - 1, np.int32), np.full(1, -1, np.int32)
    else:  # sentence_mean / sentence_max
        positions, word_ids = np.full(1, -1, np.int32), np.full(1, -1, np.int32)
    return ExamplePlan(length, positions, word_ids, tok2word, dropped)


@dataclasses.dataclass
class BatchPooler:
    """Pools one padded batch ``[batch, pos, d]`` into ``[n_items, d]`` rows (examples in batch order)."""

    pooling: str
    mask: torch.Tensor  # batch, pos (bool)
    flat_index: torch.Tensor | None  # n_items (gather rows of [batch*pos, d])
    mean_index: torch.Tensor | None  # n_tokens_in_words: item index per selected token
    mean_tokens: torch.Tensor | None  # flat token rows that belong to a word
    mean_counts: torch.Tensor | None  # n_items
    n_items: int

    @classmethod
    def build(cls, pooling: str, plans: list[ExamplePlan], mask: torch.Tensor) -> BatchPooler:
        """Index tensors for a batch whose examples have ``plans`` (padded to ``mask.shape[1]``)."""
        T = mask.shape[1]
        dev = mask.device
        flat = mean_idx = mean_tok = counts = None
        n_items = sum(len(p.positions) for p in plans)
        if pooling in ("token", "word_first", "word_last", "sentence_first", "sentence_last", "last_token"):
            rows = np.concatenate([b * T + p.positions.astype(np.int64) for b, p in enumerate(plans)])
            flat = torch.as_tensor(rows, device=dev)
        elif pooling == "word_mean":
            toks, idx, cnt = [], [], []
            base = 0
            for b, p in enumerate(plans):
                lut = {int(w): k for k, w in enumerate(p.word_ids)}
                sel = np.nonzero(p.token_to_word >= 0)[0]
                toks.append(b * T + sel.astype(np.int64))
                idx.append(np.asarray([base + lut[int(w)] for w in p.token_to_word[sel]], dtype=np.int64))
                cnt.append(np.bincount(idx[-1] - base, minlength=len(p.word_ids)))
                base += len(p.word_ids)
            mean_tok = torch.as_tensor(np.concatenate(toks), device=dev)
            mean_idx = torch.as_tensor(np.concatenate(idx), device=dev)
            counts = torch.as_tensor(np.concatenate(cnt), device=dev)
        return cls(pooling, mask, flat, mean_idx, mean_tok, counts, n_items)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Pool ``x`` (``[batch, pos, d]``, or ``[batch, d]`` for already-pooled sites)."""
        if x.ndim == 2:  # a site with no position axis (e.g. a pooled head): one row per example
            if self.pooling.startswith(("sentence", "last")):
                return x
            raise ConfigError("a site without a position axis can only be stored with sentence pooling")
        if x.ndim != 3:
            raise ConfigError(
                f"cannot pool an activation of shape {tuple(x.shape)}; extraction stores [batch, pos, d] sites "
                "(attention patterns: read them with capture())"
            )
        B, T, d = x.shape
        if self.flat_index is not None:
            return x.reshape(B * T, d).index_select(0, self.flat_index)
        if self.pooling == "word_mean":
            assert (
                self.mean_tokens is not None and self.mean_index is not None and self.mean_counts is not None
            )
            src = x.reshape(B * T, d).index_select(0, self.mean_tokens).float()
            out = torch.zeros(self.n_items, d, dtype=torch.float32, device=x.device)
            out.index_add_(0, self.mean_index, src)
            return out / self.mean_counts.clamp_min(1).unsqueeze(1).to(out.dtype)
        m = self.mask.unsqueeze(-1)
        if self.pooling == "sentence_mean":
            xf = x.float()
            return (xf * m).sum(1) / m.sum(1).clamp_min(1)
        if self.pooling == "sentence_max":
            return x.masked_fill(~m, float("-inf")).amax(1)
        raise ConfigError(f"unknown pooling {self.pooling!r}")
