"""Model helpers for the optimisation tools: wrap modules as subjects, validate images, small trained CNNs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._io import cache_root
from ..errors import ConfigError, DataError
from ..models.adapter import Adapter
from ..models.subject import ImageSpec, Subject
from .objectives import ObjectiveError

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def as_subject(model: Any, *, image: ImageSpec | None = None, name: str | None = None) -> Subject:
    """A ``Subject`` for a vision model: pass-through for subjects, a wrapper for a plain ``nn.Module``."""
    if isinstance(model, Subject):
        if image is not None and model.image != image:
            return Subject(
                model=model.model,
                adapter=model.adapter,
                name=model.name,
                tokenizer=model.tokenizer,
                image=image,
                revision=model.revision,
                source=model.source,
                class_names=model.class_names,
            )
        return model
    if not isinstance(model, nn.Module):
        raise ConfigError(f"expected a layerscope Subject or a torch nn.Module, got {type(model).__name__}")
    model.eval()
    return Subject(
        model=model,
        adapter=Adapter.for_model(model),
        name=name or type(model).__name__,
        image=image or ImageSpec(size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
        class_names=getattr(model, "class_names", None),
    )


def image_spec(subject: Subject) -> ImageSpec:
    """The subject's ImageSpec (a clear error for text models)."""
    if subject.image is None:
        raise ConfigError(
            f"{subject.name} has no image spec (it is a {subject.kind} model); image tools need a vision model"
        )
    return subject.image


def check_logits_model(subject: Subject) -> None:
    """Raise when the model visibly ends in a softmax (its last module), before anything runs."""
    mods = [m for m in subject.model.modules() if not list(m.children())]
    if mods and isinstance(mods[-1], nn.Softmax | nn.LogSoftmax):
        raise ObjectiveError(
            f"{subject.name} ends in {type(mods[-1]).__name__}: it outputs probabilities, but optimisation needs "
            "raw logits; pass the model without its final softmax layer (e.g. model[:-1])"
        )


def to_images(images: Any, *, size: int | None = None, name: str = "images") -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` or float ``[N, 3, H, W]`` in ``[0, 1]`` -> float ``[N, 3, H, W]`` in ``[0, 1]``.

    Raises:
        DataError: wrong rank, channel count, size (when ``size`` is given) or value range.
    """
    x = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4:
        raise DataError(
            f"{name} must be [N, H, W, 3] uint8 or [N, 3, H, W] float in [0, 1], got {tuple(x.shape)}"
        )
    if x.dtype == torch.uint8:
        if x.shape[-1] != 3:
            raise DataError(f"uint8 {name} must be [N, H, W, 3], got shape {tuple(x.shape)}")
        x = x.permute(0, 3, 1, 2).float() / 255.0
    else:
        if x.shape[1] != 3:
            raise DataError(f"float {name} must be [N, 3, H, W], got shape {tuple(x.shape)}")
        x = x.float()
        lo, hi = float(x.min()), float(x.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise DataError(
                f"float {name} must hold pixel values in [0, 1] (before normalisation), got range "
                f"[{lo:.3g}, {hi:.3g}]; pass raw pixels, the model's normalisation is applied for you"
            )
    if size is not None and (x.shape[-1] != size or x.shape[-2] != size):
        raise DataError(
            f"{name} must be {size}x{size} pixels for this model, got {x.shape[-2]}x{x.shape[-1]}"
        )
    return x.contiguous(memory_format=torch.channels_last)  # NHWC: faster convolutions on CPU (oneDNN)


# -- small trained CNNs ---------------------------------------------------------------------------------
def small_cnn(n_classes: int = 10, *, in_size: int = 32, width: int = 32) -> nn.Sequential:
    """A small VGG-style CNN (3 conv stages + linear head) for ``in_size`` RGB images."""
    w = width
    return nn.Sequential(
        nn.Conv2d(3, w, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(w, 2 * w, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(2 * w, 4 * w, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * w, n_classes),
    )


def train_classifier(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    augment: bool = False,
) -> nn.Module:
    """Adam + cross-entropy on already-normalised inputs ``x`` (random flips when ``augment``).

    Uses the loop's small Adam with a linear warm-up/decay schedule (no ``torch.optim``: importing it pulls in
    ``torch._dynamo``, which costs seconds).
    """
    from .loop import _Adam

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _Adam(params, lr)
    total = epochs * ((len(x) + batch_size - 1) // batch_size)
    warm = max(1, total // 10)
    step = 0
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch_size):
            idx = order[i : i + batch_size]
            xb = x[idx]
            if augment:
                flip = torch.rand(len(idx), generator=g) < 0.5
                xb = torch.where(flip.view(-1, 1, 1, 1), xb.flip(-1), xb)
            loss = nn.functional.cross_entropy(model(xb), y[idx])
            grads = torch.autograd.grad(loss, params)
            step += 1
            opt.lr = lr * min(step / warm, max(0.0, (total - step) / (total - warm + 1e-9)) + 0.02)
            opt.step(grads)
    return model.eval()


def cifar_cnn(
    *, cache_dir: Path | None = None, n_train: int = 8000, epochs: int = 8, seed: int = 0
) -> Subject:
    """A small CNN trained on the first ``n_train`` images of the bundled CIFAR-10 test set (cached).

    The remaining images (index ``n_train`` onwards) are held out for confusion matrices and attacks.
    """
    from safetensors.torch import load_file, save_file

    from ..data.corpus import cifar10_test

    folder = (cache_dir or cache_root()) / "optimize"
    path = folder / f"cifar_cnn_n{n_train}_e{epochs}_s{seed}.safetensors"
    images, labels, names = cifar10_test()
    model = small_cnn(len(names))
    spec = ImageSpec(size=32, mean=CIFAR_MEAN, std=CIFAR_STD)
    if path.is_file():
        model.load_state_dict(load_file(str(path)))
    else:
        x = spec.normalise(torch.as_tensor(images[:n_train]).permute(0, 3, 1, 2).float() / 255)
        y = torch.as_tensor(labels[:n_train])
        train_classifier(model, x, y, epochs=epochs, seed=seed, augment=True)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
        tmp.rename(path)
    model.eval()
    subject = as_subject(model, image=spec, name="cifar10-cnn")
    subject.class_names = list(names)
    return subject


def digits_data() -> tuple[torch.Tensor, torch.Tensor]:
    """sklearn's 8×8 digits as ``[1797, 3, 8, 8]`` float images in ``[0, 1]`` (grey in RGB) and labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.as_tensor(d.images, dtype=torch.float32) / 16.0  # N, 8, 8
    return x.unsqueeze(1).expand(-1, 3, -1, -1).contiguous(), torch.as_tensor(d.target)


def digits_cnn(*, epochs: int = 15, seed: int = 0, n_train: int = 1400) -> Subject:
    """A small CNN trained (in seconds) on the first ``n_train`` sklearn digits."""
    x, y = digits_data()
    spec = ImageSpec(size=8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 16, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )
    train_classifier(model, spec.normalise(x[:n_train]), y[:n_train], epochs=epochs, seed=seed, lr=3e-3)
    subject = as_subject(model, image=spec, name="digits-cnn")
    subject.class_names = [str(i) for i in range(10)]
    return subject
