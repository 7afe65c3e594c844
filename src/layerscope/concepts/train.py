"""Training: joint / sequential / independent CBMs, CEMs with RandInt, DNN baselines — all seeds at once."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, DataError
from .data import ConceptDataset
from .models import ConceptModelConfig, StackedConceptModel, model_config

__all__ = ["FittedConceptModel", "TrainConfig", "fit"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (defaults: the CEM paper's synthetic experiments).

    Attributes:
        lr: Adam learning rate. batch_size: minibatch size (0 = full batch). max_epochs / patience: early
        stopping on the validation loss, checked every epoch, best epoch's weights kept (per seed).
        weight_decay: Adam weight decay. logit_percentiles: the low/high percentiles of the training logits a
        logit bottleneck is set to when a concept is intervened to 0/1 (Koh et al. use 5 and 95).
    """

    lr: float = 0.01
    batch_size: int = 256
    max_epochs: int = 500
    patience: int = 15
    weight_decay: float = 0.0
    logit_percentiles: tuple[float, float] = (5.0, 95.0)

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.batch_size < 0:
            raise ConfigError(f"batch_size must be >= 0 (0 = full batch), got {self.batch_size}")
        if self.max_epochs < 1 or self.patience < 1:
            raise ConfigError("max_epochs and patience must be >= 1")


@dataclasses.dataclass
class FittedConceptModel:
    """A trained stack of seeds of one variant, with what training measured.

    Attributes:
        name: the variant's name. config: its architecture. module: the stacked weights (eval mode).
        epochs: ``[S]`` epochs run per stage and seed (summed over stages). seconds: wall time of training.
    """

    name: str
    config: ConceptModelConfig
    module: StackedConceptModel
    train_config: TrainConfig
    epochs: np.ndarray
    seconds: float

    @property
    def seeds(self) -> tuple[int, ...]:
        return self.module.seeds

    @torch.no_grad()
    def predict(
        self,
        x: np.ndarray | torch.Tensor,
        *,
        c_true: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Concept probabilities ``[S, n, k]`` and task probabilities ``[S, n, n_classes]``.

        ``mask`` (``[n, k]`` or ``[S, n, k]`` booleans) with ``c_true`` (``[n, k]``) intervenes: masked
        concepts are set to their true values before the task head.
        """
        xt = _as_stack(x, self.module.n_models)
        ct = mt = None
        if mask is not None:
            if c_true is None:
                raise ConfigError("an intervention mask needs c_true (the true concept values)")
            ct = _as_stack(c_true, self.module.n_models)
            mt = torch.as_tensor(np.asarray(mask), dtype=torch.bool)
            if mt.ndim == 2:
                mt = mt.unsqueeze(0).expand(self.module.n_models, -1, -1)
            if mt.shape != ct.shape:
                raise ConfigError(f"mask shape {tuple(mt.shape)} does not match concepts {tuple(ct.shape)}")
        logits, _, y = self.module(xt, c_true=ct, mask=mt)
        return torch.sigmoid(logits).numpy(), torch.softmax(y, dim=-1).numpy()


def _as_stack(a: np.ndarray | torch.Tensor, S: int) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(a, dtype=np.float32)) if not isinstance(a, torch.Tensor) else a.float()
    return t.unsqueeze(0).expand(S, *t.shape) if t.ndim == 2 else t


def _bce(logits: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Per-seed mean binary cross-entropy ``[S]``."""
    return nn.functional.binary_cross_entropy_with_logits(logits, c, reduction="none").mean(dim=(1, 2))


def _ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-seed mean cross-entropy ``[S]`` (``y`` is ``[n]`` or ``[S, n]`` class ids)."""
    S, n, C = logits.shape
    yy = y.expand(S, n) if y.ndim == 1 else y
    return (
        nn.functional.cross_entropy(logits.reshape(S * n, C), yy.reshape(-1), reduction="none")
        .view(S, n)
        .mean(1)
    )


class _Adam:
    """Adam (Kingma & Ba; the same update as ``torch.optim.Adam`` without amsgrad) in a few tensor ops.

    ``torch.optim.Adam`` costs more Python time per step than these tiny models' forward and backward, and
    its first call imports torch's compiler stack (seconds); this keeps a step cheap.
    """

    def __init__(self, params: list[nn.Parameter], *, lr: float, weight_decay: float = 0.0) -> None:
        self.params = params
        self.lr, self.wd = lr, weight_decay
        self.b1, self.b2, self.eps = 0.9, 0.999, 1e-8
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        bc1 = 1 - self.b1**self.t
        bc2_sqrt = (1 - self.b2**self.t) ** 0.5
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            g = p.grad
            if g is None:
                continue
            if self.wd:
                g = g.add(p, alpha=self.wd)
            m.mul_(self.b1).add_(g, alpha=1 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            p.addcdiv_(m, v.sqrt().div_(bc2_sqrt).add_(self.eps), value=-self.lr / bc1)


@contextlib.contextmanager
def _only(module: nn.Module, keep: torch.Tensor) -> Iterator[None]:
    """Run ``module`` with only the seed copies ``keep`` (every parameter and buffer sliced on dim 0).

    Gradients flow back into the full parameters; stopped copies get zero gradient (their best weights are
    already saved), so compute follows the number of seeds still training.
    """
    saved: list[tuple[dict[str, Any], str, Any]] = []
    for mod in module.modules():
        stores: list[dict[str, Any]] = [mod._parameters, mod._buffers]
        for store in stores:
            for key, t in list(store.items()):
                if t is not None:
                    saved.append((store, key, t))
                    store[key] = t.index_select(0, keep)
    try:
        yield
    finally:
        for store, key, t in saved:
            store[key] = t


def _train_loop(
    module: nn.Module,
    params: list[nn.Parameter],
    n_models: int,
    n_train: int,
    step_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    val_loss: Callable[[torch.Tensor], torch.Tensor],
    cfg: TrainConfig,
    gens: Sequence[torch.Generator],
) -> np.ndarray:
    """Adam on the sum of per-seed losses with per-seed early stopping; restores each seed's best weights.

    ``step_loss(idx [A, batch], active [A])`` returns the training losses ``[A]`` of the ``A`` seeds still
    training (``active`` holds their positions in the stack); ``val_loss(active)`` returns ``[A]``. The module
    is sliced to the active seeds while they run (see ``_only``). Returns the epochs each seed ran (its best
    epoch + patience, or the limit).
    """
    opt = _Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    S = n_models
    best = torch.full((S,), float("inf"))
    best_params = [p.detach().clone() for p in params]
    since = torch.zeros(S, dtype=torch.long)
    epochs = np.zeros(S, dtype=np.int64)
    bs = cfg.batch_size or n_train
    for epoch in range(cfg.max_epochs):
        active = (since < cfg.patience).nonzero().flatten()
        if active.numel() == 0:
            break
        perms = torch.stack([torch.randperm(n_train, generator=gens[int(i)]) for i in active])  # [A, n]
        sliced = active.numel() < S  # while every seed trains, no slicing is needed
        for start in range(0, n_train, bs):
            with _only(module, active) if sliced else contextlib.nullcontext():
                loss = step_loss(perms[:, start : start + bs], active).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad(), _only(module, active) if sliced else contextlib.nullcontext():
            v = val_loss(active)
        improved = v < best[active]
        won = active[improved]
        if won.numel():
            best[won] = v[improved]
            with torch.no_grad():
                for p, bp in zip(params, best_params, strict=True):
                    bp[won] = p[won]
        since[active] = torch.where(improved, torch.zeros_like(since[active]), since[active] + 1)
        epochs[active.numpy()] = epoch + 1
    with torch.no_grad():
        for p, bp in zip(params, best_params, strict=True):
            p.copy_(bp)
    return epochs


def _check(dataset: ConceptDataset, config: ConceptModelConfig) -> None:
    if not isinstance(dataset, ConceptDataset):
        raise ConfigError(
            f"expected a ConceptDataset, got {type(dataset).__name__}; build one with from_arrays"
        )
    if (
        config.kind == "cbm"
        and config.bottleneck == "boolean"
        and config.has_concepts
        and not dataset.binary_concepts
    ):
        bad = dataset.c[~np.isin(dataset.c, (0.0, 1.0))]
        raise DataError(
            f"a boolean bottleneck needs 0/1 concepts, but {bad.size} values are fractional (e.g. {bad[0]:g}); "
            "binarise the concepts or use a sigmoid bottleneck"
        )
    for part in ("train", "val"):
        if len(np.unique(dataset.y[getattr(dataset, part)])) < 2 and part == "train":
            raise DataError("the training split has a single class; the task needs at least two")


def fit(
    dataset: ConceptDataset,
    model: str | ConceptModelConfig = "cem",
    *,
    seeds: int | Sequence[int] = 5,
    train: TrainConfig | None = None,
    name: str | None = None,
) -> FittedConceptModel:
    """Train one variant on ``dataset`` for several seeds at once.

    Args:
        dataset: a :class:`ConceptDataset` (``xor()``, ``trig()``, ``dot()``, ``from_arrays(...)``).
        model: a preset name (``cem``, ``cbm-joint``, ``cbm-joint-bool``, ``cbm-sequential``, ``dnn``, ...)
            or a :class:`ConceptModelConfig`.
        seeds: a count (seeds ``0..n-1``) or explicit seeds.
        train: optimisation settings.

    Raises:
        DataError: non-binary concepts for a boolean bottleneck, a single-class training split.
    """
    cfg = model_config(model)
    tc = train or TrainConfig()
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise ConfigError("seeds must be >= 1")
    _check(dataset, cfg)
    t0 = time.perf_counter()
    xtr, ctr, ytr = (torch.as_tensor(a) for a in dataset.split("train"))
    xva, cva, yva = (torch.as_tensor(a) for a in dataset.split("val"))
    S = len(seed_list)
    module = StackedConceptModel(
        cfg,
        n_features=dataset.n_features,
        n_concepts=dataset.n_concepts,
        n_classes=dataset.n_classes,
        seeds=seed_list,
    )
    # data-order and RandInt generators, separate from the init generators, one per seed
    gens = [torch.Generator().manual_seed(10_000 + s) for s in seed_list]
    n = xtr.shape[0]
    lam = cfg.concept_loss_weight
    xva_s = xva.unsqueeze(0).expand(S, -1, -1)
    cva_s = cva.unsqueeze(0).expand(S, -1, -1)
    module.train()

    def joint_step(idx: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        x, c, y = xtr[idx], ctr[idx], ytr[idx]
        logits, side = module.encode(x)
        mask = None
        if cfg.kind == "cem" and cfg.randint_p > 0:
            # RandInt: per step, each concept replaced by its true value with prob p (mask shared by the batch)
            p = torch.full((dataset.n_concepts,), cfg.randint_p)
            mask = torch.stack([torch.bernoulli(p, generator=gens[int(i)]) for i in active]).bool()
            mask = mask.unsqueeze(1).expand_as(c)
        y_logits = module.head(module.bottleneck(logits, side, c_true=c, mask=mask))
        loss = _ce(y_logits, y)
        return loss + lam * _bce(logits, c) if lam > 0 else loss

    def joint_val(active: torch.Tensor) -> torch.Tensor:
        logits, _, y_logits = module(xva_s[active])
        loss = _ce(y_logits, yva)
        return loss + lam * _bce(logits, cva_s[active]) if lam > 0 else loss

    if cfg.training == "joint":
        epochs = _train_loop(module, list(module.parameters()), S, n, joint_step, joint_val, tc, gens)
    else:
        # stage 1: x → c (concept loss only)
        enc_params = list(module.extractor.parameters())
        epochs = _train_loop(
            module,
            enc_params,
            S,
            n,
            lambda idx, active: _bce(module.encode(xtr[idx])[0], ctr[idx]),
            lambda active: _bce(module.encode(xva_s[active])[0], cva_s[active]),
            tc,
            gens,
        )
        for p in enc_params:
            p.requires_grad_(False)
        with torch.no_grad():
            lt, st = module.encode(xtr.unsqueeze(0).expand(S, -1, -1))
            lv, sv = module.encode(xva_s)
            if cfg.training == "sequential":
                ztr = module.bottleneck(lt, st)
                zva = module.bottleneck(lv, sv)
            else:  # independent: the head learns from the true concepts
                ztr = _true_bottleneck(module, ctr, S)
                zva = _true_bottleneck(module, cva, S)

        def head_step(idx: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
            z = torch.gather(ztr[active], 1, idx.unsqueeze(-1).expand(-1, -1, ztr.shape[-1]))
            return _ce(module.head(z), ytr[idx])

        # stage 2: c → y on fixed inputs (cheap: the extractor is frozen)
        epochs = epochs + _train_loop(
            module,
            list(module.head.parameters()),
            S,
            n,
            head_step,
            lambda active: _ce(module.head(zva[active]), yva),
            tc,
            gens,
        )
        for p in enc_params:
            p.requires_grad_(True)
    if cfg.kind == "cbm" and cfg.bottleneck == "logit":
        with torch.no_grad():
            lt = module.encode(xtr.unsqueeze(0).expand(S, -1, -1))[0]
            lo, hi = tc.logit_percentiles
            module.off_value.copy_(torch.quantile(lt, lo / 100, dim=1, keepdim=True))
            module.on_value.copy_(torch.quantile(lt, hi / 100, dim=1, keepdim=True))
    module.eval()
    return FittedConceptModel(
        name=name or (model if isinstance(model, str) else "custom"),
        config=cfg,
        module=module,
        train_config=tc,
        epochs=epochs,
        seconds=time.perf_counter() - t0,
    )


def _true_bottleneck(module: StackedConceptModel, c: torch.Tensor, S: int) -> torch.Tensor:
    """The bottleneck a CBM would hold if it predicted ``c`` exactly (independent training's head input)."""
    cs = c.unsqueeze(0).expand(S, -1, -1)
    if module.config.bottleneck == "logit":
        # map 0/1 to a confident logit; the percentiles are only known after stage 1, so use ±5 here
        return cs * 10.0 - 5.0
    return cs.contiguous()
