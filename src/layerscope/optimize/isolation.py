"""Feature isolation: the smallest smooth region of an input that keeps a class's score (extremal perturbations).

For an image and each of its top predicted classes, a smooth mask ``m`` (a coarse grid, upsampled) is
optimised so that ``m * image + (1 - m) * blurred(image)`` maximises the class logit while the mask covers
a fixed share ``a`` of the image, enforced by a ranking penalty: the sorted mask values are pulled towards
``a·N`` ones followed by zeros (Fong, Patrick & Vedaldi 2019). Every (class, area) pair is one batch
element of one run of the shared loop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from ..errors import ConfigError
from ..result import Result
from ._figures import image_grid, overlay
from ._models import as_subject, check_logits_model, image_spec, to_images
from .loop import optimize
from .objectives import logit
from .param import MaskParam
from .prototypes import predict_proba
from .regularizers import Regularizer

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go


@dataclasses.dataclass(frozen=True)
class IsolationResult(Result):
    """Masks of the region each class uses, at several areas.

    Attributes:
        image: the input, ``[H, W, 3]`` in ``[0, 1]``.
        masks: ``[n, H, W]`` in ``[0, 1]``, one per (class, area).
        classes, areas: the class and target area of each mask.
        prob_full: the class probability on the unmasked image, per mask.
        prob_masked: the class probability on the masked (rest blurred) image, per mask.
    """

    image: np.ndarray
    masks: np.ndarray
    classes: list[int]
    areas: list[float]
    class_names: list[str]
    prob_full: np.ndarray
    prob_masked: np.ndarray
    model: str

    title: ClassVar[str] = "Feature isolation"

    def share(self, region: np.ndarray) -> np.ndarray:
        """Share of each mask's mass inside a boolean ``[H, W]`` region (e.g. a spurious cue), ``[n]``."""
        r = np.asarray(region, dtype=bool)
        if r.shape != self.masks.shape[1:]:
            raise ConfigError(f"region must be {self.masks.shape[1:]}, got {r.shape}")
        total = self.masks.reshape(len(self.masks), -1).sum(1)
        inside = (self.masks * r).reshape(len(self.masks), -1).sum(1)
        return inside / np.maximum(total, 1e-9)

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(
            {
                "class": self.classes,
                "name": [self.class_names[c] for c in self.classes],
                "area": self.areas,
                "mask_mean": self.masks.reshape(len(self.masks), -1).mean(1),
                "prob_full": self.prob_full,
                "prob_masked": self.prob_masked,
            }
        )

    def figure(self) -> go.Figure:
        tiles = [self.image] + [overlay(self.image, m) for m in self.masks]
        titles = ["input"] + [
            f"{self.class_names[c]} · a={a:.2f} (p={p:.2f})"
            for c, a, p in zip(self.classes, self.areas, self.prob_masked, strict=True)
        ]
        n_areas = len(set(self.areas))
        return image_grid(
            np.stack(tiles),
            titles,
            title=f"Feature isolation · {self.model}",
            cols=n_areas + 1 if len(tiles) > n_areas + 1 else None,
        )

    def summary(self) -> str:
        best = int(np.argmax(self.prob_full))
        return (
            f"Masks for {len(set(self.classes))} class(es) at areas {sorted(set(self.areas))}; "
            f"top class {self.class_names[self.classes[best]]} keeps p={self.prob_masked[best]:.2f} "
            f"(full image {self.prob_full[best]:.2f}) with {self.areas[best]:.0%} of the image visible."
        )


def area_penalty(areas: torch.Tensor, weight: float) -> Regularizer:
    """Ranking penalty pulling each sorted mask towards ``area·N`` ones then zeros."""

    def fn(mask: torch.Tensor) -> torch.Tensor:
        flat = mask.flatten(1)
        n = flat.shape[1]
        srt = flat.sort(dim=1, descending=True).values
        ref = (torch.arange(n, device=mask.device)[None, :] < (areas.to(mask.device)[:, None] * n)).to(
            flat.dtype
        )
        return (srt - ref).pow(2).mean(1)

    return Regularizer("area", weight, fn)


def isolate(
    model: Any,
    image: Any,
    classes: Sequence[int] | None = None,
    *,
    top_k: int = 3,
    areas: Sequence[float] = (0.05, 0.1, 0.2),
    steps: int = 300,
    lr: float = 0.1,
    grid: int = 14,
    blur_sigma: float | None = None,
    area_weight: float = 300.0,
    seed: int = 0,
    progress: bool = False,
) -> IsolationResult:
    """Extremal-perturbation masks for ``classes`` (default: the ``top_k`` predictions) at each area.

    Args:
        model: a vision ``Subject`` or ``nn.Module``.
        image: one image, uint8 ``[H, W, 3]`` or float ``[3, H, W]`` in ``[0, 1]`` (resized to the model's size).
        classes: class indices to isolate (default: the top ``top_k`` predicted classes).
        areas: shares of the image the mask may keep, each in ``(0, 1)``.
        grid: mask lattice (coarser is smoother).
        blur_sigma: blur of the perturbed (hidden) regions in pixels (default: size / 10).
        area_weight: strength of the area constraint.
    """
    subject = as_subject(model)
    spec = image_spec(subject)
    check_logits_model(subject)
    x = to_images(image)
    if x.shape[0] != 1:
        raise ConfigError(f"isolate takes one image, got {x.shape[0]}; call it once per image")
    if x.shape[-1] != spec.size or x.shape[-2] != spec.size:
        x = torch.nn.functional.interpolate(x, size=(spec.size, spec.size), mode="bilinear", antialias=True)
    x = x.to(subject.device)
    area_list = [float(a) for a in areas]
    if not area_list or any(not 0 < a < 1 for a in area_list):
        raise ConfigError(f"areas must be fractions in (0, 1), got {list(areas)}")
    probs = predict_proba(subject, x)[0]
    n_classes = len(probs)
    if classes is None:
        if top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {top_k}")
        cls = [int(c) for c in np.argsort(-probs)[:top_k]]
    else:
        cls = [int(c) for c in classes]
        bad = [c for c in cls if not 0 <= c < n_classes]
        if bad:
            raise ConfigError(f"class index {bad[0]} is out of range: the model has {n_classes} classes")
    pairs = [(c, a) for c in cls for a in area_list]
    b_cls = [c for c, _ in pairs]
    b_area = torch.tensor([a for _, a in pairs])
    sigma = blur_sigma if blur_sigma is not None else spec.size / 10
    param = MaskParam(x.expand(len(pairs), -1, -1, -1), spec=spec, grid=grid, blur_sigma=sigma)
    out = optimize(
        subject,
        logit(b_cls),
        param,
        steps=steps,
        lr=lr,
        regularizers=[area_penalty(b_area, area_weight)],
        seed=seed,
        progress=progress,
        keep_best=False,
    )
    masks = out.last  # n, 1, H, W
    with torch.no_grad():
        masked = masks * param.images + (1 - masks) * param.blurred
    p_masked = predict_proba(subject, masked)
    names = subject.class_names or [str(i) for i in range(n_classes)]
    idx = np.arange(len(pairs))
    return IsolationResult(
        image=x[0].permute(1, 2, 0).cpu().numpy(),
        masks=masks[:, 0].cpu().numpy(),
        classes=b_cls,
        areas=[float(a) for a in b_area],
        class_names=list(names),
        prob_full=probs[b_cls],
        prob_masked=p_masked[idx, b_cls],
        model=subject.name,
    )
