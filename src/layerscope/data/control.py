"""Control tasks (Hewitt & Liang 2019): random labels with the real task's label distribution.

A control task keeps the inputs and the label distribution of a probing task but replaces the link between
input and label by a fixed random one. A probe that reaches high accuracy on the control task can memorise;
*selectivity* (task accuracy minus control accuracy) shows how much of the task accuracy is due to the
representation rather than to the probe.

Both functions draw a label as the inverse CDF of the empirical label distribution (classes in sorted
order) at a uniform number computed by a keyed BLAKE2b hash of ``(seed, key)``. The mapping is therefore a
pure function of the key (a lower-cased word type, or a text), the seed and the distribution: the same
across splits, runs, machines and Python processes (unlike Python's salted ``hash``).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np

from ..errors import ConfigError, DataError

_SCALE = float(2**64)


def stable_uniform(key: str, *, seed: int) -> float:
    """A number in ``[0, 1)`` determined by ``key`` and ``seed`` only (BLAKE2b, not Python's ``hash``)."""
    digest = hashlib.blake2b(
        key.encode("utf-8"), digest_size=8, key=str(int(seed)).encode(), person=b"layerscope-ctl"
    ).digest()
    return int.from_bytes(digest, "big") / _SCALE


def control_labels_word(
    words: Sequence[Sequence[str]],
    labels: Sequence[Sequence[Hashable | None]],
    *,
    seed: int,
) -> list[list[Hashable | None]]:
    """Word-level control labels: one fixed random label per word type (lower-cased form).

    Each word type gets one label drawn from the empirical distribution of the real (non-``None``) word
    labels; every occurrence of the type, in every split, gets that label. Unlabelled words (``None``) stay
    unlabelled.

    Args:
        words: per example, its words.
        labels: per example, one label per word (``None`` = not labelled).
        seed: the control task's seed (another seed, another mapping).

    Returns:
        Per example, per word, the control label (``None`` where the real label is ``None``).
    """
    _check_seed(seed)
    if len(words) != len(labels):
        raise DataError(f"{len(words)} word lists but {len(labels)} label lists; give one per example")
    counts: Counter[Hashable] = Counter()
    for i, (ws, ls) in enumerate(zip(words, labels, strict=True)):
        if len(ws) != len(ls):
            raise DataError(f"example {i}: {len(ls)} labels for {len(ws)} words; give one label per word")
        counts.update(label for label in ls if label is not None)
    if not counts:
        raise DataError("no labelled words: every label is None")
    draw = _sampler(counts)
    mapping: dict[str, Hashable] = {}
    out: list[list[Hashable | None]] = []
    for ws, ls in zip(words, labels, strict=True):
        row: list[Hashable | None] = []
        for w, label in zip(ws, ls, strict=True):
            if label is None:
                row.append(None)
                continue
            t = w.lower()
            if t not in mapping:
                mapping[t] = draw(stable_uniform("w\x00" + t, seed=seed))
            row.append(mapping[t])
        out.append(row)
    return out


def control_labels_sentence(
    texts: Sequence[str],
    labels: Sequence[Hashable],
    *,
    seed: int,
) -> list[Hashable]:
    """Sentence-level control labels: one fixed random label per text (by a stable hash of the text).

    Identical texts get identical labels; the labels follow the empirical distribution of ``labels``.

    Args:
        texts: one text per example.
        labels: the real label of each example (only their distribution is used).
        seed: the control task's seed.

    Returns:
        One control label per example.
    """
    _check_seed(seed)
    if len(texts) != len(labels):
        raise DataError(f"{len(texts)} texts but {len(labels)} labels; give one label per text")
    if not texts:
        raise DataError("no examples")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise DataError(f"text {i} is a {type(t).__name__}, not a string")
    draw = _sampler(Counter(labels))
    return [draw(stable_uniform("s\x00" + t, seed=seed)) for t in texts]


def _sampler(counts: Counter[Hashable]) -> _InverseCdf:
    classes = sorted(counts, key=str)
    p = np.array([counts[c] for c in classes], dtype=np.float64)
    return _InverseCdf(classes, np.cumsum(p) / p.sum())


class _InverseCdf:
    """Maps ``u`` in ``[0, 1)`` to the class whose cumulative-probability interval contains it."""

    def __init__(self, classes: list[Hashable], cdf: np.ndarray) -> None:
        self.classes = classes
        self.cdf = cdf

    def __call__(self, u: float) -> Hashable:
        k = int(np.searchsorted(self.cdf, u, side="right"))
        return self.classes[min(k, len(self.classes) - 1)]


def _check_seed(seed: object) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
