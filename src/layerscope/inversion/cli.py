"""``layerscope invert MODEL --target " girl" --target " boy"``: prompt inversion from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def invert_cmd(
    model: Annotated[str, typer.Argument(help="causal LM: smollm2, a folder or a hub name")],
    target: Annotated[
        list[str], typer.Option("--target", "-t", help="continuation text, repeatable (quote leading spaces)")
    ],
    restarts: Annotated[int, typer.Option("--restarts", "-r", help="random starts per target")] = 16,
    steps: Annotated[int, typer.Option("--steps", "-s", help="optimisation steps")] = 100,
    length: Annotated[int, typer.Option("--length", "-l", help="prompt tokens to optimise")] = 5,
    lam: Annotated[float, typer.Option("--lam", help="λ: weight of the nearest-token distance")] = 0.1,
    metric: Annotated[str, typer.Option(help="cosine or l2 (nearest token and distance)")] = "cosine",
    pez: Annotated[
        bool, typer.Option("--pez/--soft", help="PEZ projected steps, or plain soft prompts + λ penalty")
    ] = True,
    fluency: Annotated[float, typer.Option(help="weight of the prompt's own log-likelihood")] = 0.0,
    prefix: Annotated[str, typer.Option(help="fixed text before the prompt")] = "",
    suffix: Annotated[str, typer.Option(help="fixed text after the prompt")] = "",
    ascii_only: Annotated[bool, typer.Option(help="only printable-ASCII tokens")] = False,
    allow_target_tokens: Annotated[bool, typer.Option(help="let the prompt use the target's tokens")] = False,
    exclude: Annotated[
        list[str] | None, typer.Option(help="text whose tokens the prompt may not use")
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help="Adam lr in embedding-RMS units (default 3 PEZ, 1 soft)")
    ] = None,
    threshold: Annotated[float, typer.Option(help="probability counted as success")] = 0.5,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    save: Annotated[Path | None, typer.Option(help="save the InversionResult to this folder")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="write an HTML report here")] = None,
    device: Annotated[str, typer.Option(help="torch device")] = "cpu",
) -> None:
    """What prompt makes a causal LM say TARGET? Batched soft-prompt / PEZ inversion with token maps."""
    from rich.console import Console
    from rich.table import Table

    from .. import load
    from .invert import invert
    from .result import show

    subject = load(model, device=device)
    result = invert(
        subject,
        target,
        restarts=restarts,
        steps=steps,
        length=length,
        lam=lam,
        metric=metric,
        project=pez,
        fluency_weight=fluency,
        prefix=prefix,
        suffix=suffix,
        ascii_only=ascii_only,
        exclude_target=not allow_target_tokens,
        exclude=list(exclude or []),
        lr=lr,
        threshold=threshold,
        seed=seed,
        progress=True,
    )
    console = Console(highlight=False)
    table = Table(title=f"{subject.name}: {restarts} restarts × {steps} steps, {length} prompt tokens")
    for col in (
        "target",
        "best hard prompt",
        "p(hard)",
        "best random p",
        f"share p≥{threshold:g}",
        "top tokens",
    ):
        table.add_column(col)
    for k, t in enumerate(result.targets):
        text, p = result.best_prompt(k)
        m = result.token_map(k).head(5)
        top = ", ".join(f"{show(s)}×{c}" for s, c in zip(m["item"], m["restarts"], strict=True))
        table.add_row(
            repr(t),
            repr(text),
            f"{p:.3g}",
            f"{float(result.random_prob[k].max()):.2g}",
            f"{result.success_rate()[k]:.0%}",
            top,
        )
    console.print(table)
    console.print(f"{result.seconds:.1f}s ({result.steps_per_second:.2f} steps/s)")
    if save is not None:
        console.print(f"saved: {result.save(save)}")
    if out is not None:
        from ..report import Report

        rep = Report("layerscope invert", subtitle=f"{subject.name} · {', '.join(repr(t) for t in target)}")
        rep.add(result)
        console.print(f"report: {rep.write(out)}")


def register(app: typer.Typer) -> None:
    """Add ``layerscope invert`` to the main app."""
    app.command("invert")(invert_cmd)
