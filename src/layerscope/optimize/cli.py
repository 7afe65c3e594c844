"""CLI: ``layerscope visualize | prototypes | isolate | attack | shortcut-study`` (registered by
``layerscope.cli``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import ConfigError

MODEL_HELP = (
    "effnet-lite0, cifar10-cnn (a small CNN trained once on bundled CIFAR-10 and cached), or a path/name"
)
CIFAR_HOLDOUT = 8000  # cifar10-cnn is trained on the first 8000 bundled images; the rest are held out


def _subject(model: str, device: str) -> Any:
    if model in ("cifar10-cnn", "cifar-cnn"):
        from ._models import cifar_cnn

        return cifar_cnn().to(device)
    from ..models import load

    return load(model, device=device)


def _ints(text: str | None, what: str) -> list[int] | None:
    if text is None or text == "":
        return None
    try:
        if "-" in text and "," not in text:
            a, b = text.split("-")
            return list(range(int(a), int(b) + 1))
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError as e:
        raise ConfigError(f"{what} must be integers like 0,3,5 or a range 0-7, got {text!r}") from e


def _floats(text: str, what: str) -> list[float]:
    out = []
    for t in text.split(","):
        t = t.strip()
        try:
            if "/" in t:
                a, b = t.split("/")
                out.append(float(a) / float(b))
            else:
                out.append(float(t))
        except (ValueError, ZeroDivisionError) as e:
            raise ConfigError(f"{what} must be numbers like 8/255 or 0.03, got {t!r}") from e
    return out


def _finish(result: Any, save: Path | None, report: Path | None, title: str) -> None:
    from rich.console import Console

    con = Console(highlight=False)
    con.print(result.summary())
    con.print(result.to_frame().head(20).to_string(index=False))
    if save:
        con.print(f"saved: {result.save(save)}")
    if report:
        from ..report import build_report

        con.print(f"report: {build_report([result], report, title=title)}")


def _cifar(limit: int) -> tuple[Any, Any, list[str]]:
    from ..data.corpus import cifar10_test

    images, labels, names = cifar10_test()
    return images[CIFAR_HOLDOUT : CIFAR_HOLDOUT + limit], labels[CIFAR_HOLDOUT : CIFAR_HOLDOUT + limit], names


def _sized(subject: Any, images: Any) -> Any:
    import torch

    from ._models import to_images

    x = to_images(images)
    size = subject.image.size
    if x.shape[-1] != size:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True).clamp(0, 1)
    return x


def visualize_cmd(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    site: Annotated[str, typer.Option("--site", "-s", help="site, e.g. blocks.10.out, module:6, logits")],
    units: Annotated[str | None, typer.Option("--units", "-u", help="unit indices: 0,3,5 or 0-7")] = None,
    kind: Annotated[str, typer.Option(help="channel, neuron, layer or logit")] = "channel",
    steps: Annotated[int, typer.Option(help="optimisation steps")] = 256,
    size: Annotated[int, typer.Option(help="image side in pixels")] = 128,
    param: Annotated[str, typer.Option(help="fourier or pixel")] = "fourier",
    transforms: Annotated[str, typer.Option(help="standard or none")] = "standard",
    lr: Annotated[float, typer.Option(help="Adam learning rate")] = 0.05,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    save: Annotated[Path | None, typer.Option(help="save the FeatureVisResult to this folder")] = None,
    report: Annotated[Path | None, typer.Option(help="write an HTML report here")] = None,
    precision: Annotated[
        str, typer.Option(help="float32, bfloat16, or auto (bfloat16 where native and measured faster)")
    ] = "float32",
    device: Annotated[str, typer.Option(help="torch device")] = "cpu",
) -> None:
    """Feature visualisation: what each unit of a site wants to see (one batched optimisation)."""
    from .._precision import check_precision
    from .featvis import KINDS, visualize

    check_precision(precision)
    if kind not in KINDS:
        raise ConfigError(f"unknown --kind {kind!r}; use one of {', '.join(KINDS)}")
    unit_list = _ints(units, "--units")
    subject = _subject(model, device)
    result = visualize(
        subject,
        site,
        unit_list,
        kind=kind,
        steps=steps,
        size=size,
        param=param,
        transforms=transforms,
        lr=lr,
        seed=seed,
        progress=True,
        precision=precision,
    )
    _finish(result, save, report, f"layerscope feature visualisation: {subject.name}")


def prototypes_cmd(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    classes: Annotated[
        str | None, typer.Option(help="class indices (default: all, or 0-9 for ImageNet)")
    ] = None,
    steps: Annotated[int, typer.Option(help="optimisation steps")] = 512,
    size: Annotated[int | None, typer.Option(help="image side (default: the model's input size)")] = None,
    lr: Annotated[float, typer.Option(help="Adam learning rate")] = 0.05,
    entangle: Annotated[
        bool, typer.Option("--entanglement/--no-entanglement", help="entanglement vs confusion (cifar10-cnn)")
    ] = True,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    save: Annotated[Path | None, typer.Option(help="save the PrototypeResult to this folder")] = None,
    report: Annotated[Path | None, typer.Option(help="write an HTML report here")] = None,
    precision: Annotated[
        str, typer.Option(help="float32, bfloat16, or auto (bfloat16 where native and measured faster)")
    ] = "float32",
    device: Annotated[str, typer.Option(help="torch device")] = "cpu",
) -> None:
    """Class prototypes in one batched run; with cifar10-cnn also the entanglement matrix vs confusion."""
    from .._precision import check_precision
    from .prototypes import entanglement, prototypes

    check_precision(precision)
    cls = _ints(classes, "--classes")
    subject = _subject(model, device)
    if cls is None and subject.class_names is None:
        cls = list(range(10))
    result = prototypes(
        subject, cls, steps=steps, size=size, lr=lr, seed=seed, progress=True, precision=precision
    )
    results: list[Any] = [result]
    _finish(result, save, None, "")
    if entangle and subject.name == "cifar10-cnn":
        images, labels, _ = _cifar(2000)
        ent = entanglement(subject, result, images, labels)
        results.append(ent)
        _finish(ent, save.with_name(save.name + "-entanglement") if save else None, None, "")
    if report:
        from ..report import build_report

        typer.echo(f"report: {build_report(results, report, title=f'layerscope prototypes: {subject.name}')}")


def isolate_cmd(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    index: Annotated[int, typer.Option(help="index of a held-out bundled CIFAR-10 image")] = 0,
    top_k: Annotated[int, typer.Option(help="isolate the top-k predicted classes")] = 3,
    areas: Annotated[str, typer.Option(help="mask areas, e.g. 0.05,0.1,0.2")] = "0.05,0.1,0.2",
    steps: Annotated[int, typer.Option(help="optimisation steps")] = 300,
    perturbation: Annotated[
        str, typer.Option(help="what hidden pixels become: blur or mean (the dataset-mean colour)")
    ] = "blur",
    compare: Annotated[
        bool,
        typer.Option("--compare", help="also compare each mask with |Integrated Gradients| and occlusion"),
    ] = False,
    save: Annotated[Path | None, typer.Option(help="save the IsolationResult to this folder")] = None,
    report: Annotated[Path | None, typer.Option(help="write an HTML report here")] = None,
    device: Annotated[str, typer.Option(help="torch device")] = "cpu",
) -> None:
    """Feature isolation: the smallest smooth region that keeps each top class's score."""
    from .isolation import PERTURBATIONS, isolate

    if perturbation not in PERTURBATIONS:
        raise ConfigError(f"unknown --perturbation {perturbation!r}; use {' or '.join(PERTURBATIONS)}")
    area_list = _floats(areas, "--areas")
    if not 0 <= index < 10000 - CIFAR_HOLDOUT:
        raise ConfigError(f"--index must be in 0..{10000 - CIFAR_HOLDOUT - 1}, got {index}")
    subject = _subject(model, device)
    images, _, _ = _cifar(index + 1)
    result = isolate(
        subject,
        _sized(subject, images[index : index + 1]),
        top_k=top_k,
        areas=area_list,
        steps=steps,
        perturbation=perturbation,
        progress=True,
    )
    title = f"layerscope feature isolation: {subject.name}"
    if not compare:
        _finish(result, save, report, title)
        return
    _finish(result, save, None, title)
    cmp = result.compare(subject)
    _finish(cmp, save.with_name(save.name + "-compare") if save else None, None, title)
    if report:
        from ..report import build_report

        typer.echo(f"report: {build_report([result, cmp], report, title=title)}")


def attack_cmd(
    model: Annotated[str, typer.Argument(help=MODEL_HELP)],
    eps: Annotated[
        str, typer.Option(help="ε in pixel units: 8/255, 0.03; a list gives a success curve")
    ] = "8/255",
    steps: Annotated[int, typer.Option(help="PGD steps (1 with --fgsm)")] = 10,
    norm: Annotated[str, typer.Option(help="linf or l2")] = "linf",
    n: Annotated[int, typer.Option(help="number of held-out CIFAR-10 images")] = 64,
    target: Annotated[int | None, typer.Option(help="target class (targeted attack)")] = None,
    fgsm_only: Annotated[bool, typer.Option("--fgsm", help="FGSM instead of PGD")] = False,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    save: Annotated[Path | None, typer.Option(help="save the AdversarialResult to this folder")] = None,
    report: Annotated[Path | None, typer.Option(help="write an HTML report here")] = None,
    device: Annotated[str, typer.Option(help="torch device")] = "cpu",
) -> None:
    """Adversarial examples (FGSM / PGD, L∞ or L2) on held-out CIFAR-10 images; labels are the model's own
    predictions unless the model is cifar10-cnn (true labels)."""
    import torch

    from .adversarial import NORMS, _check_eps, fgsm, pgd, success_curve

    eps_list = _check_eps(_floats(eps, "--eps"), "--eps")
    if norm not in NORMS:
        raise ConfigError(f"unknown --norm {norm!r}; use linf or l2")
    if n < 1:
        raise ConfigError(f"--n must be >= 1, got {n}")
    subject = _subject(model, device)
    images, labels, _ = _cifar(n)
    x = _sized(subject, images).to(subject.device)
    if subject.name != "cifar10-cnn":
        with torch.no_grad():
            out = subject.model(subject.image.normalise(x))
        labels = getattr(out, "logits", out).argmax(-1).cpu().numpy()
    kw: dict[str, Any] = {"norm": norm, "targeted": target is not None, "targets": target}
    if len(eps_list) > 1:
        result = success_curve(subject, x, labels, eps_list, steps=steps, seed=seed, **kw)
    elif fgsm_only:
        result = fgsm(subject, x, labels, eps=eps_list[0], **kw)
    else:
        result = pgd(subject, x, labels, eps=eps_list[0], steps=steps, seed=seed, **kw)
    _finish(result, save, report, f"layerscope adversarial examples: {subject.name}")


def shortcut_study_cmd(
    quick: Annotated[
        bool, typer.Option("--quick", help="small models and few masks (~1 min cold, ~10 s cached)")
    ] = False,
    seed: Annotated[str, typer.Option(help="seed, or several: 0,1,2 (each its own split and models)")] = "0",
    cue_class: Annotated[
        str, typer.Option(help="CIFAR-10 class whose training images get the frame")
    ] = "airplane",
    cue_width: Annotated[int, typer.Option(help="frame width in pixels (1..8)")] = 3,
    out: Annotated[Path | None, typer.Option("--out", "--report", help="write an HTML report here")] = None,
    save: Annotated[Path | None, typer.Option(help="save the ShortcutStudyResult to this folder")] = None,
) -> None:
    """Case study "is it the object or the frame?": plant a colour-frame shortcut in one CIFAR-10 class, train
    clean / shortcut / diversified CNNs (cached), and measure it with accuracies, isolation masks and prototypes."""
    from rich.console import Console

    from .shortcut import shortcut_study

    seeds = _ints(seed, "--seed")
    if not seeds:
        raise ConfigError("--seed must be an integer like 0 or a list like 0,1,2")
    con = Console(highlight=False)
    result = shortcut_study(
        quick=quick,
        seed=seeds,
        cue_class=cue_class,
        cue_width=cue_width,
        log=lambda m: con.print(m),
    )
    con.print(result.summary())
    con.print(result.table().round(3).to_string())
    if save:
        con.print(f"saved: {result.save(save)}")
    if out:
        from ..report import build_report

        con.print(f"report: {build_report([result], out, title='layerscope shortcut study')}")


def register(app: typer.Typer) -> None:
    """Add the optimisation commands to the ``layerscope`` app."""
    app.command("visualize")(visualize_cmd)
    app.command("featureviz", hidden=True)(visualize_cmd)  # the name in the issue / lucid's users' habit
    app.command("prototypes")(prototypes_cmd)
    app.command("isolate")(isolate_cmd)
    app.command("attack")(attack_cmd)
    app.command("shortcut-study")(shortcut_study_cmd)
