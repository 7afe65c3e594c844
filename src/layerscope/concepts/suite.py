"""Run several model variants on several datasets and collect a :class:`ConceptModelResult`."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence

import pandas as pd

from ..errors import ConfigError
from .data import ConceptDataset, bayes_ceiling, load_dataset
from .metrics import POLICIES, evaluate_model
from .models import SUITE, ConceptModelConfig, model_config
from .result import ConceptModelResult
from .train import TrainConfig, fit

__all__ = ["run"]


def run(
    datasets: Sequence[str | ConceptDataset] = ("xor", "trig", "dot"),
    models: Sequence[str | ConceptModelConfig] = SUITE,
    *,
    seeds: int | Sequence[int] = 5,
    train: TrainConfig | None = None,
    cas: bool = True,
    policies: tuple[str, ...] = POLICIES,
    log: Callable[[str], object] | None = None,
) -> ConceptModelResult:
    """Train every model variant for every seed on every dataset and evaluate on the test split.

    Args:
        datasets: names (``xor``, ``trig``, ``dot``), file paths, or :class:`ConceptDataset` objects.
        models: preset names (see ``PRESETS``) or configs.
        seeds: a count or explicit seeds; all seeds of a variant train together (stacked weights).
        cas: compute the Concept Alignment Score (k-means; a few seconds per variant).
        log: called with one line per trained variant.
    """
    if not datasets:
        raise ConfigError("give at least one dataset")
    if not models:
        raise ConfigError("give at least one model")
    cfgs = [(m if isinstance(m, str) else f"custom{i}", model_config(m)) for i, m in enumerate(models)]
    tc = train or TrainConfig()
    t0 = time.perf_counter()
    rows: list[dict[str, object]] = []
    curves: list[dict[str, object]] = []
    ceilings: dict[str, float] = {}
    for spec in datasets:
        ds = spec if isinstance(spec, ConceptDataset) else load_dataset(spec)
        _, c, y = ds.split("test")
        ceilings[ds.name] = bayes_ceiling(c, y)
        for name, cfg in cfgs:
            fitted = fit(ds, cfg, seeds=seeds, train=tc, name=name)
            r, cv = evaluate_model(fitted, ds, cas=cas, policies=policies)
            rows += r
            curves += cv
            if log is not None:
                acc = [row["value"] for row in r if row["metric"] == "task_accuracy"]
                log(
                    f"{ds.name:>6} {name:<16} task acc {100 * sum(acc) / len(acc):5.1f}%  "
                    f"({fitted.seconds:.1f} s train)"
                )
    metrics = pd.DataFrame(rows, columns=["dataset", "model", "seed", "metric", "value"])
    interventions = pd.DataFrame(
        curves, columns=["dataset", "model", "seed", "policy", "n_intervened", "task_accuracy"]
    )
    config = {  # JSON-normalised (tuples become lists) so that a saved and loaded result compares equal
        "train": dataclasses.asdict(tc),
        "models": {name: dataclasses.asdict(cfg) for name, cfg in cfgs},
        "seeds": list(range(seeds)) if isinstance(seeds, int) else list(seeds),
    }
    return ConceptModelResult(
        metrics=metrics,
        interventions=interventions,
        ceilings=ceilings,
        config=json.loads(json.dumps(config)),
        seconds=time.perf_counter() - t0,
    )
