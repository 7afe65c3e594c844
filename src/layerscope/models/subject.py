"""``Subject``: a model with its tokenizer/preprocessor and site adapter — what every analysis takes."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, DataError
from .adapter import Adapter


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """How a vision model wants its input: square size and per-channel normalisation of [0, 1] pixels."""

    size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def preprocess(self, images: Any) -> torch.Tensor:
        """uint8 ``[N, H, W, 3]`` (or float [0, 1] ``[N, 3, H, W]``) -> normalised ``[N, 3, size, size]``."""
        x = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4:
            raise DataError(
                f"images must be [N, H, W, 3] uint8 or [N, 3, H, W] float, got shape {tuple(x.shape)}"
            )
        if x.dtype == torch.uint8:
            if x.shape[-1] != 3:
                raise DataError(f"uint8 images must be [N, H, W, 3], got shape {tuple(x.shape)}")
            x = x.permute(0, 3, 1, 2).float() / 255.0  # batch, 3, H, W
        elif x.shape[1] != 3:
            raise DataError(f"float images must be [N, 3, H, W] in [0, 1], got shape {tuple(x.shape)}")
        x = x.float()
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = torch.nn.functional.interpolate(
                x, size=(self.size, self.size), mode="bilinear", antialias=True
            )
        return self.normalise(x)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] pixels -> model input."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std


@dataclasses.dataclass(frozen=True)
class SiteInfo:
    """A site of a loaded model with its shape (symbolic dims) and meaning."""

    name: str
    module: str
    shape: tuple[str, ...]
    meaning: str


_MEANING = {
    "embed": "token embeddings (lookup, before positions and norm)",
    "resid_pre": "residual stream entering the block",
    "attn.out": "attention output added to the residual",
    "attn.pattern": "attention probabilities (read-only)",
    "resid_mid": "residual stream between attention and MLP",
    "mlp.pre": "MLP neurons before the nonlinearity",
    "mlp.post": "MLP neurons after the nonlinearity",
    "mlp.out": "MLP output added to the residual",
    "resid_post": "residual stream leaving the block",
    "final": "after the last norm",
    "logits": "output scores",
    "out": "block output feature map",
    "pooled": "penultimate features (after global pooling)",
}


_VISION_MEANING = {
    "embed": "stem output (input of the first block)",
    "final": "last feature map (before pooling)",
}


@dataclasses.dataclass
class Subject:
    """A model under study: ``model`` (eval mode), ``tokenizer`` or ``image`` spec, and its site ``adapter``."""

    model: nn.Module
    adapter: Adapter
    name: str
    tokenizer: Any | None = None
    image: ImageSpec | None = None
    revision: str = ""
    source: str = ""
    class_names: list[str] | None = None

    @property
    def kind(self) -> str:
        """``encoder``, ``causal_lm``, ``vision`` or ``generic``."""
        return self.adapter.kind

    @property
    def device(self) -> torch.device:
        """The device of the model's first parameter."""
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    @property
    def n_layers(self) -> int:
        """Number of blocks."""
        return self.adapter.n_layers

    def to(self, device: str | torch.device) -> Subject:
        """Move the model to ``device`` (in place) and return self."""
        self.model.to(device)
        return self

    def manifest(self) -> dict[str, Any]:
        """Identity of the model for store manifests and reports."""
        return {
            "name": self.name,
            "revision": self.revision,
            "source": self.source,
            "family": self.adapter.family,
        }

    # -- inputs ------------------------------------------------------------------------------------
    def tokenize(self, texts: list[str], *, max_length: int | None = None, offsets: bool = False) -> Any:
        """Tokenise a batch (padded, truncated to ``max_length``) as torch tensors on the model's device."""
        if self.tokenizer is None:
            raise ConfigError(f"{self.name} has no tokenizer; it takes images, not text")
        tok = self.tokenizer
        enc = tok(
            texts,
            padding=True,
            truncation=max_length is not None,
            max_length=max_length,
            return_tensors="pt",
            return_offsets_mapping=offsets,
            return_special_tokens_mask=offsets,
        )
        return enc

    def example_inputs(self) -> dict[str, torch.Tensor]:
        """A tiny batch of valid inputs (used to read site shapes)."""
        if self.image is not None or self.kind == "vision":
            size = self.image.size if self.image else 224
            return {"x": torch.zeros(1, 3, size, size, device=self.device)}
        if self.tokenizer is not None:
            enc = self.tokenize(["layerscope looks inside"])
            return {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        raise ConfigError(f"cannot build example inputs for {self.name}; pass inputs explicitly")

    def forward(self, inputs: dict[str, torch.Tensor]) -> Any:
        """Run the model on a batch dict (``x`` for images, tokenizer fields for text)."""
        if "x" in inputs:
            return self.model(inputs["x"])
        keep = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        return self.model(**keep)

    # -- sites -------------------------------------------------------------------------------------
    def sites(self) -> list[SiteInfo]:
        """Every canonical site with its shape (read from one tiny forward pass) and meaning."""
        from ..capture import capture

        names = self.adapter.site_names()
        inputs = self.example_inputs()
        with torch.no_grad(), capture(self, names, stop=False) as tr:
            self.forward(inputs)
        seq = inputs["input_ids"].shape[1] if "input_ids" in inputs else None
        out = []
        for n in names:
            r = self.adapter.resolve(n)
            shape = tuple(tr[n].shape) if n in tr else ()
            meaning = _MEANING.get(r.site.component, "")
            if self.kind == "vision" and n in _VISION_MEANING:
                meaning = _VISION_MEANING[n]
            out.append(SiteInfo(n, r.module_name, _symbolic(n, shape, seq), meaning))
        return out


def _symbolic(name: str, shape: tuple[int, ...], seq: int | None) -> tuple[str, ...]:
    dims: list[str] = []
    for j, d in enumerate(shape):
        if j == 0:
            dims.append("batch")
        elif seq is not None and d == seq:
            dims.append("pos")
        elif name.endswith("attn.pattern") and j == 1:
            dims.append(f"n_heads={d}")
        else:
            dims.append(str(d))
    return tuple(dims)


@contextlib.contextmanager
def frozen_params(model: torch.nn.Module) -> Iterator[None]:
    """Switch off ``requires_grad`` on parameters (no weight-gradient work or memory); restored in finally."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)
