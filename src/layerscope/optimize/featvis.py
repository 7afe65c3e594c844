"""Feature visualisation: what a neuron, channel, layer or logit "wants to see" (Olah et al. 2017)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .._precision import check_precision
from ..errors import ConfigError
from ..result import Result
from ._figures import image_grid
from ._models import as_subject, check_logits_model, image_spec
from .loop import optimize
from .objectives import Objective, channel, diversity, layer, logit, neuron
from .param import image_param
from .regularizers import get_regularizers
from .transforms import Transform, get_transform

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

KINDS = ("channel", "neuron", "layer", "logit")


@dataclasses.dataclass(frozen=True)
class FeatureVisResult(Result):
    """Optimised images, one per unit (or per diversity sample for ``kind="layer"``).

    Attributes:
        images: ``[n, H, W, 3]`` float32 in ``[0, 1]`` (best-so-far per unit).
        units: unit/class index of each image (``-1`` for the whole layer).
        scores: objective value at each image.
        history: objective value per step, ``[steps, n]``.
        site, kind, model, objective: what was optimised.
        settings: steps, lr, size, parametrisation, transforms, seed, regularisers.
        steps_per_second: optimisation speed of the batched run.
    """

    images: np.ndarray
    units: list[int]
    scores: np.ndarray
    history: np.ndarray
    site: str
    kind: str
    model: str
    objective: str
    settings: dict[str, Any]
    steps_per_second: float
    labels: list[str] = dataclasses.field(default_factory=list)

    title: ClassVar[str] = "Feature visualisation"

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(
            {
                "site": self.site,
                "kind": self.kind,
                "unit": self.units,
                "label": self.labels or [str(u) for u in self.units],
                "score": self.scores,
                "score_first_step": self.history[0],
            }
        )

    def figure(self) -> go.Figure:
        names = self.labels or [f"{self.kind} {u}" if u >= 0 else self.kind for u in self.units]
        titles = [f"{n} ({s:.2g})" for n, s in zip(names, self.scores, strict=True)]
        return image_grid(self.images, titles, title=f"{self.model} · {self.site} · {self.kind}")

    def summary(self) -> str:
        gain = float(np.mean(self.scores - self.history[0]))
        return (
            f"{len(self.units)} {self.kind} visualisation(s) at {self.site} of {self.model}, "
            f"{self.settings.get('steps')} steps in one batched run ({self.steps_per_second:.1f} steps/s); "
            f"objective rose by {gain:.3g} on average."
        )


def make_objective(kind: str, site: str, units: Sequence[int] | None, batch: int) -> Objective:
    """The objective of one feature-visualisation kind, batched over ``units``."""
    if kind == "channel":
        return channel(site, list(units or []))
    if kind == "neuron":
        return neuron(site, list(units or []))
    if kind == "layer":
        obj = layer(site)
        return obj + 1.0 * diversity(site) if batch > 1 else obj
    if kind == "logit":
        return logit(list(units or []), site=site)
    raise ConfigError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")


def visualize(
    model: Any,
    site: str,
    units: Sequence[int] | int | None = None,
    *,
    kind: str = "channel",
    steps: int = 256,
    size: int = 128,
    param: str = "fourier",
    transforms: str | Transform | None = "standard",
    lr: float | str = 0.05,
    regularizers: dict[str, float] | None = None,
    n_samples: int = 4,
    seed: int = 0,
    progress: bool = False,
    precision: str = "float32",
) -> FeatureVisResult:
    """Visualise ``units`` of ``site`` in ONE batched optimisation (one image per unit).

    Args:
        model: a vision ``Subject`` (e.g. ``load("effnet-lite0")``) or ``nn.Module`` taking ``[N, 3, H, W]``.
        site: where the units live (``"blocks.10.out"``, ``"module:features.3"``, ``"logits"``).
        units: channel / neuron / class indices (``kind="layer"`` ignores them and makes ``n_samples``
            diverse images).
        kind: ``channel``, ``neuron``, ``layer`` or ``logit``.
        steps, size, lr, seed: optimisation settings (Lucid defaults: 512 steps, 128 px, lr 0.05).
        param: ``fourier`` (decorrelated, Lucid-style) or ``pixel``.
        transforms: ``standard`` (pad, jitter, scale, rotate), ``none``, or a ``Transform``.
        regularizers: e.g. ``{"tv": 0.05, "l2": 0.01}``.
        progress: show a progress bar.
        precision: ``"float32"`` (default), ``"bfloat16"`` (the model in bfloat16 autocast) or ``"auto"``
            (bfloat16 where it is native and measured faster, see :func:`~layerscope.optimize.optimize`);
            the images and objective stay float32. ``settings["precision"]`` records what ran.
    """
    subject = as_subject(model)
    spec = image_spec(subject)
    check_precision(precision)
    if kind not in KINDS:
        raise ConfigError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    if kind == "logit":
        check_logits_model(subject)
        site = site or "logits"
    if kind == "layer":
        unit_list = [-1] * int(n_samples)
    else:
        if units is None:
            raise ConfigError(f"kind={kind!r} needs units (e.g. units=[0, 1, 2])")
        unit_list = [int(units)] if isinstance(units, int) else [int(u) for u in units]
        if not unit_list:
            raise ConfigError("units is empty; pass at least one unit index")
    subject.adapter.resolve(site)  # unknown sites fail here, listing the valid ones
    batch = len(unit_list)
    obj = make_objective(kind, site, unit_list, batch)
    p = image_param(param, batch, size, spec=spec, seed=seed, device=subject.device)
    out = optimize(
        subject,
        obj,
        p,
        steps=steps,
        lr=lr,
        transform=get_transform(transforms, size=size),
        regularizers=get_regularizers(regularizers),
        seed=seed,
        progress=progress,
        precision=precision,
    )
    images = out.best.permute(0, 2, 3, 1).cpu().float().numpy()
    labels: list[str] = []
    if kind == "logit" and subject.class_names:
        labels = [subject.class_names[u] for u in unit_list]
    return FeatureVisResult(
        images=images,
        units=unit_list,
        scores=out.best_score.cpu().float().numpy(),
        history=out.history,
        site=site,
        kind=kind,
        model=subject.name,
        objective=out.objective,
        settings={
            "steps": steps,
            "lr": out.lr,
            "size": size,
            "param": param,
            "transforms": transforms if isinstance(transforms, str | type(None)) else "custom",
            "seed": seed,
            "regularizers": dict(regularizers or {}),
            "precision": out.precision,
        },
        steps_per_second=out.steps_per_second,
        labels=labels,
    )
