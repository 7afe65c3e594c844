"""The inverse map 2-D → embedding space: kNN-weighted sources fitted by one sparse least-squares solve.

A 2-D point y maps to x̂(y) = Σ_i w_i(y) s_i over its k nearest training points in the map, with
w_i ∝ 1 / (1 + a·d_i²) (row-normalised, d in map units scaled to [0, 1]). The sources s_i start as the
training embeddings; instead of the reference's thousands of gradient steps on a dense N × N weight matrix,
we solve the normal equations of

    min_S ||W S − X||² + α ||S − X||²        (W: N × N sparse, k non-zeros per row)

directly, ``(WᵀW + αI) S = WᵀX + αX``, with one sparse LU factorisation for all D columns.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu
from scipy.spatial import cKDTree

from ..errors import ConfigError


@dataclasses.dataclass
class InverseMap:
    """kNN-weighted inverse projection (fit with :meth:`fit`, apply with :meth:`__call__`)."""

    k: int = 8
    a: float = 2000.0
    ridge: float = 0.01
    origin_: np.ndarray | None = None
    scale_: float = 1.0
    tree_: cKDTree | None = None
    sources_: np.ndarray | None = None

    def _weights(self, y: np.ndarray) -> sp.csr_matrix:
        assert self.tree_ is not None and self.origin_ is not None
        n_train = self.tree_.n
        k = min(self.k, n_train)
        u = (np.asarray(y, dtype=np.float64) - self.origin_) / self.scale_
        d, idx = self.tree_.query(u, k=k)
        if k == 1:
            d, idx = d[:, None], idx[:, None]
        w = 1.0 / (1.0 + self.a * d**2)
        w /= w.sum(axis=1, keepdims=True)
        rows = np.repeat(np.arange(len(u)), k)
        return sp.csr_matrix((w.ravel(), (rows, idx.ravel())), shape=(len(u), n_train))

    def fit(self, coords: np.ndarray, x: np.ndarray) -> InverseMap:
        """Fit sources so that the training points' 2-D coordinates map back to their embeddings."""
        coords = np.asarray(coords, dtype=np.float64)
        if coords.ndim != 2 or coords.shape[1] != 2 or len(coords) != len(x):
            raise ConfigError(f"inverse map: coords must be [N, 2] with N = {len(x)}, got {coords.shape}")
        if self.k < 1 or self.ridge <= 0 or self.a <= 0:
            raise ConfigError("inverse map: k >= 1, ridge > 0 and a > 0 are required")
        lo, hi = coords.min(0), coords.max(0)
        self.origin_ = lo
        self.scale_ = float(max((hi - lo).max(), 1e-12))
        self.tree_ = cKDTree((coords - lo) / self.scale_)
        w = self._weights(coords)
        xd = np.asarray(x, dtype=np.float64)
        lhs = (w.T @ w + self.ridge * sp.identity(len(xd), format="csr")).tocsc()
        rhs = w.T @ xd + self.ridge * xd
        lu = splu(lhs, permc_spec="MMD_AT_PLUS_A")
        rhs = np.asarray(rhs)
        # SuperLU's triangular solves are slow for many right-hand sides at once: small column blocks
        self.sources_ = np.column_stack(
            [lu.solve(np.ascontiguousarray(rhs[:, s : s + 16])) for s in range(0, rhs.shape[1], 16)]
        ).astype(np.float32)
        return self

    def __call__(self, y: np.ndarray) -> np.ndarray:
        """Map 2-D points ``[M, 2]`` to embeddings ``[M, D]`` (float32)."""
        if self.sources_ is None:
            raise ConfigError("inverse map is not fitted; call fit(coords, embeddings) first")
        return np.asarray(self._weights(y) @ self.sources_, dtype=np.float32)
