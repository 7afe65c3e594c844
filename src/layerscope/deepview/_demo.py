"""The DeepView section of ``layerscope demo``: case (a), frozen MiniLM + MLP sentiment head, 500 sentences."""

from __future__ import annotations

import pathlib
import time
from typing import Any


def demo_section(report: Any, *, cache_dir: pathlib.Path, log: Any = print, n_view: int = 500) -> None:
    """Add a DeepView map (λ presets 0, 0.65, 1 with PGD points) of the frozen-MiniLM sentiment head.

    The head (trained on 1,000 other MultiEmo sentences) and the sentence vectors are cached in
    ``cache_dir/deepview``; a cached run costs the three UMAP fits (plus numba's JIT on a fresh process).
    """
    from .text import text_deepview

    t0 = time.perf_counter()
    res = text_deepview(
        "frozen",
        n_view=n_view,
        n_train=1000,
        lambdas=(0.0, 0.65, 1.0),
        n_adversarial=20,
        resolution=80,
        cache_dir=pathlib.Path(cache_dir) / "deepview",
    )
    q = dict(zip(res.lambdas, res.q_knn, strict=True))
    report.add(
        res,
        title=f"DeepView: frozen MiniLM + MLP sentiment head ({n_view} MultiEmo sentences)",
        note="Background: the head's predicted class for the inverse-mapped grid (pale = uncertain); points "
        "coloured by prediction, black rings = misclassified, diamonds = embedding-space PGD points. Hover "
        "for the sentence; the buttons switch λ (1 = cosine distance only). As in Roberts et al. 2024, the "
        f"frozen encoder's classes separate only once the discriminative distance is on: Q_kNN {q[1.0]:.3f} "
        f"at λ = 1 vs {q[0.65]:.3f} at λ = 0.65.",
    )
    log(f"deepview: {len(res.probs)} points, 3 maps ({time.perf_counter() - t0:.1f}s)")
