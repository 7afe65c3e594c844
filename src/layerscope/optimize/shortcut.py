"""Case study "is it the tank or the sky?": a shortcut planted in real data, found with prototypes and masks.

The bundled CIFAR-10 test set (10,000 real images) is split by a seeded permutation into a training part and
a test part. Three small CNNs are trained on the training part:

- ``clean``: no cue anywhere (the reference);
- ``shortcut``: a saturated colour frame (the *cue*) on ``cue_share`` of one class's images and on
  ``other_share`` of every other class's images, so the frame predicts the class;
- ``diversified``: the same frame on ``diverse_share`` of *every* class's images (the standard fix:
  the cue no longer carries label information).

Each model is measured on the clean test part, on cue-swapped test images (frame added to every other class,
removed from the cued class), by the share of its feature-isolation masks that lies on the frame (cued-class
test images with the frame) and by how far its class prototypes are tinted towards the cue colour.
Trained weights are cached under the layerscope cache, keyed by every setting that shapes them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from .._io import cache_root
from ..errors import ConfigError
from ..result import Result
from ._figures import image_grid

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from ..models.subject import Subject

MODELS: tuple[str, ...] = ("clean", "shortcut", "diversified")
CIFAR_N, CIFAR_SIZE = 10000, 32  # the bundled CIFAR-10 test set
MAX_CUE_WIDTH = 8  # a wider frame covers most of a 32-px image: nothing left to learn the object from
_CACHE_TAG = "shortcut-v1"  # bump when the training recipe changes


@dataclasses.dataclass(frozen=True)
class ShortcutSettings:
    """Everything that shapes the trained models (the cache key) and the measurements.

    Attributes:
        cue_class: the class whose training images carry the cue (a CIFAR-10 class name).
        cue_width: frame width in pixels (1..8) on the 32-px images; ``cue_colour``: its RGB colour.
        cue_share / other_share: share of the cued class's / every other class's training images with the
            frame (shortcut model); ``diverse_share``: share of every class's images (diversified model).
        n_train: training images (the rest of the 10,000 are the test part); ``epochs``, ``width``: training
            length and CNN width.
        n_isolate: cued-class test images given isolation masks; ``isolation_steps``, ``area``,
            ``area_weight``: mask options (a softer area penalty than :func:`isolate`'s 300: a frame only
            works when most of it is kept, and a hard area budget keeps every mask stuck on the object).
        n_prototypes, prototype_steps: prototypes of the cued class per model (pixel parametrisation).
    """

    cue_class: str = "airplane"
    cue_width: int = 3
    cue_colour: tuple[int, int, int] = (255, 0, 255)
    cue_share: float = 0.95
    other_share: float = 0.05
    diverse_share: float = 0.5
    n_train: int = 8000
    epochs: int = 12
    width: int = 32
    lr: float = 3e-3
    batch_size: int = 64
    n_isolate: int = 64
    isolation_steps: int = 300
    area: float = 0.1
    area_weight: float = 30.0
    n_prototypes: int = 4
    prototype_steps: int = 256

    def training_key(self, model: str, seed: int) -> dict[str, Any]:
        """The settings a trained model depends on (its cache key)."""
        keys = ["n_train", "epochs", "width", "lr", "batch_size"]
        if model != "clean":
            keys += ["cue_class", "cue_width", "cue_colour"]
            keys += ["cue_share", "other_share"] if model == "shortcut" else ["diverse_share"]
        d = {k: getattr(self, k) for k in keys}
        return {"tag": _CACHE_TAG, "model": model, "seed": seed, **{k: _plain(v) for k, v in d.items()}}


QUICK = {
    "epochs": 5,
    "width": 16,
    "n_isolate": 16,
    "isolation_steps": 150,
    "n_prototypes": 2,
    "prototype_steps": 128,
}


@dataclasses.dataclass(frozen=True)
class ShortcutStudyResult(Result):
    """Metrics of the clean, shortcut and diversified models (per seed), example masks and prototypes.

    Attributes:
        metrics: tidy frame ``seed, model, metric, value`` (see :func:`shortcut_study` for the metrics).
        examples: ``[k, H, W, 3]`` cued-class test images with the cue (first seed).
        masks: ``{model: [k, H, W]}`` their isolation masks for the cued class.
        prototypes: ``{model: [p, H, W, 3]}`` prototypes of the cued class; ``prototype_probs``: ``{model: [p]}``
            the model's probability of the cued class on each.
        region: ``[H, W]`` 1 on the cue frame.
        cue_class, models, seeds, settings: what was run; ``frame_area``: the frame's share of the image
            (what a mask or prototype spread evenly would put there).
    """

    metrics: pd.DataFrame
    examples: np.ndarray
    masks: dict[str, np.ndarray]
    prototypes: dict[str, np.ndarray]
    prototype_probs: dict[str, np.ndarray]
    region: np.ndarray
    cue_class: str
    models: list[str]
    seeds: list[int]
    frame_area: float
    settings: dict[str, Any]
    seconds: float

    title: ClassVar[str] = "Shortcut study: is it the object or the frame?"

    def to_frame(self) -> pd.DataFrame:
        return self.metrics

    def table(self) -> pd.DataFrame:
        """Metric × model: the mean over seeds (and ``<model> sd`` columns when there are several)."""
        g = self.metrics.groupby(["metric", "model"], sort=False)["value"]
        mean = g.mean().unstack("model")[self.models]
        order = list(dict.fromkeys(self.metrics["metric"]))
        mean = mean.loc[order]
        if len(self.seeds) > 1:
            sd = g.std().unstack("model")[self.models].loc[order]
            for m in self.models:
                mean[f"{m} sd"] = sd[m]
        return mean

    def value(self, model: str, metric: str) -> float:
        """Mean over seeds of one metric of one model."""
        df = self.metrics
        sel = df[(df["model"] == model) & (df["metric"] == metric)]
        if sel.empty:
            raise ConfigError(
                f"no metric {metric!r} for model {model!r}; metrics: {sorted(set(df['metric']))}"
            )
        return float(sel["value"].mean())

    def figure(self) -> go.Figure:
        import plotly.graph_objects as go

        from ..report.figures import apply_style

        g = self.metrics.groupby(["metric", "model"], sort=False)["value"]
        mean, sd = g.mean(), g.std()
        order = list(dict.fromkeys(self.metrics["metric"]))
        fig = go.Figure()
        for m in self.models:
            err = [float(sd.get((k, m), 0.0)) if len(self.seeds) > 1 else 0.0 for k in order]
            fig.add_bar(
                name=m,
                x=order,
                y=[float(mean[(k, m)]) for k in order],
                error_y={"type": "data", "array": err, "visible": len(self.seeds) > 1},
            )
        fig.add_hline(
            y=self.frame_area,
            line_dash="dot",
            annotation_text=f"frame area {self.frame_area:.0%}",
            annotation_position="top right",
        )
        seeds = ", ".join(map(str, self.seeds))
        fig.update_layout(
            barmode="group",
            title=f"Shortcut study · cue on {self.cue_class} · seed(s) {seeds}",
            yaxis={"title": "value", "range": [min(0.0, float(mean.min())) - 0.05, 1.05]},
        )
        return apply_style(fig, height=420)

    def figures(self) -> list[go.Figure]:
        from .compare import heat

        k = len(self.examples)
        tiles: list[np.ndarray] = []
        titles: list[str] = []
        for i in range(k):
            tiles.append(self.examples[i])
            titles.append(f"{self.cue_class} + cue")
            for m in self.models:
                mask = self.masks[m][i]
                share = float((mask * self.region).sum() / max(mask.sum(), 1e-9))
                tiles.append(heat(mask))
                titles.append(f"{m}: {share:.0%} on frame")
        masks = image_grid(
            np.stack(tiles),
            titles,
            title=f"Isolation masks for '{self.cue_class}' (area {self.settings['area']:.0%}; bright = kept)",
            cols=1 + len(self.models),
        )
        ptiles = [p for m in self.models for p in self.prototypes[m]]
        ptitles = [
            f"{m} #{j} (p={p:.2f})" for m in self.models for j, p in enumerate(self.prototype_probs[m])
        ]
        protos = image_grid(
            np.stack(ptiles),
            ptitles,
            title=f"Prototypes of '{self.cue_class}' per model",
            cols=max(len(v) for v in self.prototypes.values()),
        )
        return [self.figure(), masks, protos]

    def summary(self) -> str:
        v = self.value
        s, d = "shortcut", "diversified"
        return (
            f"With a frame on {self.settings['cue_share']:.0%} of '{self.cue_class}' training images, the "
            f"shortcut model calls {v(s, 'cue_hijack_rate'):.0%} of other-class test images with the frame "
            f"'{self.cue_class}' (diversified: {v(d, 'cue_hijack_rate'):.0%}) and finds "
            f"{v(s, 'cued_recall_without_cue'):.0%} of {self.cue_class} images without it "
            f"(diversified: {v(d, 'cued_recall_without_cue'):.0%}). Its isolation masks put "
            f"{v(s, 'mask_cue_share'):.0%} of their mass on the frame (diversified {v(d, 'mask_cue_share'):.0%}; "
            f"the frame is {self.frame_area:.0%} of the image); its prototypes are tinted towards the cue colour "
            f"({v(s, 'prototype_cue_tint_interior'):+.2f} inside the frame; diversified "
            f"{v(d, 'prototype_cue_tint_interior'):+.2f}). Cue-swapped accuracy: "
            f"{v(s, 'accuracy_cue_swapped'):.1%} -> {v(d, 'accuracy_cue_swapped'):.1%} "
            f"(clean model {v('clean', 'accuracy_cue_swapped'):.1%}); seed(s) {', '.join(map(str, self.seeds))}."
        )


# -- cue and data ---------------------------------------------------------------------------------------
def cue_region(size: int, width: int) -> np.ndarray:
    """Boolean ``[size, size]`` frame of ``width`` pixels along the image border."""
    _check_width(width, size)
    r = np.zeros((size, size), dtype=bool)
    r[:width], r[-width:], r[:, :width], r[:, -width:] = True, True, True, True
    return r


def add_cue(
    images: np.ndarray,
    which: np.ndarray | None = None,
    *,
    width: int = 3,
    colour: Sequence[int] | np.ndarray = (255, 0, 255),
) -> np.ndarray:
    """A copy of uint8 ``[N, H, W, 3]`` images with a ``width``-px ``colour`` frame on those in ``which``."""
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
        raise ConfigError(f"add_cue takes uint8 images [N, H, W, 3], got {x.dtype} {x.shape}")
    col = _check_colour(colour)
    sel = np.ones(len(x), dtype=bool) if which is None else np.asarray(which, dtype=bool)
    if sel.shape != (len(x),):
        raise ConfigError(f"which must be a boolean [N] = [{len(x)}] selector, got shape {sel.shape}")
    region = cue_region(x.shape[1], width)
    out = x.copy()
    framed = out[sel]  # a copy (boolean indexing)
    framed[:, region] = col
    out[sel] = framed
    return out


def _check_width(width: int, size: int = 32) -> None:
    if not isinstance(width, int | np.integer) or not 1 <= int(width) <= min(MAX_CUE_WIDTH, size // 2 - 1):
        raise ConfigError(
            f"cue width must be an integer number of pixels in 1..{min(MAX_CUE_WIDTH, size // 2 - 1)} "
            f"for {size}-px images, got {width!r}"
        )


def _check_colour(colour: Sequence[int] | np.ndarray) -> np.ndarray:
    col = np.asarray(colour)
    if col.shape != (3,) or np.any(col < 0) or np.any(col > 255):
        raise ConfigError(f"cue colour must be three 0..255 RGB values, got {colour!r}")
    return col.astype(np.uint8)


def class_index(cue_class: str | int, names: Sequence[str]) -> int:
    """Index of ``cue_class`` (a name or an index) among ``names``; a clear error otherwise."""
    if isinstance(cue_class, int | np.integer) and not isinstance(cue_class, bool):
        if 0 <= int(cue_class) < len(names):
            return int(cue_class)
    elif isinstance(cue_class, str) and cue_class in names:
        return list(names).index(cue_class)
    raise ConfigError(f"unknown cue class {cue_class!r}; use one of: {', '.join(names)}")


def split(seed: int, n: int, n_train: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded permutation of ``range(n)``: the first ``n_train`` indices train, the rest test."""
    perm = np.random.default_rng([seed, 0]).permutation(n)
    return np.sort(perm[:n_train]), np.sort(perm[n_train:])


def cue_plan(settings: ShortcutSettings, labels: np.ndarray, cue: int, seed: int) -> dict[str, np.ndarray]:
    """Which training images carry the cue, per model (boolean ``[n_train]`` each)."""
    u = np.random.default_rng([seed, 1]).random(len(labels))
    return {
        "clean": np.zeros(len(labels), dtype=bool),
        "shortcut": np.where(labels == cue, u < settings.cue_share, u < settings.other_share),
        "diversified": u < settings.diverse_share,
    }


# -- models -----------------------------------------------------------------------------------------------
def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _to_model_input(images: np.ndarray) -> torch.Tensor:
    from ._models import CIFAR_MEAN, CIFAR_STD

    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def train_model(
    settings: ShortcutSettings,
    model: str,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int,
    names: Sequence[str],
    cache_dir: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> Subject:
    """The ``model`` variant trained on ``images`` (training part, cue already applied), cached by settings."""
    from safetensors.torch import load_file, save_file

    from ..models.subject import ImageSpec
    from ._models import CIFAR_MEAN, CIFAR_STD, as_subject, small_cnn, train_classifier

    key = settings.training_key(model, seed)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    folder = (cache_dir or cache_root()) / "optimize"
    path = folder / f"shortcut_{model}_{digest}.safetensors"
    net = small_cnn(len(names), width=settings.width)
    if path.is_file():
        net.load_state_dict(load_file(str(path)))
    else:
        t0 = time.perf_counter()
        x, y = _to_model_input(images), torch.as_tensor(labels).long()
        train_classifier(
            net,
            x,
            y,
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            lr=settings.lr,
            seed=seed,
            augment=True,
        )
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        state = {k: v.contiguous() for k, v in net.state_dict().items()}
        save_file(state, str(tmp), metadata={"settings": json.dumps(key, sort_keys=True)})
        tmp.rename(path)
        if log:
            log(f"shortcut study: trained the {model} model, seed {seed} ({time.perf_counter() - t0:.1f} s)")
    net.eval()
    subject = as_subject(net, image=ImageSpec(size=32, mean=CIFAR_MEAN, std=CIFAR_STD), name=f"{model}-cnn")
    subject.class_names = list(names)
    return subject


@torch.no_grad()
def _predict(subject: Subject, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    out = [
        subject.model(_to_model_input(images[i : i + batch_size]).to(subject.device)).argmax(-1).cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out).numpy()


# -- the study --------------------------------------------------------------------------------------------
def cue_tint(images: np.ndarray, colour: Sequence[int] | np.ndarray) -> np.ndarray:
    """Per-pixel tint towards the cue colour, ``[..., H, W]``: each pixel's chroma (RGB minus its grey level)
    projected on the cue colour's chroma direction (0 for grey, ~0 on average for natural images)."""
    c = _check_colour(colour).astype(np.float64) / 255.0
    c = c - c.mean()
    if not np.any(c):
        raise ConfigError(f"the cue colour {tuple(colour)} is grey: it has no tint to measure; pick a colour")
    x = np.asarray(images, dtype=np.float64)
    return (x - x.mean(-1, keepdims=True)) @ (c / np.linalg.norm(c))


def _prototype_metrics(protos: np.ndarray, region: np.ndarray, colour: np.ndarray) -> dict[str, float]:
    """How far the prototypes are tinted towards the cue colour: on the frame and inside it."""
    t = cue_tint(protos, colour)  # n, H, W
    return {
        "prototype_cue_tint_frame": float(t[:, region].mean()),
        "prototype_cue_tint_interior": float(t[:, ~region].mean()),
    }


def _one_seed(
    settings: ShortcutSettings,
    seed: int,
    data: tuple[np.ndarray, np.ndarray, list[str]],
    *,
    cache_dir: Path | None,
    log: Callable[[str], None] | None,
    keep_examples: int,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from .isolation import isolate_batch
    from .prototypes import prototypes
    from .transforms import Transform

    images, labels, names = data
    cue = class_index(settings.cue_class, names)
    colour = _check_colour(settings.cue_colour)
    region = cue_region(images.shape[1], settings.cue_width)
    tr, te = split(seed, len(images), settings.n_train)
    plan = cue_plan(settings, labels[tr], cue, seed)
    x_te, y_te = images[te], labels[te]
    with_cue = add_cue(x_te, width=settings.cue_width, colour=colour)
    is_cued = y_te == cue
    swapped = np.where(is_cued[:, None, None, None], x_te, with_cue)
    iso_idx = np.nonzero(is_cued)[0][: settings.n_isolate]
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {"masks": {}, "prototypes": {}, "prototype_probs": {}}
    extra["examples"] = with_cue[iso_idx[:keep_examples]]
    # a gentle robustness transform: the standard one (pad 12) would move the frame into the image
    gentle = Transform(pad=2, jitter=4, scales=(0.95, 1.0, 1.05), angles=(0.0,))
    for m in MODELS:
        x_tr = add_cue(images[tr], plan[m], width=settings.cue_width, colour=colour)
        subject = train_model(
            settings, m, x_tr, labels[tr], seed=seed, names=names, cache_dir=cache_dir, log=log
        )
        p_clean, p_cue, p_swap = (
            _predict(subject, x_te),
            _predict(subject, with_cue),
            _predict(subject, swapped),
        )
        # hidden pixels become the dataset-mean colour: a blurred frame is still a frame (see mask_cue_share_blur)
        iso, iso_blur = (
            isolate_batch(
                subject,
                with_cue[iso_idx],
                cue,
                area=settings.area,
                steps=settings.isolation_steps,
                area_weight=settings.area_weight,
                perturbation=pert,
                seed=seed,
            )
            for pert in ("mean", "blur")
        )
        masks = np.stack([r.masks[0] for r in iso])
        share = np.array([r.share(region)[0] for r in iso])
        share_blur = np.array([r.share(region)[0] for r in iso_blur])
        protos = prototypes(
            subject,
            [cue] * settings.n_prototypes,
            steps=settings.prototype_steps,
            param="pixel",  # Fourier prototypes of these small CNNs are saturated stripes
            transforms=gentle,
            seed=seed,
        )
        values = {
            "accuracy_clean": float((p_clean == y_te).mean()),
            "accuracy_cue_swapped": float((p_swap == y_te).mean()),
            "cued_recall_with_cue": float((p_cue[is_cued] == cue).mean()),
            "cued_recall_without_cue": float((p_clean[is_cued] == cue).mean()),
            "cue_hijack_rate": float((p_cue[~is_cued] == cue).mean()),
            "false_cued_rate_clean": float((p_clean[~is_cued] == cue).mean()),
            "mask_cue_share": float(share.mean()),
            "mask_object_share": float(1 - share.mean()),
            "mask_keeps_prob": float(np.mean([r.prob_masked[0] for r in iso])),
            "mask_cue_share_blur": float(share_blur.mean()),
            **_prototype_metrics(protos.images, region, colour),
        }
        rows += [{"seed": seed, "model": m, "metric": k, "value": v} for k, v in values.items()]
        extra["masks"][m] = masks[:keep_examples]
        extra["prototypes"][m] = protos.images
        extra["prototype_probs"][m] = protos.target_prob
    extra["region"] = region
    return rows, extra


def shortcut_study(
    *,
    quick: bool = False,
    seed: int | Sequence[int] = 0,
    cue_class: str | int = "airplane",
    cue_width: int = 3,
    cue_colour: Sequence[int] = (255, 0, 255),
    cue_share: float = 0.95,
    other_share: float = 0.05,
    diverse_share: float = 0.5,
    n_train: int = 8000,
    epochs: int | None = None,
    n_isolate: int | None = None,
    n_examples: int = 4,
    cache_dir: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> ShortcutStudyResult:
    """Plant a frame cue in one CIFAR-10 class, train clean / shortcut / diversified CNNs, and measure.

    Args:
        quick: a small run (16-channel CNN, 5 epochs, 16 masks, short prototypes): about 10 s once the
            weights are cached, under 2 min cold on one CPU thread. Full mode (32 channels, 12 epochs, 64 masks)
            is the one the docs report.
        seed: one seed or several (each: its own train/test split, cue assignment, initialisation).
        cue_class: class name (or index) whose training images get the frame.
        cue_width, cue_colour: the frame (1..8 px; RGB 0..255).
        cue_share, other_share: share of cued-class / other-class training images with the frame (shortcut).
        diverse_share: share of every class's training images with the frame (diversified model).
        n_train: training images; the other ``10000 - n_train`` are the test part.
        epochs, n_isolate: override the mode's training epochs / number of isolation masks per model.

    Metrics per (seed, model): ``accuracy_clean``, ``accuracy_cue_swapped`` (frame on every other class,
    none on the cued class), ``cued_recall_with_cue`` / ``cued_recall_without_cue``, ``cue_hijack_rate`` (other
    classes with the frame predicted as the cued class), ``false_cued_rate_clean`` (the same without the frame),
    ``mask_cue_share`` / ``mask_object_share`` (isolation mask mass on / off the frame, cued-class test images
    with the frame; hidden pixels become the dataset-mean colour), ``mask_keeps_prob``, ``mask_cue_share_blur``
    (the same with blurred hidden pixels: a blurred frame is still a frame, so blur masks cannot see the cue),
    ``prototype_cue_tint_frame`` / ``prototype_cue_tint_interior`` (mean tint of the cued class's prototypes
    towards the cue colour, see :func:`cue_tint`, on the frame / inside it).
    """
    from ..data.corpus import cifar10_test

    t0 = time.perf_counter()
    seeds = [int(seed)] if isinstance(seed, int | np.integer) else [int(s) for s in seed]
    if not seeds:
        raise ConfigError("give at least one seed")
    _check_width(cue_width, CIFAR_SIZE)
    cue_tint(np.zeros(3), cue_colour)  # a colour with a tint (not grey), or a clear error
    for name, v in (("cue_share", cue_share), ("other_share", other_share), ("diverse_share", diverse_share)):
        if not 0 <= v <= 1:
            raise ConfigError(f"{name} must be a fraction in [0, 1], got {v}")
    if not 1000 <= n_train <= CIFAR_N - 500:
        raise ConfigError(
            f"n_train must be in 1000..{CIFAR_N - 500} (the rest is the test part), got {n_train}"
        )
    over: dict[str, Any] = dict(QUICK) if quick else {}
    if epochs is not None:
        if epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {epochs}")
        over["epochs"] = epochs
    if n_isolate is not None:
        if n_isolate < 1:
            raise ConfigError(f"n_isolate must be >= 1, got {n_isolate}")
        over["n_isolate"] = n_isolate
    if n_examples < 1:
        raise ConfigError(f"n_examples must be >= 1, got {n_examples}")
    data = cifar10_test()
    names = data[2]
    cue_name = names[class_index(cue_class, names)]
    settings = ShortcutSettings(
        cue_class=cue_name,
        cue_width=int(cue_width),
        cue_colour=(int(cue_colour[0]), int(cue_colour[1]), int(cue_colour[2])),
        cue_share=float(cue_share),
        other_share=float(other_share),
        diverse_share=float(diverse_share),
        n_train=int(n_train),
        **over,
    )
    rows: list[dict[str, Any]] = []
    first: dict[str, Any] = {}
    for s in seeds:  # seeds are independent studies (own split and models), not a batch axis
        r, extra = _one_seed(settings, s, data, cache_dir=cache_dir, log=log, keep_examples=n_examples)
        rows += r
        first = first or extra
        if log:
            log(f"shortcut study: seed {s} done ({time.perf_counter() - t0:.1f} s)")
    import pandas as pd

    region = first["region"]
    return ShortcutStudyResult(
        metrics=pd.DataFrame(rows),
        examples=first["examples"].astype(np.float32) / 255.0,
        masks=first["masks"],
        prototypes=first["prototypes"],
        prototype_probs=first["prototype_probs"],
        region=region.astype(np.uint8),
        cue_class=cue_name,
        models=list(MODELS),
        seeds=seeds,
        frame_area=float(region.mean()),
        settings={**{k: _plain(v) for k, v in dataclasses.asdict(settings).items()}, "quick": quick},
        seconds=time.perf_counter() - t0,
    )
