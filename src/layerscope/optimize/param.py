"""Parametrisations: the tensors an optimisation changes, and how they become model inputs.

A parametrisation is any object with

* ``batch`` (int) — how many independent samples it holds,
* ``parameters()`` — the leaf tensors the optimiser updates,
* ``render()`` — what a person looks at (images in ``[0, 1]``, ``[batch, 3, H, W]``; soft prompts; masks),
* ``model_inputs(rendered)`` — the keyword inputs of the model for a (possibly transformed) rendering,
* optionally ``input_size`` (int) — the square size the model wants (transforms resample to it).

:class:`PixelParam` and :class:`FourierParam` are Lucid-style image parametrisations: values are kept in
range by a sigmoid and (optionally) decorrelated across colour channels with the ImageNet colour-correlation
matrix, and the normalisation of the model (``ImageSpec`` mean/std) is applied in ``model_inputs``.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import torch

from ..errors import ConfigError
from ..models.subject import ImageSpec

# Square root of the ImageNet colour covariance (Lucid); columns are normalised by the largest column norm.
_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_CORRELATION = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()


@runtime_checkable
class Parametrization(Protocol):
    """What ``optimize`` needs from a parametrisation (see the module docstring)."""

    batch: int

    def parameters(self) -> list[torch.Tensor]: ...

    def render(self) -> torch.Tensor: ...

    def model_inputs(self, rendered: torch.Tensor) -> dict[str, torch.Tensor]: ...


def _generator(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(int(seed))
    return g


class _ImageParam:
    """Shared parts of the image parametrisations: colour decorrelation, sigmoid, normalisation."""

    def __init__(self, batch: int, size: int, spec: ImageSpec | None, decorrelate: bool, device: Any) -> None:
        if batch < 1:
            raise ConfigError(f"batch must be >= 1, got {batch}")
        if size < 4:
            raise ConfigError(f"image size must be >= 4 pixels, got {size}")
        self.batch = int(batch)
        self.size = int(size)
        self.spec = spec or ImageSpec(size=size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        self.input_size = self.spec.size
        self.decorrelate = decorrelate
        self.device = torch.device(device or "cpu")

    def _to_rgb(self, t: torch.Tensor) -> torch.Tensor:
        """Unconstrained ``[batch, 3, H, W]`` -> ``[0, 1]`` RGB."""
        if self.decorrelate:
            c = COLOR_CORRELATION.to(t.device, t.dtype)
            t = torch.einsum("bchw,dc->bdhw", t, c)
        return torch.sigmoid(t)

    def _from_rgb(self, rgb: torch.Tensor) -> torch.Tensor:
        """Inverse of ``_to_rgb`` (values clamped away from 0 and 1)."""
        t = torch.logit(rgb.clamp(1e-4, 1 - 1e-4))
        if self.decorrelate:
            c_inv = torch.linalg.inv(COLOR_CORRELATION.double()).to(t.device, t.dtype)
            t = torch.einsum("bchw,dc->bdhw", t, c_inv)
        return t

    def model_inputs(self, rendered: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalise ``[0, 1]`` images with the model's mean/std: ``{"x": [batch, 3, H, W]}`` (channels-last)."""
        return {"x": self.spec.normalise(rendered).contiguous(memory_format=torch.channels_last)}


class PixelParam(_ImageParam):
    """One free value per pixel and channel (through a sigmoid, optionally colour-decorrelated)."""

    def __init__(
        self,
        batch: int,
        size: int,
        *,
        spec: ImageSpec | None = None,
        sd: float = 0.01,
        decorrelate: bool = True,
        seed: int = 0,
        device: Any = None,
    ) -> None:
        super().__init__(batch, size, spec, decorrelate, device)
        init = torch.randn(self.batch, 3, self.size, self.size, generator=_generator(seed)) * sd
        self.pixels = init.to(self.device).requires_grad_(True)  # batch, 3, H, W

    def parameters(self) -> list[torch.Tensor]:
        return [self.pixels]

    def render(self) -> torch.Tensor:
        return self._to_rgb(self.pixels)

    @classmethod
    def from_image(cls, images: torch.Tensor, **kwargs: Any) -> PixelParam:
        """Start from ``[batch, 3, H, W]`` images in ``[0, 1]``."""
        p = cls(images.shape[0], images.shape[-1], **kwargs)
        with torch.no_grad():
            p.pixels.copy_(p._from_rgb(images.to(p.device).float()))
        return p


def rfft2d_freqs(h: int, w: int) -> torch.Tensor:
    """Spatial frequency magnitude of each rFFT bin, ``[h, w // 2 + 1]``."""
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    return torch.sqrt(fx * fx + fy * fy)


class FourierParam(_ImageParam):
    """Lucid's Fourier parametrisation: a scaled spectrum (1/f decay), inverse rFFT, decorrelated colours.

    Spectrum ~ N(0, sd²); each frequency is scaled by ``1 / max(f, 1 / size) ** decay_power * size``,
    the image is the orthonormal inverse rFFT divided by 4, then colour-decorrelated and squashed by a sigmoid.
    """

    def __init__(
        self,
        batch: int,
        size: int,
        *,
        spec: ImageSpec | None = None,
        sd: float = 0.01,
        decay_power: float = 1.0,
        decorrelate: bool = True,
        seed: int = 0,
        device: Any = None,
    ) -> None:
        super().__init__(batch, size, spec, decorrelate, device)
        freqs = rfft2d_freqs(self.size, self.size)
        scale = 1.0 / torch.clamp(freqs, min=1.0 / self.size) ** decay_power
        self.scale = (scale * math.sqrt(self.size * self.size)).to(self.device)  # H, W//2+1
        shape = (self.batch, 3, self.size, self.size // 2 + 1, 2)
        init = torch.randn(shape, generator=_generator(seed)) * sd
        self.spectrum = init.to(self.device).requires_grad_(True)  # batch, 3, H, W//2+1, (re, im)

    def parameters(self) -> list[torch.Tensor]:
        return [self.spectrum]

    def _spatial(self) -> torch.Tensor:
        spec = torch.view_as_complex(self.spectrum) * self.scale
        img = torch.fft.irfftn(spec, s=(self.size, self.size), dim=(-2, -1), norm="ortho")
        return img / 4.0  # batch, 3, H, W

    def render(self) -> torch.Tensor:
        return self._to_rgb(self._spatial())

    @classmethod
    def from_image(cls, images: torch.Tensor, **kwargs: Any) -> FourierParam:
        """Start from ``[batch, 3, H, W]`` images in ``[0, 1]`` (exact inverse of ``render``)."""
        p = cls(images.shape[0], images.shape[-1], **kwargs)
        with torch.no_grad():
            spatial = p._from_rgb(images.to(p.device).float()) * 4.0
            spec = torch.fft.rfftn(spatial, dim=(-2, -1), norm="ortho") / p.scale
            p.spectrum.copy_(torch.view_as_real(spec))
        return p


def image_param(
    kind: str, batch: int, size: int, *, spec: ImageSpec | None = None, seed: int = 0, device: Any = None
) -> PixelParam | FourierParam:
    """``"fourier"`` or ``"pixel"`` parametrisation of ``batch`` images of ``size`` pixels."""
    if kind == "fourier":
        return FourierParam(batch, size, spec=spec, seed=seed, device=device)
    if kind == "pixel":
        return PixelParam(batch, size, spec=spec, seed=seed, device=device)
    raise ConfigError(f"unknown parametrisation {kind!r}; use 'fourier' or 'pixel'")


class MaskParam:
    """A smooth mask per sample over fixed images: ``mask * image + (1 - mask) * blurred image``.

    The mask lives on a coarse ``grid``×``grid`` lattice (through a sigmoid) and is upsampled bilinearly,
    which keeps it smooth (extremal perturbations, Fong et al. 2019).
    """

    def __init__(
        self,
        images: torch.Tensor,
        *,
        spec: ImageSpec,
        grid: int = 14,
        blur_sigma: float = 10.0,
        init: float = 0.5,
    ) -> None:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ConfigError(f"MaskParam needs [batch, 3, H, W] images, got {tuple(images.shape)}")
        self.images = images.detach()
        self.batch = images.shape[0]
        self.spec = spec
        self.size = images.shape[-1]
        self.blurred = gaussian_blur(self.images, blur_sigma).detach()
        logit0 = math.log(init / (1 - init))
        self.logits = torch.full((self.batch, 1, grid, grid), logit0, device=images.device).requires_grad_(
            True
        )  # batch, 1, grid, grid

    def parameters(self) -> list[torch.Tensor]:
        return [self.logits]

    def render(self) -> torch.Tensor:
        """The mask, ``[batch, 1, H, W]`` in ``[0, 1]``."""
        m = torch.sigmoid(self.logits)
        return torch.nn.functional.interpolate(
            m, size=self.images.shape[-2:], mode="bilinear", align_corners=False
        )

    def model_inputs(self, rendered: torch.Tensor) -> dict[str, torch.Tensor]:
        x = rendered * self.images + (1 - rendered) * self.blurred
        if x.shape[-1] != self.spec.size:
            x = torch.nn.functional.interpolate(x, size=(self.spec.size, self.spec.size), mode="bilinear")
        return {"x": self.spec.normalise(x)}


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[batch, C, H, W]`` (reflect padding)."""
    if sigma <= 0:
        return x
    radius = max(1, min(int(3 * sigma), x.shape[-1] // 2 - 1))
    k = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (k / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    kx = k.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    ky = k.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    pad = torch.nn.functional.pad(x, (radius, radius, radius, radius), mode="reflect")
    out = torch.nn.functional.conv2d(pad, kx, groups=c)
    return torch.nn.functional.conv2d(out, ky, groups=c)
