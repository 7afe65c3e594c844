"""Batched probe solvers: sufficient statistics, ridge path, LDA and multinomial logistic regression.

Every function works on all layers at once: layers travel in the leading batch dimension ``L`` and
regularisation values in a second dimension ``G`` where a path is computed. There is no Python loop over
layers or regularisation values. Closed forms run in float64; the logistic fit keeps the input's float
dtype (float32 is fine for probing accuracy, float64 when coefficients must match scikit-learn tightly).

Shapes: ``X [L, n, d]`` (a 2-D ``[n, d]`` input means ``L = 1``), ``K`` classes, ``T`` regression targets
(``T = K`` one-hot columns for classification), ``G`` regularisation values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from layerscope.probes._core import SufficientStats, _grid, predict_logits
from layerscope.probes._logistic import fit_logistic, logistic_objective, warm_start_scale
from layerscope.probes._validation import ProbeDataError

Tensor = torch.Tensor
_F64 = torch.float64

__all__ = [
    "SufficientStats",
    "fit_logistic",
    "lda",
    "lda_path",
    "logistic_objective",
    "oas_shrinkage",
    "predict_logits",
    "ridge_path",
    "warm_start_scale",
]


def ridge_path(stats: SufficientStats, lambdas: Any, *, coding: str = "pm1") -> tuple[Tensor, Tensor]:
    """Ridge regression (or one-vs-rest ridge classification) for every layer and every λ at once.

    Solves ``min ||Yc - Xc W||² + λ||W||²`` on centred data (intercept unpenalised, like scikit-learn's
    ``Ridge``/``RidgeClassifier``) from the statistics: ONE ``eigh`` of the centred scatter per layer
    (batched over layers) gives ``W(λ) = V diag(1/(e + λ)) Vᵀ Xcᵀ Yc`` for every λ.

    Args:
        stats: sufficient statistics.
        lambdas: penalty values, scalar, ``[G]`` or per layer ``[L, G]``.
        coding: classification targets coded ``"pm1"`` (±1, as ``RidgeClassifier``) or ``"onehot"`` (0/1).

    Returns:
        ``W [L, G, d, T]`` and ``b [L, G, T]`` (``T = K`` for classification).
    """
    lam = _grid(lambdas, stats.n_layers)  # [L, G]
    evals, V = stats.centred_eigh()  # [L, d], [L, d, d]: one eigh per layer, shared by every λ
    Q = V.mT @ stats.centred_xty()  # [L, d, T]
    W = V[:, None] @ (Q[:, None] / (evals[:, None, :, None] + lam[:, :, None, None]))  # [L, G, d, T]
    ybar = stats.sum_y / max(stats.n, 1)  # [T]
    b = ybar[None, None, :] - (stats.mean()[:, None, None, :] @ W).squeeze(2)  # [L, G, T]
    if stats.is_classification and coding == "pm1":
        W, b = 2.0 * W, 2.0 * b - 1.0
    elif coding not in ("pm1", "onehot"):
        raise ProbeDataError(f"coding must be 'pm1' or 'onehot', got {coding!r}")
    return W, b


def oas_shrinkage(corr: Tensor, n: int) -> Tensor:
    """Oracle-approximating shrinkage (Chen et al. 2010) of a correlation matrix towards identity, ``[L]``."""
    d = corr.shape[-1]
    alpha = corr.square().mean((-2, -1))  # [L]
    mu = torch.diagonal(corr, dim1=-2, dim2=-1).mean(-1)  # [L]
    num = alpha + mu**2
    den = (n + 1) * (alpha - mu**2 / d)
    return torch.where(den > 0, (num / den.clamp_min(1e-300)).clamp(max=1.0), torch.ones_like(den))


def lda_path(stats: SufficientStats, shrinkages: Any, *, priors: Any = None) -> tuple[Tensor, Tensor]:
    """Linear discriminant analysis (shared covariance) for every layer and every shrinkage value at once.

    The pooled within-class covariance ``S`` is shrunk like scikit-learn's
    ``LinearDiscriminantAnalysis(solver="lsqr", shrinkage=a)``: ``(1 - a) S + a·tr(S)/d·I``. One ``eigh`` of
    ``S`` per layer serves every ``a``; a singular covariance uses the pseudo-inverse (like ``lstsq``).

    Args:
        stats: classification statistics.
        shrinkages: values in ``[0, 1]``: scalar, ``[G]`` or ``[L, G]``.
        priors: class priors ``[K]`` (default: class frequencies).

    Returns:
        ``W [L, G, d, K]`` and ``b [L, G, K]``; ``X @ W + b`` are the discriminant scores (logits).
    """
    _require_classification(stats)
    a = _grid(shrinkages, stats.n_layers)  # [L, G]
    if bool((a > 1).any()):
        raise ProbeDataError("LDA shrinkage values must lie in [0, 1]")
    S = stats.within_scatter() / max(stats.n, 1)  # [L, d, d]
    evals, V = torch.linalg.eigh(S)  # [L, d], [L, d, d]
    evals = evals.clamp_min(0.0)
    target = evals.mean(-1)  # tr(S)/d, [L]
    shrunk = (1 - a[:, :, None]) * evals[:, None, :] + a[:, :, None] * target[:, None, None]  # [L, G, d]
    means = stats.class_means()  # [L, K, d]
    proj = V.mT @ means.mT  # [L, d, K]
    W = V[:, None] @ (_pinv_diag(shrunk)[..., None] * proj[:, None])  # [L, G, d, K]
    return W, _lda_intercept(stats, means, W, priors)


def lda(stats: SufficientStats, shrinkage: Any = "auto", *, priors: Any = None) -> tuple[Tensor, Tensor]:
    """Linear discriminant analysis for every layer, with a given or automatic shrinkage.

    ``shrinkage="auto"`` is Ledoit-Wolf-like: the pooled within-class covariance is scaled to a correlation
    matrix ``R``, shrunk towards identity with the oracle-approximating (OAS) intensity computed per layer from
    ``R`` (needs second moments only, so it comes from the statistics), and scaled back — i.e. shrinkage
    towards the diagonal, as scikit-learn's ``"auto"`` does. scikit-learn estimates a Ledoit-Wolf intensity
    per class instead (needs fourth moments), so the "auto" coefficients differ slightly from sklearn's.

    Args:
        stats: classification statistics.
        shrinkage: ``"auto"``, ``None`` (no shrinkage), a float in ``[0, 1]`` or per-layer values ``[L]``.
        priors: class priors ``[K]`` (default: class frequencies).

    Returns:
        ``W [L, d, K]`` and ``b [L, K]``.
    """
    _require_classification(stats)
    if isinstance(shrinkage, str):
        if shrinkage != "auto":
            raise ProbeDataError(f"shrinkage must be 'auto', None or a float in [0, 1], got {shrinkage!r}")
        S = stats.within_scatter() / max(stats.n, 1)  # [L, d, d]
        sd = torch.diagonal(S, dim1=-2, dim2=-1).clamp_min(1e-300).sqrt()  # [L, d]
        R = S / (sd[:, :, None] * sd[:, None, :])  # [L, d, d]
        s = oas_shrinkage(R, max(stats.n - stats.n_classes, 1))  # [L]
        evals, V = torch.linalg.eigh(R)  # [L, d], [L, d, d]
        shrunk = (1 - s[:, None]) * evals.clamp_min(0.0) + s[:, None]  # [L, d]
        means = stats.class_means()  # [L, K, d]
        proj = V.mT @ (means / sd[:, None, :]).mT  # [L, d, K]
        W = (V @ (_pinv_diag(shrunk)[..., None] * proj)) / sd[:, :, None]  # [L, d, K]
        return W, _lda_intercept(stats, means, W[:, None], priors)[:, 0]
    value = 0.0 if shrinkage is None else shrinkage
    t = torch.as_tensor(value, dtype=_F64)
    grid = t.reshape(-1, 1) if t.ndim == 1 else t
    W, b = lda_path(stats, grid, priors=priors)
    return W[:, 0], b[:, 0]


def _require_classification(stats: SufficientStats) -> None:
    if not stats.is_classification:
        raise ProbeDataError("LDA needs classification statistics (integer labels), got regression targets")


def _pinv_diag(evals: Tensor) -> Tensor:
    """``1/e`` where ``e`` is above a relative threshold, else 0 (pseudo-inverse of a diagonal)."""
    cutoff = evals.amax(-1, keepdim=True) * (evals.shape[-1] * torch.finfo(evals.dtype).eps)
    return torch.where(evals > cutoff, 1.0 / evals.clamp_min(1e-300), torch.zeros_like(evals))


def _lda_intercept(stats: SufficientStats, means: Tensor, W: Tensor, priors: Any) -> Tensor:
    """``b_k = -½ μ_kᵀ W_k + log π_k`` for ``W [L, G, d, K]`` → ``[L, G, K]``."""
    if priors is None:
        pri = stats.counts / max(stats.n, 1)
    else:
        pri = torch.as_tensor(np.asarray(priors, dtype=float), dtype=_F64)
    quad = (means[:, None] * W.mT).sum(-1)  # [L, G, K]
    return -0.5 * quad + torch.log(pri.clamp_min(1e-300))[None, None, :]
