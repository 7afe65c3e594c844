"""Evaluation of concept models: task / concept accuracy and AUC, intervention curves, Concept Alignment Score."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from .data import ConceptDataset
from .train import FittedConceptModel

__all__ = ["POLICIES", "concept_alignment_score", "evaluate_model", "intervention_curve"]

POLICIES = ("random", "uncertainty")


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, score))


def _task_auc(y: np.ndarray, proba: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(np.unique(y)) < 2:
        return float("nan")
    if proba.shape[-1] == 2:
        return float(roc_auc_score(y, proba[:, 1]))
    present = np.unique(y)
    if len(present) < proba.shape[-1]:
        return float("nan")
    return float(roc_auc_score(y, proba, multi_class="ovr"))


@torch.no_grad()
def intervention_curve(
    fitted: FittedConceptModel,
    x: np.ndarray,
    c: np.ndarray,
    y: np.ndarray,
    *,
    policy: str = "random",
    seed: int = 0,
) -> np.ndarray:
    """Task accuracy ``[S, k + 1]`` after setting 0, 1, …, k concepts per example to their true values.

    Policies: ``random`` — a random order per example (seeded); ``uncertainty`` — most uncertain predicted
    concept first (predicted probability closest to 0.5), per model copy.
    """
    if policy not in POLICIES:
        raise ConfigError(f"policy must be one of {POLICIES}, got {policy!r}")
    if not fitted.config.has_concepts:
        raise ConfigError(
            "this model has no concept bottleneck (e.g. the DNN baseline); nothing to intervene on"
        )
    module = fitted.module
    S = module.n_models
    n, k = c.shape
    xt = torch.as_tensor(x, dtype=torch.float32).unsqueeze(0).expand(S, -1, -1)
    ct = torch.as_tensor(c, dtype=torch.float32).unsqueeze(0).expand(S, -1, -1)
    logits, side = module.encode(xt)
    if policy == "random":
        rng = np.random.default_rng(seed)
        order = torch.as_tensor(np.argsort(rng.random((n, k)), axis=1)).unsqueeze(0).expand(S, -1, -1)
    else:
        order = torch.argsort((torch.sigmoid(logits) - 0.5).abs(), dim=-1)  # [S, n, k], most uncertain first
    rank = torch.argsort(order, dim=-1)  # rank[s, i, j] = position of concept j in example i's order
    yt = torch.as_tensor(y)
    acc = np.zeros((S, k + 1))
    for j in range(k + 1):  # k is small (a handful of concepts); each step is one batched forward
        mask = rank < j
        pred = module.head(module.bottleneck(logits, side, c_true=ct, mask=mask)).argmax(-1)
        acc[:, j] = (pred == yt).float().mean(1).numpy()
    return acc


def _kmeans(r: torch.Tensor, n_clusters: int, *, seed: int, iters: int = 30) -> torch.Tensor:
    """Lloyd's k-means in torch (k-means++ seeding), returning cluster labels ``[n]``."""
    g = torch.Generator().manual_seed(seed)
    n = r.shape[0]
    centers = [r[int(torch.randint(n, (1,), generator=g))]]
    d2 = ((r - centers[0]) ** 2).sum(1)
    for _ in range(1, n_clusters):
        total = float(d2.sum())
        i = (
            int(torch.multinomial(d2 / total, 1, generator=g))
            if total > 0
            else int(torch.randint(n, (1,), generator=g))
        )
        centers.append(r[i])
        d2 = torch.minimum(d2, ((r - r[i]) ** 2).sum(1))
    c = torch.stack(centers)  # [n_clusters, d]
    labels = torch.cdist(r, c).argmin(1)
    for _ in range(iters):
        sums = torch.zeros_like(c).index_add_(0, labels, r)
        counts = torch.bincount(labels, minlength=n_clusters).unsqueeze(1)
        c = torch.where(counts > 0, sums / counts.clamp_min(1), c)  # empty clusters keep their centre
        new = torch.cdist(r, c).argmin(1)
        if torch.equal(new, labels):
            break
        labels = new
    return labels


def concept_alignment_score(
    representations: list[np.ndarray],
    c: np.ndarray,
    *,
    steps: int = 5,
    max_samples: int = 300,
    seed: int = 0,
) -> float:
    """Concept Alignment Score (Espinosa Zarlenga et al. 2022): for each concept, cluster its representation
    into 2…n clusters (``steps`` values, evenly spaced), measure the homogeneity of the clusters with respect
    to the concept's labels, and take the normalised area under that curve; average over concepts.

    The reference clusters with k-medoids (scikit-learn-extra); we use k-means (Lloyd, k-means++ seeding,
    in torch), on at most ``max_samples`` examples (a seeded subsample) to keep it cheap.

    Args:
        representations: per concept, ``[n, d_i]`` what the model holds about it.
        c: ``[n, k]`` true concepts.
    """
    from sklearn.metrics import homogeneity_score

    n, k = c.shape
    if len(representations) != k:
        raise ConfigError(f"{len(representations)} representations for {k} concepts")
    if steps < 2:
        raise ConfigError(f"steps must be >= 2, got {steps}")
    rows = np.arange(n)
    if n > max_samples:
        rows = np.sort(np.random.default_rng(seed).choice(n, max_samples, replace=False))
    m = len(rows)
    counts = np.unique(np.linspace(2, m, steps).astype(int))
    scores = []
    for i, rep in enumerate(representations):
        r = torch.as_tensor(np.asarray(rep, dtype=np.float32).reshape(n, -1)[rows])
        labels_true = (c[rows, i] > 0.5).astype(int)
        distinct, inverse = torch.unique(r, dim=0, return_inverse=True)
        homs = []
        for nc in counts:
            if nc >= distinct.shape[0]:
                labels = inverse.numpy()
            else:
                labels = _kmeans(r, int(nc), seed=seed).numpy()
            homs.append(homogeneity_score(labels_true, labels))
        h = np.asarray(homs)
        scores.append(float(np.trapezoid(h) / (len(h) - 1)) if len(h) > 1 else float(h[0]))
    return float(np.mean(scores))


@torch.no_grad()
def evaluate_model(
    fitted: FittedConceptModel,
    dataset: ConceptDataset,
    *,
    split: str = "test",
    policies: tuple[str, ...] = POLICIES,
    cas: bool = True,
    cas_steps: int = 5,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Metric rows and intervention-curve rows for every seed of ``fitted`` on ``dataset``'s ``split``."""
    x, c, y = dataset.split(split)
    cp, yp = fitted.predict(x)
    rows: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    has_c = fitted.config.has_concepts
    reps: list[list[np.ndarray]] = []
    if has_c and cas:
        module = fitted.module
        xt = torch.as_tensor(x).unsqueeze(0).expand(module.n_models, -1, -1)
        per_concept = module.concept_representation(*module.encode(xt))  # k × [S, n, d]
        reps = [[r[s].numpy() for r in per_concept] for s in range(module.n_models)]
    hard_c = (c > 0.5).astype(int)
    for s, seed in enumerate(fitted.seeds):
        base = {"dataset": dataset.name, "model": fitted.name, "seed": seed}
        vals = {
            "task_accuracy": float((yp[s].argmax(-1) == y).mean()),
            "task_auc": _task_auc(y, yp[s]),
            "concept_accuracy": float(((cp[s] > 0.5) == hard_c).mean()) if has_c else float("nan"),
            "concept_auc": (
                float(np.nanmean([_auc(hard_c[:, j], cp[s][:, j]) for j in range(c.shape[1])]))
                if has_c
                else float("nan")
            ),
            "cas": concept_alignment_score(reps[s], c, steps=cas_steps) if reps else float("nan"),
            "epochs": float(fitted.epochs[s]),
        }
        rows += [{**base, "metric": m, "value": v} for m, v in vals.items()]
    if has_c:
        for policy in policies:
            acc = intervention_curve(fitted, x, c, y, policy=policy)
            for s, seed in enumerate(fitted.seeds):
                curves += [
                    {
                        "dataset": dataset.name,
                        "model": fitted.name,
                        "seed": seed,
                        "policy": policy,
                        "n_intervened": j,
                        "task_accuracy": float(acc[s, j]),
                    }
                    for j in range(acc.shape[1])
                ]
    return rows, curves
