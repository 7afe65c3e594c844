"""Leakage-safe train/val/test splits: whole groups (documents, identical texts, verb forms) stay together.

A probe evaluated on a test sentence that also occurs in training (MultiEmo has duplicate texts) or, for
lexically controlled tasks, on a word form it was trained on, measures memorisation rather than encoding.
:func:`split_examples` therefore assigns *groups*, never single examples, to splits.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np

from ..errors import ConfigError, DataError

TRAIN, VAL, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "val", "test")


def split_examples(
    n: int,
    *,
    groups: Sequence[Hashable] | None = None,
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    stratify: Sequence[Hashable] | None = None,
) -> np.ndarray:
    """Assign ``n`` examples to train (0), val (1) and test (2), keeping every group in one split.

    Groups are visited largest first (ties in a random order drawn from ``seed``); each goes to the split
    with the largest *relative* deficit ``(target - assigned) / target``, where targets are
    ``fractions * n`` counted in examples. An empty split always has the largest deficit, so with at least
    three groups no split is empty, and the sizes land close to the fractions unless single groups are
    large. With ``stratify``, this is done separately within each stratum (a group belongs to the stratum
    of most of its examples), so every split keeps the class proportions.

    Args:
        n: number of examples.
        groups: per example a hashable group key (a document id, the text itself, a verb form); ``None``
            makes every example its own group.
        fractions: train/val/test fractions, each > 0, summing to 1.
        seed: the random seed (same seed, same split).
        stratify: optional per-example stratum (usually the class label).

    Returns:
        ``np.ndarray`` of ``int8``, shape ``[n]``: 0 = train, 1 = val, 2 = test.

    Raises:
        ConfigError: bad ``n``, ``fractions`` or ``seed``.
        DataError: ``groups``/``stratify`` of the wrong length, or fewer than three groups.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}")
    n = int(n)
    fr = _check_fractions(fractions)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    keys = _keys(groups, n, "groups") if groups is not None else list(range(n))
    strata = _keys(stratify, n, "stratify") if stratify is not None else [0] * n

    members: dict[Hashable, list[int]] = {}
    for i, g in enumerate(keys):
        members.setdefault(g, []).append(i)
    if len(members) < 3:
        raise DataError(
            f"cannot split {n} example(s) in {len(members)} group(s) into non-empty train/val/test splits; "
            "give at least 3 examples in 3 different groups (texts, documents)"
        )
    # the stratum of a group: the most common stratum among its examples (first seen on ties)
    by_stratum: dict[Hashable, list[list[int]]] = {}
    for idx in members.values():
        counts: dict[Hashable, int] = {}
        for i in idx:
            counts[strata[i]] = counts.get(strata[i], 0) + 1
        s = max(counts, key=lambda k: counts[k])
        by_stratum.setdefault(s, []).append(idx)

    rng = np.random.default_rng(int(seed))
    out = np.full(n, -1, dtype=np.int8)
    for s_groups in by_stratum.values():  # insertion order: deterministic
        _assign(s_groups, fr, rng, out)
    _repair_empty(out, list(members.values()))
    return out


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    try:
        fr = np.asarray([float(f) for f in fractions], dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"fractions must be three numbers (train, val, test), got {fractions!r}") from None
    if fr.shape != (3,):
        raise ConfigError(f"fractions must be three numbers (train, val, test), got {fractions!r}")
    if not np.all(np.isfinite(fr)) or np.any(fr <= 0):
        raise ConfigError(f"every fraction must be > 0 (no split may be empty), got {fractions!r}")
    if not math.isclose(float(fr.sum()), 1.0, abs_tol=1e-6):
        raise ConfigError(f"fractions must sum to 1, got {fractions!r} (sum {fr.sum():.6g})")
    return fr


def _keys(values: Sequence[Hashable], n: int, what: str) -> list[Hashable]:
    keys = list(values)
    if len(keys) != n:
        raise DataError(f"{what} has {len(keys)} entries for {n} examples; give one per example")
    for i, k in enumerate(keys):
        try:
            hash(k)
        except TypeError:
            raise DataError(f"{what}[{i}] is a {type(k).__name__}, which is not hashable") from None
    return keys


def _assign(groups: list[list[int]], fr: np.ndarray, rng: np.random.Generator, out: np.ndarray) -> None:
    """Greedy largest-first assignment of ``groups`` to the split with the largest relative deficit."""
    order = rng.permutation(len(groups))
    order = order[np.argsort([-len(groups[k]) for k in order], kind="stable")]
    total = sum(len(g) for g in groups)
    target = fr * total
    filled = np.zeros(3)
    for k in order:
        split = int(np.argmax((target - filled) / target))  # ties: the lower split index
        out[groups[k]] = split
        filled[split] += len(groups[k])


def _repair_empty(out: np.ndarray, groups: list[list[int]]) -> None:
    """Move the smallest group out of the most populated split into any split left empty."""
    for split in range(3):
        if np.any(out == split):
            continue
        per_split = [[g for g in groups if out[g[0]] == s] for s in range(3)]
        donor_groups = max(per_split, key=len)  # >= 2 groups there, since there are >= 3 groups
        out[min(donor_groups, key=len)] = split
