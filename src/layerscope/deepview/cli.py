"""``layerscope deepview``: DeepView maps of a MiniLM sentence classifier (or of your own embeddings)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError


def _parse_lambdas(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--lambdas must be comma-separated numbers in [0, 1], got {text!r}") from None
    if not vals or any(not 0 <= v <= 1 for v in vals):
        raise ConfigError(f"--lambdas must be comma-separated numbers in [0, 1], got {text!r}")
    return vals


def deepview_cmd(
    case: Annotated[
        str, typer.Option("--case", "-c", help="frozen (MiniLM + MLP head) | finetuned | multitask")
    ] = "frozen",
    task: Annotated[
        str, typer.Option(help="head to view: sentiment, or length (multitask only)")
    ] = "sentiment",
    n: Annotated[int, typer.Option("--n", "-n", help="MultiEmo sentences on the map")] = 500,
    lambdas: Annotated[
        str, typer.Option(help="λ presets, comma-separated (1 = structural distance only)")
    ] = "0,0.5,0.65,0.8,1",
    steps: Annotated[int, typer.Option(help="interpolation points per pair")] = 10,
    metric: Annotated[str, typer.Option(help="structural distance: cosine | euclidean")] = "cosine",
    neighbors: Annotated[int, typer.Option(help="UMAP n_neighbors")] = 30,
    all_pairs: Annotated[bool, typer.Option(help="evaluate all pairs instead of 3 × neighbors")] = False,
    adversarial: Annotated[int, typer.Option(help="PGD-perturbed points to add (embedding space)")] = 20,
    resolution: Annotated[int, typer.Option(help="background grid is resolution × resolution")] = 100,
    embeddings: Annotated[
        Path | None,
        typer.Option(
            help=".npz with 'embeddings' [N, D] and 'labels' [N] (optional 'texts'): map these instead, "
            "with an MLP head trained on them"
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="sample / training / UMAP seed")] = 0,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="HTML report to write")] = None,
    save: Annotated[Path | None, typer.Option(help="save the DeepViewResult to this folder")] = None,
) -> None:
    """DeepView: 2-D maps of a classifier's decision function with its data, one per λ preset (Q_kNN table)."""
    import numpy as np
    import torch
    from rich.console import Console
    from rich.table import Table

    from ._core import deepview, prob_fn_from_module
    from .text import CASES, text_deepview, train_head

    lams = _parse_lambdas(lambdas)
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    if case not in CASES:
        raise ConfigError(f"--case must be one of {', '.join(CASES)}, got {case!r}")
    if n < 10:
        raise ConfigError(f"--n must be at least 10, got {n}")
    con = Console(highlight=False)
    cand = "all" if all_pairs else "auto"
    if embeddings is not None:
        if not embeddings.is_file():
            raise ConfigError(f"--embeddings {embeddings} does not exist")
        with np.load(embeddings, allow_pickle=False) as z:
            if "embeddings" not in z or "labels" not in z:
                raise ConfigError(f"{embeddings} must hold arrays 'embeddings' and 'labels' (np.savez)")
            x, y_raw = z["embeddings"], z["labels"]
            texts = [str(t) for t in z["texts"]] if "texts" in z else None
        names, y = np.unique(y_raw.astype(str), return_inverse=True)
        from ._validation import check_embeddings

        x = check_embeddings(x)
        head = train_head(x, y, len(names), seed=seed)
        result = deepview(
            x,
            prob_fn_from_module(head),
            labels=y,
            class_names=[str(v) for v in names],
            texts=texts,
            lambdas=lams,
            metric=metric,
            n_steps=steps,
            resolution=resolution,
            seed=seed,
            name=embeddings.name,
            log_fn=con.print,
            n_neighbors=neighbors,
            candidates=cand,
        )
    else:
        result = text_deepview(
            case,
            task=task,
            n_view=n,
            lambdas=lams,
            n_steps=steps,
            n_adversarial=adversarial,
            metric=metric,
            resolution=resolution,
            seed=seed,
            log=con.print,
            n_neighbors=neighbors,
            candidates=cand,
        )
    table = Table(title=result.name or "DeepView")
    frame = result.to_frame()
    for col in frame.columns:
        table.add_column(str(col))
    for row in frame.itertuples(index=False):
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row])
    con.print(table)
    con.print(f"time: {result.timings.get('total', 0):.1f}s (distances + UMAP + inverse map + grid)")
    if save:
        con.print(f"saved: {result.save(save)}")
    if out:
        from ..report import Report

        rep = Report("layerscope DeepView", subtitle=result.name)
        rep.add(result)
        con.print(f"report: {rep.write(out)}")


def register(app: typer.Typer) -> None:
    """Add ``layerscope deepview`` to the CLI."""
    app.command("deepview")(deepview_cmd)
