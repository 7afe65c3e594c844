"""``layerscope concepts``: train and compare concept bottleneck / embedding models from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError


def concepts_cmd(
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            "--dataset", "-d", help="xor | trig | dot | a .csv/.npz file (repeatable; default: all three)"
        ),
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            "-m",
            help="cem, cem-no-randint, cbm-joint, cbm-joint-bool, cbm-joint-logit, cbm-hybrid, "
            "cbm-hybrid-logit, cbm-sequential, cbm-independent, dnn (repeatable; default: the suite)",
        ),
    ] = None,
    seeds: Annotated[int, typer.Option("--seeds", "-n", help="seeds per model (trained together)")] = 5,
    max_epochs: Annotated[int, typer.Option(help="epoch limit (early stopping on validation loss)")] = 500,
    patience: Annotated[int, typer.Option(help="early-stopping patience in epochs")] = 15,
    batch_size: Annotated[int, typer.Option(help="minibatch size (0 = full batch)")] = 256,
    lr: Annotated[float, typer.Option(help="Adam learning rate")] = 0.01,
    label_column: Annotated[str, typer.Option(help="CSV task-label column")] = "y",
    concept_prefix: Annotated[str, typer.Option(help="CSV concept columns start with this")] = "c_",
    cas: Annotated[bool, typer.Option(help="compute the Concept Alignment Score")] = True,
    threads: Annotated[
        int, typer.Option(help="torch CPU threads (the models are tiny: 1 avoids threading overhead)")
    ] = 1,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="HTML report to write")] = None,
    save: Annotated[Path | None, typer.Option(help="save the ConceptModelResult to this folder")] = None,
) -> None:
    """Concept bottleneck and concept embedding models: task/concept accuracy (mean ± std) and interventions."""
    import torch
    from rich.console import Console
    from rich.table import Table

    from .data import SYNTHETIC, from_file
    from .models import PRESETS, SUITE
    from .suite import run
    from .train import TrainConfig

    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    if threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    models = list(model or SUITE)
    unknown = [m for m in models if m not in PRESETS]
    if unknown:
        raise ConfigError(f"unknown --model {unknown}; choose from {', '.join(PRESETS)}")
    specs = list(dataset or SYNTHETIC)
    datasets = [
        s
        if s.lower() in SYNTHETIC
        else from_file(s, label_column=label_column, concept_prefix=concept_prefix)
        for s in specs
    ]
    train = TrainConfig(lr=lr, batch_size=batch_size, max_epochs=max_epochs, patience=patience)
    con = Console(highlight=False)
    result = run(datasets, models, seeds=seeds, train=train, cas=cas, log=con.print)
    table = Table(title=f"test split, mean ± std over {seeds} seed(s), % ({result.seconds:.0f} s)")
    frame = result.table()
    for col in frame.columns:
        table.add_column(str(col))
    for row in frame.itertuples(index=False):
        table.add_row(*[str(v) for v in row])
    con.print(table)
    if save:
        con.print(f"saved: {result.save(save)}")
    if out:
        from ..report import Report

        rep = Report("layerscope concepts", subtitle=", ".join(str(s) for s in specs))
        rep.add(result)
        con.print(f"report: {rep.write(out)}")


def register(app: typer.Typer) -> None:
    """Add ``layerscope concepts`` to the main app."""
    app.command("concepts")(concepts_cmd)
