"""``sparse_probe``: k-sparse probes for every layer and every k (Gurnee et al. 2023), batched over layers.

For each binary target (a feature, or one class of a multi-class task, one-vs-rest) and each k, the probe is a
class-balanced L2 logistic regression (scikit-learn's ``LogisticRegression(class_weight='balanced')``
objective) on k selected neurons; rankings, candidate gathering, sufficient statistics and metrics are batched
over layers, and the nested top-k fits of a layer share one gather, one preconditioner and warm starts
(:func:`~layerscope.neurons._fit.fit_nested`); selection is a ranking
(:mod:`~layerscope.neurons.rankings`), the telescopic elastic-net re-ranking, or the closed-form small-k
search (:mod:`~layerscope.neurons.search`). Items are split 70/30 into train/test by group (example).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ._common import GURNEE_KS, NeuronError, Tensor, as_acts, as_binary, check_ks
from ._fit import METRICS, binary_metrics, fit_binary, fit_nested, scores_of
from .rankings import RANKINGS, rank_scores, top_neurons
from .result import SparseProbeResult
from .search import small_k_search

METHODS: tuple[str, ...] = (*RANKINGS, "telescopic", "search")
SEARCH_MAX_K = 16


def split_items(n: int, *, groups: Any = None, test_size: float = 0.3, seed: int = 0) -> np.ndarray:
    """Boolean test mask ``[n]``: a seeded ``test_size`` share of the groups (examples) goes to test."""
    if not 0 < test_size < 1:
        raise NeuronError(f"test_size must lie in (0, 1), got {test_size}")
    g = np.arange(n) if groups is None else np.asarray(groups)
    if g.shape != (n,):
        raise NeuronError(f"groups must have one value per row ({n}), got shape {g.shape}")
    uniq, inv = np.unique(g, return_inverse=True)
    rng = np.random.default_rng([int(seed), 0x5A11])  # a stream of its own, not the user's seed stream
    test_groups = rng.random(len(uniq)) < test_size
    return test_groups[inv]


def _rows(
    metrics: dict[str, Tensor], idx: Tensor, k: int, method: str, layers: Sequence[Any]
) -> list[dict[str, Any]]:
    out = []
    for li, layer in enumerate(layers):
        row: dict[str, Any] = {"layer": layer, "method": method, "k": k}
        row.update({m: float(metrics[m][li]) for m in METRICS})
        row["neurons"] = ",".join(str(int(j)) for j in idx[li].tolist())
        out.append(row)
    return out


def sweep_binary(
    Xtr: Tensor,
    ytr: Tensor,
    Xte: Tensor,
    yte: Tensor,
    *,
    ks: Sequence[int],
    method: str,
    C: float = 1.0,
    seed: int = 0,
    max_iter: int = 100,
    tol: float = 1e-4,
    n_candidates: int = 50,
    layers: Sequence[Any] | None = None,
) -> tuple[list[dict[str, Any]], Tensor]:
    """One binary target: metrics rows for every (layer, k), and the ranking scores ``[L, d]`` used.

    ``Xtr``/``Xte`` are ``[L, n, d]``; ``ytr``/``yte`` 0/1 labels.
    """
    L, _, d = Xtr.shape
    layers = list(range(L)) if layers is None else list(layers)
    ks = check_ks(ks, d)
    ar = torch.arange(L)
    rank_method = method if method in RANKINGS else "mean_diff"
    scores = rank_scores(Xtr, ytr, method=rank_method, seed=seed)
    kmax = max(ks)
    rows: list[dict[str, Any]] = []

    def evaluate(idx: Tensor, k: int, name: str) -> None:
        w, b = fit_binary(Xtr, ytr, ar, idx, C=C, max_iter=max_iter, tol=tol)
        rows.extend(_rows(binary_metrics(scores_of(Xte, ar, idx, w, b), yte), idx, k, name, layers))

    if method in RANKINGS:
        order = top_neurons(scores, kmax)
        gidx = order[:, None, :]
        Xtop_tr = torch.gather(Xtr, 2, gidx.expand(-1, Xtr.shape[1], -1))  # [L, n_train, kmax], once
        Xtop_te = torch.gather(Xte, 2, gidx.expand(-1, Xte.shape[1], -1))
        fits = fit_nested(Xtop_tr, ytr, ks, C=C, max_iter=max_iter, tol=tol)
        for k in ks:
            w, b = fits[k]
            s_te = torch.baddbmm(b[:, None, None], Xtop_te[:, :, :k], w[:, :, None])[..., 0]  # [L, n_test]
            rows.extend(_rows(binary_metrics(s_te, yte), order[:, :k], k, method, layers))
    elif method == "telescopic":
        cand = top_neurons(scores, kmax)
        for k in sorted(ks, reverse=True):
            if cand.shape[1] > k:
                c_k = k / 20
                ratio = float(np.clip(math.exp(-k / 20), 0.1, 0.9))
                w_en, _ = fit_binary(Xtr, ytr, ar, cand, C=c_k, l1_ratio=ratio, max_iter=10, tol=1e-3)
                keep = torch.argsort(w_en.abs(), dim=1, descending=True, stable=True)[:, :k]
                cand = cand.gather(1, keep)
            evaluate(cand, k, method)
    elif method == "search":
        small = [k for k in ks if k <= SEARCH_MAX_K]
        m = max(min(n_candidates, int(torch.isfinite(scores).sum(1).min())), max(small, default=1))
        md = top_neurons(scores, max(m, kmax))
        found = small_k_search(Xtr, ytr, small, candidates=md[:, :m]) if small else {}
        for k in ks:
            if k not in found:  # above the search range: the mean-difference top-k
                evaluate(md[:, :k], k, method)
                continue
            both = torch.cat([found[k], md[:, :k]])  # [2L, k]: search subset, mean-difference subset
            lay = torch.cat([ar, ar])
            w, b = fit_binary(Xtr, ytr, lay, both, C=C, max_iter=max_iter, tol=tol)
            f1_tr = binary_metrics(scores_of(Xtr, lay, both, w, b), ytr)["f1"]
            pick = f1_tr[L:] > f1_tr[:L]  # the mean-difference subset only when strictly better in training
            sel = torch.where(pick, ar + L, ar)
            te = binary_metrics(scores_of(Xte, lay[sel], both[sel], w[sel], b[sel]), yte)
            rows.extend(_rows(te, both[sel], k, method, layers))
    else:
        raise NeuronError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    return rows, scores


def _random_rotation(X: Tensor, seed: int) -> Tensor:
    """``X`` in a seeded random orthonormal basis per layer (Haar-distributed, QR with sign fix)."""
    L, _, d = X.shape
    g = torch.Generator().manual_seed(int(seed) + 7919)
    out = torch.empty_like(X)
    for li in range(L):  # one d×d QR per layer bounds memory to one rotation at a time
        A = torch.randn(d, d, generator=g, dtype=torch.float64)
        Q, R = torch.linalg.qr(A)
        Q = (Q * torch.sign(torch.diagonal(R))[None, :]).float()
        out[li] = X[li] @ Q
    return out


def _targets(labels: Any, n: int, multiclass: str) -> dict[str, np.ndarray]:
    """``{target name: int labels with -1 for rows left out}`` from the user's labels."""
    if isinstance(labels, Mapping):
        out = {}
        for name, lab in labels.items():
            arr = np.asarray(lab)
            if arr.shape != (n,):
                raise NeuronError(f"labels {name!r} have shape {arr.shape}; need one label per row ({n})")
            out[str(name)] = arr.astype(np.int64)
        return out
    arr = np.asarray(labels)
    if arr.shape != (n,):
        raise NeuronError(f"labels have shape {arr.shape}; need one label per row ({n})")
    if arr.dtype.kind in "US O".replace(" ", ""):
        classes = sorted({str(v) for v in arr if v is not None})
        ids = np.array([classes.index(str(v)) if v is not None else -1 for v in arr])
    else:
        classes = [str(c) for c in sorted(set(arr[arr >= 0].tolist()))]
        ids = arr.astype(np.int64)
    values = sorted(set(ids[ids >= 0].tolist()))
    if values and set(values) <= {0, 1}:
        return {"feature": ids}
    if multiclass != "ovr":
        raise NeuronError(
            f"labels have {len(values)} classes but multiclass={multiclass!r} asks for binary labels; pass 0/1 "
            "labels or multiclass='ovr' (one probe per class against the rest)"
        )
    lookup = dict(enumerate(classes))
    return {f"class={lookup.get(c, c)}": np.where(ids < 0, -1, (ids == c).astype(np.int64)) for c in values}


def load_sites(store: Any, sites: Any = None) -> tuple[Tensor, list[str]]:
    """Read sites of an :class:`~layerscope.capture.ActivationStore` as ``[L, n, d]`` float32."""
    import fnmatch

    names = list(store.sites)
    if sites is None:
        chosen = names
    else:
        pats = [sites] if isinstance(sites, str) else list(sites)
        chosen = [s for s in names if any(fnmatch.fnmatchcase(s, p) for p in pats)]
        if not chosen:
            raise NeuronError(f"no stored site matches {pats}; the store holds {', '.join(names[:8])} …")
    dims = {int(store.manifest["dims"][s]) for s in chosen}
    if len(dims) != 1:
        raise NeuronError(
            f"sites {chosen} have different widths {sorted(dims)}; probe one kind of site at a time"
        )
    X = torch.empty(len(chosen), store.n_items, dims.pop())
    for i, s in enumerate(chosen):
        X[i] = torch.from_numpy(store.read(s))
    return X, chosen


def sparse_probe(
    data: Any,
    labels: Any,
    *,
    sites: Any = None,
    ks: Sequence[int] = GURNEE_KS,
    method: str | Sequence[str] = "mean_diff",
    multiclass: str = "ovr",
    rotate: bool = False,
    groups: Any = None,
    C: float = 1.0,
    test_size: float = 0.3,
    seed: int = 0,
    max_iter: int = 100,
    tol: float = 1e-4,
    n_candidates: int = 50,
    top_n: int = 32,
    log: Callable[[str], None] | None = None,
) -> SparseProbeResult:
    """k-sparse probes of one or more features for every layer and every k.

    Args:
        data: an ``ActivationStore`` (token- or sentence-pooled), activations ``[L, n, d]``/``[n, d]``, or
            ``{site: [n, d]}``.
        labels: per row: 0/1 labels (one feature), class labels (one-vs-rest per class), or
            ``{feature: 0/1 labels}``; -1 leaves a row out of that feature.
        sites: store sites to read (names or glob patterns, e.g. ``"blocks.*.mlp.post"``; default all).
        ks: the k list (default Gurnee et al.'s 1–8, 10, 12, 16, 32, 64, 128, 256, capped by the caller).
        method: a ranking (``mean_diff``, ``f_stat``, ``mutual_info``, ``l1``, ``probeless``, ``random``),
            ``telescopic`` or ``search``; several are compared when a list is given.
        multiclass: ``"ovr"`` (one binary target per class) or ``"binary"`` (raise on non-binary labels).
        rotate: also run the sweep in a random orthonormal basis (the privileged-basis control).
        groups: per row its group (default: the store's ``example_id``), kept on one side of the split.
        C: inverse L2 strength of the probes (scikit-learn's ``C``).
        test_size: share of groups held out for the reported metrics.
        seed: split, random ranking and rotation seed.
        max_iter, tol: L-BFGS limits of each batched probe fit.
        n_candidates: ``m``, the mean-difference candidates of the small-k search.
        top_n: neurons per (feature, layer) kept in the result's ranking table.
        log: progress messages.

    Returns:
        A :class:`SparseProbeResult`.
    """
    methods = [method] if isinstance(method, str) else list(method)
    for m in methods:
        if m not in METHODS:
            raise NeuronError(f"unknown method {m!r}; choose one of {', '.join(METHODS)}")
    if multiclass not in ("ovr", "binary"):
        raise NeuronError(f"multiclass must be 'ovr' or 'binary', got {multiclass!r}")
    site_names: list[str]
    if hasattr(data, "read") and hasattr(data, "sites"):
        X, site_names = load_sites(data, sites)
        if groups is None:
            groups = data.meta("example_id")
    elif isinstance(data, Mapping):
        site_names = [str(s) for s in data]
        X = torch.stack([as_acts(v)[0] for v in data.values()])
    else:
        X = as_acts(data)
        site_names = [f"layer{i}" for i in range(X.shape[0])]
    X = as_acts(X)
    L, n, d = X.shape
    ks = check_ks(ks, d)
    targets = _targets(labels, n, multiclass)
    test = split_items(n, groups=groups, test_size=test_size, seed=seed)
    bases = [("neuron", X)]
    if rotate:
        bases.append(("rotated", _random_rotation(X, seed)))
    rows: list[dict[str, Any]] = []
    rank_rows: list[dict[str, Any]] = []
    layers = list(range(L))
    for tname, lab in targets.items():
        keep = lab >= 0
        ytr_np, yte_np = lab[keep & ~test], lab[keep & test]
        what = f"feature {tname!r}"
        ytr = as_binary(ytr_np, len(ytr_np), what=what + " (training split)")
        yte = as_binary(yte_np, len(yte_np), what=what + " (test split)")
        tr_idx = torch.from_numpy(np.flatnonzero(keep & ~test))
        te_idx = torch.from_numpy(np.flatnonzero(keep & test))
        for basis, XB in bases:
            Xtr, Xte = XB[:, tr_idx], XB[:, te_idx]
            for m in methods:
                if log:
                    log(f"sparse probe: {tname} · {basis} · {m} · {L} layers × {len(ks)} k")
                r, scores = sweep_binary(
                    Xtr, ytr, Xte, yte, ks=ks, method=m, C=C, seed=seed, max_iter=max_iter, tol=tol,
                    n_candidates=n_candidates, layers=layers,
                )  # fmt: skip
                for row in r:
                    row.update(feature=tname, basis=basis, site=site_names[row["layer"]])
                    row["n_train"], row["n_test"] = len(ytr), len(yte)
                    row["n_pos_test"] = int(yte.sum())
                rows.extend(r)
                if basis == "neuron" and (m in RANKINGS) and top_n > 0:
                    t = min(top_n, d)
                    top = scores.topk(t, dim=1)
                    for li in range(L):
                        for rank in range(t):
                            s = float(top.values[li, rank])
                            if not math.isfinite(s):
                                break
                            rank_rows.append(
                                {
                                    "feature": tname,
                                    "ranking": m,
                                    "layer": li,
                                    "site": site_names[li],
                                    "rank": rank,
                                    "neuron": int(top.indices[li, rank]),
                                    "score": s,
                                }
                            )
    cols = [
        "feature",
        "basis",
        "method",
        "site",
        "layer",
        "k",
        *METRICS,
        "neurons",
        "n_train",
        "n_test",
        "n_pos_test",
    ]
    frame = pd.DataFrame(rows)[cols]
    rankings = pd.DataFrame(
        rank_rows, columns=["feature", "ranking", "layer", "site", "rank", "neuron", "score"]
    )
    return SparseProbeResult(frame=frame, rankings=rankings, sites=site_names)
