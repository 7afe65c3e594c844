"""``layerscope demo``: the main job on the embedded defaults, written as one HTML report.

Each capability adds its section here with a small demo size (the whole demo stays under 5 minutes on
a 2-core CPU once the defaults are cached). Stores live in the cache and are reused when complete.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from ._io import cache_root


def _sites_table(subject: Any) -> Any:
    import pandas as pd

    infos = subject.sites()
    rows = [
        i
        for i in infos
        if not i.name.startswith("blocks.")
        or i.name.startswith(("blocks.0.", f"blocks.{subject.n_layers - 1}."))
    ]
    return pd.DataFrame(
        {
            "site": [i.name for i in rows],
            "module": [i.module for i in rows],
            "shape": ["[" + ", ".join(i.shape) + "]" for i in rows],
            "meaning": [i.meaning for i in rows],
        }
    )


#: Capability packages with a ``_demo.demo_section(report, *, cache_dir, log)``, in report order.
CAPABILITIES = ("neurons", "attribution", "optimize", "inversion", "deepview", "concepts")


def _capability_sections(report: Any, names: tuple[str, ...], work: Path, log: Any) -> dict[str, str]:
    """Let each capability package add its demo section(s); a package not installed yet is skipped."""
    import importlib

    from .errors import ConfigError

    unknown = [n for n in names if n not in CAPABILITIES]
    if unknown:
        raise ConfigError(f"unknown demo capability {unknown[0]!r}; choose from {', '.join(CAPABILITIES)}")
    timings: dict[str, str] = {}
    for name in names:
        module_name = f"layerscope.{name}._demo"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name is not None and module_name.startswith(e.name):
                continue
            raise
        t0 = time.perf_counter()
        module.demo_section(report, cache_dir=work / name, log=log)
        timings[name] = f"{time.perf_counter() - t0:.1f}s"
        log(f"{name}: {timings[name]}")
    return timings


def _labels_per_item(store: Any, labels: list[Any]) -> np.ndarray:
    return np.asarray(labels, dtype=object)[store.meta("example_id")].astype(str)


def run_demo(
    out: Path,
    *,
    sentences: int = 2000,
    lm_sentences: int = 400,
    images: int = 500,
    probe_sentences: int = 300,
    capabilities: tuple[str, ...] | None = None,
    log: Any = print,
) -> Path:
    """Fetch the defaults, extract, summarise per layer, and write the report to ``out``.

    ``capabilities`` names the capability sections to add after the overview (default: all of
    :data:`CAPABILITIES`; ``()`` for none).
    """
    import torch

    from .capture.extract import extract
    from .capture.extract_images import extract_images
    from .data.corpus import cifar10_test, fetch_corpus, multiemo
    from .models import load
    from .overview import layer_summary
    from .report import Report

    t_start = time.perf_counter()
    work = cache_root() / "demo"
    fetch_corpus()
    report = Report("layerscope demo", subtitle="What the embedded models know, layer by layer")
    timings: dict[str, str] = {}

    # -- MiniLM on MultiEmo: sentence-mean residual stream per layer --------------------------------------
    t0 = time.perf_counter()
    ds = multiemo(limit=sentences, seed=0)
    minilm = load("minilm")
    st = extract(
        minilm,
        ds,
        ["blocks.0.resid_pre", "blocks.*.resid_post"],
        store=work / f"minilm-multiemo-{sentences}",
        pooling="sentence_mean",
        overwrite="mismatched",
    )
    res = layer_summary(st, labels=_labels_per_item(st, ds.labels["sentiment"]), label_name="sentiment")
    report.add(
        res,
        title=f"MiniLM: sentiment across layers ({sentences} MultiEmo sentences)",
        note="Sentence-mean residual stream; blocks.0.resid_pre is the embedding layer (a baseline). "
        "Centroid accuracy is a quick held-out check (split by sentence), not a probe: see the probing section.",
    )
    report.add_section(
        "MiniLM sites",
        text="Canonical sites (first and last block shown; every block has the same).",
        tables=[_sites_table(minilm)],
    )
    timings["minilm"] = f"{time.perf_counter() - t0:.1f}s"
    log(f"minilm: {st.n_items} sentences, {len(st.sites)} sites ({timings['minilm']})")

    # -- Probing: the built-in suite on MiniLM (linear probes, control tasks, MDL) --------------------------
    if probe_sentences:
        from .probes.sweep import probe

        t0 = time.perf_counter()
        # surface, syntactic and semantic sentence tasks: the layer order is the story (word-level tasks such as
        # upos take minutes on a 2-core CPU: `layerscope probe --task upos`)
        demo_tasks = ["sentlen", "bshift", "tense", "sentiment"]
        sweep = probe(
            minilm,
            demo_tasks,
            probes=("linear",),
            n_sentences=probe_sentences,
            store_dir=work / "probe-stores",
            progress=False,
            n_bootstrap=500,
        )
        report.add(
            sweep,
            title=f"MiniLM probing ({probe_sentences} sentences per task)",
            note="Linear probes per layer (λ chosen on validation), Hewitt & Liang control tasks "
            "(selectivity), MDL online code (compression), 95 % cluster-bootstrap intervals over test "
            "sentences. Layer 0 is the embedding layer. Silver labels from spaCy.",
        )
        timings["probing"] = f"{time.perf_counter() - t0:.1f}s"
        log(f"probing: {len(demo_tasks)} tasks ({timings['probing']})")
    del minilm

    # -- SmolLM2: last-token residual stream every 3rd layer ------------------------------------------------
    t0 = time.perf_counter()
    lm = load("smollm2")
    lm_ds = ds.head(lm_sentences)
    layers = [f"blocks.{i}.resid_post" for i in range(0, lm.n_layers, 3)] + ["final"]
    st = extract(
        lm,
        lm_ds,
        layers,
        store=work / f"smollm2-multiemo-{lm_sentences}",
        pooling="last_token",
        overwrite="mismatched",
    )
    res = layer_summary(st, labels=_labels_per_item(st, lm_ds.labels["sentiment"]), label_name="sentiment")
    report.add(
        res,
        title=f"SmolLM2-135M: last-token states ({lm_sentences} sentences)",
        note="Causal LM: the last token is the only position that has read the whole sentence.",
    )
    report.add_section("SmolLM2 sites", tables=[_sites_table(lm)])
    timings["smollm2"] = f"{time.perf_counter() - t0:.1f}s"
    log(f"smollm2: {st.n_items} sentences ({timings['smollm2']})")
    del lm

    # -- EfficientNet-Lite0 on CIFAR-10 ------------------------------------------------------------------------
    t0 = time.perf_counter()
    effnet = load("effnet-lite0")
    imgs, y, names = cifar10_test(limit=images)
    st = extract_images(
        effnet,
        imgs,
        ["embed", "blocks.*.out", "pooled", "logits"],
        store=work / f"effnet-cifar10-{images}",
        dataset_name="cifar10-test",
        overwrite="mismatched",
    )
    res = layer_summary(st, labels=np.asarray(names)[y], label_name="CIFAR-10 class")
    report.add(
        res,
        title=f"EfficientNet-Lite0: CIFAR-10 classes across blocks ({images} test images, upsampled to 224 px)",
        note="Spatial-mean feature maps per block. The model is an ImageNet classifier never trained on CIFAR-10.",
    )
    report.add_section("EfficientNet-Lite0 sites", tables=[_sites_table(effnet)])
    timings["effnet-lite0"] = f"{time.perf_counter() - t0:.1f}s"
    log(f"effnet-lite0: {st.n_items} images ({timings['effnet-lite0']})")

    timings.update(
        _capability_sections(report, CAPABILITIES if capabilities is None else capabilities, work, log)
    )

    report.add_metadata(
        {
            "layerscope": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
            "corpus": "MultiEmo (English sentences, 4 sentiment classes) and CIFAR-10 test, from the bigbench 1.0.0 sdist",
            "timings": ", ".join(f"{k} {v}" for k, v in timings.items())
            + f"; total {time.perf_counter() - t_start:.1f}s",
        }
    )
    return report.write(out)
