"""Image attribution display: the bundled test photos and heat-map overlays.

The photos come from the packages already installed — scikit-image's bundled data (a cat, a cup of coffee, a
rocket, an astronaut, a horse drawing...) when the ``vision`` extra is installed, and scikit-learn's two sample
photos otherwise. They are read as files (no network, no ``skimage`` import).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, DataError

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from .result import AttributionResult

# name -> (package, file inside the package's data folder)
PHOTOS: dict[str, tuple[str, str]] = {
    "chelsea": ("skimage", "data/chelsea.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "astronaut": ("skimage", "data/astronaut.png"),
    "motorcycle": ("skimage", "data/motorcycle_left.png"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
}
DEFAULT_PHOTOS = ("chelsea", "coffee", "rocket", "flower")
POSITIVE = np.array([0.90, 0.10, 0.05])
NEGATIVE = np.array([0.05, 0.35, 0.95])


def available_photos() -> list[str]:
    """Names of the photos whose package is installed."""
    return [name for name, (pkg, rel) in PHOTOS.items() if _photo_path(pkg, rel) is not None]


def _photo_path(package: str, rel: str) -> Any:
    try:
        path = resources.files(package).joinpath(rel)
    except ModuleNotFoundError:
        return None
    return path if path.is_file() else None


def sample_photos(names: Sequence[str] | None = None, *, size: int = 224) -> tuple[np.ndarray, list[str]]:
    """Bundled photos as uint8 ``[N, size, size, 3]`` (centre square crop, bicubic resize) and their names.

    Args:
        names: which photos (see ``PHOTOS``); default: the four of ``DEFAULT_PHOTOS`` that are installed,
            falling back to whatever is installed.
        size: output side in pixels.
    """
    from PIL import Image

    if size < 8:
        raise ConfigError(f"size must be at least 8 pixels, got {size}")
    if names is None:
        have = available_photos()
        names = [n for n in DEFAULT_PHOTOS if n in have] or have
    out, kept = [], []
    for name in names:
        if name not in PHOTOS:
            raise ConfigError(f"unknown photo {name!r}; choose from {sorted(PHOTOS)}")
        path = _photo_path(*PHOTOS[name])
        if path is None:
            pkg = PHOTOS[name][0]
            hint = "pip install 'layerscope[vision]'" if pkg == "skimage" else "pip install scikit-learn"
            raise DataError(f"photo {name!r} comes with the {pkg} package, which is not installed ({hint})")
        with path.open("rb") as fh, Image.open(fh) as im:
            img = im.convert("RGB")
            w, h = img.size
            s = min(w, h)
            left, top = (w - s) // 2, (h - s) // 2
            img = img.crop((left, top, left + s, top + s)).resize((size, size), Image.Resampling.BICUBIC)
            out.append(np.asarray(img, dtype=np.uint8))
            kept.append(name)
    if not out:
        raise DataError("no sample photos are installed; pip install 'layerscope[vision]' or scikit-learn")
    return np.stack(out), kept


def _smooth(a: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return a
    from scipy.ndimage import gaussian_filter

    return np.asarray(gaussian_filter(a, sigma=sigma, mode="nearest"))


def heat_overlay(
    image: np.ndarray,
    scores: np.ndarray,
    *,
    signed: bool = True,
    smooth: float = 1.5,
    percentile: float = 99.5,
    alpha: float = 0.85,
) -> np.ndarray:
    """One photo ``[H, W, 3]`` (uint8 or [0, 1]) with a pixel attribution map ``[H, W]`` blended on top.

    Scores are smoothed (Gaussian, ``smooth`` px), scaled by their ``percentile``-th absolute value and
    clipped to [−1, 1]. Positive evidence is red, negative blue (``signed``); unsigned maps show how far
    |score| stands above its median, in red. The photo underneath is dimmed and desaturated so the colours read. Returns floats in [0, 1].
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise DataError(f"image must be [H, W, 3], got shape {img.shape}")
    if img.max() > 1.0:
        img = img / 255.0
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != img.shape[:2]:
        raise DataError(f"scores {s.shape} do not match the image {img.shape[:2]}; attribute at pixel level")
    s = _smooth(np.nan_to_num(s), smooth)
    if signed:
        scale = float(np.percentile(np.abs(s), percentile)) or float(np.abs(s).max()) or 1.0
        v = np.clip(s / scale, -1.0, 1.0)
    else:  # magnitudes: show what stands above the median, so dense maps (SmoothGrad) keep contrast
        s = np.abs(s)
        lo = float(np.median(s))
        scale = (float(np.percentile(s, percentile)) - lo) or float(s.max() - lo) or 1.0
        v = np.clip((s - lo) / scale, 0.0, 1.0)
    grey = img.mean(-1, keepdims=True)
    base = 0.35 * img + 0.35 * grey + 0.1  # dimmed, desaturated photo
    a = (alpha * np.abs(v))[..., None]
    colour = np.where(v[..., None] >= 0, POSITIVE, NEGATIVE)
    return np.clip(base * (1 - a) + colour * a, 0.0, 1.0)


def overlay_figure(
    results: AttributionResult | Sequence[AttributionResult] | Mapping[str, AttributionResult],
    images: np.ndarray | None = None,
    *,
    names: Sequence[str] | None = None,
    max_images: int = 6,
    smooth: float = 1.5,
    title: str | None = None,
) -> go.Figure:
    """A grid of photos (rows) × attribution methods (columns) with the heat maps overlaid.

    Args:
        results: one or several image ``AttributionResult``s over the same images and targets (one column
            each; a mapping names the columns).
        images: uint8 ``[N, H, W, 3]`` photos shown underneath; default: the ones the results carry.
        names: row labels (default: example index and target).
        max_images: rows shown at most.
        smooth: Gaussian smoothing of the maps for display, in pixels (0: raw).
    """
    from ..report.images import image_grid

    if isinstance(results, Mapping):
        cols = list(results.items())
    elif isinstance(results, Sequence):
        cols = [(r.method, r) for r in results]
    else:
        cols = [(results.method, results)]
    if not cols:
        raise ConfigError("no attribution results to show")
    first = cols[0][1]
    if first.is_text:
        raise DataError("overlay_figure needs image attributions; text results have their own figure()")
    for label, r in cols:
        if r.is_text or r.scores.shape != first.scores.shape:
            raise DataError(
                f"result {label!r} has scores {r.scores.shape}, the first has {first.scores.shape}: "
                "attribute the same images and targets with every method"
            )
    photos = images if images is not None else first.images
    if photos is None:
        raise DataError("these results carry no photos; pass images=uint8 [N, H, W, 3]")
    photos = np.asarray(photos)
    H, W = first.scores.shape[1:]
    n = min(max_images, len(first.scores))
    tiles, titles = [], []
    for row in range(n):
        ex = int(first.example[row])
        if ex >= len(photos):
            raise DataError(f"row {row} refers to image {ex}, but only {len(photos)} images were given")
        photo = _fit(photos[ex], H, W)
        label = names[ex] if names is not None and ex < len(names) else f"#{ex}"
        tiles.append(photo.astype(np.float64) / 255.0 if photo.dtype == np.uint8 else photo)
        titles.append(f"{label} → {first.target[row]}")
        for col_label, r in cols:
            signed = bool(np.nanmin(r.scores[row]) < 0)
            tiles.append(heat_overlay(photo, r.scores[row], signed=signed, smooth=smooth))
            titles.append(col_label)
    fig = image_grid(
        np.stack(tiles),
        titles,
        cols=len(cols) + 1,
        title=title or "Pixel attributions (red: for the target, blue: against)",
        tile=190,
    )
    return fig


def _fit(photo: np.ndarray, H: int, W: int) -> np.ndarray:
    if photo.shape[:2] == (H, W):
        return photo
    from PIL import Image

    arr = photo if photo.dtype == np.uint8 else (np.clip(photo, 0, 1) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(arr).resize((W, H), Image.Resampling.BICUBIC))


def display_images(subject: Any, x: Any) -> np.ndarray | None:
    """Model-input images ``[N, 3, H, W]`` back to uint8 ``[N, H, W, 3]`` photos (None when not images)."""
    spec = getattr(subject, "image", None)
    if spec is None or getattr(x, "ndim", 0) != 4 or x.shape[1] != 3:
        return None
    import torch

    mean = torch.tensor(spec.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    px = (x.detach() * std + mean).clamp(0, 1)
    return (px.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).cpu().numpy()
