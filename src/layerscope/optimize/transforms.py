"""Transformation robustness: pad, jitter, random scale and rotation in ONE batched ``grid_sample``.

Lucid applies its "standard transforms" one after another (pad 12, jitter 8, scale, rotate, jitter 4), each
resampling the image. Here every sample draws its own parameters, they are folded into one affine matrix
per sample, and a single ``affine_grid``/``grid_sample`` call resamples the whole batch — straight to the
model's input size, so the upsampling to the model resolution costs nothing extra.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from ..errors import ConfigError

#: Lucid's scale set {1 + (i - 5) / 50 : i = 0..10}.
STANDARD_SCALES: tuple[float, ...] = tuple(1 + (i - 5) / 50 for i in range(11))
#: Lucid's rotation set: -10..10 degrees with extra weight on 0.
STANDARD_ANGLES: tuple[float, ...] = tuple(float(a) for a in range(-10, 11)) + (0.0,) * 5


@dataclasses.dataclass(frozen=True)
class Transform:
    """Random affine robustness transforms, drawn per sample.

    Attributes:
        pad: pixels of constant ``fill`` added on each side (the view zooms out by ``(size + 2 pad) / size``).
        jitter: maximum total shift in pixels (uniform in ``[-jitter/2, jitter/2]`` per axis).
        scales: scale factors to draw from (``>1`` zooms in).
        angles: rotation angles in degrees to draw from.
        fill: value outside the image (0.5 = grey, as in Lucid).
    """

    pad: int = 12
    jitter: int = 12
    scales: tuple[float, ...] = STANDARD_SCALES
    angles: tuple[float, ...] = STANDARD_ANGLES
    fill: float = 0.5

    def __post_init__(self) -> None:
        if self.pad < 0 or self.jitter < 0:
            raise ConfigError(f"pad and jitter must be >= 0, got pad={self.pad}, jitter={self.jitter}")
        if not self.scales or any(s <= 0 for s in self.scales):
            raise ConfigError(f"scales must be a non-empty list of positive factors, got {self.scales}")
        if not self.angles:
            raise ConfigError("angles must be a non-empty list of degrees (use (0,) for no rotation)")

    @property
    def is_identity(self) -> bool:
        return self.pad == 0 and self.jitter == 0 and set(self.scales) == {1.0} and set(self.angles) == {0.0}

    def matrices(self, batch: int, size: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-sample affine matrices ``[batch, 2, 3]`` (output -> input normalised coordinates)."""
        g = generator
        s_idx = torch.randint(len(self.scales), (batch,), generator=g)
        a_idx = torch.randint(len(self.angles), (batch,), generator=g)
        scale = torch.tensor(self.scales, dtype=torch.float32)[s_idx]
        angle = torch.tensor(self.angles, dtype=torch.float32)[a_idx] * (math.pi / 180)
        shift = (torch.rand(batch, 2, generator=g) - 0.5) * self.jitter  # pixels
        zoom = (size + 2 * self.pad) / size / scale  # >1: the view covers more than the image
        cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
        theta = torch.zeros(batch, 2, 3)
        theta[:, 0, 0], theta[:, 0, 1] = cos, -sin
        theta[:, 1, 0], theta[:, 1, 1] = sin, cos
        theta[:, :, 2] = shift * (2.0 / size)
        return theta

    def __call__(
        self,
        images: torch.Tensor,
        *,
        out_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Transform ``[batch, C, H, W]`` images (one ``grid_sample``), resampled to ``out_size`` (default H)."""
        if images.ndim != 4:
            raise ConfigError(f"transforms need [batch, C, H, W] images, got shape {tuple(images.shape)}")
        b, c, h, w = images.shape
        out = int(out_size or h)
        if self.is_identity and out == h == w:
            return images
        theta = self.matrices(b, h, generator=generator).to(images.device, images.dtype)
        grid = F.affine_grid(theta, [b, c, out, out], align_corners=False)  # batch, out, out, 2
        shifted = images - self.fill  # zero padding of (x - fill) == constant `fill` padding of x
        return (
            F.grid_sample(shifted, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            + self.fill
        )


#: The image side Lucid's pixel amounts (pad 12, jitter 8 + 4) were chosen for.
LUCID_SIZE = 128


def standard_transforms(size: int | None = None) -> Transform:
    """Lucid's standard transforms (pad 12, jitter 8 + 4, scale 0.9–1.1, rotation ±10°).

    ``size``: the side of the optimised image. Below Lucid's 128 px the pad and jitter shrink in proportion
    (32 px: pad 3, jitter 3), so the robustness stays the same *fraction* of the image; at 12 px of pad a
    32-px CIFAR prototype would be optimised seen at 57 % of its size, then judged at full size.
    """
    if size is None or size >= LUCID_SIZE:
        return Transform()
    if size < 1:
        raise ConfigError(f"size must be a positive number of pixels, got {size}")
    f = size / LUCID_SIZE
    return Transform(pad=round(12 * f), jitter=round(12 * f))


def no_transforms() -> Transform:
    """The identity transform (zero strength)."""
    return Transform(pad=0, jitter=0, scales=(1.0,), angles=(0.0,))


def get_transform(spec: str | Transform | None, *, size: int | None = None) -> Transform | None:
    """``"standard"`` (scaled to ``size``, see :func:`standard_transforms`), ``"none"``, a ``Transform`` or
    ``None``."""
    if spec is None or isinstance(spec, Transform):
        return spec
    if spec == "standard":
        return standard_transforms(size)
    if spec in ("none", ""):
        return None
    raise ConfigError(f"unknown transforms {spec!r}; use 'standard', 'none' or a Transform(...)")
