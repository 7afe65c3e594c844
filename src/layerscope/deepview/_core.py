"""DeepView (Schulz, Hinder & Hammer 2020): a 2-D map of a classifier's decision function with its data.

Pipeline for one (embeddings, probability function) pair:

1. class probabilities of every point (once), checked to be a probability simplex;
2. candidate pairs (each point's K structurally nearest, or all pairs), their structural distance and their
   discriminative (Jensen–Shannon path) distance, computed once and shared by every λ preset;
3. per λ: D = λ·D_struct / max D_struct + (1 − λ)·D_disc / max D_disc as a sparse symmetric matrix, UMAP
   (precomputed sparse distances) to 2-D, the inverse map, a resolution² grid inverse-mapped and classified
   in one batch, and Q_kNN.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import ConfigError
from ._distance import STRUCT_METRICS, candidate_pairs, pair_structural, path_distances
from ._inverse import InverseMap
from ._validation import (
    ProbFn,
    SingleClassError,
    check_embeddings,
    check_lambdas,
    check_n_points,
    check_probabilities,
)
from .result import DeepViewResult

log = logging.getLogger(__name__)

DEFAULT_LAMBDAS = (0.0, 0.5, 0.65, 0.8, 1.0)


def prob_fn_from_module(
    module: Any, *, outputs: str = "logits", batch_size: int = 65_536, device: str | None = None
) -> ProbFn:
    """Wrap a torch module (embeddings → logits or probabilities) as a numpy probability function.

    Args:
        module: maps a float tensor ``[B, D]`` to ``[B, C]``.
        outputs: ``"logits"`` (a softmax is applied) or ``"probs"`` (used as is).
        batch_size: the most rows per forward call.
        device: where to run (default: the module's first parameter's device).
    """
    import torch

    if outputs not in ("logits", "probs"):
        raise ConfigError(f"outputs must be 'logits' or 'probs', got {outputs!r}")
    p0 = next(iter(module.parameters()), None) if hasattr(module, "parameters") else None
    dev = torch.device(device) if device else (p0.device if p0 is not None else torch.device("cpu"))
    dtype = p0.dtype if p0 is not None else torch.float32

    def fn(x: np.ndarray) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for s in range(0, len(x), batch_size):
                xb = torch.from_numpy(np.ascontiguousarray(x[s : s + batch_size])).to(dev, dtype)
                y = module(xb)
                y = torch.softmax(y.float(), dim=-1) if outputs == "logits" else y.float()
                out.append(y.cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    return fn


def q_knn(coords: np.ndarray, labels: np.ndarray, *, k: int = 5) -> float:
    """Leave-one-out k-NN error of a 2-D map against ``labels`` (lower = classes better separated)."""
    from sklearn.neighbors import NearestNeighbors

    coords = np.asarray(coords, dtype=np.float64)
    labels = np.asarray(labels)
    check_n_points(len(coords), k, what="Q_kNN's k")
    nn = NearestNeighbors(n_neighbors=k + 1).fit(coords)
    _, idx = nn.kneighbors(coords)
    # drop each point itself (it is not always column 0 when points coincide)
    own = idx == np.arange(len(coords))[:, None]
    drop_last = ~own.any(axis=1)
    keep = ~own
    keep[drop_last, -1] = False
    nbr = idx[keep].reshape(len(coords), k)
    classes, inv = np.unique(labels, return_inverse=True)
    votes = np.zeros((len(coords), len(classes)), dtype=np.int64)
    np.add.at(votes, (np.repeat(np.arange(len(coords)), k), inv[nbr].ravel()), 1)
    return float(np.mean(votes.argmax(axis=1) != inv))


def _umap_2d(dist: sp.csr_matrix, *, n_neighbors: int, min_dist: float, seed: int) -> np.ndarray:
    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n_jobs/random_state and disconnected-vertex chatter
        reducer = umap.UMAP(
            n_components=2,
            metric="precomputed",
            n_neighbors=n_neighbors,
            min_dist=min_dist,
            random_state=seed,
            n_jobs=1,
        )
        return np.asarray(reducer.fit_transform(dist), dtype=np.float32)


def _grid(coords: np.ndarray, resolution: int, margin: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = coords.min(0), coords.max(0)
    span = np.maximum(hi - lo, 1e-6)
    lo, hi = lo - margin * span, hi + margin * span
    gx = np.linspace(lo[0], hi[0], resolution)
    gy = np.linspace(lo[1], hi[1], resolution)
    xx, yy = np.meshgrid(gx, gy)  # row = y, column = x
    extent = np.array([lo[0], hi[0], lo[1], hi[1]], dtype=np.float64)
    return np.stack([xx.ravel(), yy.ravel()], axis=1), extent


def _batched(prob_fn: ProbFn, x: np.ndarray, n_classes: int, batch: int = 16_384) -> np.ndarray:
    parts = [
        check_probabilities(prob_fn(x[s : s + batch]), len(x[s : s + batch]), n_classes=n_classes)
        for s in range(0, len(x), batch)
    ]
    return np.concatenate(parts)


def _pair_distances(
    x: np.ndarray,
    probs: np.ndarray,
    prob_fn: ProbFn,
    *,
    metric: str,
    n_steps: int,
    k_cand: int | None,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (i < j) with their normalised structural and discriminative distances."""
    n = len(x)
    i, j, max_struct = candidate_pairs(x, k_cand, metric)
    if k_cand is not None:  # random extra pairs: a better estimate of max D_disc, a few long-range edges
        rng = np.random.default_rng(seed)
        a, b = rng.integers(0, n, size=n), rng.integers(0, n, size=n)
        ok = a != b
        lo_, hi_ = np.minimum(a[ok], b[ok]), np.maximum(a[ok], b[ok])
        key = np.unique(np.concatenate([i * n + j, lo_ * n + hi_]))
        i, j = key // n, key % n
    d_struct = pair_structural(x, i, j, metric)
    d_disc = path_distances(x, probs, prob_fn, i, j, n_steps=n_steps)
    s_norm = d_struct / max(max_struct, 1e-12)
    max_disc = float(d_disc.max()) if len(d_disc) else 0.0
    d_norm = d_disc / max_disc if max_disc > 0 else np.zeros_like(d_disc)
    return i, j, s_norm, d_norm


def _to_csr(n: int, i: np.ndarray, j: np.ndarray, d: np.ndarray) -> sp.csr_matrix:
    """Symmetric sparse distance matrix with an explicit zero diagonal (the layout UMAP expects)."""
    d = np.maximum(d, 1e-9)  # stored entries: an exact zero would read as "no edge"
    rows = np.concatenate([i, j, np.arange(n)])
    cols = np.concatenate([j, i, np.arange(n)])
    vals = np.concatenate([d, d, np.zeros(n)])
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, n))


def distance_matrix(
    embeddings: Any,
    prob_fn: ProbFn,
    *,
    lam: float = 0.65,
    metric: str = "euclidean",
    n_steps: int = 5,
    candidates: int | str = "all",
    seed: int = 0,
) -> sp.csr_matrix:
    """DeepView's combined distance λ·D_struct/max + (1 − λ)·D_disc/max as a symmetric sparse ``[N, N]`` matrix.

    ``candidates="all"`` fills every pair; an int k keeps each point's k structurally nearest (plus N random
    pairs). Stored zero distances are raised to 1e-9 so that they stay entries; the diagonal is 0.
    """
    x = check_embeddings(embeddings)
    (lv,) = check_lambdas(lam)
    if metric not in STRUCT_METRICS:
        raise ConfigError(f"metric must be one of {STRUCT_METRICS}, got {metric!r}")
    probs = check_probabilities(prob_fn(x), len(x))
    if candidates != "all" and not (isinstance(candidates, int | np.integer) and candidates >= 1):
        raise ConfigError(f"candidates must be 'all' or a positive int, got {candidates!r}")
    k_cand = None if candidates == "all" else min(len(x) - 1, int(candidates))
    i, j, s_norm, d_norm = _pair_distances(
        x, probs, prob_fn, metric=metric, n_steps=n_steps, k_cand=k_cand, seed=seed
    )
    return _to_csr(len(x), i, j, lv * s_norm + (1.0 - lv) * d_norm)


def deepview(
    embeddings: Any,
    prob_fn: ProbFn,
    *,
    labels: Sequence[Any] | np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    texts: Sequence[str] | None = None,
    point_kind: Sequence[str] | None = None,
    lambdas: float | Sequence[float] = 0.65,
    metric: str = "euclidean",
    n_steps: int = 5,
    n_neighbors: int = 30,
    candidates: int | str = "auto",
    min_dist: float = 0.1,
    resolution: int = 100,
    inverse_k: int = 8,
    q_k: int = 5,
    seed: int = 0,
    name: str = "",
    log_fn: Callable[[str], Any] | None = None,
) -> DeepViewResult:
    """Build DeepView maps of ``prob_fn`` around ``embeddings`` for one or more λ presets.

    Args:
        embeddings: ``[N, D]`` points (sentence vectors, image features, raw 2-D data …).
        prob_fn: maps a float32 ``[B, D]`` array to class probabilities ``[B, C]`` (rows sum to 1);
            use :func:`prob_fn_from_module` for a torch head.
        labels: true labels (ints into ``class_names``, or class-name strings); marks misclassified points.
        class_names: names of the C classes (default ``"0" … "C-1"``).
        texts: one string per point, shown on hover.
        point_kind: per point ``"data"`` (default) or another tag such as ``"adversarial"`` (drawn apart).
        lambdas: λ preset(s) in [0, 1]; 1 = structural distance only, 0 = discriminative only.
        metric: structural distance, ``"euclidean"`` or ``"cosine"`` (Roberts et al. use cosine for text).
        n_steps: interior samples on each segment (the papers: 5 for images, 10 for text).
        n_neighbors: UMAP's neighbourhood size.
        candidates: pairs evaluated per point: ``"auto"`` (3 × n_neighbors nearest), an int, or ``"all"``.
        min_dist: UMAP's min_dist.
        resolution: the background grid is resolution × resolution.
        inverse_k: neighbours per inverse-mapped point.
        q_k: k of the Q_kNN score.
        seed: UMAP's random state.
        name: a short name shown in titles.
        log_fn: called with progress lines (e.g. ``print``).

    Returns:
        A :class:`DeepViewResult` holding one map per λ.
    """
    say = log_fn or (lambda _msg: None)
    x = check_embeddings(embeddings)
    n = x.shape[0]
    lam = check_lambdas(lambdas)
    if metric not in STRUCT_METRICS:
        raise ConfigError(f"metric must be one of {STRUCT_METRICS}, got {metric!r}")
    for nm, v, lo in (
        ("n_steps", n_steps, 0),
        ("n_neighbors", n_neighbors, 2),
        ("resolution", resolution, 2),
        ("q_k", q_k, 1),
        ("inverse_k", inverse_k, 1),
    ):
        if not isinstance(v, int | np.integer) or v < lo:
            raise ConfigError(f"{nm} must be an integer >= {lo}, got {v!r}")
    check_n_points(n, n_neighbors)
    check_n_points(n, q_k, what="Q_kNN's k")
    if candidates == "all":
        k_cand: int | None = None
    elif candidates == "auto":
        k_cand = min(n - 1, 3 * n_neighbors)
    elif isinstance(candidates, int | np.integer) and candidates >= n_neighbors:
        k_cand = min(n - 1, int(candidates))
    else:
        raise ConfigError(
            f"candidates must be 'auto', 'all' or an int >= n_neighbors ({n_neighbors}), got {candidates!r}"
        )
    kinds = list(point_kind) if point_kind is not None else ["data"] * n
    if len(kinds) != n:
        raise ConfigError(f"point_kind has {len(kinds)} entries for {n} points")
    if texts is not None and len(texts) != n:
        raise ConfigError(f"texts has {len(texts)} entries for {n} points")

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    probs_raw = prob_fn(x)
    probs = check_probabilities(probs_raw, n)
    c = probs.shape[1]
    pred = probs.argmax(1)
    if len(np.unique(pred)) < 2:
        raise SingleClassError(
            f"the classifier predicts class {int(pred[0])} for all {n} points, so there is no decision boundary "
            "to map; use points from more than one predicted class (or check that the model is trained)"
        )
    names = [str(s) for s in class_names] if class_names is not None else [str(i) for i in range(c)]
    if len(names) != c:
        raise ConfigError(f"class_names has {len(names)} names but the classifier returns {c} classes")
    y_true = _encode_labels(labels, names, n)

    # -- distances, shared by all λ -------------------------------------------------------------------------
    t1 = time.perf_counter()
    i, j, s_norm, d_norm = _pair_distances(
        x, probs, prob_fn, metric=metric, n_steps=n_steps, k_cand=k_cand, seed=seed
    )
    timings["distances"] = time.perf_counter() - t1
    say(
        f"deepview: {len(i)} pairs, {len(i) * n_steps + n} classifier evaluations ({timings['distances']:.1f}s)"
    )

    coords_all, grid_cls, grid_ent, extents, q_scores, q_true = [], [], [], [], [], []
    for lv in lam:
        t2 = time.perf_counter()
        dist = _to_csr(n, i, j, lv * s_norm + (1.0 - lv) * d_norm)
        coords = _umap_2d(dist, n_neighbors=n_neighbors, min_dist=min_dist, seed=seed)
        t3 = time.perf_counter()
        inv = InverseMap(k=inverse_k).fit(coords, x)
        grid_pts, extent = _grid(coords, resolution)
        gp = _batched(prob_fn, inv(grid_pts), c)
        ent = -(gp * np.log(np.clip(gp, 1e-12, 1.0))).sum(1) / np.log(c)
        coords_all.append(coords)
        grid_cls.append(gp.argmax(1).reshape(resolution, resolution).astype(np.int64))
        grid_ent.append(ent.reshape(resolution, resolution).astype(np.float32))
        extents.append(extent)
        data_mask = np.array([k == "data" for k in kinds])
        q_scores.append(q_knn(coords[data_mask], pred[data_mask], k=q_k) if data_mask.sum() > q_k else np.nan)
        has_y = data_mask & (y_true >= 0)
        q_true.append(q_knn(coords[has_y], y_true[has_y], k=q_k) if has_y.sum() > q_k else np.nan)
        timings[f"umap λ={lv:g}"] = t3 - t2
        timings[f"inverse+grid λ={lv:g}"] = time.perf_counter() - t3
        say(f"deepview λ={lv:g}: Q_kNN {q_scores[-1]:.3f} ({time.perf_counter() - t2:.1f}s)")
    timings["total"] = time.perf_counter() - t0
    return DeepViewResult(
        name=name,
        lambdas=tuple(lam),
        coords=np.stack(coords_all),
        grid_classes=np.stack(grid_cls),
        grid_entropy=np.stack(grid_ent),
        grid_extent=np.stack(extents),
        q_knn=np.asarray(q_scores, dtype=np.float64),
        q_knn_true=np.asarray(q_true, dtype=np.float64),
        probs=probs.astype(np.float32),
        labels=y_true,
        class_names=names,
        texts=[str(t) for t in texts] if texts is not None else [],
        point_kind=kinds,
        params={
            "metric": metric,
            "n_steps": n_steps,
            "n_neighbors": n_neighbors,
            "candidates": "all" if k_cand is None else k_cand,
            "n_pairs": len(i),
            "min_dist": min_dist,
            "resolution": resolution,
            "inverse_k": inverse_k,
            "q_k": q_k,
            "seed": seed,
        },
        timings={k: round(v, 3) for k, v in timings.items()},
    )


def _encode_labels(labels: Any, names: list[str], n: int) -> np.ndarray:
    if labels is None:
        return np.full(n, -1, dtype=np.int64)
    arr = np.asarray(labels)
    if arr.shape != (n,):
        raise ConfigError(f"labels must have one entry per point ({n}), got shape {arr.shape}")
    if arr.dtype.kind in "iu":
        if arr.min() < -1 or arr.max() >= len(names):
            raise ConfigError(f"integer labels must lie in [0, {len(names) - 1}] (or -1 for unknown)")
        return arr.astype(np.int64)
    lookup = {nm: k for k, nm in enumerate(names)}
    unknown = sorted({str(v) for v in arr if str(v) not in lookup})
    if unknown:
        raise ConfigError(f"labels {unknown[:5]} are not among class_names {names}")
    return np.array([lookup[str(v)] for v in arr], dtype=np.int64)
