"""A first per-layer view of stored activations: norms, anisotropy, effective rank, CKA, class separability.

Everything is computed from an ``ActivationStore`` (no model needed), streaming over row blocks.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .capture.store import ActivationStore
from .errors import ConfigError
from .result import Result


@dataclasses.dataclass(frozen=True)
class LayerSummaryResult(Result):
    """Per-site statistics of stored activations.

    Attributes:
        sites: site names, in extraction order.
        mean_norm: mean L2 norm of an item's vector, per site.
        anisotropy: mean cosine similarity between two different items, per site (0: isotropic).
        effective_rank: participation ratio of the covariance spectrum, (Σλ)² / Σλ², per site.
        cka: linear CKA between every pair of sites (on up to ``cka_items`` items), ``[sites, sites]``.
        centroid_accuracy: held-out nearest-class-mean accuracy per site (NaN without labels).
        majority_accuracy: accuracy of always predicting the most frequent class (NaN without labels).
        n_items: number of items summarised.
        model: model name; pooling: the store's pooling; label_name: the label used (or "").
    """

    sites: list[str]
    mean_norm: np.ndarray
    anisotropy: np.ndarray
    effective_rank: np.ndarray
    cka: np.ndarray
    centroid_accuracy: np.ndarray
    majority_accuracy: float
    n_items: int
    model: str
    pooling: str
    label_name: str = ""

    title = "Per-layer overview"

    def to_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(
            {
                "site": self.sites,
                "mean_norm": self.mean_norm,
                "anisotropy": self.anisotropy,
                "effective_rank": self.effective_rank,
                "centroid_accuracy": self.centroid_accuracy,
            }
        )

    def summary(self) -> str:
        text = (
            f"{self.model}: {len(self.sites)} sites, {self.n_items} items ({self.pooling} pooling). "
            f"Effective rank ranges {self.effective_rank.min():.1f}–{self.effective_rank.max():.1f}; "
            f"anisotropy {self.anisotropy.min():.2f}–{self.anisotropy.max():.2f}."
        )
        if np.isfinite(self.centroid_accuracy).any():
            best = int(np.nanargmax(self.centroid_accuracy))
            text += (
                f" Nearest-class-mean accuracy for {self.label_name!r} peaks at {self.sites[best]} "
                f"({self.centroid_accuracy[best]:.3f}; majority baseline {self.majority_accuracy:.3f})."
            )
        return text

    def figure(self) -> Any:
        import pandas as pd

        from .report.figures import line_per_layer

        rows = []
        for name, values in (("anisotropy", self.anisotropy), ("centroid accuracy", self.centroid_accuracy)):
            for s, v in zip(self.sites, values, strict=True):
                if np.isfinite(v):
                    rows.append({"site": s, "value": float(v), "statistic": name})
        if np.isfinite(self.majority_accuracy):
            rows += [
                {"site": s, "value": self.majority_accuracy, "statistic": "majority baseline"}
                for s in self.sites
            ]
        return line_per_layer(
            pd.DataFrame(rows),
            x="site",
            y="value",
            color="statistic",
            title="Anisotropy and class separability per site",
            y_title="value",
        )

    def figures(self) -> list[Any]:
        import pandas as pd

        from .report.figures import heatmap, line_per_layer

        rank = line_per_layer(
            pd.DataFrame({"site": self.sites, "value": self.effective_rank, "statistic": "effective rank"}),
            x="site",
            y="value",
            color="statistic",
            title="Effective rank (participation ratio) per site",
            y_title="dimensions",
        )
        cka = heatmap(
            self.cka,
            x=self.sites,
            y=self.sites,
            title="Linear CKA between sites",
            colorbar_title="CKA",
            zmin=0.0,
            zmax=1.0,
        )
        return [self.figure(), rank, cka]


def layer_summary(
    store: ActivationStore | str,
    *,
    labels: Any = None,
    label_name: str = "label",
    cka_items: int = 1000,
    test_fraction: float = 0.3,
    seed: int = 0,
) -> LayerSummaryResult:
    """Summarise every site of a store.

    Args:
        store: an ``ActivationStore`` or its path.
        labels: optional per-item class labels (length ``n_items``) for a held-out nearest-class-mean check.
        label_name: name of the labels, for display.
        cka_items: items used for CKA (a random subset, same for every site).
        test_fraction: held-out share of items for the centroid check (split by example, never by item).
        seed: seed of the subset and the split.
    """
    st = store if isinstance(store, ActivationStore) else ActivationStore.open(store)
    n = st.n_items
    if n < 2:
        raise ConfigError("a layer summary needs at least 2 stored items")
    rng = np.random.default_rng(seed)
    sub = np.sort(rng.choice(n, size=min(cka_items, n), replace=False))
    y = None
    if labels is not None:
        y = np.asarray(labels)
        if len(y) != n:
            raise ConfigError(
                f"labels has {len(y)} values but the store has {n} items; give one label per item"
            )
        ex = st.meta("example_id")
        uniq = np.unique(ex)
        test_ex = rng.choice(uniq, size=max(1, int(len(uniq) * test_fraction)), replace=False)
        is_test = np.isin(ex, test_ex)
    norms, aniso, erank, cent, grams = [], [], [], [], []
    for site in st.sites:
        s_norm = 0.0
        unit_sum = None
        cov = None
        total = None
        for _, block in st.iter_rows(site, dtype=np.float64):
            nb = np.linalg.norm(block, axis=1)
            s_norm += nb.sum()
            u = block / np.maximum(nb, 1e-12)[:, None]
            unit_sum = u.sum(0) if unit_sum is None else unit_sum + u.sum(0)
            cov = block.T @ block if cov is None else cov + block.T @ block
            total = block.sum(0) if total is None else total + block.sum(0)
        assert unit_sum is not None and cov is not None and total is not None
        norms.append(s_norm / n)
        aniso.append(float((unit_sum @ unit_sum - n) / (n * (n - 1))))
        mu = total / n
        c = cov / n - np.outer(mu, mu)
        ev = np.clip(np.linalg.eigvalsh(c), 0, None)
        erank.append(float(ev.sum() ** 2 / max((ev**2).sum(), 1e-30)))
        x = st.read(site, sub, dtype=np.float64)
        x = x - x.mean(0)
        g = x @ x.T
        grams.append(g / max(np.linalg.norm(g), 1e-30))
        cent.append(_centroid_accuracy(st, site, y, is_test) if y is not None else np.nan)
    k = len(st.sites)
    cka = np.ones((k, k))
    for i in range(k):
        for j in range(i + 1, k):
            cka[i, j] = cka[j, i] = float((grams[i] * grams[j]).sum())
    majority = np.nan
    if y is not None:
        vals, counts = np.unique(y[~is_test], return_counts=True)
        majority = float(np.mean(y[is_test] == vals[np.argmax(counts)]))
    return LayerSummaryResult(
        sites=st.sites,
        mean_norm=np.asarray(norms),
        anisotropy=np.asarray(aniso),
        effective_rank=np.asarray(erank),
        cka=cka,
        centroid_accuracy=np.asarray(cent, dtype=float),
        majority_accuracy=majority,
        n_items=n,
        model=str(st.manifest.get("model", {}).get("name", "")),
        pooling=str(st.manifest.get("pooling", "")),
        label_name=label_name if y is not None else "",
    )


def _centroid_accuracy(st: ActivationStore, site: str, y: np.ndarray, is_test: np.ndarray) -> float:
    x = st.read(site, dtype=np.float64)
    mu = x[~is_test].mean(0)
    sd = x[~is_test].std(0) + 1e-8
    z = (x - mu) / sd
    classes = np.unique(y[~is_test])
    cents = np.stack([z[~is_test & (y == c)].mean(0) for c in classes])
    d = ((z[is_test][:, None, :] - cents[None]) ** 2).sum(-1)
    return float(np.mean(classes[np.argmin(d, axis=1)] == y[is_test]))
