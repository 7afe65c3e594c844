"""Neuron rankings for a binary (or multi-class) feature, for every layer at once.

Mean difference, f-statistic and the probeless class-mean differences of Antverg & Belinkov (2022) need only
per-class counts, sums and sums of squares of every neuron — additive statistics (:class:`NeuronStats`)
that stream over a store and merge across shards. Mutual information bins each neuron at its quantiles
(one scatter-add for every layer and neuron); the L1-logistic path is one batched FISTA fit per penalty
value over all layers. Higher scores rank first; constant neurons score ``-inf`` and are never selected.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch

from ._common import NeuronError, Tensor, as_acts, as_binary

RANKINGS: tuple[str, ...] = ("mean_diff", "f_stat", "mutual_info", "l1", "probeless", "random")
_BINARY_ONLY = ("mean_diff", "l1")
_F64 = torch.float64
_CHUNK = 1024


@dataclasses.dataclass
class NeuronStats:
    """Additive per-class statistics of every neuron: counts ``[K]``, sums and sums of squares ``[L, K, d]``.

    Also the per-neuron minimum and maximum ``[L, d]`` (exact constant-neuron detection). ``a + b`` gives
    the statistics of the union of two disjoint sample sets (stream a store block by block). Row chunks are
    multiplied in float32 and accumulated in float64. ``sumsq`` is None when built with
    ``second_moments=False`` (the mean-difference ranking needs only sums: a third less work).
    """

    counts: Tensor
    sums: Tensor
    sumsq: Tensor | None
    lo: Tensor
    hi: Tensor

    @classmethod
    def zeros(
        cls, n_layers: int, n_neurons: int, n_classes: int, *, second_moments: bool = True
    ) -> NeuronStats:
        """Empty statistics."""
        z = torch.zeros(n_layers, n_classes, n_neurons, dtype=_F64)  # [L, K, d]
        lo = torch.full((n_layers, n_neurons), math.inf, dtype=torch.float32)  # [L, d]
        return cls(torch.zeros(n_classes, dtype=_F64), z, z.clone() if second_moments else None, lo, -lo)

    @classmethod
    def from_arrays(
        cls, X: Any, y: Any, n_classes: int | None = None, *, second_moments: bool = True
    ) -> NeuronStats:
        """Statistics of ``X [L, n, d]`` with integer labels ``y [n]`` (``0..K-1``)."""
        X3 = as_acts(X)
        yt = torch.as_tensor(np.asarray(y) if not isinstance(y, Tensor) else y).long()
        K = int(n_classes) if n_classes is not None else int(yt.max()) + 1
        return cls.zeros(X3.shape[0], X3.shape[2], K, second_moments=second_moments)._add(X3, yt)

    def update(self, X: Any, y: Any) -> NeuronStats:
        """Add samples in place (streaming); returns ``self``.

        Works layer by layer in row chunks of :data:`_CHUNK` (a ``[chunk, d]`` slab stays in cache for its four
        reductions: 3× faster than whole-``[L, chunk, d]`` chunks on SmolLM2's 30 × 1536 neurons).
        """
        return self._add(
            as_acts(X), torch.as_tensor(np.asarray(y) if not isinstance(y, Tensor) else y).long()
        )

    def _add(self, X3: Tensor, yt: Tensor) -> NeuronStats:
        """:meth:`update` on activations already checked by ``as_acts`` (one pass over them saved)."""
        if yt.shape != (X3.shape[1],):
            raise NeuronError(f"X has {X3.shape[1]} rows but y has shape {tuple(yt.shape)}")
        K = self.counts.shape[0]
        if yt.numel() and (int(yt.min()) < 0 or int(yt.max()) >= K):
            raise NeuronError(f"labels must lie in 0..{K - 1}")
        onehot = torch.nn.functional.one_hot(yt, K).to(torch.float32)  # [n, K]
        self.counts += onehot.sum(0).to(_F64)
        for li in range(X3.shape[0]):
            for s in range(0, X3.shape[1], _CHUNK):  # float32 products per chunk, float64 accumulation
                xc = X3[li, s : s + _CHUNK]  # [c, d]
                oc = onehot[s : s + _CHUNK].T  # [K, c]
                self.sums[li] += (oc @ xc).to(_F64)
                if self.sumsq is not None:
                    self.sumsq[li] += (oc @ (xc * xc)).to(_F64)
                torch.minimum(self.lo[li], xc.amin(0), out=self.lo[li])
                torch.maximum(self.hi[li], xc.amax(0), out=self.hi[li])
        return self

    def __add__(self, other: NeuronStats) -> NeuronStats:
        return NeuronStats(
            self.counts + other.counts,
            self.sums + other.sums,
            None if self.sumsq is None or other.sumsq is None else self.sumsq + other.sumsq,
            torch.minimum(self.lo, other.lo),
            torch.maximum(self.hi, other.hi),
        )

    def means(self) -> Tensor:
        """Class means ``[L, K, d]``."""
        return self.sums / self.counts.clamp_min(1)[None, :, None]

    def variance(self) -> Tensor:
        """Total variance of every neuron ``[L, d]``."""
        n = self.counts.sum().clamp_min(1)
        mu = self.sums.sum(1) / n
        return (self._second().sum(1) / n - mu.square()).clamp_min(0)

    def _second(self) -> Tensor:
        if self.sumsq is None:
            raise NeuronError("these statistics were built without second moments (second_moments=False)")
        return self.sumsq

    def constant(self) -> Tensor:
        """Neurons that never change value on these rows ``[L, d]`` (bool)."""
        return self.hi <= self.lo


def mean_diff(stats: NeuronStats) -> Tensor:
    """``|μ₊ − μ₋|`` per neuron ``[L, d]`` (binary statistics, Gurnee et al.'s default ranking)."""
    mu = stats.means()
    return (mu[:, 1] - mu[:, 0]).abs()


def f_stat(stats: NeuronStats) -> Tensor:
    """One-way ANOVA F statistic per neuron ``[L, d]`` (scikit-learn's ``f_classif``)."""
    n = stats.counts.sum()
    K = stats.counts.shape[0]
    mu = stats.sums.sum(1) / n  # [L, d]
    between = (stats.counts[None, :, None] * (stats.means() - mu[:, None]).square()).sum(1)  # [L, d]
    total = stats._second().sum(1) - n * mu.square()
    within = (total - between).clamp_min(0)
    df_b, df_w = max(K - 1, 1), max(float(n) - K, 1.0)
    return (between / df_b) / (within / df_w).clamp_min(1e-300)


def probeless(stats: NeuronStats) -> Tensor:
    """Antverg & Belinkov's probeless ranking: ``Σ_{c<c'} |q(c) − q(c')|`` of class means ``[L, d]``."""
    mu = stats.means()  # [L, K, d]
    diff = (mu[:, :, None] - mu[:, None, :]).abs()  # [L, K, K, d]
    return diff.sum((1, 2)) / 2


def mutual_info(X: Tensor, y: Tensor, *, n_bins: int = 16) -> Tensor:
    """Mutual information (nats) between each neuron, binned at its quantiles, and the label ``[L, d]``."""
    L, n, d = X.shape
    K = int(y.max()) + 1
    qs = torch.linspace(0, 1, n_bins + 1, dtype=torch.float32)[1:-1]
    sample = X if n <= 20000 else X[:, torch.randperm(n, generator=torch.Generator().manual_seed(0))[:20000]]
    edges = torch.quantile(sample, qs, dim=1).permute(1, 2, 0).contiguous()  # [L, d, B-1]
    bins = torch.searchsorted(edges, X.transpose(1, 2).contiguous())  # [L, d, n]
    cell = bins * K + y[None, None, :]  # [L, d, n]
    joint = torch.zeros(L, d, n_bins * K, dtype=_F64)
    joint.scatter_add_(2, cell, torch.ones(1, 1, 1, dtype=_F64).expand(L, d, n))
    p = (joint / n).view(L, d, n_bins, K)
    pb = p.sum(3, keepdim=True)
    pc = p.sum(2, keepdim=True)
    ratio = torch.where(p > 0, p / (pb * pc).clamp_min(1e-300), torch.ones_like(p))
    return (p * ratio.log()).sum((2, 3))


def l1_path(X: Tensor, y: Tensor, *, n_values: int = 6, max_iter: int = 50) -> Tensor:
    """L1-logistic path score ``[L, d]``: the strongest penalty at which a neuron's weight becomes non-zero.

    Standardised neurons; penalties ``l1 = λ_max·10^{-3j/(P-1)}`` fitted from strong to weak (warm starts),
    each fit batched over all layers; ties broken by the weight at the weakest penalty.
    """
    from ..probes import fit_logistic

    L, _, d = X.shape
    mu = X.mean(1, keepdim=True)
    sd = X.std(1, keepdim=True).clamp_min(1e-8)
    Z = (X - mu) / sd
    yf = y.to(torch.float32)
    lam_max = (Z.mT @ (yf - yf.mean())).abs().amax(1).clamp_min(1e-6)  # [L]
    lams = [lam_max * 10 ** (-3 * j / max(n_values - 1, 1)) for j in range(n_values)]
    entered = torch.full((L, d), -1.0)
    init = None
    W = torch.zeros(L, d, 2)
    for j, lam in enumerate(lams):
        W, b = fit_logistic(Z, y, l2=1e-4, l1=lam * 0.98, n_classes=2, init=init, max_iter=max_iter, tol=1e-4)
        init = (W, b)
        nz = (W[..., 1] - W[..., 0]).abs() > 1e-8
        entered = torch.where(nz & (entered < 0), torch.full_like(entered, float(n_values - j)), entered)
    last = (W[..., 1] - W[..., 0]).abs()
    return entered.clamp_min(0) + last / (last.amax(1, keepdim=True) + 1e-12) * 0.5


def rank_scores(
    X: Any, y: Any, *, method: str = "mean_diff", seed: int = 0, stats: NeuronStats | None = None
) -> Tensor:
    """Ranking scores ``[L, d]`` (higher = more related to the label) of every neuron of every layer.

    Args:
        X: activations ``[L, n, d]`` (or ``[n, d]``).
        y: labels ``[n]``: 0/1 for the binary-only methods (``mean_diff``, ``l1``), ``0..K-1`` otherwise.
        method: one of :data:`RANKINGS`.
        seed: seed of the ``random`` ranking.
        stats: precomputed :class:`NeuronStats` of ``(X, y)`` (e.g. streamed from a store).

    Returns:
        float64 scores; constant neurons get ``-inf``.
    """
    if method not in RANKINGS:
        raise NeuronError(f"unknown ranking {method!r}; choose one of {', '.join(RANKINGS)}")
    X3 = as_acts(X)
    L, n, d = X3.shape
    if method in _BINARY_ONLY:
        yt = as_binary(y, n, what=f"the {method!r} ranking")
    else:
        yt = torch.as_tensor(np.asarray(y) if not isinstance(y, Tensor) else y).long()
        if yt.shape != (n,) or int(yt.min()) < 0:
            raise NeuronError(f"labels must be {n} class indices 0..K-1, got shape {tuple(yt.shape)}")
        if len(torch.unique(yt)) < 2:
            raise NeuronError("labels hold one class only; a ranking needs at least two classes")
    second = method in ("f_stat", "probeless")
    K = int(yt.max()) + 1
    st = stats if stats is not None else NeuronStats.zeros(L, d, K, second_moments=second)._add(X3, yt)
    dead = st.constant()
    if bool(dead.all()):
        raise NeuronError("every neuron is constant (zero variance) on these rows; nothing can be ranked")
    if method == "mean_diff":
        s = mean_diff(st)
    elif method == "f_stat":
        s = f_stat(st)
    elif method == "probeless":
        s = probeless(st)
    elif method == "mutual_info":
        s = mutual_info(X3, yt)
    elif method == "l1":
        s = l1_path(X3, yt).to(_F64)
    else:
        g = torch.Generator().manual_seed(int(seed))
        s = torch.rand(L, d, generator=g, dtype=_F64)
    s = s.to(_F64)
    return torch.where(dead | ~torch.isfinite(s), torch.full_like(s, -math.inf), s)


def top_neurons(scores: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` best neurons per layer ``[L, k]`` (best first); raises when fewer vary."""
    n_ok = torch.isfinite(scores).sum(1)
    if int(n_ok.min()) < k:
        layer = int(n_ok.argmin())
        raise NeuronError(
            f"k = {k} but only {int(n_ok.min())} neurons of layer {layer} vary (the rest are constant, zero "
            "variance); lower k or use a site/layer with more live neurons"
        )
    return scores.topk(k, dim=1).indices
