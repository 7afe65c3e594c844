"""Demo section: k-sparse probes of token features on SmolLM2's MLP neurons, with a neuron page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

DEMO_LAYERS = (0, 6, 12, 18, 24, 29)
DEMO_FEATURES = ("is_punctuation", "leading_capital", "has_leading_space")
DEMO_KS = (1, 2, 3, 4, 8, 16, 32)


def demo_section(report: Any, *, cache_dir: Path, log: Any = print, n_sentences: int = 120) -> None:
    """Add the neurons section: SmolLM2 ``mlp.post`` (6 of 30 layers) on 4 token features (cached)."""
    from ..capture.extract import extract
    from ..data.corpus import multiemo
    from ..models import load
    from .features import store_features
    from .pages import neuron_page
    from .result import SparseProbeResult
    from .sparse import sparse_probe

    cache_dir.mkdir(parents=True, exist_ok=True)
    subject = load("smollm2")
    sites = [f"blocks.{i}.mlp.post" for i in DEMO_LAYERS]
    st = extract(
        subject, multiemo(limit=n_sentences, seed=0), sites, store=cache_dir / f"smollm2-mlp-{n_sentences}",
        pooling="token", overwrite="mismatched", progress=False,
    )  # fmt: skip
    labels = store_features(
        st, features=list(DEMO_FEATURES), suffixes=(), prefixes=(), position_bins=None, min_count=5
    )
    saved = cache_dir / f"sparse-{n_sentences}"
    try:
        res = SparseProbeResult.load(saved)
        if sorted(set(res.frame.feature)) != sorted(labels):
            raise FileNotFoundError
    except Exception:
        import pandas as pd

        res = sparse_probe(st, labels, ks=DEMO_KS, method="mean_diff", log=log)
        first = next(iter(labels))  # the closed-form small-k search on one feature, for comparison
        extra = sparse_probe(st, {first: labels[first]}, ks=DEMO_KS, method="search", top_n=0, log=log)
        res = SparseProbeResult(
            frame=pd.concat([res.frame, extra.frame], ignore_index=True),
            rankings=res.rankings,
            sites=res.sites,
        )
        res.save(saved)
    report.add(
        res,
        title=f"SmolLM2: which MLP neurons carry token features? ({st.n_items} tokens, {n_sentences} sentences)",
        note="k-sparse probes (Gurnee et al. 2023) on blocks.{0,6,12,18,24,29}.mlp.post (1536 neurons each): "
        "class-balanced L2 logistic regression on the top-k neurons by mean difference (and, for the first "
        "feature, on the subsets of the closed-form small-k search); test F1 on a 30 % held-out split by sentence. `layerscope neurons probe` runs all layers.",
    )
    top = res.best().query("k == 1 and method == 'mean_diff'").sort_values("f1", ascending=False).iloc[0]
    page = neuron_page(
        st, str(top.site), int(top.neurons), labels=labels[str(top.feature)], subject=subject, result=res,
        n_examples=8,
    )  # fmt: skip
    report.add(
        page,
        title=f"Neuron page: {top.site} neuron {top.neurons} (best single neuron for {top.feature})",
        note="Top-activating tokens (the token in ⟦ ⟧), activation histogram per class, and the tokens its "
        "output weights promote through the unembedding.",
    )
    log(f"neurons: {len(labels)} features × {len(sites)} layers; best single neuron {top.site}#{top.neurons}")
