"""Token-level text features (Gurnee et al.'s token features) and binarised probing tasks, as 0/1 labels.

Every function returns ``{feature name: int64 labels [n_rows]}`` with ``1`` where the feature holds, ``0``
where it does not and ``-1`` for rows left out (special tokens, unlabelled words) — the ``labels`` argument
of :func:`~layerscope.neurons.sparse_probe`.
"""

from __future__ import annotations

import string
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._common import NeuronError

TOKEN_FEATURES: tuple[str, ...] = (
    "contains_digit",
    "all_digits",
    "leading_capital",
    "all_capitals",
    "is_punctuation",
    "has_leading_space",
    "is_not_ascii",
)
#: Word-position bins (word index within the sentence): ``[lo, hi]`` inclusive; None = open end.
POSITION_BINS: tuple[tuple[int, int | None], ...] = ((0, 0), (1, 2), (3, 5), (6, 10), (11, None))
DEFAULT_PREFIXES: tuple[str, ...] = ("un", "re")
DEFAULT_SUFFIXES: tuple[str, ...] = ("ing", "ed", "ly", "s")


def _surface(tok: str) -> tuple[str, bool]:
    """``(text without the word-boundary marker, has a leading space)`` of a decoded token."""
    if tok.startswith("##"):
        return tok[2:], False
    if tok.startswith((" ", "Ġ", "▁")):
        return tok[1:], True
    return tok, False


def _is_punct(s: str) -> bool:
    return bool(s) and all(c in string.punctuation or unicodedata.category(c).startswith("P") for c in s)


_TESTS: dict[str, Callable[[str, bool], bool]] = {
    "contains_digit": lambda s, sp: any(c.isdigit() for c in s),
    "all_digits": lambda s, sp: bool(s) and s.isdigit(),
    "leading_capital": lambda s, sp: bool(s) and s[0].isupper(),
    "all_capitals": lambda s, sp: sum(c.isalpha() for c in s) >= 2 and s.isupper(),
    "is_punctuation": lambda s, sp: _is_punct(s),
    "has_leading_space": lambda s, sp: sp,
    "is_not_ascii": lambda s, sp: not s.isascii(),
}


def token_features(
    tokens: Sequence[str | None],
    *,
    features: Sequence[str] | None = None,
    word_id: Any = None,
    position_bins: Sequence[tuple[int, int | None]] | None = POSITION_BINS,
    prefixes: Sequence[str] = DEFAULT_PREFIXES,
    suffixes: Sequence[str] = DEFAULT_SUFFIXES,
) -> dict[str, np.ndarray]:
    """0/1 labels of token features for decoded tokens (``None`` marks a row to leave out: label -1).

    Args:
        tokens: per row the decoded token (``" The"``, ``"##ing"``, ``"Ġthe"``); a leading space (or ``Ġ``/``▁``)
            marks a word start, ``##`` a continuation.
        features: names from :data:`TOKEN_FEATURES` (default all).
        word_id: per row the word index in its sentence (the store's ``word_id``) for the position bins
            (``position:lo-hi``); -1 rows are left out. None skips the position features.
        position_bins: inclusive word-index ranges.
        prefixes / suffixes: ``prefix:un`` is 1 for tokens starting with ``un`` (case-insensitive, longer
            than the affix); likewise ``suffix:ing``.
    """
    names = list(TOKEN_FEATURES if features is None else features)
    bad = [f for f in names if f not in _TESTS]
    if bad:
        raise NeuronError(f"unknown token feature(s) {bad}; choose from {', '.join(TOKEN_FEATURES)}")
    n = len(tokens)
    cache: dict[str | None, tuple[str, bool]] = {}
    surf = []
    for t in tokens:
        if t not in cache:
            cache[t] = _surface(t) if t is not None else ("", False)
        surf.append(cache[t])
    skip = np.array([t is None for t in tokens], dtype=bool)
    out: dict[str, np.ndarray] = {}
    for name in names:
        test = _TESTS[name]
        memo: dict[tuple[str, bool], int] = {}
        vals = np.fromiter((memo.setdefault(s, int(test(*s))) for s in surf), dtype=np.int64, count=n)
        out[name] = np.where(skip, -1, vals)
    for p in prefixes:
        low = p.lower()
        out[f"prefix:{p}"] = np.where(
            skip, -1, [int(len(s) > len(p) and s.lower().startswith(low)) for s, _ in surf]
        ).astype(np.int64)
    for sfx in suffixes:
        low = sfx.lower()
        out[f"suffix:{sfx}"] = np.where(
            skip, -1, [int(len(s) > len(sfx) and s.lower().endswith(low)) for s, _ in surf]
        ).astype(np.int64)
    if word_id is not None and position_bins:
        wid = np.asarray(word_id).astype(np.int64)
        if wid.shape != (n,):
            raise NeuronError(f"word_id must have one value per token ({n}), got shape {wid.shape}")
        for lo, hi in position_bins:
            inside = (wid >= lo) & (wid <= (hi if hi is not None else np.iinfo(np.int64).max))
            name = f"position:{lo}-{hi}" if hi is not None else f"position:{lo}+"
            out[name] = np.where(skip | (wid < 0), -1, inside.astype(np.int64))
    return out


def decode_tokens(tokenizer: Any, token_ids: Any) -> list[str | None]:
    """Each id decoded on its own (one decode per distinct id); special tokens become ``None``."""
    ids = np.asarray(token_ids).astype(np.int64)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    uniq = np.unique(ids)
    table: dict[int, str | None] = {}
    for i in uniq.tolist():
        if i in special:
            table[i] = None
            continue
        piece = tokenizer.convert_ids_to_tokens(i)
        if isinstance(piece, str) and piece.startswith("##"):
            table[i] = piece
        else:
            table[i] = tokenizer.decode([i])
    return [table[i] for i in ids.tolist()]


def store_features(
    store: Any,
    *,
    features: Sequence[str] | None = None,
    tokenizer: Any = None,
    min_count: int = 10,
    **kwargs: Any,
) -> dict[str, np.ndarray]:
    """Token features of every row of a token-pooled ``ActivationStore`` (no model needed).

    Features with fewer than ``min_count`` positive or negative rows are dropped (a probe cannot learn them).
    Extra keyword arguments go to :func:`token_features`.
    """
    if store.manifest.get("pooling") != "token":
        raise NeuronError(
            f"token features need a token-pooled store (extract(..., pooling='token')); this store is "
            f"{store.manifest.get('pooling')!r}"
        )
    tok = tokenizer or store.tokenizer()
    if tok is None:
        raise NeuronError("the store has no saved tokenizer; pass tokenizer=subject.tokenizer")
    tokens = decode_tokens(tok, store.meta("token_id"))
    labs = token_features(tokens, features=features, word_id=store.meta("word_id"), **kwargs)
    return {k: v for k, v in labs.items() if min((v == 1).sum(), (v == 0).sum()) >= min_count}


def binarize(task: Any, store: Any, *, classes: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """A built-in (or any) :class:`~layerscope.data.ProbingTask` as one 0/1 target per class (one-vs-rest).

    Rows map to classes through the store's ``example_id``/``word_id``; unlabelled rows get -1.
    Returns ``{"<task>=<class>": labels}``.
    """
    ids = task.targets(store.meta("example_id"), store.meta("word_id") if task.level == "word" else None)
    names = list(task.classes) if classes is None else list(classes)
    unknown = [c for c in names if c not in task.classes]
    if unknown:
        raise NeuronError(f"task {task.name!r} has no class(es) {unknown}; it has {task.classes}")
    out = {}
    for c in names:
        k = task.classes.index(c)
        out[f"{task.name}={c}"] = np.where(ids < 0, -1, (ids == k).astype(np.int64))
    return out
