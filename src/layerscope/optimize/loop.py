"""The one optimisation loop behind feature visualisation, prototypes, feature isolation and prompt inversion.

``optimize(model, objective, param, ...)`` maximises ``objective`` over the tensors of ``param``:

each step
  1. ``rendered = param.render()`` — e.g. images in ``[0, 1]``, masks, soft-prompt embeddings;
  2. ``transform(rendered)`` — optional robustness transform (images only), one batched resample;
  3. ``inputs = param.model_inputs(transformed)`` — a dict of model keyword inputs (``{"x": ...}`` for
     images, ``{"inputs_embeds": ..., "attention_mask": ...}`` for soft prompts of a causal LM);
  4. a *truncated* forward pass: ``capture(model, objective.sites, stop=True, detach=False)`` cuts the model
     right after the last site the objective reads, so later layers never run;
  5. ``loss = -(objective(trace) - sum(regularisers(rendered))).sum()`` — one score per batch element, so a
     batch of units / classes / masks is optimised independently in one pass;
  6. gradients by ``torch.autograd.grad`` w.r.t. the parameters only (model weights never get ``.grad``),
     an Adam step; the best-so-far rendering of every batch element is kept.

Nothing in the loop is specific to images: any parametrisation object (see
:class:`layerscope.optimize.param.Parametrization`) and any objective computed from captured sites work.
The model is put in eval mode for the run and restored afterwards; hooks are always removed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .._precision import autocast_dtype, check_precision
from ..capture import capture
from ..capture.hooks import adapter_of
from ..errors import ConfigError
from ..models.fold import folded_batchnorm
from .objectives import Objective
from .param import Parametrization
from .regularizers import Regularizer
from .transforms import Transform

ForwardFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], Any]

#: Learning rates tried by ``lr="auto"`` (a short run from the same start for each; the best mean score wins).
LR_CANDIDATES: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3)

#: ``precision="auto"`` on a CPU keeps float32 unless a bfloat16 step is at least this many times faster.
AUTO_MIN_GAIN = 1.2


@dataclasses.dataclass
class OptimizeOutput:
    """What ``optimize`` returns.

    Attributes:
        best: best-so-far rendering per batch element (``[batch, ...]``, detached).
        last: rendering after the last step.
        best_score: objective value (without regularisers) at ``best``, ``[batch]``.
        history: objective value per step and batch element, ``[steps, batch]``.
        loss: total loss per step (what Adam minimised), ``[steps]``.
        lr: learning rate used (the one picked when ``lr="auto"``).
        seconds: wall time of the main run.
        precision: the model's precision in the run (``"float32"`` or ``"bfloat16"``).
    """

    best: torch.Tensor
    last: torch.Tensor
    best_score: torch.Tensor
    history: np.ndarray
    loss: np.ndarray
    lr: float
    seconds: float
    objective: str
    precision: str = "float32"

    @property
    def steps_per_second(self) -> float:
        return len(self.loss) / self.seconds if self.seconds > 0 else float("nan")


def default_forward(module: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> Any:
    """``module(x)`` for ``{"x": images}``; ``module(**inputs)`` otherwise."""
    if set(inputs) == {"x"}:
        return module(inputs["x"])
    return module(**inputs)


def evaluate(
    model: Any,
    objective: Objective,
    inputs: dict[str, torch.Tensor],
    *,
    forward: ForwardFn = default_forward,
    grad: bool = False,
) -> torch.Tensor:
    """The objective on fixed model inputs (truncated forward), ``[batch]``."""
    module, _ = adapter_of(model)
    with torch.set_grad_enabled(grad):
        with capture(model, list(objective.sites), stop=True, detach=not grad) as trace:
            forward(module, inputs)
        return objective(trace)


def _inputs_of(
    param: Parametrization, rendered: torch.Tensor, transform: Transform | None, gen: torch.Generator
) -> dict[str, torch.Tensor]:
    """Model inputs of a rendering: transformed (or resized) to the model's input size."""
    x = rendered
    if transform is not None:
        x = transform(rendered, out_size=getattr(param, "input_size", None), generator=gen)
    elif getattr(param, "input_size", None) not in (None, rendered.shape[-1]) and rendered.ndim == 4:
        size = int(param.input_size)  # type: ignore[attr-defined]
        x = torch.nn.functional.interpolate(rendered, size=(size, size), mode="bilinear", align_corners=False)
    return param.model_inputs(x)


def _step_scores(
    model: Any,
    module: torch.nn.Module,
    objective: Objective,
    param: Parametrization,
    transform: Transform | None,
    regularizers: Sequence[Regularizer],
    forward: ForwardFn,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rendered = param.render()
    inputs = _inputs_of(param, rendered, transform, gen)
    with capture(model, list(objective.sites), stop=True, detach=False) as trace:
        forward(module, inputs)
    score = objective(trace)  # batch
    penalty = torch.zeros_like(score)
    for r in regularizers:
        penalty = penalty + r(rendered)
    return rendered, score, penalty


def _run(
    model: Any,
    module: torch.nn.Module,
    objective: Objective,
    param: Parametrization,
    *,
    steps: int,
    lr: float,
    transform: Transform | None,
    regularizers: Sequence[Regularizer],
    forward: ForwardFn,
    seed: int,
    progress: bool,
    keep_best: bool,
    description: str,
) -> OptimizeOutput:
    params = list(param.parameters())
    opt = _Adam(params, lr)
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    history = np.zeros((steps, param.batch), dtype=np.float32)
    losses = np.zeros(steps, dtype=np.float32)
    best: torch.Tensor | None = None
    best_score: torch.Tensor | None = None
    rendered = None
    bar = _progress(progress, description, steps)
    t0 = time.perf_counter()
    with bar as (advance):
        for i in range(steps):
            rendered, score, penalty = _step_scores(
                model, module, objective, param, transform, regularizers, forward, gen
            )
            if score.shape[0] != param.batch:
                raise ConfigError(
                    f"objective returned {score.shape[0]} scores for a batch of {param.batch}; "
                    "check the unit/class lists"
                )
            loss = -(score - penalty).sum()
            grads = torch.autograd.grad(loss, params)
            opt.step(grads)
            s = score.detach()
            history[i] = s.float().cpu().numpy()
            losses[i] = float(loss.detach())
            if keep_best:
                r = rendered.detach()
                if best is None or best_score is None:
                    best, best_score = r.clone(), s.clone()
                else:
                    better = s > best_score
                    if bool(better.any()):
                        best[better] = r[better]
                        best_score = torch.where(better, s, best_score)
            advance()
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        last = param.render().detach()
    if best is None or best_score is None:
        best, best_score = last, torch.full((param.batch,), float("nan"))
    return OptimizeOutput(best, last, best_score, history, losses, lr, seconds, objective.description)


class _Adam:
    """Adam (Kingma & Ba; PyTorch's defaults) on a list of leaf tensors, stepping with given gradients.

    Kept here rather than ``torch.optim.Adam`` so the loop needs no ``.grad`` fields and does not pull in
    ``torch._dynamo`` (seconds of import time) for a few element-wise updates.
    """

    def __init__(
        self, params: Sequence[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999)
    ) -> None:
        self.params = list(params)
        self.lr = lr
        self.b1, self.b2 = betas
        self.eps = 1e-8
        self.t = 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor]) -> None:
        self.t += 1
        c1 = 1 - self.b1**self.t
        c2 = 1 - self.b2**self.t
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            m.mul_(self.b1).add_(g, alpha=1 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            denom = (v / c2).sqrt_().add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / c1)


class _progress:
    """A rich progress bar (transient) as a context manager yielding ``advance()``; a no-op when off."""

    def __init__(self, enabled: bool, description: str, total: int) -> None:
        self.enabled = enabled
        self.description = description
        self.total = total
        self._bar: Any = None

    def __enter__(self) -> Callable[[], None]:
        if not self.enabled:
            return lambda: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
        )
        self._bar.__enter__()
        task = self._bar.add_task(self.description, total=self.total)
        return lambda: self._bar.advance(task)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def optimize(
    model: Any,
    objective: Objective,
    param: Parametrization,
    *,
    steps: int = 256,
    lr: float | str = 0.05,
    transform: Transform | None = None,
    regularizers: Sequence[Regularizer] = (),
    seed: int = 0,
    progress: bool = False,
    keep_best: bool = True,
    forward: ForwardFn = default_forward,
    precision: str = "float32",
) -> OptimizeOutput:
    """Maximise ``objective`` over ``param`` with Adam (see the module docstring for the step).

    Args:
        model: a ``Subject`` or ``nn.Module`` (its weights are not changed and get no gradients).
        objective: an :class:`~layerscope.optimize.Objective` returning ``[batch]`` scores.
        param: a parametrisation (``batch``, ``parameters()``, ``render()``, ``model_inputs()``).
        steps: optimisation steps.
        lr: Adam learning rate, or ``"auto"`` for a short LR finder over ``LR_CANDIDATES``.
        transform: robustness transform applied to the rendering each step (images only).
        regularizers: penalties on the rendering, subtracted from the score.
        seed: seeds the random transforms (same seed, same CPU result).
        progress: show a rich progress bar.
        keep_best: keep the best-so-far rendering per batch element (else ``best`` is the last one).
        forward: ``forward(module, inputs)`` runs the model (default: ``module(x)`` or ``module(**inputs)``).
        precision: ``"float32"`` (default), ``"bfloat16"`` or ``"auto"``. With bfloat16 the model's forward
            and backward run under ``torch.autocast``; the parametrisation, transforms, objective (read from
            float32 copies of the captured sites), regularisers and Adam stay float32. ``"auto"`` uses
            bfloat16 only where the device has it natively and, on a CPU, where timed steps of each
            precision show bfloat16 at least :data:`AUTO_MIN_GAIN` × faster (it
            is slower for depthwise convolutions and tiny batches); the choice is ``output.precision``.

    Returns:
        :class:`OptimizeOutput` with the best and last renderings, scores per step and timing.
    """
    if not isinstance(objective, Objective):
        raise ConfigError(f"objective must be a layerscope Objective, got {type(objective).__name__}")
    if not isinstance(param, Parametrization):
        raise ConfigError(
            f"param must provide batch, parameters(), render() and model_inputs(); got {type(param).__name__}"
        )
    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps must be an integer >= 1, got {steps!r}")
    module, _ = adapter_of(model)
    check_precision(precision)
    was_training = module.training
    module.eval()

    def representative() -> Any:  # one full forward on a first rendering: BatchNorm folding finds its pairs
        gen = torch.Generator().manual_seed(int(seed))
        return forward(module, _inputs_of(param, param.render().detach(), transform, gen))

    try:
        with folded_batchnorm(module, representative):  # eval BatchNorm merged into its conv: no BN passes
            return _optimize_folded(
                model, module, objective, param, steps, lr, transform, regularizers, forward, seed, progress,
                keep_best, precision,
            )  # fmt: skip
    finally:
        module.train(was_training)


def _device_of(module: torch.nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _autocast(forward: ForwardFn, device_type: str, dtype: torch.dtype) -> ForwardFn:
    """``forward`` under ``torch.autocast`` (its backward follows the forward's dtypes)."""

    def run(module: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> Any:
        with torch.autocast(device_type, dtype=dtype):
            return forward(module, inputs)

    return run


def _read_float32(objective: Objective) -> Objective:
    """``objective`` computed on float32 copies of its sites (scores and comparisons keep full precision)."""

    def as_float32(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            return v.float() if v.is_floating_point() else v
        if isinstance(v, tuple | list):
            return type(v)(as_float32(x) for x in v)
        return v

    def fn(trace: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return objective({s: as_float32(trace[s]) for s in objective.sites})

    return Objective(fn, objective.sites, objective.description)


def _optimize_folded(
    model: Any,
    module: torch.nn.Module,
    objective: Objective,
    param: Parametrization,
    steps: int,
    lr: float | str,
    transform: Transform | None,
    regularizers: Sequence[Regularizer],
    forward: ForwardFn,
    seed: int,
    progress: bool,
    keep_best: bool,
    precision: str,
) -> OptimizeOutput:
    dtype = _choose_dtype(precision, model, module, objective, param, transform, forward, seed)
    if dtype is not None:
        forward = _autocast(forward, _device_of(module).type, dtype)
        objective = _read_float32(objective)
    if lr == "auto":
        lr = _find_lr(model, module, objective, param, steps, transform, regularizers, forward, seed)
    if not isinstance(lr, int | float) or lr <= 0:
        raise ConfigError(f"lr must be a positive number or 'auto', got {lr!r}")
    out = _run(
        model,
        module,
        objective,
        param,
        steps=steps,
        lr=float(lr),
        transform=transform,
        regularizers=regularizers,
        forward=forward,
        seed=seed,
        progress=progress,
        keep_best=keep_best,
        description=objective.description[:40],
    )
    out.precision = "float32" if dtype is None else str(dtype).removeprefix("torch.")
    return out


def _choose_dtype(
    precision: str,
    model: Any,
    module: torch.nn.Module,
    objective: Objective,
    param: Parametrization,
    transform: Transform | None,
    forward: ForwardFn,
    seed: int,
) -> torch.dtype | None:
    """The autocast dtype for ``precision`` (None: float32); ``"auto"`` on a CPU times steps of each.

    One warm-up step per precision, then three alternated timed steps each; the fastest of each is compared.
    """
    device = _device_of(module)
    dtype = autocast_dtype(precision, device)
    if precision != "auto" or dtype is None or device.type != "cpu":
        return dtype
    params = list(param.parameters())
    gen = torch.Generator().manual_seed(int(seed))  # its own generator: the run's draws are untouched
    variants = [(forward, objective), (_autocast(forward, device.type, dtype), _read_float32(objective))]

    def step_seconds(fwd: ForwardFn, obj: Objective) -> float:
        t = time.perf_counter()
        _, score, _ = _step_scores(model, module, obj, param, transform, (), fwd, gen)  # the loop's own step
        torch.autograd.grad(-score.sum(), params)
        return time.perf_counter() - t

    for fwd, obj in variants:  # warm-up: allocations, kernel selection
        step_seconds(fwd, obj)
    best = [float("inf"), float("inf")]
    for _ in range(3):  # alternated, fastest of each: robust to load that comes and goes
        for i, (fwd, obj) in enumerate(variants):
            best[i] = min(best[i], step_seconds(fwd, obj))
    f32, low = best
    return dtype if low * AUTO_MIN_GAIN <= f32 else None


def _find_lr(
    model: Any,
    module: torch.nn.Module,
    objective: Objective,
    param: Parametrization,
    steps: int,
    transform: Transform | None,
    regularizers: Sequence[Regularizer],
    forward: ForwardFn,
    seed: int,
) -> float:
    """Short runs (``max(5, steps // 10)`` steps) from the same start for each candidate; best mean score wins."""
    start = [p.detach().clone() for p in param.parameters()]
    n = max(5, min(50, steps // 10))
    best_lr, best_val = LR_CANDIDATES[0], -float("inf")
    for cand in LR_CANDIDATES:
        out = _run(
            model,
            module,
            objective,
            param,
            steps=n,
            lr=cand,
            transform=transform,
            regularizers=regularizers,
            forward=forward,
            seed=seed,
            progress=False,
            keep_best=False,
            description="lr finder",
        )
        val = float(np.mean(out.history[-max(1, n // 5) :]))
        if np.isfinite(val) and val > best_val:
            best_lr, best_val = cand, val
        with torch.no_grad():
            for p, s in zip(param.parameters(), start, strict=True):
                p.copy_(s)
    return best_lr
