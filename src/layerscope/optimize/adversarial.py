"""Adversarial examples: FGSM and PGD on images (L∞ / L2, targeted or not) and attacks on text models.

Images are attacked in pixel space ``[0, 1]``; the model's normalisation (``ImageSpec`` mean/std) is applied
inside, so ε is in pixel units (8/255 means 8 grey levels) and every adversarial image is a valid image.
PGD (Madry et al. 2018): optional random start in the ε-ball, then ``steps`` of
``x ← Π(x ± α · sign(∇))`` (L∞) or ``x ← Π(x ± α · ∇/‖∇‖₂)`` (L2), projected to the ε-ball and ``[0, 1]``.
The ε of each sample is its own (a tensor), so a success-vs-ε curve is one batched attack.

Text: :func:`pgd_embeddings` perturbs input embeddings of real tokens inside a per-token L2 ball;
:func:`word_substitution` greedily swaps whole words for vocabulary words ranked by the first-order
(HotFlip-style) loss change, evaluating all candidates of a step in one batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..models.subject import frozen_params
from ..result import Result
from ._figures import image_grid
from ._models import as_subject, check_logits_model, image_spec, to_images
from .objectives import check_not_probabilities

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

NORMS = ("linf", "l2")


def _check_eps(eps: Any, name: str = "eps") -> list[float]:
    vals = [float(e) for e in (eps if isinstance(eps, Sequence | np.ndarray) else [eps])]
    if not vals or any(not np.isfinite(e) or e <= 0 for e in vals):
        raise ConfigError(f"{name} must be > 0 (e.g. 8/255 for L∞ on [0, 1] pixels), got {eps!r}")
    return vals


@dataclasses.dataclass(frozen=True)
class AdversarialResult(Result):
    """Adversarial images with predictions before/after and (optionally) a success-vs-ε curve.

    Attributes:
        original, adversarial: ``[n, 3, H, W]`` float32 images in ``[0, 1]``.
        labels: true classes; ``targets``: target classes (``-1`` when untargeted).
        pred_before, pred_after: predicted classes; ``prob_after``: probability of ``pred_after``.
        success: per image (untargeted: prediction differs from the label; targeted: equals the target).
        eps, alpha, steps, norm, targeted, method: attack settings.
        curve: ``{"eps": [...], "success_rate": [...]}`` when made by :func:`success_curve`.
    """

    original: np.ndarray
    adversarial: np.ndarray
    labels: np.ndarray
    targets: np.ndarray
    pred_before: np.ndarray
    pred_after: np.ndarray
    prob_after: np.ndarray
    success: np.ndarray
    eps: float
    alpha: float
    steps: int
    norm: str
    targeted: bool
    method: str
    model: str
    class_names: list[str]
    seconds: float
    curve: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    title: ClassVar[str] = "Adversarial examples"

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.success))

    @property
    def perturbation(self) -> np.ndarray:
        return self.adversarial - self.original

    def perturbation_norms(self) -> np.ndarray:
        """L∞ or L2 norm (matching ``norm``) of each perturbation, ``[n]``."""
        d = self.perturbation.reshape(len(self.original), -1)
        return np.abs(d).max(1) if self.norm == "linf" else np.linalg.norm(d, axis=1)

    def _name(self, c: int) -> str:
        return self.class_names[c] if 0 <= c < len(self.class_names) else str(c)

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(
            {
                "label": [self._name(int(c)) for c in self.labels],
                "target": [self._name(int(c)) if c >= 0 else "" for c in self.targets],
                "pred_before": [self._name(int(c)) for c in self.pred_before],
                "pred_after": [self._name(int(c)) for c in self.pred_after],
                "prob_after": self.prob_after,
                "success": self.success,
                "perturbation_norm": self.perturbation_norms(),
            }
        )

    def figure(self) -> go.Figure:
        n = min(6, len(self.original))
        d = self.perturbation[:n]
        scale = max(float(np.abs(d).max()), 1e-8)
        tiles, titles = [], []
        for i in range(n):
            tiles += [self.original[i], 0.5 + 0.5 * d[i] / scale, self.adversarial[i]]
            titles += [
                f"{self._name(int(self.pred_before[i]))}",
                "perturbation (×%.0f)" % (0.5 / scale),
                f"→ {self._name(int(self.pred_after[i]))} ({self.prob_after[i]:.2f})",
            ]
        return image_grid(
            np.stack(tiles).transpose(0, 2, 3, 1),
            titles,
            cols=3,
            title=f"{self.method} {self.norm} ε={self.eps:.4g} · success {self.success_rate:.0%}",
        )

    def figures(self) -> list[go.Figure]:
        figs = [self.figure()]
        if self.curve:
            import plotly.graph_objects as go

            from ..report.figures import apply_style

            fig = go.Figure(
                go.Scatter(x=self.curve["eps"], y=self.curve["success_rate"], mode="lines+markers")
            )
            fig.update_layout(title={"text": f"{self.method} success rate vs ε ({self.norm})"})
            fig.update_xaxes(title_text="ε (pixel units)")
            fig.update_yaxes(title_text="success rate", range=[0, 1.02])
            figs.append(apply_style(fig, height=320))
        return figs

    def summary(self) -> str:
        kind = "targeted" if self.targeted else "untargeted"
        return (
            f"{self.method} ({kind}, {self.norm}, ε={self.eps:.4g}, {self.steps} steps) on {len(self.labels)} "
            f"images of {self.model}: success {self.success_rate:.1%}; clean accuracy "
            f"{float(np.mean(self.pred_before == self.labels)):.1%}, adversarial accuracy "
            f"{float(np.mean(self.pred_after == self.labels)):.1%}."
        )


def _project(delta: torch.Tensor, eps: torch.Tensor, norm: str) -> torch.Tensor:
    """Project perturbations ``[n, ...]`` onto their ε-balls (``eps`` is ``[n]``)."""
    e = eps.view(-1, *([1] * (delta.ndim - 1)))
    if norm == "linf":
        return torch.maximum(torch.minimum(delta, e), -e)
    n = delta.flatten(1).norm(dim=1).view_as(e).clamp_min(1e-12)
    return delta * torch.clamp(e / n, max=1.0)


def _attack_batch(
    subject: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: torch.Tensor,
    alpha: torch.Tensor,
    steps: int,
    norm: str,
    targeted: bool,
    random_start: bool,
    gen: torch.Generator,
) -> torch.Tensor:
    """PGD on one batch; returns adversarial images in ``[0, 1]``."""
    spec = image_spec(subject)
    e = eps.view(-1, 1, 1, 1)
    if random_start:
        if norm == "linf":
            delta = (torch.rand(x.shape, generator=gen) * 2 - 1).to(x.device) * e
        else:
            d = torch.randn(x.shape, generator=gen).to(x.device)
            r = torch.rand(len(x), generator=gen).to(x.device).view(-1, 1, 1, 1)
            delta = d / d.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * r * e
        x_adv = (x + delta).clamp(0, 1)
    else:
        x_adv = x.clone()
    a = alpha.view(-1, 1, 1, 1)
    sign = -1.0 if targeted else 1.0
    with frozen_params(subject.model):  # gradients w.r.t. the images only: no weight-gradient work
        for _ in range(steps):
            x_adv.requires_grad_(True)
            logits = subject.model(spec.normalise(x_adv))
            logits = getattr(logits, "logits", logits)
            loss = F.cross_entropy(logits, y, reduction="sum")
            (g,) = torch.autograd.grad(loss, x_adv)
            with torch.no_grad():
                if norm == "linf":
                    step = g.sign()
                else:
                    step = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
                x_adv = x_adv + sign * a * step
                x_adv = (x + _project(x_adv - x, eps, norm)).clamp(0, 1)
    return x_adv.detach()


@torch.no_grad()
def _predict(subject: Any, x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    spec = image_spec(subject)
    preds, probs = [], []
    for i in range(0, len(x), batch_size):
        out = subject.model(spec.normalise(x[i : i + batch_size]))
        logits = getattr(out, "logits", out).float()
        if i == 0:
            check_not_probabilities(logits)
        p = torch.softmax(logits, -1)
        preds.append(p.argmax(-1))
        probs.append(p.max(-1).values)
    return torch.cat(preds), torch.cat(probs)


def _prepare(
    model: Any, images: Any, labels: Any, targets: Any, targeted: bool, norm: str
) -> tuple[Any, ...]:
    subject = as_subject(model)
    spec = image_spec(subject)
    check_logits_model(subject)
    if norm not in NORMS:
        raise ConfigError(f"unknown norm {norm!r}; use 'linf' or 'l2'")
    x = to_images(images, size=spec.size).to(subject.device)
    y = torch.as_tensor(np.asarray(labels)).long().reshape(-1).to(subject.device)
    if len(y) != len(x):
        raise ConfigError(f"{len(x)} images but {len(y)} labels; pass one label per image")
    if targeted:
        if targets is None:
            raise ConfigError("a targeted attack needs targets=[class per image]")
        t = torch.as_tensor(np.asarray(targets)).long().reshape(-1).to(subject.device)
        if t.numel() == 1:
            t = t.expand(len(x)).clone()
        if len(t) != len(x):
            raise ConfigError(f"{len(x)} images but {len(t)} targets")
    else:
        t = torch.full_like(y, -1)
    return subject, x, y, t


def pgd(
    model: Any,
    images: Any,
    labels: Any,
    *,
    eps: float = 8 / 255,
    alpha: float | None = None,
    steps: int = 10,
    norm: str = "linf",
    targeted: bool = False,
    targets: Any = None,
    random_start: bool = True,
    seed: int = 0,
    batch_size: int = 256,
    method: str = "PGD",
) -> AdversarialResult:
    """Projected gradient descent on pixel images.

    Args:
        model: a vision ``Subject`` or ``nn.Module`` returning logits (not softmax).
        images: uint8 ``[N, H, W, 3]`` or float ``[N, 3, H, W]`` in ``[0, 1]`` at the model's input size.
        labels: true classes ``[N]``.
        eps: radius of the ε-ball in pixel units (> 0).
        alpha: step size (default: ``2.5 · eps / steps``, at least ``eps / 4`` for L∞ with few steps).
        steps: PGD iterations.
        norm: ``linf`` or ``l2``.
        targeted, targets: push towards ``targets`` (one class, or one per image) instead of away from labels.
        random_start: start at a uniform random point of the ε-ball.
        seed: seeds the random start.
    """
    import time

    (e,) = _check_eps(eps)
    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps must be an integer >= 1, got {steps!r}")
    a = float(alpha) if alpha is not None else 2.5 * e / steps
    if a <= 0:
        raise ConfigError(f"alpha must be > 0, got {alpha!r}")
    subject, x, y, t = _prepare(model, images, labels, targets, targeted, norm)
    gen = torch.Generator().manual_seed(int(seed))
    t0 = time.perf_counter()
    module = subject.model
    was_training = module.training
    module.eval()
    try:
        advs = []
        for i in range(0, len(x), batch_size):
            sl = slice(i, i + batch_size)
            n = len(x[sl])
            goal = t[sl] if targeted else y[sl]
            advs.append(
                _attack_batch(
                    subject,
                    x[sl],
                    goal,
                    torch.full((n,), e, device=x.device),
                    torch.full((n,), a, device=x.device),
                    steps,
                    norm,
                    targeted,
                    random_start,
                    gen,
                )
            )
        x_adv = torch.cat(advs)
        seconds = time.perf_counter() - t0
        before, _ = _predict(subject, x, batch_size)
        after, p_after = _predict(subject, x_adv, batch_size)
    finally:
        module.train(was_training)
    success = (after == t) if targeted else (after != y)
    names = subject.class_names or [str(i) for i in range(int(after.max()) + 1)]
    return AdversarialResult(
        original=x.cpu().numpy(),
        adversarial=x_adv.cpu().numpy(),
        labels=y.cpu().numpy(),
        targets=t.cpu().numpy(),
        pred_before=before.cpu().numpy(),
        pred_after=after.cpu().numpy(),
        prob_after=p_after.cpu().numpy(),
        success=success.cpu().numpy(),
        eps=e,
        alpha=a,
        steps=steps,
        norm=norm,
        targeted=targeted,
        method=method,
        model=subject.name,
        class_names=list(names),
        seconds=seconds,
    )


def fgsm(
    model: Any,
    images: Any,
    labels: Any,
    *,
    eps: float = 8 / 255,
    norm: str = "linf",
    targeted: bool = False,
    targets: Any = None,
    batch_size: int = 256,
) -> AdversarialResult:
    """Fast gradient sign method: one step of size ε, no random start (``x ± ε·sign(∇)``)."""
    (e,) = _check_eps(eps)
    return pgd(
        model,
        images,
        labels,
        eps=e,
        alpha=e,
        steps=1,
        norm=norm,
        targeted=targeted,
        targets=targets,
        random_start=False,
        batch_size=batch_size,
        method="FGSM",
    )


def success_curve(
    model: Any,
    images: Any,
    labels: Any,
    eps: Sequence[float],
    *,
    steps: int = 10,
    norm: str = "linf",
    targeted: bool = False,
    targets: Any = None,
    random_start: bool = True,
    seed: int = 0,
    batch_size: int = 256,
) -> AdversarialResult:
    """Success rate of PGD at every ε in one batched attack (images × ε travel in the batch axis).

    Returns the :class:`AdversarialResult` at the largest ε, with ``curve`` filled.
    """
    import time

    eps_list = sorted(_check_eps(list(eps)))
    subject, x, y, t = _prepare(model, images, labels, targets, targeted, norm)
    n, k = len(x), len(eps_list)
    xs = x.repeat(k, 1, 1, 1)  # k*n, 3, H, W (eps-major)
    goal = (t if targeted else y).repeat(k)
    e = torch.tensor(eps_list, device=x.device).repeat_interleave(n)
    a = 2.5 * e / steps
    gen = torch.Generator().manual_seed(int(seed))
    t0 = time.perf_counter()
    advs = [
        _attack_batch(
            subject,
            xs[i : i + batch_size],
            goal[i : i + batch_size],
            e[i : i + batch_size],
            a[i : i + batch_size],
            steps,
            norm,
            targeted,
            random_start,
            gen,
        )
        for i in range(0, len(xs), batch_size)
    ]
    x_adv = torch.cat(advs)
    seconds = time.perf_counter() - t0
    after, p_after = _predict(subject, x_adv, batch_size)
    before, _ = _predict(subject, x, batch_size)
    ok = (after == goal) if targeted else (after != goal)
    rates = ok.view(k, n).float().mean(1).tolist()
    last = slice((k - 1) * n, k * n)
    names = subject.class_names or [str(i) for i in range(int(after.max()) + 1)]
    return AdversarialResult(
        original=x.cpu().numpy(),
        adversarial=x_adv[last].cpu().numpy(),
        labels=y.cpu().numpy(),
        targets=t.cpu().numpy(),
        pred_before=before.cpu().numpy(),
        pred_after=after[last].cpu().numpy(),
        prob_after=p_after[last].cpu().numpy(),
        success=ok[last].cpu().numpy(),
        eps=eps_list[-1],
        alpha=float(a[-1]),
        steps=steps,
        norm=norm,
        targeted=targeted,
        method="PGD",
        model=subject.name,
        class_names=list(names),
        seconds=seconds,
        curve={"eps": eps_list, "success_rate": rates},
    )


from ._text_attacks import TextAttackResult, pgd_embeddings, word_substitution  # noqa: E402

__all__ = [
    "AdversarialResult",
    "TextAttackResult",
    "fgsm",
    "pgd",
    "pgd_embeddings",
    "success_curve",
    "word_substitution",
]
