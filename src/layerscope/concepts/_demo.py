"""The concept-model section of ``layerscope demo``: the three synthetic benchmarks, a few seeds, short."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEMO_MODELS = ("cem", "cbm-joint", "cbm-joint-bool", "dnn")
DEMO_SEEDS = 2
_VERSION = "v1"


def demo_result(*, cache_dir: Path, log: Callable[[str], object] = print) -> Any:
    """Train (or load from ``cache_dir``) the demo's concept models on XOR / Trig / Dot."""
    from ..errors import StoreError
    from .models import PRESETS
    from .result import ConceptModelResult
    from .suite import run
    from .train import TrainConfig

    path = Path(cache_dir) / f"concepts-demo-{_VERSION}"
    if (path / "result.json").is_file():
        try:
            return ConceptModelResult.load(path)
        except (StoreError, KeyError, ValueError):
            log("concepts: cached demo result unreadable, retraining")
    t0 = time.perf_counter()
    # a compact version of the paper's architecture so the section fits the demo's time budget
    configs = [
        dataclasses.replace(PRESETS[m], hidden=(64, 64), latent_dim=64, emb_size=32) for m in DEMO_MODELS
    ]
    res = run(
        ("xor", "trig", "dot"),
        configs,
        seeds=DEMO_SEEDS,
        train=TrainConfig(max_epochs=80, patience=10),
        cas=False,
    )
    # name the rows after the presets (run() calls custom configs custom0, custom1, ...)
    names = {f"custom{i}": m for i, m in enumerate(DEMO_MODELS)}
    res = dataclasses.replace(
        res,
        metrics=res.metrics.assign(model=res.metrics.model.map(names)),
        interventions=res.interventions.assign(model=res.interventions.model.map(names)),
        config={**res.config, "models": {names[k]: v for k, v in res.config["models"].items()}},
    )
    res.save(path)
    log(
        f"concepts: trained {len(DEMO_MODELS)} variants × {DEMO_SEEDS} seeds × 3 datasets in "
        f"{time.perf_counter() - t0:.0f} s"
    )
    return res


def demo_section(report: Any, *, cache_dir: Path, log: Callable[[str], object] = print) -> None:
    """Add the concept bottleneck / embedding section to ``report``."""
    res = demo_result(cache_dir=cache_dir, log=log)
    report.add(
        res,
        title="Concept bottleneck and concept embedding models (XOR / Trig / Dot)",
        note=(
            f"{DEMO_SEEDS} seeds, compact networks (hidden 64-64, embedding size 32, ≤ 80 epochs) to keep the "
            "demo short; `layerscope concepts` runs the paper's sizes. Dashed lines: the best accuracy any "
            "model can reach from the true concepts alone."
        ),
    )
    report.add_section("Concept models: mean ± std over seeds (%)", tables=[res.table()])
