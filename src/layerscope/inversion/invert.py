"""Prompt inversion: which prompts make a causal LM continue with a given target?

``invert(subject, [" girl", " boy"], restarts=R, steps=S, length=L)`` optimises ``n_targets × R`` soft prompts
in ONE batch with :func:`layerscope.optimize.optimize`. Per batch element the loop maximises

    Σ_t log p(target_t | prefix, prompt, suffix, target_<t)  [+ fluency · mean log p(prompt tokens)]
    − λ · mean_i d(prompt_i, nearest allowed vocabulary embedding)

with teacher forcing (one forward pass scores every target token) and the forward pass cut after the final
norm (the LM head is applied only at the scored positions). With ``project=True`` each step runs the PEZ
straight-through projection (forward through the nearest tokens, gradient to the continuous embeddings).

The nearest tokens of each step's prompts (one matmul against the cached normalised embedding matrix) are the
hard prompts; they are re-scored exactly with discrete token ids (every step with PEZ, where the forward pass
already is that score, every ``hard_every`` steps otherwise) and the best per restart is kept.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..optimize.loop import optimize
from ..optimize.objectives import Objective
from ..optimize.regularizers import Regularizer
from ._scoring import exact_logprob, fluency, soft_logprob, target_logprob
from .param import METRICS, SoftPromptParam, Vocabulary
from .result import InversionResult


class InversionError(ConfigError):
    """Inputs prompt inversion cannot work with (non-causal model, empty target, bad sizes)."""


def _check_subject(subject: Any) -> Any:
    module: Any = getattr(subject, "model", None)
    if getattr(subject, "tokenizer", None) is None or not isinstance(module, torch.nn.Module):
        raise InversionError(
            "prompt inversion needs a layerscope Subject with a tokenizer, e.g. layerscope.load('smollm2')"
        )
    if getattr(subject, "kind", None) != "causal_lm":
        raise InversionError(
            f"{getattr(subject, 'name', 'the model')} is a {getattr(subject, 'kind', '?')} model; prompt "
            "inversion needs a causal (next-token) language model such as smollm2, GPT-2 or Llama"
        )
    if getattr(module, "get_input_embeddings", lambda: None)() is None:
        raise InversionError(f"{subject.name} has no input embedding layer (get_input_embeddings)")
    return module


def tokenize_targets(tokenizer: Any, targets: str | Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """Validate targets and tokenise them without special tokens."""
    targets = [targets] if isinstance(targets, str) else list(targets)
    if not targets:
        raise InversionError("give at least one target continuation, e.g. targets=[' girl']")
    ids = []
    for t in targets:
        if not isinstance(t, str) or t == "":
            raise InversionError(f"target {t!r} is empty; give the continuation text, e.g. ' girl'")
        tok = list(tokenizer(t, add_special_tokens=False)["input_ids"])
        if not tok:
            raise InversionError(
                f"target {t!r} tokenises to no tokens with this tokenizer; use visible text, e.g. ' girl'"
            )
        ids.append([int(i) for i in tok])
    if len(set(targets)) != len(targets):
        raise InversionError(f"targets repeat: {targets}; give each target once")
    return targets, ids


def decoded_vocabulary(tokenizer: Any, d_vocab: int) -> list[str]:
    """The text of every token id (``decode([i])``), ``d_vocab`` entries (empty beyond the tokenizer)."""
    n = min(d_vocab, len(tokenizer))
    texts = tokenizer.batch_decode([[i] for i in range(n)], clean_up_tokenization_spaces=False)
    return list(texts) + [""] * (d_vocab - n)


def allowed_tokens(
    tokenizer: Any,
    d_vocab: int,
    target_ids: Sequence[Sequence[int]],
    *,
    exclude_special: bool = True,
    exclude_target: bool = True,
    ascii_only: bool = False,
    exclude: Sequence[int | str] = (),
) -> torch.Tensor:
    """``[n_targets, d_vocab]`` mask of the tokens a prompt may use (one row per target)."""
    base = torch.ones(d_vocab, dtype=torch.bool)
    base[min(d_vocab, len(tokenizer)) :] = False  # embedding rows no token maps to
    if exclude_special:
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items():
            if getattr(tok, "special", False):
                special.add(int(i))
        for i in special:
            if 0 <= i < d_vocab:
                base[i] = False
    if ascii_only:
        for i, s in enumerate(decoded_vocabulary(tokenizer, d_vocab)):
            if not (s.isascii() and s.isprintable() and s != ""):
                base[i] = False
    for item in exclude:
        if isinstance(item, str):
            ids = list(tokenizer(item, add_special_tokens=False)["input_ids"])
        else:
            ids = [int(item)]
        for i in ids:
            if 0 <= i < d_vocab:
                base[i] = False
    rows = base.unsqueeze(0).repeat(len(target_ids), 1)
    if exclude_target:
        for k, tids in enumerate(target_ids):
            rows[k, torch.as_tensor(list(tids), dtype=torch.long)] = False
    if not bool(rows.any(1).all()):
        raise InversionError("the exclusion lists leave no usable prompt token; relax ascii_only/exclude")
    return rows


class _Tracker:
    """Best hard prompt per batch element (exact scores), best-so-far history, and the progress bar."""

    def __init__(self, param: SoftPromptParam, n_targets: int, steps: int, progress: bool, labels: list[str]):
        self.param = param
        self.n_targets = n_targets
        self.restarts = param.batch // n_targets
        self.best_ids = param.ids.clone()
        self.best_lp = torch.full((param.batch,), -math.inf)
        self.history = np.full((steps, n_targets), np.nan, dtype=np.float64)
        self.soft_history = np.full((steps, n_targets), np.nan, dtype=np.float64)
        self.step = 0
        self.labels = labels
        self._bar: Any = None
        self._task: Any = None
        if progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("invert"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[best]}"),
                transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("invert", total=steps, best="")

    def update(self, ids: torch.Tensor, lp: torch.Tensor) -> None:
        lp = lp.detach().float().cpu()
        better = lp > self.best_lp
        if bool(better.any()):
            self.best_lp = torch.where(better, lp, self.best_lp)
            self.best_ids[better] = ids.detach().to(self.best_ids.device)[better]

    def best_per_target(self) -> np.ndarray:
        return self.best_lp.view(self.n_targets, self.restarts).max(1).values.numpy()

    def end_step(self, soft_lp: torch.Tensor) -> None:
        if self.step < len(self.history):
            self.history[self.step] = self.best_per_target()
            self.soft_history[self.step] = (
                soft_lp.detach().float().cpu().view(self.n_targets, self.restarts).max(1).values.numpy()
            )
        self.step += 1
        if self._bar is not None:
            best = " ".join(
                f"{lab!r}: p={math.exp(v):.3f}"
                for lab, v in zip(self.labels, self.best_per_target(), strict=True)
            )
            self._bar.update(self._task, advance=1, best=f"best {best}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def _head_and_site(subject: Any, module: Any) -> tuple[str, torch.nn.Module | None]:
    """Read ``final`` and apply the LM head at scored positions when possible, else read ``logits``."""
    head = module.get_output_embeddings() if hasattr(module, "get_output_embeddings") else None
    try:
        subject.adapter.resolve("final")
    except Exception:
        head = None
    if isinstance(head, torch.nn.Module) and getattr(module.config, "final_logit_softcapping", None) is None:
        return "final", head
    return "logits", None


def invert(
    subject: Any,
    targets: str | Sequence[str],
    *,
    restarts: int = 16,
    steps: int = 100,
    length: int = 5,
    lam: float = 0.1,
    metric: str = "cosine",
    project: bool = True,
    fluency_weight: float = 0.0,
    prefix: str = "",
    suffix: str = "",
    exclude_special: bool = True,
    exclude_target: bool = True,
    ascii_only: bool = False,
    exclude: Sequence[int | str] = (),
    lr: float | None = None,
    hard_every: int | None = None,
    threshold: float = 0.5,
    seed: int = 0,
    progress: bool = False,
) -> InversionResult:
    """Find prompts that make a causal LM continue with each target; ``n_targets × restarts`` in one batch.

    Args:
        subject: a causal-LM ``Subject`` (e.g. ``layerscope.load("smollm2")``).
        targets: continuation text(s), e.g. ``[" girl", " boy"]`` (may be several tokens each).
        restarts: random vocabulary initialisations per target (the batch dimension).
        steps: optimisation steps.
        length: prompt tokens to optimise (``>= 1``).
        lam: weight λ ≥ 0 of the distance of each prompt embedding to its nearest allowed token.
        metric: ``"cosine"`` (1 − cos) or ``"l2"`` (squared Euclidean) for nearest token and distance.
        project: PEZ-style projected straight-through steps (forward through the nearest tokens).
        fluency_weight: weight of the model's own mean log-likelihood of the (projected) prompt tokens.
        prefix, suffix: fixed text before / after the prompt (the prefix gets the tokenizer's special tokens,
            e.g. BOS, when it adds any).
        exclude_special: never use special tokens in the prompt.
        exclude_target: never use the target's own tokens in the prompt.
        ascii_only: only tokens whose text is printable ASCII.
        exclude: further token ids or strings (all their tokens) to leave out.
        lr: Adam learning rate, in units of the RMS size of an embedding coordinate (default: 3 with
            ``project``, else 1).
        hard_every: re-score the hard prompts exactly every N steps (default: 1 with ``project``, else 5).
        threshold: probability a hard prompt must reach to count as a success in the summary.
        seed: seeds the random initial prompts (same seed, same CPU result).
        progress: show a progress bar with the best probability so far.

    Returns:
        :class:`InversionResult` with the best hard prompt per restart, its exact target probability, the soft
        probability of the continuous prompt, the random-start baseline and the token maps.
    """
    module = _check_subject(subject)
    tok = subject.tokenizer
    for name, v in (("restarts", restarts), ("steps", steps)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise InversionError(f"{name} must be an integer >= 1, got {v!r}")
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise InversionError(f"prompt length must be an integer >= 1, got {length!r}")
    if not isinstance(lam, int | float) or not math.isfinite(lam) or lam < 0:
        raise InversionError(f"lam (λ, weight of the nearest-token distance) must be >= 0, got {lam!r}")
    if not isinstance(fluency_weight, int | float) or not math.isfinite(fluency_weight) or fluency_weight < 0:
        raise InversionError(f"fluency_weight must be >= 0, got {fluency_weight!r}")
    if metric not in METRICS:
        raise InversionError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if lr is None:
        lr = 3.0 if project else 1.0
    if not isinstance(lr, int | float) or not lr > 0:
        raise InversionError(f"lr must be > 0, got {lr!r}")
    if not 0 < threshold < 1:
        raise InversionError(f"threshold must be a probability in (0, 1), got {threshold!r}")
    if hard_every is not None and (not isinstance(hard_every, int) or hard_every < 1):
        raise InversionError(f"hard_every must be an integer >= 1, got {hard_every!r}")
    target_texts, target_ids = tokenize_targets(tok, targets)
    prefix_ids = [int(i) for i in tok(prefix)["input_ids"]] if prefix else _bos(tok)
    suffix_ids = [int(i) for i in tok(suffix, add_special_tokens=False)["input_ids"]] if suffix else []
    max_pos = getattr(module.config, "max_position_embeddings", None) or getattr(
        module.config, "n_positions", None
    )
    total = len(prefix_ids) + length + len(suffix_ids) + max(len(t) for t in target_ids)
    if max_pos is not None and total > int(max_pos):
        raise InversionError(
            f"prefix + prompt + suffix + target is {total} tokens; the model takes {max_pos}"
        )

    emb = module.get_input_embeddings()
    weight = emb.weight.detach()
    dev = weight.device
    d_vocab = int(weight.shape[0])
    n_t = len(target_texts)
    allowed = allowed_tokens(
        tok,
        d_vocab,
        target_ids,
        exclude_special=exclude_special,
        exclude_target=exclude_target,
        ascii_only=ascii_only,
        exclude=exclude,
    )
    vocab = Vocabulary(weight, allowed.to(dev), metric=metric)
    groups = torch.arange(n_t).repeat_interleave(restarts)  # batch: target-major
    t_max = max(len(t) for t in target_ids)
    tid = torch.zeros(n_t, t_max, dtype=torch.long)
    tmask = torch.zeros(n_t, t_max)
    for k, ids in enumerate(target_ids):
        tid[k, : len(ids)] = torch.as_tensor(ids)
        tmask[k, : len(ids)] = 1.0
    gen = torch.Generator().manual_seed(int(seed))
    init = _random_allowed(allowed, groups, length, gen)  # batch, length
    param = SoftPromptParam(
        vocab,
        init,
        tid[groups],
        tmask[groups],
        groups,
        prefix_ids=prefix_ids,
        suffix_ids=suffix_ids,
        project=project,
        dtype=weight.dtype,
    )
    site, head = _head_and_site(subject, module)
    every = hard_every if hard_every is not None else (1 if project else 5)
    tracker = _Tracker(param, n_t, steps, progress, target_texts)

    def score_hard(ids: torch.Tensor) -> None:  # runs in render(), before the step's forward pass
        if not project and tracker.step < steps and tracker.step % every == 0:
            tracker.update(ids, exact_logprob(module, param, ids))

    def score(trace: Any) -> torch.Tensor:
        hidden = trace[site]
        if isinstance(hidden, tuple | list):
            hidden = hidden[0]
        lp = target_logprob(hidden, param, head)
        if project:  # the forward pass ran on the hard tokens: this is their score
            tracker.update(param.ids, lp)
        tracker.end_step(lp)
        if fluency_weight > 0:
            return lp + fluency_weight * fluency(hidden, param, param.ids, head)
        return lp

    desc = "Σ log p(target)" + (f" + {fluency_weight:g} fluency" if fluency_weight else "")
    objective = Objective(score, (site,), desc)
    param.on_render = score_hard
    # the distance is measured on the continuous embeddings (with PEZ the rendering is the projected tokens)
    regs = [Regularizer("nearest_token_distance", float(lam), lambda _r: param.distance())] if lam > 0 else []
    scale = float(weight.float().pow(2).mean().sqrt())  # RMS size of one embedding coordinate
    t0 = time.perf_counter()
    with torch.no_grad():
        random_lp = exact_logprob(module, param, init)
    try:
        out = optimize(
            subject,
            objective,
            param,
            steps=steps,
            lr=lr * scale,
            regularizers=regs,
            seed=seed,
            progress=False,
        )
    finally:
        tracker.close()
    with torch.no_grad():
        last_ids = vocab.nearest(param.soft, param.groups)
        tracker.update(last_ids, exact_logprob(module, param, last_ids))
        hard_lp = exact_logprob(module, param, tracker.best_ids)
        soft_lp = soft_logprob(module, param, param.soft)
        dist = vocab.distance(param.soft, last_ids).mean(1)
    seconds = time.perf_counter() - t0

    best = tracker.best_ids.view(n_t, restarts, length).cpu().numpy()
    used = sorted(set(best.reshape(-1).tolist()))
    texts = dict(
        zip(used, tok.batch_decode([[i] for i in used], clean_up_tokenization_spaces=False), strict=True)
    )
    prompt_tokens = [[[texts[i] for i in row] for row in per_t] for per_t in best.tolist()]
    prompt_texts = [
        [tok.decode(row, clean_up_tokenization_spaces=False) for row in per_t] for per_t in best.tolist()
    ]

    def shaped(x: torch.Tensor) -> np.ndarray:
        return x.detach().float().cpu().view(n_t, restarts).numpy().astype(np.float64)

    return InversionResult(
        model=str(getattr(subject, "name", "")),
        targets=target_texts,
        target_ids=target_ids,
        prefix=prefix,
        suffix=suffix,
        length=length,
        restarts=restarts,
        steps=steps,
        lam=float(lam),
        metric=metric,
        project=bool(project),
        fluency_weight=float(fluency_weight),
        lr=float(lr),
        seed=int(seed),
        threshold=float(threshold),
        prompt_ids=best.astype(np.int64),
        prompt_tokens=prompt_tokens,
        prompt_texts=prompt_texts,
        hard_logprob=shaped(hard_lp),
        soft_logprob=shaped(soft_lp),
        random_logprob=shaped(random_lp),
        soft_distance=shaped(dist),
        best_history=tracker.history,
        soft_history=tracker.soft_history,
        seconds=float(seconds),
        steps_per_second=float(out.steps_per_second),
    )


def _bos(tok: Any) -> list[int]:
    """The special tokens the tokenizer puts at the start of a text (e.g. BOS), or none."""
    ids = list(tok("", add_special_tokens=True)["input_ids"])
    return [int(i) for i in ids]


def _random_allowed(
    allowed: torch.Tensor, groups: torch.Tensor, length: int, gen: torch.Generator
) -> torch.Tensor:
    """Random allowed token ids per batch element (uniform over each target's allowed tokens), ``[batch, length]``."""
    probs = allowed.float()[groups]  # batch, d_vocab
    return torch.multinomial(probs, length, replacement=True, generator=gen)
