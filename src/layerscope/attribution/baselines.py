"""Baselines for path and ablation methods: what "absence of the input" means, made explicit.

A baseline is given by name or object and resolved to a site value per example (or a distribution of
them, for expected gradients / GradientSHAP):

| name | text (site values of...) | images (model input) |
|---|---|---|
| ``zero`` | all-zero site activation | all-zero input (the normalised mean colour) |
| ``pad`` / ``mask`` / ``unk`` | the input with every real token replaced by [PAD]/[MASK]/[UNK]; special tokens ([CLS], [SEP], BOS) and a continuation kept | — |
| ``uniform`` | uniform in the site's value range, per feature | uniform [0, 1] pixels, normalised |
| ``gaussian`` | input + N(0, σ²), σ = ``sigma`` × the input's std | pixels + N(0, σ²) clipped to [0, 1], normalised |
| ``black`` / ``grey`` / ``blur`` | — | black / 50 % grey / Gaussian-blurred image, normalised with ``subject.image`` |
| ``DatasetMean(v)`` | the mean site vector at every non-special position | the mean image |
| ``Distribution(samples)`` | expected gradients / GradientSHAP: baselines drawn from samples | same |
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..errors import ConfigError
from ..models.subject import Subject
from ._inputs import Prepared

TEXT_NAMES = ("zero", "pad", "mask", "unk", "uniform", "gaussian")
IMAGE_NAMES = ("zero", "black", "grey", "gray", "blur", "uniform", "gaussian")


@dataclasses.dataclass(frozen=True)
class TokenBaseline:
    """Replace every real (non-special, prompt) token by ``token_id``."""

    token_id: int


@dataclasses.dataclass(frozen=True)
class DatasetMean:
    """A mean site value: ``[d]`` for text sites (broadcast over positions) or ``[C, H, W]`` for images."""

    value: torch.Tensor


@dataclasses.dataclass(frozen=True)
class Distribution:
    """Baseline samples for expected gradients / GradientSHAP: ``[n_samples, *site shape of one example]``."""

    samples: torch.Tensor


def baseline_name(spec: Any) -> str:
    """A short readable name for a baseline spec (used in results and sensitivity tables)."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, TokenBaseline):
        return f"token:{spec.token_id}"
    if isinstance(spec, DatasetMean):
        return "dataset-mean"
    if isinstance(spec, Distribution):
        return f"distribution[{spec.samples.shape[0]}]"
    if isinstance(spec, torch.Tensor):
        return "tensor"
    return type(spec).__name__


def token_baseline_ids(subject: Subject, prep: Prepared, token_id: int) -> torch.Tensor:
    """Input ids with every real prompt token replaced by ``token_id`` (specials, padding, continuation kept)."""
    ids = prep.inputs["input_ids"]
    assert prep.special is not None and prep.attributed is not None
    keep = prep.special | ~prep.attributed | (prep.inputs["attention_mask"] == 0)
    return torch.where(keep, ids, torch.full_like(ids, int(token_id)))


def _special_id(subject: Subject, name: str) -> int:
    tok = subject.tokenizer
    tid = getattr(tok, f"{name}_token_id", None)
    if tid is None:
        raise ConfigError(
            f"the tokenizer of {subject.name} has no [{name.upper()}] token; use baseline='zero' or "
            "TokenBaseline(id) with a token id of your choice"
        )
    return int(tid)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[N, C, H, W]`` with reflect padding (weights sum to 1)."""
    radius = max(1, int(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    pad = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    if pad < radius:
        k = k[radius - pad : radius + pad + 1]
        k = k / k.sum()
    y = torch.nn.functional.pad(x, (pad, pad, 0, 0), mode="reflect")
    y = torch.nn.functional.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = torch.nn.functional.pad(y, (0, 0, pad, pad), mode="reflect")
    return torch.nn.functional.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def resolve(
    spec: Any,
    subject: Subject,
    prep: Prepared,
    site_value_of: Any,
    x: torch.Tensor,
    *,
    seed: int = 0,
    sigma: float = 0.5,
    blur_sigma: float = 10.0,
) -> torch.Tensor | Distribution:
    """Resolve a baseline spec to site values ``[batch, *site]`` (same shape as ``x``) or a Distribution.

    ``site_value_of(inputs) -> tensor`` maps a model-input dict to its site value (for token baselines).
    """
    gen = torch.Generator().manual_seed(seed)
    if isinstance(spec, Distribution):
        if tuple(spec.samples.shape[1:]) != tuple(x.shape[1:]):
            raise ConfigError(
                f"baseline distribution samples have shape {tuple(spec.samples.shape[1:])} per sample, but the "
                f"site values have {tuple(x.shape[1:])}; give [n_samples, {', '.join(map(str, x.shape[1:]))}]"
            )
        return Distribution(spec.samples.to(x.device, x.dtype))
    if isinstance(spec, torch.Tensor):
        b = spec.to(x.device, x.dtype)
        if b.shape == x.shape[1:]:
            b = b.unsqueeze(0).expand_as(x)
        if b.shape != x.shape:
            raise ConfigError(
                f"baseline has shape {tuple(spec.shape)}, but the site values have {tuple(x.shape)} "
                f"(or {tuple(x.shape[1:])} per example); give a tensor of one of these shapes or a baseline name"
            )
        return b.clone()
    if isinstance(spec, DatasetMean):
        v = spec.value.to(x.device, x.dtype)
        if prep.is_text and x.ndim == 3 and v.shape == x.shape[-1:]:
            assert prep.special is not None and prep.attributed is not None
            fixed = (prep.special | ~prep.attributed).unsqueeze(-1)
            return torch.where(fixed, x, v.view(1, 1, -1).expand_as(x))
        if v.shape == x.shape[1:]:
            return v.unsqueeze(0).expand_as(x).clone()
        raise ConfigError(f"dataset mean of shape {tuple(v.shape)} does not fit site values {tuple(x.shape)}")
    if isinstance(spec, TokenBaseline) or spec in ("pad", "mask", "unk"):
        if not prep.is_text:
            raise ConfigError(
                f"token baseline {spec!r} needs text input; images take {', '.join(IMAGE_NAMES)}"
            )
        tid = spec.token_id if isinstance(spec, TokenBaseline) else _special_id(subject, str(spec))
        inputs = dict(prep.inputs)
        inputs["input_ids"] = token_baseline_ids(subject, prep, tid)
        return site_value_of(inputs)
    if not isinstance(spec, str):
        raise ConfigError(
            f"unknown baseline {spec!r}; use a name, a tensor, TokenBaseline, DatasetMean or Distribution"
        )
    valid = TEXT_NAMES if prep.is_text else IMAGE_NAMES
    if spec not in valid:
        raise ConfigError(
            f"unknown baseline {spec!r} for {'text' if prep.is_text else 'images'}; valid: {', '.join(valid)}"
        )
    if spec == "zero":
        return torch.zeros_like(x)
    if prep.is_text:
        keep: torch.Tensor | None = None
        if (
            x.ndim == 3
            and prep.special is not None
            and prep.attributed is not None
            and x.shape[1] == prep.special.shape[1]
        ):
            keep = (prep.special | ~prep.attributed).unsqueeze(-1)
        if spec == "uniform":
            lo = x.amin(dim=tuple(range(x.ndim - 1)))
            hi = x.amax(dim=tuple(range(x.ndim - 1)))
            u = torch.rand(x.shape, generator=gen).to(x.device, x.dtype)
            b = lo + u * (hi - lo)
        else:  # gaussian
            b = x + sigma * float(x.std()) * torch.randn(x.shape, generator=gen).to(x.device, x.dtype)
        return torch.where(keep, x, b) if keep is not None else b
    # images: x is the normalised model input
    spec_img = subject.image
    mean = torch.tensor(spec_img.mean if spec_img else (0.0, 0.0, 0.0), dtype=x.dtype, device=x.device).view(
        1, 3, 1, 1
    )
    std = torch.tensor(spec_img.std if spec_img else (1.0, 1.0, 1.0), dtype=x.dtype, device=x.device).view(
        1, 3, 1, 1
    )
    if x.ndim != 4 or x.shape[1] != 3:
        raise ConfigError(
            f"image baseline {spec!r} needs site 'input' with [N, 3, H, W] values, got {tuple(x.shape)}"
        )
    pixels = x * std + mean
    if spec == "black":
        p = torch.zeros_like(pixels)
    elif spec in ("grey", "gray"):
        p = torch.full_like(pixels, 0.5)
    elif spec == "blur":
        return _gaussian_blur(x, blur_sigma)
    elif spec == "uniform":
        p = torch.rand(pixels.shape, generator=gen).to(x.device, x.dtype)
    else:  # gaussian
        p = (pixels + sigma * torch.randn(pixels.shape, generator=gen).to(x.device, x.dtype)).clamp(0, 1)
    return (p - mean) / std


def dataset_mean(subject: Subject, inputs: Any, *, site: str = "embed") -> DatasetMean:
    """The mean site value over a dataset (texts: mean over real tokens; images: mean image)."""
    from ._engine import Engine
    from ._inputs import Pairs, prepare

    prep = prepare(subject, inputs)
    n = prep.n
    dummy = Pairs(torch.arange(n), torch.zeros(n, dtype=torch.long), torch.full((n,), -1), [""] * n, "logit")
    x = Engine(subject, "input" if not prep.is_text else site, prep, dummy).x
    if prep.is_text and x.ndim == 3:
        m = prep.inputs["attention_mask"].to(x.dtype).unsqueeze(-1)
        assert prep.special is not None
        m = m * (~prep.special).to(x.dtype).unsqueeze(-1)
        return DatasetMean((x * m).sum((0, 1)) / m.sum().clamp_min(1.0))
    return DatasetMean(x.mean(0))
