"""``layerscope attribute`` and ``layerscope attention`` (registered by ``layerscope.cli``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import ConfigError

METHOD_NAMES = ("ig", "saliency", "ixg", "smoothgrad", "lrp", "ablation", "kernelshap", "lime")
SENTIMENT_ALIASES = ("minilm-sentiment", "sentiment")


def load_subject(model: str, device: str = "cpu") -> Any:
    """``minilm-sentiment`` (the cached MiniLM sentiment classifier) or anything ``layerscope.load`` takes."""
    if model.lower() in SENTIMENT_ALIASES:
        from ..models.classifier import sentiment_classifier

        return sentiment_classifier(device=device)
    from ..models import load

    return load(model, device=device)


def make_attributor(subject: Any, method: str, *, site: str | None, steps: str) -> Any:
    """An attributor by CLI name."""
    from . import (
        LRP,
        FeatureAblation,
        InputXGradient,
        IntegratedGradients,
        KernelShap,
        Lime,
        Saliency,
        SmoothGrad,
    )

    if method == "ig":
        n: int | str = "auto" if steps == "auto" else _int(steps, "--steps")
        return IntegratedGradients(subject, site=site, n_steps=n)  # type: ignore[arg-type]
    if method == "saliency":
        return Saliency(subject, site=site)
    if method == "ixg":
        return InputXGradient(subject, site=site)
    if method == "smoothgrad":
        return SmoothGrad(subject, site=site)
    if method == "lrp":
        return LRP(subject, site=site)
    if method == "ablation":
        return FeatureAblation(subject)
    if method == "kernelshap":
        return KernelShap(subject)
    if method == "lime":
        return Lime(subject)
    raise ConfigError(f"unknown method {method!r}; use one of {', '.join(METHOD_NAMES)}")


def _int(v: str, name: str) -> int:
    try:
        return int(v)
    except ValueError:
        raise ConfigError(f"{name} must be an integer or 'auto', got {v!r}") from None


def load_images(subject: Any, items: list[str]) -> tuple[Any, list[str]]:
    """Image files, or names of bundled photos (``chelsea``, ``coffee``...), as uint8 ``[N, size, size, 3]``."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from .images import PHOTOS, sample_photos

    size = subject.image.size
    out, names = [], []
    for item in items:
        path = Path(item).expanduser()
        if path.is_file():
            try:
                with Image.open(path) as im:
                    img = im.convert("RGB")
            except (UnidentifiedImageError, OSError) as e:
                raise ConfigError(f"cannot read {path} as an image ({e}); give a PNG/JPEG file") from None
            w, h = img.size
            side = min(w, h)
            img = img.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
            out.append(np.asarray(img.resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8))
        elif item in PHOTOS:
            out.append(sample_photos([item], size=size)[0][0])
        else:
            raise ConfigError(
                f"no image file {item!r}; give a path or a bundled photo name ({', '.join(sorted(PHOTOS))})"
            )
        names.append(path.name if path.is_file() else item)
    return np.stack(out), names


def resolve_target(subject: Any, texts: Any, target: str | None) -> Any:
    """A class index/name or token id; default: the model's own prediction (argmax) for each input."""
    import torch

    from ..capture.hooks import pick

    if target is None and not isinstance(texts, list):  # images
        with torch.no_grad():
            logits = pick(subject.forward({"x": subject.image.preprocess(texts).to(subject.device)}), 0)
        return logits.argmax(-1).tolist()
    if target is None:
        enc = subject.tokenize(texts)
        with torch.no_grad():
            logits = pick(subject.forward({k: v.to(subject.device) for k, v in enc.items()}), 0)
        if logits.ndim == 3:
            last = enc["attention_mask"].sum(1) - 1
            logits = logits[torch.arange(len(texts)), last.to(logits.device)]
        return logits.argmax(-1).tolist()
    names = subject.class_names or []
    if target in names:
        return names.index(target)
    try:
        return int(target)
    except ValueError:
        pass
    if subject.kind == "causal_lm":
        ids = subject.tokenizer(target, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            return ids[0]
        raise ConfigError(
            f"target {target!r} is {len(ids)} tokens; use --continuation for a multi-token target"
        )
    valid = ", ".join(names) if names else "an integer class index"
    raise ConfigError(f"unknown target {target!r}; use {valid}")


def attribute_cmd(
    model: Annotated[str, typer.Argument(help="minilm-sentiment, an embedded name, a folder or a hub name")],
    text: Annotated[
        list[str],
        typer.Argument(help="one or more texts; for image models, image files or bundled photo names"),
    ],
    method: Annotated[
        str,
        typer.Option(
            "--method", help="ig | saliency | ixg | smoothgrad | lrp | ablation | kernelshap | lime"
        ),
    ] = "ig",
    target: Annotated[
        str | None, typer.Option(help="class index or name, or token id (default: the prediction)")
    ] = None,
    continuation: Annotated[
        str | None, typer.Option(help="causal LMs: attribute this continuation, token by token")
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option(
            help="zero | pad | mask | unk | uniform | gaussian; images: black | grey | blur (default)"
        ),
    ] = None,
    site: Annotated[str | None, typer.Option(help="site to attribute at (default embed)")] = None,
    steps: Annotated[str, typer.Option(help="IG steps, or 'auto' (adaptive)")] = "50",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="save the result to this folder")] = None,
    report: Annotated[Path | None, typer.Option(help="write an HTML report here")] = None,
    device: Annotated[str, typer.Option(help="torch device")] = "cpu",
) -> None:
    """What in this input drove this output? Per-word scores for each text, heat maps for each image."""
    from rich.console import Console
    from rich.table import Table

    from . import Continuation

    if method not in METHOD_NAMES:
        raise ConfigError(f"unknown method {method!r}; use one of {', '.join(METHOD_NAMES)}")
    if not text or not all(t.strip() for t in text):
        raise ConfigError("give at least one non-empty TEXT (or image)")
    subject = load_subject(model, device)
    is_image = subject.image is not None and subject.tokenizer is None
    inputs: Any = list(text)
    names: list[str] = []
    if is_image:
        if continuation is not None:
            raise ConfigError("--continuation is for causal LMs; this is an image model")
        inputs, names = load_images(subject, list(text))
    attributor = make_attributor(subject, method, site=site, steps=steps)
    kwargs: dict[str, Any] = {}
    if continuation is not None:
        tgt: Any = Continuation(continuation)
    else:
        tgt = resolve_target(subject, inputs, target)
    if method in ("ig", "ablation", "kernelshap", "lime"):
        kwargs["baseline"] = baseline or ("blur" if is_image else "pad")
    result = attributor.attribute(inputs, target=tgt, **kwargs)
    if is_image:
        _print_images(result, names, out=out, report=report, title=f"Attribution: {subject.name}")
        return
    console = Console(highlight=False)
    for row in range(len(result.target)):
        table = Table(title=f"text {int(result.example[row])} → {result.target[row]}")
        table.add_column("word")
        table.add_column("score", justify="right")
        for w, v in result.word_scores_of(row):
            table.add_row(w, f"{v:+.4f}")
        console.print(table)
    console.print(result.summary())
    if out is not None:
        console.print(f"saved {result.save(out)}")
    if report is not None:
        from ..report import Report

        rep = Report(f"Attribution: {subject.name}")
        rep.add(result)
        console.print(f"wrote {rep.write(report)}")


def _print_images(
    result: Any, names: list[str], *, out: Path | None, report: Path | None, title: str
) -> None:
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    table = Table(title=f"{result.method}: per-image totals")
    for col in ("image", "target", "sum", "max |score|", "delta"):
        table.add_column(col, justify="left" if col in ("image", "target") else "right")
    for row in range(len(result.target)):
        flat = np.asarray(result.scores[row]).ravel()
        table.add_row(
            names[int(result.example[row])],
            str(result.target[row]),
            f"{flat.sum():+.4f}",
            f"{np.abs(flat).max():.4f}",
            f"{result.delta[row]:+.2e}" if np.isfinite(result.delta[row]) else "-",
        )
    console.print(table)
    console.print(result.summary())
    if out is not None:
        console.print(f"saved {result.save(out)}")
    if report is not None:
        from ..report import Report
        from .images import overlay_figure

        rep = Report(title)
        rep.add_section(
            f"{result.method}: heat-map overlays",
            text=result.summary(),
            figures=[overlay_figure(result, names=names)],
            tables=[result.to_frame()],
        )
        console.print(f"wrote {rep.write(report)}")


def attention_cmd(
    model: Annotated[str, typer.Argument(help="minilm-sentiment, an embedded name, a folder or a hub name")],
    text: Annotated[str, typer.Argument(help="the text")],
    position: Annotated[int | None, typer.Option(help="output token (default [CLS] / last token)")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="save the result to this folder")] = None,
    report: Annotated[Path | None, typer.Option(help="write an HTML report here")] = None,
    device: Annotated[str, typer.Option(help="torch device")] = "cpu",
) -> None:
    """Attention rollout and flow (Abnar & Zuidema 2020) into one token."""
    from rich.console import Console

    from . import attention

    if not text.strip():
        raise ConfigError("TEXT is empty")
    subject = load_subject(model, device)
    res = attention(subject, text, position=position)
    console = Console(highlight=False)
    console.print(res.to_frame().to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    console.print(res.summary())
    if out is not None:
        console.print(f"saved {res.save(out)}")
    if report is not None:
        from ..report import Report

        rep = Report(f"Attention: {subject.name}")
        rep.add(res)
        console.print(f"wrote {rep.write(report)}")


def register(app: typer.Typer) -> None:
    """Add ``attribute`` and ``attention`` to the layerscope CLI."""
    app.command("attribute")(attribute_cmd)
    app.command("attention")(attention_cmd)
