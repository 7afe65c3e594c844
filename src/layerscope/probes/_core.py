"""Additive sufficient statistics of a probing task, and shared helpers for the batched solvers."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from layerscope.probes._validation import ProbeDataError, as_float_tensor, as_layers

Tensor = torch.Tensor
_F64 = torch.float64
_CHUNK_ROWS = 8192


@dataclasses.dataclass
class SufficientStats:
    """Additive per-layer statistics of a probing task: one pass gives every closed-form probe.

    Two ``SufficientStats`` of disjoint samples add up (``a + b``) to the statistics of their union, which
    makes streamed and distributed fitting a map (per shard) and a sum (reduce). All tensors are float64.

    Attributes:
        n: number of samples.
        counts: samples per class ``[K]`` (``K = 0`` for a regression task).
        class_sums: per-class feature sums ``[L, K, d]``.
        xtx: uncentred Gram matrix ``XᵀX`` ``[L, d, d]``.
        sum_x: feature sums ``[L, d]``.
        xty: ``XᵀY`` ``[L, d, T]`` (``Y`` one-hot for classification).
        sum_y: target sums ``[T]``.
    """

    n: int
    counts: Tensor
    class_sums: Tensor
    xtx: Tensor
    sum_x: Tensor
    xty: Tensor
    sum_y: Tensor
    _eigh: tuple[Tensor, Tensor] | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def n_layers(self) -> int:
        """Number of layers ``L``."""
        return int(self.xtx.shape[0])

    @property
    def n_features(self) -> int:
        """Feature dimension ``d``."""
        return int(self.xtx.shape[-1])

    @property
    def n_classes(self) -> int:
        """Number of classes ``K`` (0 for a regression task)."""
        return int(self.counts.shape[0])

    @property
    def is_classification(self) -> bool:
        """Whether the statistics belong to a classification task."""
        return self.n_classes > 0

    @classmethod
    def zeros(
        cls, n_layers: int, n_features: int, *, n_classes: int = 0, n_targets: int = 0
    ) -> SufficientStats:
        """Empty statistics (the identity of ``+``) for a classification (``n_classes``) or regression task."""
        L, d, K = n_layers, n_features, n_classes
        T = K if K > 0 else n_targets
        return cls(
            n=0,
            counts=torch.zeros(K, dtype=_F64),  # [K]
            class_sums=torch.zeros(L, K, d, dtype=_F64),  # [L, K, d]
            xtx=torch.zeros(L, d, d, dtype=_F64),  # [L, d, d]
            sum_x=torch.zeros(L, d, dtype=_F64),  # [L, d]
            xty=torch.zeros(L, d, T, dtype=_F64),  # [L, d, T]
            sum_y=torch.zeros(T, dtype=_F64),  # [T]
        )

    @classmethod
    def from_arrays(
        cls,
        X: Any,
        y: Any,
        n_classes: int | None = None,
        *,
        task: str = "auto",
        mixed_precision: bool = False,
    ) -> SufficientStats:
        """Statistics of ``X [L, n, d]`` (or ``[n, d]``) with labels or targets ``y``.

        Args:
            X: activations, numpy or torch, any float dtype (accumulated in float64 by row chunks).
            y: integer class labels ``0..K-1`` ``[n]`` (classification) or float targets ``[n]``/``[n, T]``.
            n_classes: number of classes (default ``max(y) + 1``); only for classification.
            task: ``"classification"``, ``"regression"`` or ``"auto"`` (integer/bool ``y`` → classification).
            mixed_precision: see :meth:`update`.

        Returns:
            The statistics.
        """
        X3 = as_layers(X)
        y_t = torch.as_tensor(np.asarray(y) if not isinstance(y, Tensor) else y)
        classify = _is_classification(y_t, task)
        L, _, d = X3.shape
        if classify:
            K = int(n_classes) if n_classes is not None else (int(y_t.max()) + 1 if y_t.numel() else 0)
            out = cls.zeros(L, d, n_classes=K)
        else:
            T = 1 if y_t.ndim == 1 else int(y_t.shape[1])
            out = cls.zeros(L, d, n_targets=T)
        return out.update(X3, y_t, mixed_precision=mixed_precision)

    def update(self, X: Any, y: Any, *, mixed_precision: bool = False) -> SufficientStats:
        """Add the samples ``(X, y)`` to these statistics in place (streaming); returns ``self``.

        Args:
            X: ``[L, n, d]`` (or ``[n, d]`` when ``L = 1``).
            y: labels ``[n]`` (classification) or targets ``[n]``/``[n, T]`` (regression).
            mixed_precision: form each row chunk's products in float32 (accumulated in float64), 2-3× faster.
                Meant for centred/standardised float32/float16 activations, whose own precision is far
                coarser; keep False for raw activations with large means (cancellation when centring).
        """
        X3 = as_layers(X)
        y_t = torch.as_tensor(np.asarray(y) if not isinstance(y, Tensor) else y)
        if X3.shape[0] != self.n_layers or X3.shape[2] != self.n_features:
            raise ProbeDataError(
                f"X has {X3.shape[0]} layers × {X3.shape[2]} features; these statistics have "
                f"{self.n_layers} × {self.n_features}"
            )
        if y_t.shape[0] != X3.shape[1]:
            raise ProbeDataError(f"X has {X3.shape[1]} samples but y has {y_t.shape[0]}")
        Y = self._targets(y_t)  # [n, T] float64
        work = torch.float32 if mixed_precision and X3.dtype != _F64 else _F64
        Ya = torch.cat([Y, torch.ones(Y.shape[0], 1, dtype=_F64)], 1).to(work)  # [n, T+1]: sums ride along
        for start in range(0, X3.shape[1], _CHUNK_ROWS):  # row chunks bound the float64 copy
            xc = X3[:, start : start + _CHUNK_ROWS].to(work)  # [L, c, d]
            self.xtx += (xc.mT @ xc).to(_F64)
            prod = (xc.mT @ Ya[start : start + _CHUNK_ROWS]).to(_F64)  # [L, d, T+1]
            self.xty += prod[..., :-1]
            self.sum_x += prod[..., -1]
        if self.is_classification:
            self.counts += Y.sum(0)
            self.class_sums.copy_(self.xty.mT)
        self.sum_y += Y.sum(0)
        self.n += int(X3.shape[1])
        self._eigh = None
        return self

    def _targets(self, y: Tensor) -> Tensor:
        """Targets as a float64 matrix ``[n, T]`` (one-hot for classification)."""
        if self.is_classification:
            yl = y.long()
            if yl.numel() and (int(yl.min()) < 0 or int(yl.max()) >= self.n_classes):
                raise ProbeDataError(
                    f"labels must lie in 0..{self.n_classes - 1}, got {int(yl.min())}..{int(yl.max())}"
                )
            return torch.nn.functional.one_hot(yl, self.n_classes).to(_F64)
        Y = y.to(_F64)
        return Y[:, None] if Y.ndim == 1 else Y

    def __add__(self, other: SufficientStats) -> SufficientStats:
        """Statistics of the union of two disjoint sample sets."""
        if not isinstance(other, SufficientStats):
            return NotImplemented
        if other.xtx.shape != self.xtx.shape or other.xty.shape != self.xty.shape:
            raise ProbeDataError(
                "cannot add statistics of different shapes (layers, features, classes/targets)"
            )
        return SufficientStats(
            n=self.n + other.n,
            counts=self.counts + other.counts,
            class_sums=self.class_sums + other.class_sums,
            xtx=self.xtx + other.xtx,
            sum_x=self.sum_x + other.sum_x,
            xty=self.xty + other.xty,
            sum_y=self.sum_y + other.sum_y,
        )

    def scaled(self, factor: Tensor) -> SufficientStats:
        """Statistics of ``X·diag(factor)`` (per-layer feature scaling ``[L, d]``), computed exactly."""
        f = factor.to(_F64)
        return SufficientStats(
            n=self.n,
            counts=self.counts.clone(),
            class_sums=self.class_sums * f[:, None, :],
            xtx=self.xtx * f[:, :, None] * f[:, None, :],
            sum_x=self.sum_x * f,
            xty=self.xty * f[:, :, None],
            sum_y=self.sum_y.clone(),
        )

    @staticmethod
    def merge(parts: Iterable[SufficientStats]) -> SufficientStats:
        """Sum of several statistics (the reduce step of a distributed fit)."""
        items = list(parts)
        if not items:
            raise ProbeDataError("merge needs at least one SufficientStats")
        total = items[0]
        for part in items[1:]:
            total = total + part
        return total

    def mean(self) -> Tensor:
        """Feature means ``[L, d]``."""
        return self.sum_x / max(self.n, 1)

    def centred_xtx(self) -> Tensor:
        """Centred scatter matrix ``Σ (x - x̄)(x - x̄)ᵀ`` ``[L, d, d]``."""
        mu = self.mean()
        return self.xtx - self.n * mu[:, :, None] * mu[:, None, :]

    def centred_eigh(self) -> tuple[Tensor, Tensor]:
        """Eigendecomposition of :meth:`centred_xtx` (``[L, d]`` ascending, ``[L, d, d]``), computed once."""
        if self._eigh is None:
            evals, V = torch.linalg.eigh(self.centred_xtx())  # [L, d], [L, d, d]
            self._eigh = (evals.clamp_min(0.0), V)
        return self._eigh

    def centred_xty(self) -> Tensor:
        """Centred cross-products ``Σ (x - x̄)(y - ȳ)ᵀ`` ``[L, d, T]``."""
        ybar = self.sum_y / max(self.n, 1)
        return self.xty - self.sum_x[:, :, None] * ybar[None, None, :]

    def class_means(self) -> Tensor:
        """Per-class feature means ``[L, K, d]`` (zero for an empty class)."""
        return self.class_sums / self.counts.clamp_min(1.0)[None, :, None]

    def within_scatter(self) -> Tensor:
        """Pooled within-class scatter ``Σ_k Σ_{i∈k} (x - μ_k)(x - μ_k)ᵀ`` ``[L, d, d]``."""
        between = self.class_sums.mT @ (self.class_sums / self.counts.clamp_min(1.0)[None, :, None])
        return self.xtx - between


def _is_classification(y: Tensor, task: str) -> bool:
    if task == "classification":
        return True
    if task == "regression":
        return False
    if task != "auto":
        raise ProbeDataError(f"task must be 'auto', 'classification' or 'regression', got {task!r}")
    return not torch.is_floating_point(y) and not torch.is_complex(y)


def _grid(values: Any, n_layers: int) -> Tensor:
    """Regularisation values as a float64 ``[L, G]`` tensor (from a scalar, ``[G]`` or ``[L, G]``)."""
    t = torch.as_tensor(values, dtype=_F64)
    if t.ndim == 0:
        t = t.reshape(1, 1)
    elif t.ndim == 1:
        t = t[None, :]
    if t.ndim != 2 or t.shape[0] not in (1, n_layers):
        raise ProbeDataError(
            f"regularisation values must be a scalar, [G] or [L={n_layers}, G]; got {tuple(t.shape)}"
        )
    if bool((t < 0).any()) or not bool(torch.isfinite(t).all()):
        raise ProbeDataError("regularisation values must be finite and >= 0")
    return t.expand(n_layers, t.shape[1])


def predict_logits(X: Any, W: Tensor, b: Tensor) -> Tensor:
    """Scores ``X @ W + b`` for every layer.

    Args:
        X: ``[L, n, d]`` (or ``[n, d]``).
        W: ``[L, d, K]`` (or ``[L, G, d, K]`` for a path).
        b: ``[L, K]`` (or ``[L, G, K]``).

    Returns:
        ``[L, n, K]`` (or ``[L, G, n, K]``), in ``W``'s dtype.
    """
    X3 = as_float_tensor(as_layers(X)).to(W.dtype)
    if W.ndim == 4:  # one matmul per layer for the whole path: W as [L, d, G·K]
        L, G, d, K = W.shape
        Wp = W.permute(0, 2, 1, 3).reshape(L, d, G * K)
        Z = torch.baddbmm(b.reshape(L, 1, G * K), X3, Wp)  # [L, n, G·K]
        return Z.view(L, -1, G, K).permute(0, 2, 1, 3)  # [L, G, n, K]
    return torch.baddbmm(b[:, None, :], X3, W)  # [L, n, K]
