"""DeepView's discriminative distance, vectorised.

For two embeddings x and y, the segment between them is sampled at t_k = k / (n + 1), k = 0 … n + 1, the
classifier's class probabilities p_k are read at every sample, and the discriminative distance is the length
of that probability path under the Jensen–Shannon metric: d_disc(x, y) = Σ_k sqrt(JS(p_k, p_{k+1})).
It is 0 when the prediction does not change along the segment and grows with every boundary crossed.

Cost model (what makes this fast): the endpoint probabilities are computed once for all N points, and the
n interior samples of a whole block of pairs travel through the classifier in one batched call. Pairs are
restricted to each point's K structurally nearest candidates (K ≈ 3 × UMAP's n_neighbors) unless all pairs
are asked for.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._validation import ProbabilityError

STRUCT_METRICS = ("euclidean", "cosine")


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def pair_structural(x: np.ndarray, i: np.ndarray, j: np.ndarray, metric: str) -> np.ndarray:
    """Structural distance of each pair (i[k], j[k]): Euclidean or cosine (1 - cos)."""
    out = np.empty(len(i), dtype=np.float64)
    step = max(1, 4_000_000 // max(x.shape[1], 1))
    xu = _unit(x) if metric == "cosine" else x
    for s in range(0, len(i), step):
        a, b = xu[i[s : s + step]], xu[j[s : s + step]]
        if metric == "cosine":
            out[s : s + step] = np.clip(1.0 - np.einsum("bd,bd->b", a, b), 0.0, 2.0)
        else:
            out[s : s + step] = np.linalg.norm(a - b, axis=1)
    return out


def _row_block_distances(x: np.ndarray, rows: slice, metric: str, sq_norms: np.ndarray | None) -> np.ndarray:
    if metric == "cosine":
        return np.clip(1.0 - x[rows] @ x.T, 0.0, 2.0)
    assert sq_norms is not None
    d2 = sq_norms[rows, None] + sq_norms[None, :] - 2.0 * (x[rows] @ x.T)
    return np.sqrt(np.maximum(d2, 0.0))


def candidate_pairs(x: np.ndarray, k: int | None, metric: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Unordered pairs (i < j) to evaluate, and the largest structural distance over ALL pairs.

    With ``k`` (an int), pair i with its k structurally nearest points (the union over both directions, so
    the sparse matrix is symmetric); ``k=None`` gives all N(N-1)/2 pairs. Row blocks keep memory O(block·N).
    """
    n = x.shape[0]
    xs = _unit(x.astype(np.float64)) if metric == "cosine" else x.astype(np.float64)
    sq = (xs**2).sum(1) if metric == "euclidean" else None
    block = max(1, min(n, 8_000_000 // max(n, 1)))
    max_d = 0.0
    if k is None:
        for s in range(0, n, block):
            max_d = max(max_d, float(_row_block_distances(xs, slice(s, s + block), metric, sq).max()))
        i, j = np.triu_indices(n, k=1)
        return i.astype(np.int64), j.astype(np.int64), max_d
    k = min(k, n - 1)
    nbrs = np.empty((n, k), dtype=np.int64)
    for s in range(0, n, block):
        d = _row_block_distances(xs, slice(s, s + block), metric, sq)
        max_d = max(max_d, float(d.max()))
        rows = np.arange(s, min(s + block, n))
        d[rows - s, rows] = np.inf  # never pick yourself
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        nbrs[s : s + len(rows)] = part
    a = np.repeat(np.arange(n), k)
    b = nbrs.ravel()
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    key = np.unique(lo * n + hi)
    return (key // n).astype(np.int64), (key % n).astype(np.int64), max_d


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen–Shannon divergence (natural log) along the last axis; in [0, ln 2]."""
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0) / np.where(m > 0, m, 1.0)), 0.0)
        kl_q = np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0) / np.where(m > 0, m, 1.0)), 0.0)
    return np.clip(0.5 * kl_p.sum(-1) + 0.5 * kl_q.sum(-1), 0.0, np.log(2.0))


def path_distances(
    x: np.ndarray,
    p_end: np.ndarray,
    prob_fn: Callable[[np.ndarray], np.ndarray],
    i: np.ndarray,
    j: np.ndarray,
    *,
    n_steps: int,
    max_batch: int = 32_768,
) -> np.ndarray:
    """Discriminative (Jensen–Shannon path) distance of each pair (i[k], j[k]).

    Args:
        x: embeddings ``[N, D]``.
        p_end: class probabilities of every embedding ``[N, C]`` (computed once by the caller).
        prob_fn: maps ``[B, D]`` float32 embeddings to ``[B, C]`` probabilities.
        i, j: pair indices.
        n_steps: interior samples per segment (the segments are n_steps + 1).
        max_batch: the most path points sent to ``prob_fn`` in one call.
    """
    n_pairs = len(i)
    out = np.zeros(n_pairs, dtype=np.float64)
    if n_pairs == 0:
        return out
    if n_steps == 0:
        return np.sqrt(js_divergence(p_end[i], p_end[j]))
    d = x.shape[1]
    t = (np.arange(1, n_steps + 1, dtype=np.float32) / (n_steps + 1))[None, :, None]  # [1, n, 1]
    pairs_per_block = max(1, min(max_batch // n_steps, 50_000_000 // max(n_steps * d, 1)))
    c = p_end.shape[1]
    for s in range(0, n_pairs, pairs_per_block):
        bi, bj = i[s : s + pairs_per_block], j[s : s + pairs_per_block]
        xa, xb = x[bi][:, None, :], x[bj][:, None, :]
        path = (xa + t * (xb - xa)).reshape(-1, d)  # [B*n, D]
        p = np.asarray(prob_fn(path), dtype=np.float64)
        if p.shape != (len(bi) * n_steps, c):
            raise ProbabilityError(
                f"the probability function returned shape {p.shape} for {len(path)} path points; "
                f"expected ({len(path)}, {c})"
            )
        seq = np.concatenate([p_end[bi][:, None], p.reshape(len(bi), n_steps, c), p_end[bj][:, None]], axis=1)
        out[s : s + len(bi)] = np.sqrt(js_divergence(seq[:, :-1], seq[:, 1:])).sum(axis=1)
    return out
