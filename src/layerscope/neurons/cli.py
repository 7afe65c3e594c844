"""``layerscope neurons ...``: k-sparse probing sweeps and neuron pages from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError

neurons_app = typer.Typer(
    help="Which neurons carry a feature? k-sparse probes, neuron rankings and neuron pages.",
    no_args_is_help=True,
)


@neurons_app.command("probe")
def probe_cmd(
    model: Annotated[str, typer.Option("--model", "-m", help="model name or path")] = "smollm2",
    site: Annotated[
        str, typer.Option("--site", "-s", help="site pattern with a neuron axis")
    ] = "blocks.*.mlp.post",
    feature: Annotated[
        list[str] | None, typer.Option("--feature", "-f", help="token feature (repeatable; default: all)")
    ] = None,
    task: Annotated[
        list[str] | None, typer.Option("--task", "-t", help="built-in word-level task, binarised per class")
    ] = None,
    n_sentences: Annotated[int, typer.Option(help="MultiEmo sentences to extract")] = 300,
    k: Annotated[
        list[int] | None, typer.Option("--k", "-k", help="k values (default: Gurnee's list)")
    ] = None,
    method: Annotated[list[str] | None, typer.Option("--method", help="selection method(s)")] = None,
    rotate: Annotated[bool, typer.Option(help="also run the rotated-basis control")] = False,
    seed: Annotated[int, typer.Option(help="split / random seed")] = 0,
    store: Annotated[
        Path | None, typer.Option(help="activation store folder (default: in the cache)")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML report")] = Path("reports/neurons.html"),
    save: Annotated[Path | None, typer.Option(help="save the SparseProbeResult to this folder")] = None,
    device: Annotated[str, typer.Option(help="torch device")] = "cpu",
) -> None:
    """k-sparse probes of token features for every layer and k (Gurnee et al. 2023)."""
    from .. import load
    from .._io import cache_root
    from ..capture.extract import extract
    from ..data import corpus
    from ..report import Report
    from ._common import GURNEE_KS
    from .features import binarize, store_features
    from .sparse import METHODS, sparse_probe

    if n_sentences < 10:
        raise ConfigError(f"--n-sentences must be >= 10, got {n_sentences}")
    methods = list(method or ["mean_diff"])
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ConfigError(f"unknown --method {bad}; choose from {', '.join(METHODS)}")
    subject = load(model, device=device)
    path = store or cache_root() / "neurons" / f"{subject.name}-{n_sentences}-{site.replace('*', 'all')}"
    if task:
        from ..data.tasks import builtin_tasks

        tasks = builtin_tasks(task, n_sentences=n_sentences, progress=False)
        data = next(iter(tasks.values())).dataset
    else:
        tasks = {}
        data = corpus.multiemo(limit=n_sentences, seed=seed)
    st = extract(subject, data, site, store=path, pooling="token", overwrite="mismatched", progress=True)
    labels = {} if task and not feature else store_features(st)
    if feature:
        missing = [f for f in feature if f not in labels]
        if missing:
            raise ConfigError(
                f"feature(s) {missing} are unknown or too rare in {n_sentences} sentences; available: "
                f"{', '.join(labels)}"
            )
        labels = {f: labels[f] for f in feature}
    for t in tasks.values():
        if t.level != "word":
            raise ConfigError(f"task {t.name!r} is sentence level; neurons probe takes word-level tasks")
        labels.update(binarize(t, st))
    if not labels:
        raise ConfigError("no feature has enough positive and negative tokens; raise --n-sentences")
    d = min(int(v) for v in st.manifest["dims"].values())
    ks = list(k or [kk for kk in GURNEE_KS if kk <= d])
    result = sparse_probe(st, labels, sites=site, ks=ks, method=methods, rotate=rotate, seed=seed, log=print)
    print(result.best().to_string(index=False))
    if save:
        result.save(save)
    rep = Report("layerscope neurons", subtitle=f"{subject.name} · {site}")
    rep.add(result)
    print(f"report: {rep.write(out)}")


@neurons_app.command("page")
def page_cmd(
    store: Annotated[Path, typer.Option(help="activation store folder")],
    site: Annotated[str, typer.Option("--site", "-s", help="stored site, e.g. blocks.5.mlp.post")],
    neuron: Annotated[int, typer.Option("--neuron", "-n", help="neuron index")],
    feature: Annotated[str | None, typer.Option(help="token feature for the per-class histogram")] = None,
    model: Annotated[str | None, typer.Option(help="model, for the tokens the neuron promotes")] = None,
    result: Annotated[Path | None, typer.Option(help="saved SparseProbeResult (ranks per feature)")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML report")] = Path("reports/neuron.html"),
) -> None:
    """A neuron page: top/bottom-activating tokens, histogram per class, promoted tokens, ranks."""
    from .. import load
    from ..capture.store import ActivationStore
    from ..report import Report
    from .features import store_features
    from .pages import neuron_page
    from .result import SparseProbeResult

    st = ActivationStore.open(store)
    labels = None
    if feature:
        labels = store_features(st, features=[feature], prefixes=(), suffixes=(), min_count=0)[feature]
    page = neuron_page(
        st,
        site,
        neuron,
        labels=labels,
        subject=load(model) if model else None,
        result=SparseProbeResult.load(result) if result else None,
    )
    print(page.summary())
    print(page.top_examples.to_string(index=False))
    rep = Report("layerscope neuron page", subtitle=f"{site} · neuron {neuron}")
    rep.add(page)
    print(f"report: {rep.write(out)}")


def register(app: typer.Typer) -> None:
    """Add ``layerscope neurons probe|page`` to the main CLI."""
    app.add_typer(neurons_app, name="neurons")
