"""Feature isolation: the smallest smooth region of an input that keeps a class's score (extremal perturbations).

For an image and each of its top predicted classes, a smooth mask ``m`` (a coarse grid, upsampled) is
optimised so that ``m * image + (1 - m) * blurred(image)`` maximises the class logit while the mask covers
a fixed share ``a`` of the image, enforced by a ranking penalty: the sorted mask values are pulled towards
``a·N`` ones followed by zeros (Fong, Patrick & Vedaldi 2019). Every (class, area) pair is one batch
element of one run of the shared loop (``isolate_batch``: one mask per image, many images in one run).

``compare_maps`` / ``IsolationResult.compare`` set the masks beside Integrated Gradients and occlusion maps
(from :mod:`layerscope.attribution`, imported only when asked for) and measure how far they agree.
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
from .param import MaskParam, gaussian_blur
from .prototypes import predict_proba
from .regularizers import Regularizer

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from .compare import MapComparisonResult

#: what the hidden (masked-out) part of the image becomes: blurred, or the dataset-mean colour
PERTURBATIONS: tuple[str, ...] = ("blur", "mean")


@dataclasses.dataclass(frozen=True)
class IsolationResult(Result):
    """Masks of the region each class uses, at several areas.

    Attributes:
        image: the input, ``[H, W, 3]`` in ``[0, 1]``.
        masks: ``[n, H, W]`` in ``[0, 1]``, one per (class, area).
        classes, areas: the class and target area of each mask.
        prob_full: the class probability on the unmasked image, per mask.
        prob_masked: the class probability on the masked image (the rest perturbed), per mask.
        perturbation: what the hidden part became: ``blur`` or ``mean`` (the dataset-mean colour).
    """

    image: np.ndarray
    masks: np.ndarray
    classes: list[int]
    areas: list[float]
    class_names: list[str]
    prob_full: np.ndarray
    prob_masked: np.ndarray
    model: str
    perturbation: str = "blur"

    title: ClassVar[str] = "Feature isolation"

    def share(self, region: np.ndarray) -> np.ndarray:
        """Share of each mask's mass inside a boolean ``[H, W]`` region (e.g. a spurious cue), ``[n]``."""
        r = np.asarray(region, dtype=bool)
        if r.shape != self.masks.shape[1:]:
            raise ConfigError(
                f"region must be a boolean mask of the image's shape {self.masks.shape[1:]}, got {r.shape}; "
                "build it at the size the masks were made at (the model's input size)"
            )
        total = self.masks.reshape(len(self.masks), -1).sum(1)
        inside = (self.masks * r).reshape(len(self.masks), -1).sum(1)
        return inside / np.maximum(total, 1e-9)

    def compare(
        self,
        model: Any,
        *,
        methods: Sequence[str] = ("ig", "occlusion"),
        blur_sigma: float | None = None,
        ig_steps: int = 32,
        window: int | None = None,
        stride: int | None = None,
    ) -> MapComparisonResult:
        """Each mask beside Integrated Gradients / occlusion maps of the same image and class.

        ``model`` must be the model the masks were made for; the attribution baseline is the masks'
        perturbation (pass the ``blur_sigma`` the masks were made with if not the default). See
        :func:`compare_maps` for the options.
        """
        from .compare import _compare

        subject = as_subject(model)
        x = torch.as_tensor(self.image).permute(2, 0, 1).unsqueeze(0).float()
        x = x.expand(len(self.masks), -1, -1, -1).to(subject.device)
        return _compare(
            subject,
            x,
            list(self.classes),
            torch.as_tensor(self.masks),
            list(self.areas),
            self.prob_masked,
            methods=methods,
            perturbation=self.perturbation,
            blur_sigma=blur_sigma,
            ig_steps=ig_steps,
            window=window,
            stride=stride,
        )

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
    perturbation: str = "blur",
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
        perturbation: what the hidden regions become: ``blur`` (Fong et al.) or ``mean``, the dataset-mean
            colour (needed for low-frequency evidence, such as a coloured frame, that survives a blur).
        blur_sigma: blur of the perturbed (hidden) regions in pixels (default: size / 10).
        area_weight: strength of the area constraint.
    """
    subject = as_subject(model)
    spec = image_spec(subject)
    check_logits_model(subject)
    _check_perturbation(perturbation)
    x = _model_images(subject, image)
    if x.shape[0] != 1:
        raise ConfigError(
            f"isolate takes one image, got {x.shape[0]}; call it once per image or use isolate_batch"
        )
    area_list = _check_areas(areas)
    probs = predict_proba(subject, x)[0]
    n_classes = len(probs)
    if classes is None:
        if top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {top_k}")
        cls = [int(c) for c in np.argsort(-probs)[:top_k]]
    else:
        cls = _check_classes([int(c) for c in classes], n_classes)
    pairs = [(c, a) for c in cls for a in area_list]
    b_cls = [c for c, _ in pairs]
    b_area = [a for _, a in pairs]
    masks, p_masked = _extremal_masks(
        subject,
        x.expand(len(pairs), -1, -1, -1),
        b_cls,
        b_area,
        steps=steps,
        lr=lr,
        grid=grid,
        perturbation=perturbation,
        blur_sigma=blur_sigma if blur_sigma is not None else spec.size / 10,
        area_weight=area_weight,
        seed=seed,
        progress=progress,
    )
    return IsolationResult(
        image=x[0].permute(1, 2, 0).cpu().numpy(),
        masks=masks.numpy(),
        classes=b_cls,
        areas=b_area,
        class_names=_names(subject, n_classes),
        prob_full=probs[b_cls],
        prob_masked=p_masked,
        model=subject.name,
        perturbation=perturbation,
    )


def isolate_batch(
    model: Any,
    images: Any,
    classes: int | Sequence[int] | None = None,
    *,
    area: float = 0.1,
    steps: int = 300,
    lr: float = 0.1,
    grid: int = 14,
    perturbation: str = "blur",
    blur_sigma: float | None = None,
    area_weight: float = 300.0,
    seed: int = 0,
    progress: bool = False,
) -> list[IsolationResult]:
    """One extremal-perturbation mask per image (all images in one batched run), one result per image.

    Args:
        images: uint8 ``[N, H, W, 3]`` or float ``[N, 3, H, W]`` in ``[0, 1]`` (resized to the model's size).
        classes: one class for all images, one per image, or ``None`` for each image's predicted class.
        area: share of the image each mask may keep, in ``(0, 1)``.

    The other options are :func:`isolate`'s.
    """
    subject = as_subject(model)
    spec = image_spec(subject)
    check_logits_model(subject)
    _check_perturbation(perturbation)
    x = _model_images(subject, images)
    (a,) = _check_areas([area])
    probs = predict_proba(subject, x)
    n_classes = probs.shape[1]
    cls = _per_image_classes(classes, probs)
    masks, p_masked = _extremal_masks(
        subject,
        x,
        cls,
        [a] * len(x),
        steps=steps,
        lr=lr,
        grid=grid,
        perturbation=perturbation,
        blur_sigma=blur_sigma if blur_sigma is not None else spec.size / 10,
        area_weight=area_weight,
        seed=seed,
        progress=progress,
    )
    names = _names(subject, n_classes)
    images_hwc = x.permute(0, 2, 3, 1).cpu().numpy()
    return [
        IsolationResult(
            image=images_hwc[i],
            masks=masks[i : i + 1].numpy(),
            classes=[cls[i]],
            areas=[a],
            class_names=names,
            prob_full=probs[i, cls[i] : cls[i] + 1],
            prob_masked=p_masked[i : i + 1],
            model=subject.name,
            perturbation=perturbation,
        )
        for i in range(len(x))
    ]


def _model_images(subject: Any, images: Any) -> torch.Tensor:
    """Images as float ``[N, 3, size, size]`` in ``[0, 1]`` on the model's device."""
    spec = image_spec(subject)
    x = to_images(images)
    if x.shape[-1] != spec.size or x.shape[-2] != spec.size:
        x = torch.nn.functional.interpolate(x, size=(spec.size, spec.size), mode="bilinear", antialias=True)
        x = x.clamp(0, 1)
    return x.to(subject.device)


def _check_perturbation(perturbation: str) -> None:
    if perturbation not in PERTURBATIONS:
        raise ConfigError(f"perturbation must be one of {', '.join(PERTURBATIONS)}, got {perturbation!r}")


def hidden_image(spec: Any, x: torch.Tensor, perturbation: str, blur_sigma: float) -> torch.Tensor:
    """What the masked-out part of ``x`` (``[n, 3, H, W]`` in ``[0, 1]``) becomes under ``perturbation``."""
    _check_perturbation(perturbation)
    if perturbation == "blur":
        return gaussian_blur(x, blur_sigma)
    return torch.tensor(spec.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1).expand_as(x).contiguous()


def _check_areas(areas: Sequence[float]) -> list[float]:
    area_list = [float(a) for a in areas]
    if not area_list or any(not 0 < a < 1 for a in area_list):
        raise ConfigError(f"areas must be fractions in (0, 1), got {list(areas)}")
    return area_list


def _check_classes(cls: list[int], n_classes: int) -> list[int]:
    bad = [c for c in cls if not 0 <= c < n_classes]
    if bad:
        raise ConfigError(f"class index {bad[0]} is out of range: the model has {n_classes} classes")
    return cls


def _per_image_classes(classes: int | Sequence[int] | None, probs: np.ndarray) -> list[int]:
    n, n_classes = probs.shape
    if classes is None:
        return [int(c) for c in probs.argmax(1)]
    if isinstance(classes, int | np.integer):
        return _check_classes([int(classes)] * n, n_classes)
    cls = [int(c) for c in np.asarray(classes).reshape(-1)]
    if len(cls) != n:
        raise ConfigError(
            f"{n} images but {len(cls)} classes; give one class per image, one for all, or None"
        )
    return _check_classes(cls, n_classes)


def _names(subject: Any, n_classes: int) -> list[str]:
    return list(subject.class_names or [str(i) for i in range(n_classes)])


def _extremal_masks(
    subject: Any,
    x: torch.Tensor,
    cls: list[int],
    areas: list[float],
    *,
    steps: int,
    lr: float,
    grid: int,
    perturbation: str,
    blur_sigma: float,
    area_weight: float,
    seed: int,
    progress: bool,
) -> tuple[torch.Tensor, np.ndarray]:
    """Masks ``[n, H, W]`` (CPU) for images ``x`` ``[n, 3, H, W]`` and the class probability they keep."""
    spec = image_spec(subject)
    param = MaskParam(x, spec=spec, grid=grid, blur_sigma=0.0)
    param.blurred = hidden_image(spec, param.images, perturbation, blur_sigma).detach()
    out = optimize(
        subject,
        logit(cls),
        param,
        steps=steps,
        lr=lr,
        regularizers=[area_penalty(torch.tensor(areas), area_weight)],
        seed=seed,
        progress=progress,
        keep_best=False,
    )
    masks = out.last  # n, 1, H, W
    with torch.no_grad():
        masked = masks * param.images + (1 - masks) * param.blurred
    p_masked = predict_proba(subject, masked)
    return masks[:, 0].cpu(), p_masked[np.arange(len(cls)), cls]


# -- isolation vs attribution maps ------------------------------------------------------------------------
