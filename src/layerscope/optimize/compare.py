"""Isolation masks beside attribution maps: |Integrated Gradients| and occlusion of the same image and class,
with agreement numbers (Spearman ρ, IoU at the mask's area, mass inside the mask, pointing game)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from ..errors import ConfigError
from ..result import Result
from ._figures import image_grid, overlay
from ._models import as_subject, check_logits_model, image_spec
from .isolation import _check_perturbation, _names, isolate_batch
from .param import gaussian_blur
from .prototypes import predict_proba

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

#: attribution maps ``compare_maps`` can set beside the isolation masks
ATTRIBUTION_METHODS: tuple[str, ...] = ("ig", "occlusion")
MAP_LABELS = {"isolation": "isolation mask", "ig": "|IG|", "occlusion": "occlusion"}


@dataclasses.dataclass(frozen=True)
class MapComparisonResult(Result):
    """Isolation masks beside attribution maps of the same (image, class) pairs, with agreement numbers.

    Attributes:
        images: ``[n, H, W, 3]`` in ``[0, 1]``.
        targets: the class of each row; ``areas``: the isolation mask's area of each row.
        maps: ``{"isolation": [n, H, W], "ig": |IG| [n, H, W], "occlusion": [n, H, W]}`` (occlusion signed:
            the drop of the class logit when a patch is replaced; positive = evidence for the class).
        prob_masked: class probability kept by each isolation mask.
        settings: the options (perturbation, IG steps and largest |delta|, occlusion window/stride).
    """

    images: np.ndarray
    targets: list[int]
    areas: list[float]
    class_names: list[str]
    maps: dict[str, np.ndarray]
    prob_masked: np.ndarray
    model: str
    settings: dict[str, Any]

    title: ClassVar[str] = "Feature isolation vs attribution maps"

    @property
    def methods(self) -> list[str]:
        return [m for m in ("isolation", *ATTRIBUTION_METHODS) if m in self.maps]

    def to_frame(self) -> pd.DataFrame:
        """One row per (image, reference map, other map): Spearman ρ over pixels, IoU of the top-``area``
        pixels, share of the other map's positive mass inside the reference's top-``area`` pixels, and
        whether the other map's maximum falls there (pointing game); ``*_chance`` are the values of a
        random map."""
        import pandas as pd

        rows = []
        ms = self.methods
        pairs = [(a, b) for i, a in enumerate(ms) for b in ms[i + 1 :]]
        for i, (t, area) in enumerate(zip(self.targets, self.areas, strict=True)):
            for ref, other in pairs:
                ag = map_agreement(self.maps[ref][i], self.maps[other][i], area)
                rows.append(
                    {
                        "image": i,
                        "target": self.class_names[t],
                        "area": area,
                        "reference": ref,
                        "other": other,
                        **ag,
                    }
                )
        return pd.DataFrame(rows)

    def agreement(self) -> pd.DataFrame:
        """Mean agreement per (reference, other) pair over the images."""
        df = self.to_frame()
        cols = ["spearman", "iou", "mass_share", "pointing", "iou_chance", "mass_chance"]
        return df.groupby(["reference", "other"], sort=False)[cols].mean().reset_index()

    def figure(self) -> go.Figure:
        tiles, titles = [], []
        for i, t in enumerate(self.targets):
            img = self.images[i]
            tiles.append(img)
            titles.append(f"target: {self.class_names[t]}")
            for m in self.methods:
                if m == "isolation":
                    tiles.append(overlay(img, self.maps[m][i]))
                    titles.append(f"isolation a={self.areas[i]:.2f} (p={self.prob_masked[i]:.2f})")
                else:
                    tiles.append(heat(np.clip(self.maps[m][i], 0, None)))
                    titles.append(MAP_LABELS[m])
        return image_grid(
            np.stack(tiles),
            titles,
            title=f"Isolation mask vs attribution maps · {self.model}",
            cols=1 + len(self.methods),
        )

    def figures(self) -> list[go.Figure]:
        import plotly.graph_objects as go

        from ..report.figures import apply_style

        ag = self.agreement()
        fig = go.Figure()
        for metric, label in (
            ("spearman", "Spearman ρ"),
            ("iou", "IoU at area"),
            ("mass_share", "mass in top-a"),
        ):
            fig.add_bar(
                name=label,
                x=[
                    f"{MAP_LABELS[r]} vs {MAP_LABELS[o]}"
                    for r, o in zip(ag["reference"], ag["other"], strict=True)
                ],
                y=ag[metric],
            )
        fig.add_scatter(
            name="chance (IoU; mass)",
            x=[
                f"{MAP_LABELS[r]} vs {MAP_LABELS[o]}"
                for r, o in zip(ag["reference"], ag["other"], strict=True)
            ]
            * 2,
            y=[*ag["iou_chance"], *ag["mass_chance"]],
            mode="markers",
            marker={"symbol": "line-ew-open", "size": 28, "color": "black"},
        )
        fig.update_layout(
            barmode="group",
            title=f"Agreement between maps (mean over {len(self.targets)} images)",
            yaxis_title="agreement",
        )
        return [self.figure(), apply_style(fig, height=360)]

    def summary(self) -> str:
        ag = self.agreement()
        parts = [
            f"{MAP_LABELS[r]} vs {MAP_LABELS[o]}: ρ={sp:.2f}, IoU={iou:.2f} (chance {ic:.2f}), "
            f"{ms:.0%} of the mass in the top-a region (chance {mc:.0%})"
            for r, o, sp, iou, ic, ms, mc in zip(
                ag["reference"],
                ag["other"],
                ag["spearman"],
                ag["iou"],
                ag["iou_chance"],
                ag["mass_share"],
                ag["mass_chance"],
                strict=True,
            )
        ]
        return f"{len(self.targets)} image(s) of {self.model}. " + "; ".join(parts) + "."


def map_agreement(reference: np.ndarray, other: np.ndarray, area: float) -> dict[str, float]:
    """Agreement of two ``[H, W]`` maps at ``area`` (the reference's top-``area`` pixels are its region).

    Returns ``spearman`` (rank correlation over pixels), ``iou`` (of both maps' top-``area`` pixels),
    ``mass_share`` (share of ``other``'s positive mass inside the reference region), ``pointing`` (1 when
    ``other``'s maximum lies inside it) and the values a random map would get (``iou_chance``,
    ``mass_chance``: ``pointing`` has the same chance as ``mass_share``).
    """
    from scipy.stats import spearmanr

    r = np.asarray(reference, dtype=np.float64).reshape(-1)
    o = np.asarray(other, dtype=np.float64).reshape(-1)
    if r.shape != o.shape:
        raise ConfigError(f"maps must have the same shape, got {np.shape(reference)} and {np.shape(other)}")
    if not 0 < area < 1:
        raise ConfigError(f"area must be a fraction in (0, 1), got {area}")
    n = r.size
    k = max(1, round(area * n))
    top_r = np.zeros(n, dtype=bool)
    top_r[np.argsort(-r, kind="stable")[:k]] = True
    top_o = np.zeros(n, dtype=bool)
    top_o[np.argsort(-o, kind="stable")[:k]] = True
    pos = np.clip(o, 0, None)
    mass = float(pos[top_r].sum() / pos.sum()) if pos.sum() > 0 else float("nan")
    constant = np.ptp(r) == 0 or np.ptp(o) == 0
    rho = float("nan") if constant else float(spearmanr(r, o).statistic)
    share = k / n
    return {
        "spearman": rho,
        "iou": float((top_r & top_o).sum() / (top_r | top_o).sum()),
        "mass_share": mass,
        "pointing": float(top_r[int(np.argmax(o))]),
        "iou_chance": share / (2 - share),
        "mass_chance": share,
    }


def compare_maps(
    model: Any,
    images: Any,
    targets: int | Sequence[int] | None = None,
    *,
    area: float = 0.1,
    steps: int = 300,
    methods: Sequence[str] = ATTRIBUTION_METHODS,
    perturbation: str = "blur",
    blur_sigma: float | None = None,
    ig_steps: int = 32,
    window: int | None = None,
    stride: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> MapComparisonResult:
    """Isolation masks (one batched run) beside Integrated Gradients and occlusion maps, with agreement.

    Args:
        model: a vision ``Subject`` or ``nn.Module`` returning logits.
        images: uint8 ``[N, H, W, 3]`` or float ``[N, 3, H, W]`` in ``[0, 1]``.
        targets: one class for all, one per image, or ``None`` (each image's predicted class).
        area: the isolation masks' area; also the share of pixels compared by IoU / mass share.
        methods: attribution maps to compute: ``ig`` (|Integrated Gradients| summed over channels) and/or
            ``occlusion`` (:class:`~layerscope.attribution.FeatureAblation` patches).
        perturbation: what hidden pixels become, for the masks and as the attribution baseline alike (so
            the three maps answer the same question): ``blur`` or ``mean`` (the dataset-mean colour, the
            normalised zero).
        ig_steps: Gauss–Legendre steps of Integrated Gradients.
        window, stride: occlusion patch side and step in pixels (default: size / 8 and half of it).

    Raises:
        ConfigError: unknown method or perturbation, or :mod:`layerscope.attribution` failed to import.
    """
    subject = as_subject(model)
    spec = image_spec(subject)
    check_logits_model(subject)
    _check_methods(methods)
    _check_perturbation(perturbation)
    iso = isolate_batch(
        subject,
        images,
        targets,
        area=area,
        steps=steps,
        perturbation=perturbation,
        blur_sigma=blur_sigma,
        seed=seed,
        progress=progress,
    )
    x = torch.stack([torch.as_tensor(r.image).permute(2, 0, 1) for r in iso]).to(subject.device)
    return _compare(
        subject,
        x,
        [r.classes[0] for r in iso],
        torch.as_tensor(np.stack([r.masks[0] for r in iso])),
        [area] * len(iso),
        np.concatenate([r.prob_masked for r in iso]),
        methods=methods,
        perturbation=perturbation,
        blur_sigma=blur_sigma if blur_sigma is not None else spec.size / 10,
        ig_steps=ig_steps,
        window=window,
        stride=stride,
    )


def _check_methods(methods: Sequence[str]) -> None:
    bad = [m for m in methods if m not in ATTRIBUTION_METHODS]
    if bad or not methods:
        raise ConfigError(
            f"unknown attribution method(s) {bad or list(methods)}; use any of {', '.join(ATTRIBUTION_METHODS)}"
        )


def _compare(
    subject: Any,
    x: torch.Tensor,
    targets: list[int],
    masks: torch.Tensor,
    areas: list[float],
    prob_masked: np.ndarray,
    *,
    methods: Sequence[str],
    perturbation: str,
    blur_sigma: float | None,
    ig_steps: int,
    window: int | None,
    stride: int | None,
) -> MapComparisonResult:
    """Attribution maps of ``x`` (``[n, 3, H, W]`` in ``[0, 1]``) for ``targets`` set beside ``masks``."""
    _check_methods(methods)
    _check_perturbation(perturbation)
    if ig_steps < 1:
        raise ConfigError(f"ig_steps must be >= 1, got {ig_steps}")
    try:  # lazily: optimize works even where attribution cannot be imported
        from ..attribution import FeatureAblation, IntegratedGradients
    except Exception as e:
        raise ConfigError(
            f"comparing with attribution maps needs layerscope.attribution, which failed to import "
            f"({type(e).__name__}: {e}); isolate() itself works without it"
        ) from e
    spec = image_spec(subject)
    size = x.shape[-1]
    sigma = blur_sigma if blur_sigma is not None else spec.size / 10
    win = window if window is not None else max(2, round(size / 8))
    step = stride if stride is not None else max(1, win // 2)
    if not 1 <= win <= size or step < 1:
        raise ConfigError(f"occlusion window must be in 1..{size} and stride >= 1, got {win} and {step}")
    xn = spec.normalise(x.float())
    base: Any = spec.normalise(gaussian_blur(x.float(), sigma)) if perturbation == "blur" else "zero"
    maps: dict[str, np.ndarray] = {"isolation": masks.float().cpu().numpy()}
    settings: dict[str, Any] = {
        "perturbation": perturbation,
        "blur_sigma": sigma if perturbation == "blur" else None,
    }
    if "ig" in methods:
        ig = IntegratedGradients(subject, n_steps=ig_steps).attribute(xn, target=targets, baseline=base)
        maps["ig"] = np.abs(ig.scores).astype(np.float32)
        settings.update(ig_steps=ig_steps, ig_abs_delta=float(np.nanmax(np.abs(ig.delta))))
    if "occlusion" in methods:
        fa = FeatureAblation(subject, window=win, stride=step)
        occ_scores = fa.attribute(xn, target=targets, baseline=base).scores
        maps["occlusion"] = occ_scores.astype(np.float32)
        settings.update(window=win, stride=step)
    return MapComparisonResult(
        images=x.permute(0, 2, 3, 1).cpu().numpy(),
        targets=list(targets),
        areas=list(areas),
        class_names=_names(subject, predict_proba(subject, x[:1]).shape[1]),
        maps=maps,
        prob_masked=np.asarray(prob_masked, dtype=np.float64),
        model=subject.name,
        settings=settings,
    )


_HEAT = (
    np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float64)
    / 255.0
)  # inferno anchors


def heat(values: np.ndarray) -> np.ndarray:
    """A non-negative ``[H, W]`` map as an RGB ``[H, W, 3]`` heat image (scaled to its 99th percentile)."""
    v = np.asarray(values, dtype=np.float64)
    hi = np.percentile(v, 99) if v.size else 0.0
    t = np.clip(v / hi, 0, 1) if hi > 0 else np.zeros_like(v)
    pos = t * (len(_HEAT) - 1)
    lo = np.minimum(pos.astype(int), len(_HEAT) - 2)
    frac = (pos - lo)[..., None]
    return _HEAT[lo] * (1 - frac) + _HEAT[lo + 1] * frac
