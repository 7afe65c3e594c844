"""Baseline sensitivity: attribute the same inputs under several baselines and compare the token rankings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError
from .baselines import baseline_name
from .result import AttributionResult, BaselineSensitivityResult


def _topk(a: np.ndarray, k: int) -> set[int]:
    return set(np.argsort(-np.abs(a), kind="stable")[:k].tolist())


def compare_results(
    results: Sequence[AttributionResult], *, k: int = 3, names: Sequence[str] | None = None
) -> BaselineSensitivityResult:
    """Spearman rank correlation and top-k overlap (of |score|) between results on the same inputs."""
    import pandas as pd
    from scipy.stats import spearmanr

    if len(results) < 2:
        raise ConfigError("compare at least two results (baselines)")
    if k < 1:
        raise ConfigError(f"k must be positive, got {k}")
    rows0 = len(results[0].target)
    if any(len(r.target) != rows0 for r in results):
        raise ConfigError(
            "results differ in their (example, target) rows; attribute the same inputs and targets"
        )
    names = list(names) if names is not None else [r.baseline for r in results]
    n = len(results)
    rho = np.eye(n)
    top = np.eye(n)
    recs = []
    for i in range(n):
        for j in range(i + 1, n):
            rs, ts = [], []
            for row in range(rows0):
                a = results[i].scores[row].ravel()
                b = results[j].scores[row].ravel()
                ok = np.isfinite(a) & np.isfinite(b)
                a, b = a[ok], b[ok]
                if a.size < 2:
                    continue
                r = float(spearmanr(a, b).statistic) if np.ptp(a) > 0 and np.ptp(b) > 0 else float("nan")
                kk = min(k, a.size)
                t = len(_topk(a, kk) & _topk(b, kk)) / kk
                rs.append(r)
                ts.append(t)
                recs.append((int(results[i].example[row]), results[i].target[row], names[i], names[j], r, t))
            rho[i, j] = rho[j, i] = float(np.nanmean(rs)) if rs else np.nan
            top[i, j] = top[j, i] = float(np.mean(ts)) if ts else np.nan
    frame = pd.DataFrame(
        recs, columns=["example", "target", "baseline_a", "baseline_b", "spearman", "topk_overlap"]
    )
    return BaselineSensitivityResult(baselines=names, k=k, per_example=frame, spearman=rho, topk=top)


def baseline_sensitivity(
    attributor: Any,
    inputs: Any,
    *,
    target: Any = None,
    baselines: Sequence[Any] = ("zero", "pad", "mask", "unk"),
    k: int = 3,
    **kwargs: Any,
) -> BaselineSensitivityResult:
    """Attribute ``inputs`` with ``attributor`` once per baseline and compare the rankings.

    Args:
        attributor: e.g. ``IntegratedGradients(subject)`` (anything whose ``attribute`` takes ``baseline=``).
        inputs, target: as for ``attributor.attribute``.
        baselines: baseline names/objects (text default: zero embedding and [PAD]/[MASK]/[UNK] tokens;
            for images try ``("black", "grey", "blur", "uniform")``).
        k: top-k size for the overlap.
    """
    if len(baselines) < 2:
        raise ConfigError("give at least two baselines to compare")
    results = [attributor.attribute(inputs, target=target, baseline=b, **kwargs) for b in baselines]
    return compare_results(results, k=k, names=[baseline_name(b) for b in baselines])
