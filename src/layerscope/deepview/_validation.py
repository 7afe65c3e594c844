"""Input checks for DeepView and the errors they raise (each says what was wrong and how to fix it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ConfigError, LayerscopeError


class DeepViewError(LayerscopeError):
    """Base class of DeepView's input errors."""


class TooFewPointsError(DeepViewError, ConfigError):
    """Fewer points than the neighbourhood size (UMAP's ``n_neighbors``, Q_kNN's ``k``) needs."""


class EmbeddingError(DeepViewError, ValueError):
    """Embeddings that are not a finite ``[N, D]`` float array."""


class ProbabilityError(DeepViewError, ValueError):
    """A probability function whose output is not a row-stochastic ``[B, C]`` array (e.g. logits)."""


class SingleClassError(DeepViewError, ValueError):
    """The classifier predicts one class for every point: there is no decision boundary to show."""


ProbFn = Callable[[np.ndarray], np.ndarray]


def check_embeddings(x: Any, *, name: str = "embeddings") -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 ``[N, D]`` array or raise ``EmbeddingError``."""
    try:
        import torch

        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    arr = np.asarray(x)
    if arr.dtype == object or arr.dtype.kind not in "fiub":
        raise EmbeddingError(f"{name} must be a numeric [N, D] array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise EmbeddingError(
            f"{name} must be 2-D [N, D] (one row per point), got shape {arr.shape}; "
            "pool token states to one vector per example first"
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise EmbeddingError(
            f"{name} contain NaN/inf in {len(rows)} row(s) (first: {rows[:5].tolist()}); "
            "drop or repair those rows before building a map"
        )
    return np.ascontiguousarray(arr, dtype=np.float32)


def check_n_points(n: int, n_neighbors: int, *, what: str = "UMAP's n_neighbors") -> None:
    """Raise ``TooFewPointsError`` unless there are more than ``n_neighbors`` points."""
    if n <= n_neighbors:
        raise TooFewPointsError(
            f"DeepView got {n} points but {what} is {n_neighbors}; give more than {n_neighbors} points "
            f"or lower n_neighbors (at most {max(n - 1, 1)})"
        )


def check_probabilities(
    p: Any, n_rows: int, *, n_classes: int | None = None, atol: float = 1e-3
) -> np.ndarray:
    """Check a probability function's output; explain the likely mistake when it is not a simplex."""
    try:
        import torch

        if isinstance(p, torch.Tensor):
            p = p.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] != n_rows:
        raise ProbabilityError(
            f"the probability function must return one row of class probabilities per input, [{n_rows}, C]; "
            f"got shape {arr.shape}"
        )
    if n_classes is not None and arr.shape[1] != n_classes:
        raise ProbabilityError(
            f"the probability function returned {arr.shape[1]} classes, expected {n_classes}"
        )
    if arr.shape[1] < 2:
        raise ProbabilityError("the probability function must return at least 2 class probabilities per row")
    if not np.isfinite(arr).all():
        raise ProbabilityError("the probability function returned NaN/inf; check the model and its inputs")
    sums = arr.sum(axis=1)
    if arr.min() < -atol or arr.max() > 1 + atol:
        raise ProbabilityError(
            f"the probability function returned values outside [0, 1] (min {arr.min():.3g}, max {arr.max():.3g}): "
            "these look like logits; apply a softmax (or use deepview.prob_fn_from_module(model, "
            "outputs='logits'))"
        )
    if np.abs(sums - 1).max() > atol:
        worst = int(np.argmax(np.abs(sums - 1)))
        raise ProbabilityError(
            f"the probability function's rows must sum to 1, row {worst} sums to {sums[worst]:.4g}: "
            "return softmax probabilities (for independent sigmoid outputs, stack [1-p, p] per class)"
        )
    return np.clip(arr, 0.0, 1.0) / np.clip(arr, 0.0, 1.0).sum(axis=1, keepdims=True)


def check_lambdas(lambdas: Any) -> tuple[float, ...]:
    """λ presets: a non-empty sequence of floats in [0, 1]."""
    vals = (
        (float(lambdas),)
        if isinstance(lambdas, int | float | np.number)
        else tuple(float(v) for v in lambdas)
    )
    if not vals:
        raise ConfigError("give at least one λ value in [0, 1]")
    for v in vals:
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"λ must lie in [0, 1] (1 = structural distance only), got {v}")
    return vals
