"""Image helpers shared by the optimisation results (the grid figure lives in ``report.images``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..report.images import image_grid, png_data_uri, to_uint8

__all__ = ["as_list", "image_grid", "overlay", "png_data_uri", "to_uint8"]


def overlay(image: np.ndarray, mask: np.ndarray, *, alpha: float = 0.6) -> np.ndarray:
    """Image ``[H, W, 3]`` with the mask ``[H, W]`` shown: masked-out regions darkened."""
    m = np.clip(mask, 0, 1)[..., None]
    return image * (alpha * m + (1 - alpha))


def as_list(x: Any) -> list[Any]:
    return list(np.asarray(x).reshape(-1).tolist())
