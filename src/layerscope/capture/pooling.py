"""Subword -> word alignment and pooling of ``[batch, pos, d]`` activations into stored items.

Alignment works on character offsets, so it holds for any fast tokenizer (WordPiece, BPE, SentencePiece),
for words split differently in context, special tokens and truncation: a token maps to the word holding
its first non-space character, or to -1 (special tokens, whitespace-only tokens). Words left with no
token (truncated away) are reported, never asserted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal, get_args

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
POOLINGS: tuple[str, ...] = get_args(Pooling)
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


def _content_tokens(
    text: str, offsets: Sequence[tuple[int, int]], special: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions, first non-space character and end of every token that covers text (specials/space dropped)."""
    pos, starts, ends = [], [], []
    for t, ((a, b), sp) in enumerate(zip(offsets, special, strict=True)):
        if sp or b <= a:
            continue
        piece = text[a:b]
        lead = len(piece) - len(piece.lstrip())
        if lead == len(piece):
            continue
        pos.append(t)
        starts.append(a + lead)
        ends.append(b)
    return np.asarray(pos, np.int64), np.asarray(starts, np.int64), np.asarray(ends, np.int64)


def align_tokens_to_words(
    text: str,
    offsets: Sequence[tuple[int, int]],
    special: Sequence[int],
    word_spans: Sequence[tuple[int, int]],
) -> np.ndarray:
    """Per token, the index of the word holding its first non-space character (or -1).

    Args:
        text: the example's text.
        offsets: per token, its ``(start, end)`` character span (``(0, 0)`` for added tokens).
        special: per token, 1 for special tokens.
        word_spans: per word, its ``(start, end)`` character span in ``text``.
    """
    out = np.full(len(offsets), -1, dtype=np.int32)
    if not word_spans or len(offsets) == 0:
        return out
    pos, starts, _ = _content_tokens(text, offsets, special)
    spans = np.asarray(word_spans, dtype=np.int64).reshape(-1, 2)
    j = np.searchsorted(spans[:, 0], starts, side="right") - 1
    ok = (j >= 0) & (starts < spans[np.clip(j, 0, None), 1])
    out[pos[ok]] = j[ok]
    return out


def word_token_ranges(
    text: str,
    offsets: Sequence[tuple[int, int]],
    special: Sequence[int],
    word_spans: Sequence[tuple[int, int]],
) -> np.ndarray:
    """Per word, the ``[first, last]`` token positions whose characters overlap it (``[-1, -1]``: none).

    A token that spans several words (BPE ``"!!"`` for spaCy's ``"!" "!"``, ``"Don"`` for ``"Do" "n't"``)
    belongs to each of them, so no word that is in the input is ever left without tokens.
    """
    out = np.full((len(word_spans), 2), -1, dtype=np.int64)
    if len(word_spans) == 0 or len(offsets) == 0:
        return out
    p, ts, te = _content_tokens(text, offsets, special)
    if not len(p):
        return out
    te = np.maximum.accumulate(te)
    spans = np.asarray(word_spans, dtype=np.int64).reshape(-1, 2)
    i0 = np.searchsorted(te, spans[:, 0], side="right")  # first token ending after the word starts
    i1 = np.searchsorted(ts, spans[:, 1], side="left") - 1  # last token starting before the word ends
    ok = (i0 <= i1) & (i0 < len(p)) & (i1 >= 0)
    out[ok, 0] = p[i0[ok]]
    out[ok, 1] = p[i1[ok]]
    return out


@dataclasses.dataclass(frozen=True)
class ExamplePlan:
    """What one example contributes to the store: its item positions and word ids."""

    length: int  # number of tokens (after truncation)
    positions: np.ndarray  # per item: token position (first token of a word; -1 for mean/max)
    word_ids: np.ndarray  # per item: word index (-1 where not a word item)
    token_to_word: np.ndarray  # per token: word index or -1
    dropped_words: int  # words with no token (truncation)
    ranges: np.ndarray | None = None  # word items: [first, last] token positions, [n_items, 2]


def plan_example(
    pooling: str, tok2word: np.ndarray, n_words: int, length: int, ranges: np.ndarray | None = None
) -> ExamplePlan:
    """Which items an example yields under ``pooling``.

    Args:
        tok2word: per token, its word (``align_tokens_to_words``).
        n_words: number of words of the example.
        length: number of tokens.
        ranges: per word, ``[first, last]`` overlapping tokens (``word_token_ranges``); derived from
            ``tok2word`` when omitted.
    """
    none = np.full(1, -1, np.int32)
    if pooling == "token":
        return ExamplePlan(
            length, np.arange(length, dtype=np.int32), tok2word[:length].astype(np.int32), tok2word, 0
        )
    if pooling.startswith("word_"):
        if ranges is None:
            ranges = np.full((n_words, 2), -1, dtype=np.int64)
            for w in np.unique(tok2word[tok2word >= 0]):
                hit = np.nonzero(tok2word == w)[0]
                ranges[w] = (hit[0], hit[-1])
        present = np.nonzero(ranges[:, 0] >= 0)[0]
        r = ranges[present]
        positions = (r[:, 1] if pooling == "word_last" else r[:, 0]).astype(np.int32)
        return ExamplePlan(length, positions, present.astype(np.int32), tok2word, n_words - len(present), r)
    if pooling == "sentence_first":
        return ExamplePlan(length, np.zeros(1, np.int32), none, tok2word, 0)
    if pooling in ("sentence_last", "last_token"):
        return ExamplePlan(length, np.full(1, length - 1, np.int32), none, tok2word, 0)
    return ExamplePlan(length, none.copy(), none, tok2word, 0)  # sentence_mean / sentence_max


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
                assert p.ranges is not None
                lens = p.ranges[:, 1] - p.ranges[:, 0] + 1
                item = np.repeat(np.arange(len(lens)), lens)
                tok = (
                    np.concatenate([np.arange(a, z + 1) for a, z in p.ranges])
                    if len(lens)
                    else np.zeros(0, np.int64)
                )
                toks.append(b * T + tok.astype(np.int64))
                idx.append(base + item.astype(np.int64))
                cnt.append(lens)
                base += len(lens)
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
        if (
            self.pooling == "sentence_mean"
        ):  # one einsum with 1/length weights (3-5x faster than mask-sum-divide)
            w = self.mask.float() / self.mask.sum(1, keepdim=True).clamp_min(1)
            return torch.einsum("bp,bpd->bd", w, x.float())
        if self.pooling == "sentence_max":
            return x.masked_fill(~m, float("-inf")).amax(1)
        raise ConfigError(f"unknown pooling {self.pooling!r}")
