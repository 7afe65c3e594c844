"""Regularisers: penalties on the rendered parameter, one value per batch element (subtracted from the score).

Each is a ``Regularizer(name, weight, fn)`` with ``fn(rendered) -> [batch]``. Image penalties are measured
around mid-grey (0.5) so that a blank image costs nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Regularizer:
    """A weighted penalty ``weight * fn(rendered)``, ``[batch]``."""

    name: str
    weight: float
    fn: Callable[[torch.Tensor], torch.Tensor]

    def __call__(self, rendered: torch.Tensor) -> torch.Tensor:
        return self.weight * self.fn(rendered)


def _check(weight: float, name: str) -> float:
    if not isinstance(weight, int | float) or weight < 0:
        raise ConfigError(f"{name} weight must be a number >= 0, got {weight!r}")
    return float(weight)


def total_variation(weight: float = 1.0) -> Regularizer:
    """Mean absolute difference between neighbouring pixels (a high-frequency penalty)."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        dy = (x[..., 1:, :] - x[..., :-1, :]).abs().flatten(1).mean(1)
        dx = (x[..., :, 1:] - x[..., :, :-1]).abs().flatten(1).mean(1)
        return dx + dy

    return Regularizer("tv", _check(weight, "tv"), fn)


def l1(weight: float = 1.0, *, center: float = 0.5) -> Regularizer:
    """Mean ``|x - center|``."""
    return Regularizer("l1", _check(weight, "l1"), lambda x: (x - center).abs().flatten(1).mean(1))


def l2(weight: float = 1.0, *, center: float = 0.5) -> Regularizer:
    """Mean ``(x - center)²``."""
    return Regularizer("l2", _check(weight, "l2"), lambda x: (x - center).pow(2).flatten(1).mean(1))


def blur(weight: float = 1.0) -> Regularizer:
    """Pull the image towards a 3×3-blurred copy of itself (Lucid's ``blur_input_each_step``)."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        k = torch.full((c, 1, 3, 3), 1 / 9, dtype=x.dtype, device=x.device)
        blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=c).detach()
        return 0.5 * (x - blurred).pow(2).flatten(1).mean(1)

    return Regularizer("blur", _check(weight, "blur"), fn)


def get_regularizers(spec: dict[str, float] | None) -> tuple[Regularizer, ...]:
    """``{"tv": 0.1, "l2": 0.01}`` -> regularisers."""
    makers = {"tv": total_variation, "l1": l1, "l2": l2, "blur": blur}
    out = []
    for name, w in (spec or {}).items():
        if name not in makers:
            raise ConfigError(f"unknown regulariser {name!r}; choose from {', '.join(makers)}")
        out.append(makers[name](w))
    return tuple(out)
