"""Gradient attribution: Integrated Gradients (fixed or adaptive steps), saliency, gradient × input,
SmoothGrad, expected gradients / GradientSHAP — method and site are independent parameters."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from ..errors import ConfigError
from ..models.subject import Subject
from ._engine import Engine
from ._inputs import AttributionWarning, Continuation, Pairs, Prepared, make_pairs, prepare
from .baselines import Distribution, baseline_name, resolve
from .images import display_images
from .result import AttributionResult

Method = Literal["gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle"]
METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")


def quadrature(method: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes α in [0, 1] and weights for ∫₀¹ f(α) dα, as Captum builds them (float64 nodes, float32 weights).

    Gauss–Legendre weights sum to 1; Captum's trapezoid rule uses ``linspace(0, 1, n)`` with weights 1/n and
    halved ends, which sum to 1 − 1/n (so even a linear model shows a −F/n completeness error).
    """
    if method not in METHODS:
        raise ConfigError(f"unknown integration method {method!r}; use one of {', '.join(METHODS)}")
    if n < 1 or (method != "gausslegendre" and n < 2):
        raise ConfigError(f"n_steps must be at least {1 if method == 'gausslegendre' else 2}, got {n}")
    if method == "gausslegendre":
        nodes, w = np.polynomial.legendre.leggauss(n)
        return torch.tensor(0.5 * (1 + nodes)), torch.tensor(list(0.5 * w)).float()
    steps = [1 / n] * n
    if method == "riemann_trapezoid":
        steps[0] /= 2
        steps[-1] /= 2
        a = torch.linspace(0, 1, n)
    elif method == "riemann_left":
        a = torch.linspace(0, 1 - 1 / n, n)
    elif method == "riemann_middle":
        a = torch.linspace(1 / (2 * n), 1 - 1 / (2 * n), n)
    else:
        a = torch.linspace(1 / n, 1, n)
    return torch.tensor(a.tolist(), dtype=torch.float64), torch.tensor(steps).float()


@contextlib.contextmanager
def eval_mode(subject: Subject) -> Iterator[None]:
    """Attribute in eval mode: a model in train mode (dropout) gets a warning and is restored afterwards."""
    was = subject.model.training
    if was:
        warnings.warn(
            f"{subject.name} is in train mode (dropout makes gradients random); attributing in eval mode. "
            "Call subject.model.eval() to silence this warning",
            AttributionWarning,
            stacklevel=4,
        )
        subject.model.eval()
    try:
        yield
    finally:
        if was:
            subject.model.train()


#: words of the errors torch raises for an op without a vmap batching rule or a forward-mode (jvp) formula
_TRANSFORM_WORDS = (
    "vmap",
    "batching rule",
    "batched",
    "forward ad",
    "forward-mode",
    "jvp",
    "dual",
    "not implemented",
)


def _transform_unsupported(e: BaseException) -> bool:
    """Whether ``e`` says a model op cannot run under vmap / forward AD (fall back), not a real error (raise)."""
    msg = str(e).lower()
    if "out of memory" in msg:
        return False
    return isinstance(e, NotImplementedError) or any(w in msg for w in _TRANSFORM_WORDS)


class Attributor:
    """Base of every attribution method: ``Method(subject, site=...).attribute(inputs, target=...)``."""

    method: ClassVar[str] = "attribution"

    def __init__(
        self,
        subject: Subject,
        *,
        site: str | None = None,
        batch_tokens: int = 8192,
        batch_size: int | None = None,
    ) -> None:
        if not isinstance(subject, Subject):
            raise ConfigError(
                f"attribution takes a layerscope Subject (from layerscope.load), got {type(subject).__name__}"
            )
        self.subject = subject
        default = "embed" if subject.tokenizer is not None else "input"
        self.site = site or default
        if self.site != "input":
            self.site = subject.adapter.resolve(self.site).site.name  # UnknownSiteError lists the valid ones
        elif subject.tokenizer is not None and subject.image is None:
            raise ConfigError(
                "site 'input' is for image models (token ids are not differentiable); use 'embed'"
            )
        self.batch_tokens = batch_tokens
        self.batch_size = batch_size

    # -- shared plumbing ---------------------------------------------------------------------------
    def _setup(
        self, inputs: Any, target: Any, output: str, continuation: Continuation | None
    ) -> tuple[Prepared, Pairs, Engine]:
        if isinstance(target, Continuation):
            continuation, target = target, None
        prep = prepare(self.subject, inputs, continuation=continuation)
        n_out = self._n_outputs(prep)
        pairs = make_pairs(
            self.subject, prep, target, n_outputs=n_out, output=output, continuation=continuation
        )
        engine = Engine(
            self.subject, self.site, prep, pairs, batch_tokens=self.batch_tokens, batch_size=self.batch_size
        )
        return prep, pairs, engine

    def _n_outputs(self, prep: Prepared) -> int:
        from ..capture.hooks import pick

        first = {k: v[:1] for k, v in prep.inputs.items()}
        with torch.no_grad():
            out = pick(self.subject.forward(first), 0)
        return int(out.shape[-1])

    def _keep_fixed(
        self, prep: Prepared, x: torch.Tensor, base: torch.Tensor, engine: Engine
    ) -> torch.Tensor:
        """Padding and continuation positions of a text site keep their real value in the baseline."""
        if not engine.positional or prep.attributed is None:
            return base
        keep = (~prep.attributed | (prep.inputs["attention_mask"] == 0)).view(
            *x.shape[:2], *([1] * (x.ndim - 2))
        )
        return torch.where(keep, x, base)

    def _result(
        self,
        prep: Prepared,
        pairs: Pairs,
        engine: Engine,
        attr: torch.Tensor,
        *,
        baseline: str,
        delta: np.ndarray | None = None,
        steps: np.ndarray | None = None,
        f_input: np.ndarray | None = None,
        f_baseline: np.ndarray | None = None,
        evaluations: np.ndarray | None = None,
        keep_raw: bool = False,
    ) -> AttributionResult:
        S = len(pairs.sample)
        nan = np.full(S, np.nan)
        tokens: list[list[str]] = []
        words: list[list[str]] = []
        if prep.is_text and engine.positional:
            per_tok = attr.sum(dim=tuple(range(2, attr.ndim))) if attr.ndim > 2 else attr  # pairs, pos
            assert prep.attributed is not None
            cols = [
                torch.nonzero(prep.attributed[int(b)] & (prep.inputs["attention_mask"][int(b)] > 0))
                .flatten()
                .tolist()
                for b in pairs.sample
            ]
            width = max(len(c) for c in cols)
            scores = np.full((S, width), np.nan, dtype=np.float64)
            wmax = 1
            word_lists: list[list[tuple[str, float]]] = []
            for r, c in enumerate(cols):
                b = int(pairs.sample[r])
                vals = per_tok[r, c].detach().double().cpu().numpy()
                scores[r, : len(c)] = vals
                o = int(prep.first[b]) if prep.first is not None else 0  # left padding: columns start at o
                tokens.append([prep.tokens[b][j - o] for j in c])
                agg: dict[int, list[Any]] = {}
                for j, v in zip(c, vals, strict=True):
                    w = prep.word_ids[b][j - o]
                    if w is None:
                        continue
                    s0, e0 = prep.offsets[b][j - o]
                    if w not in agg:
                        agg[w] = [s0, e0, 0.0]
                    agg[w][0] = min(agg[w][0], s0)
                    agg[w][1] = max(agg[w][1], e0)
                    agg[w][2] += float(v)
                wl = [(prep.texts[b][a[0] : a[1]], a[2]) for _, a in sorted(agg.items())]
                word_lists.append(wl)
                wmax = max(wmax, len(wl))
            word_scores = np.full((S, wmax), np.nan)
            for r, wl in enumerate(word_lists):
                words.append([w for w, _ in wl])
                word_scores[r, : len(wl)] = [s for _, s in wl]
        else:
            a = attr.detach().double().cpu()
            if a.ndim == 4:
                a = a.sum(1)  # pairs, H, W
            scores = a.numpy()
            word_scores = np.zeros((S, 0))
            if prep.is_text:
                tokens = [[str(i) for i in range(scores.shape[1])] for _ in range(S)]
        return AttributionResult(
            method=self.method,
            site=self.site,
            model=self.subject.name,
            baseline=baseline,
            texts=list(prep.texts),
            example=pairs.sample.cpu().numpy().astype(np.int64),
            target=list(pairs.labels),
            tokens=tokens,
            scores=scores,
            words=words,
            word_scores=word_scores,
            delta=nan if delta is None else delta,
            steps=np.zeros(S, dtype=np.int64) if steps is None else steps.astype(np.int64),
            f_input=nan if f_input is None else f_input,
            f_baseline=nan if f_baseline is None else f_baseline,
            evaluations=np.zeros(S, dtype=np.int64) if evaluations is None else evaluations.astype(np.int64),
            raw=attr.detach().cpu().numpy() if keep_raw else None,
            images=display_images(self.subject, prep.inputs["x"])
            if not prep.is_text and engine.site == "input" and scores.ndim == 3
            else None,
        )


class IntegratedGradients(Attributor):
    """Integrated Gradients at any site: IG_i = (x_i − x′_i) ∫₀¹ ∂F(x′ + α(x − x′))/∂x_i dα.

    Args:
        subject: the model.
        site: where to integrate (``embed`` for text — what Captum's LayerIntegratedGradients on the word
            embeddings does —, any block site, or ``input`` for images).
        n_steps: integration steps, or ``"auto"``: locally adaptive Simpson panels, starting from ``min_steps``
            (8) equal intervals and splitting the panels with the largest exact local error (from F at the
            nodes) until Σ|local error| ≤ ``tol`` × |F(x) − F(x′)| or ``max_steps`` intervals; ``steps``
            (nodes used) is also the gradient rows spent.
        method: ``gausslegendre`` (weights sum to 1) or Captum's ``riemann_*`` rules, to equal Captum exactly.
        multiply_by_inputs: multiply the integrated gradient by (x − x′) (Captum's default).
        batch_tokens: rows × tokens per forward chunk (memory knob; halves automatically on OOM).
        batch_size: fixed rows per chunk instead (like Captum's ``internal_batch_size``).
        share_rows: when an example has several targets (a continuation), run each (example, step) row once
            and get every target's gradient from one vmapped backward (``is_grads_batched``).
        jacobian: how several targets of one example are differentiated: ``reverse`` (one backward per
            target), ``forward`` (one forward-mode tangent per attributed position, all targets at once; token
            scores only, no ``keep_raw``) or ``auto``: forward when an example's attributed positions are at
            most twice its targets (a continuation after a short prompt) and per-token scores are all that is
            asked for. On SmolLM2, 12 prompt tokens × 20 continuation tokens, forward mode was 6× faster.
    """

    method: ClassVar[str] = "integrated-gradients"

    def __init__(
        self,
        subject: Subject,
        *,
        site: str | None = None,
        n_steps: int | Literal["auto"] = 50,
        method: Method = "gausslegendre",
        tol: float = 0.01,
        min_steps: int = 8,
        max_steps: int = 256,
        multiply_by_inputs: bool = True,
        batch_tokens: int = 8192,
        batch_size: int | None = None,
        share_rows: bool = True,
        jacobian: Literal["auto", "forward", "reverse"] = "auto",
    ) -> None:
        super().__init__(subject, site=site, batch_tokens=batch_tokens, batch_size=batch_size)
        if n_steps != "auto" and (not isinstance(n_steps, int) or n_steps < 1):
            raise ConfigError(f"n_steps must be a positive int or 'auto', got {n_steps!r}")
        if tol <= 0:
            raise ConfigError(f"tol must be positive, got {tol}")
        quadrature(method, 2 if n_steps == "auto" else int(n_steps))  # validates the method
        self.n_steps = n_steps
        self.quad = method
        self.tol = tol
        self.min_steps = min_steps
        self.max_steps = max_steps
        self.multiply_by_inputs = multiply_by_inputs
        self.share_rows = share_rows
        if jacobian not in ("auto", "forward", "reverse"):
            raise ConfigError(f"jacobian must be 'auto', 'forward' or 'reverse', got {jacobian!r}")
        self.jacobian = jacobian

    def attribute(
        self,
        inputs: Any,
        *,
        target: Any = None,
        baseline: Any = "zero",
        output: str = "logit",
        continuation: Continuation | None = None,
        keep_raw: bool = False,
        seed: int = 0,
    ) -> AttributionResult:
        """Attribute ``target`` (class/token index, one per input, a ``Continuation`` or a callable).

        ``output``: ``logit`` (default), ``logprob`` or ``prob`` of the target. Continuations always use the
        log-probability of each continuation token (as Captum's ``LLMGradientAttribution``).
        """
        with eval_mode(self.subject):
            prep, pairs, eng = self._setup(inputs, target, output, continuation)
            x = eng.x
            base = resolve(baseline, self.subject, prep, eng.site_value, x, seed=seed)
            if isinstance(base, Distribution):
                raise ConfigError("a baseline distribution needs ExpectedGradients or GradientShap, not IG")
            base = self._keep_fixed(prep, x, base, eng)
            S = len(pairs.sample)
            everyone = torch.arange(S)
            if self.n_steps == "auto":  # F(x′), F(x) come from the first round's end nodes (α = 0, 1)
                attr, delta, steps, evals, f_base, f_in = self._adaptive(eng, base)
            else:
                attr, delta, steps, evals, f_base, f_in = self._fixed(eng, base, x, pairs, everyone, keep_raw)
            return self._result(
                prep,
                pairs,
                eng,
                attr,
                baseline=baseline_name(baseline),
                delta=delta if self.multiply_by_inputs else None,
                steps=steps,
                f_input=f_in,
                f_baseline=f_base,
                evaluations=evals,
                keep_raw=keep_raw,
            )

    def _fixed(
        self,
        eng: Any,
        base: torch.Tensor,
        x: torch.Tensor,
        pairs: Any,
        everyone: torch.Tensor,
        keep_raw: bool,
    ) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """IG with ``n_steps`` quadrature nodes: attributions, deltas, steps and evaluations per pair."""
        S = len(pairs.sample)
        # several targets of one example (continuations): share each forward row, vmap the backward
        shared = self.share_rows and pairs.kind != "callable" and len(pairs.sample.unique()) < S
        end_rows = eng.rows_between(base, torch.tensor([0.0, 1.0], dtype=torch.float64))
        ends = eng.values(everyone, 2, end_rows, shared=shared)
        f_base, f_in = ends[:, 0].numpy(), ends[:, 1].numpy()
        n = int(self.n_steps)
        alphas, weights = quadrature(self.quad, n)
        rows = eng.rows_between(base, alphas)
        total = None
        if shared and self._forward_mode(eng, pairs, keep_raw):
            try:  # per-token scores [pairs, positions], (x − x′) already applied by the tangents
                tok = eng.jvp_token_sums(n, rows, weights, x - base).to(x.dtype)
            except (NotImplementedError, RuntimeError) as e:
                if self.jacobian == "forward" or not _transform_unsupported(e):
                    raise
            else:
                delta = tok.double().sum(1).cpu().numpy() - (f_in - f_base)
                steps = np.full(S, n, dtype=np.int64)
                return tok, delta, steps, steps + 2, f_base, f_in
        if shared:
            try:
                total = eng.grad_sum_shared(n, rows, weights)
            except (NotImplementedError, RuntimeError) as e:
                if not _transform_unsupported(e):  # else: a backward without vmap support, one row per target
                    raise
        if total is None:
            total = eng.grad_sum(everyone, n, rows, weights)
        s_idx = pairs.sample.to(x.device)
        attr = total[everyone.to(x.device)]
        if self.multiply_by_inputs:
            attr = attr * (x[s_idx] - base[s_idx])
        delta = attr.double().sum(dim=tuple(range(1, attr.ndim))).cpu().numpy() - (f_in - f_base)
        steps = np.full(S, n, dtype=np.int64)
        return attr, delta, steps, steps + 2, f_base, f_in

    def _forward_mode(self, eng: Any, pairs: Any, keep_raw: bool) -> bool:
        """Whether several targets per example are differentiated in forward mode (see ``jacobian``)."""
        if self.jacobian == "reverse":
            return False
        possible = eng.positional and self.multiply_by_inputs and eng.prep.attributed is not None
        if self.jacobian == "forward":
            if not possible or keep_raw:
                raise ConfigError(
                    "jacobian='forward' gives per-token scores of text inputs at a positional site with "
                    "multiply_by_inputs=True, without keep_raw; use jacobian='reverse' here"
                )
            return True
        if not possible or keep_raw:
            return False
        targets = int(torch.bincount(pairs.sample).max())
        positions = int(eng.prep.attributed.sum(1).max())
        return positions <= 2 * targets

    def _adaptive(
        self, eng: Engine, base: torch.Tensor
    ) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Locally adaptive Simpson panels, refined where the *exact* local error is largest.

        Every node gives the path derivative h(α) = ∇F(γ(α))·(x − x′) (from its gradient) and F(γ(α)) (from
        the same forward pass). Over a panel [a, b] the exact integral of h is F(b) − F(a), so each panel's
        quadrature error e = Simpson(h; a, m, b) − (F(b) − F(a)) is known exactly, and delta = Σ e. A pair
        stops when Σ|e| ≤ ``tol`` × |F(x) − F(x′)| (no credit for errors that cancel, so |delta| is within it
        too); until then each round splits its fewest largest-error panels predicted (Simpson: a split
        panel's error falls ~16×) to get there. No node is evaluated twice.
        """
        x = eng.x
        S = len(eng.pairs.sample)
        s_idx = eng.pairs.sample.to(x.device)
        diffx = x[s_idx] - base[s_idx]
        feat = tuple(range(1, x.ndim))
        n0 = max(2, self.min_steps - self.min_steps % 2)
        t0 = np.linspace(0.0, 1.0, n0 + 1)
        everyone = torch.arange(S)
        g0 = eng.grad_sum(
            everyone, len(t0), eng.rows_between(base, torch.tensor(t0)), torch.ones(len(t0)), per_step=True
        )
        F0 = eng.row_values.numpy().copy()
        h0 = (g0 * diffx.unsqueeze(1)).double().sum(dim=tuple(d + 1 for d in feat)).cpu().numpy()
        # per pair: node positions, F, h, and where each node's gradient lives (tensor, row)
        pos = [list(t0) for _ in range(S)]
        Fs = [list(F0[p]) for p in range(S)]
        hs = [list(h0[p]) for p in range(S)]
        where: list[list[tuple[torch.Tensor, int, int]]] = [
            [(g0, p, k) for k in range(len(t0))] for p in range(S)
        ]
        panels = [[(2 * i, 2 * i + 1, 2 * i + 2) for i in range(n0 // 2)] for _ in range(S)]
        f_base = F0[:, 0].copy()
        f_in = F0[:, -1].copy()
        diff = f_in - f_base
        target = self.tol * np.abs(diff) + 1e-7
        cap = self.max_steps + 1

        def errors(p: int) -> np.ndarray:
            t, F, h = pos[p], Fs[p], hs[p]
            return np.array(
                [(t[b] - t[a]) / 6 * (h[a] + 4 * h[m] + h[b]) - (F[b] - F[a]) for a, m, b in panels[p]]
            )

        active = list(range(S))
        while active:
            plan: dict[int, list[int]] = {}
            for p in active:
                e = errors(p)
                if np.abs(e).sum() <= target[p]:
                    continue
                order = np.argsort(-np.abs(e))
                ae = np.abs(e[order])
                rest = (
                    ae.sum() - np.cumsum(ae) + np.cumsum(ae) / 16
                )  # predicted Σ|e| after splitting the first k
                k = int(np.searchsorted(-rest, -target[p])) + 1  # fewest with predicted Σ|e| ≤ target
                k = min(k, len(order), (cap - len(pos[p])) // 2)
                if k >= 1:
                    plan[p] = sorted(order[:k].tolist())
            if not plan:
                break
            by_k: dict[int, list[int]] = {}
            for p, chosen in plan.items():
                by_k.setdefault(len(chosen), []).append(p)
            for k, pairs in by_k.items():
                alph = torch.zeros((S, 2 * k), dtype=torch.float64)
                for p in pairs:
                    t = pos[p]
                    new = []
                    for i in plan[p]:
                        a, m, b = panels[p][i]
                        new += [(t[a] + t[m]) / 2, (t[m] + t[b]) / 2]
                    alph[p] = torch.tensor(new, dtype=torch.float64)
                pid = torch.tensor(pairs)
                g = eng.grad_sum(pid, 2 * k, eng.rows_between(base, alph), torch.ones(2 * k), per_step=True)
                Fk = eng.row_values.numpy()
                gsub = g[pid.to(x.device)]
                hprod = (gsub * diffx[pid.to(x.device)].unsqueeze(1)).double()
                hk = hprod.sum(dim=tuple(d + 1 for d in feat)).cpu().numpy()
                for r, p in enumerate(pairs):
                    split = set(plan[p])
                    out = []
                    j = len(pos[p])
                    for i, (a, m, b) in enumerate(panels[p]):
                        if i in split:  # its quarter points are the next two columns of alph, in panel order
                            out += [(a, j, m), (m, j + 1, b)]
                            j += 2
                        else:
                            out.append((a, m, b))
                    panels[p] = out
                    for q in range(2 * k):
                        pos[p].append(float(alph[p, q]))
                        Fs[p].append(float(Fk[p, q]))
                        hs[p].append(float(hk[r, q]))
                        where[p].append((gsub, r, q))
            active = list(plan)
        attr = torch.zeros((S, *x.shape[1:]), dtype=x.dtype, device=x.device)
        delta = np.zeros(S)
        steps = np.zeros(S, dtype=np.int64)
        for p in range(S):
            t = pos[p]
            w = np.zeros(len(t))
            for a, m, b in panels[p]:
                width = t[b] - t[a]
                w[a] += width / 6
                w[m] += 4 * width / 6
                w[b] += width / 6
            tot = torch.zeros(x.shape[1:], dtype=torch.float64, device=x.device)
            for wi, (gt, row, col) in zip(w, where[p], strict=True):
                if wi:
                    tot += wi * gt[row, col].double()
            attr[p] = (tot * diffx[p].double() if self.multiply_by_inputs else tot).to(x.dtype)
            delta[p] = float(np.dot(w, hs[p])) - diff[p]
            steps[p] = len(t)
        return attr, delta, steps, steps.copy(), f_base, f_in


class Saliency(Attributor):
    """|∂F/∂x| at the site (Captum ``Saliency``; ``abs=False`` keeps the sign)."""

    method: ClassVar[str] = "saliency"

    def __init__(self, subject: Subject, *, site: str | None = None, abs: bool = True, **kw: Any) -> None:
        super().__init__(subject, site=site, **kw)
        self.abs = abs

    def _grads(self, eng: Engine, points: torch.Tensor | None = None) -> torch.Tensor:
        S = len(eng.pairs.sample)
        base = torch.zeros_like(eng.x) if points is None else points
        alphas = torch.tensor([1.0 if points is None else 0.0], dtype=torch.float64)
        return eng.grad_sum(torch.arange(S), 1, eng.rows_between(base, alphas), torch.ones(1))

    def attribute(
        self,
        inputs: Any,
        *,
        target: Any = None,
        output: str = "logit",
        continuation: Continuation | None = None,
        keep_raw: bool = False,
    ) -> AttributionResult:
        """Gradient of the target at the input."""
        with eval_mode(self.subject):
            prep, pairs, eng = self._setup(inputs, target, output, continuation)
            g = self._grads(eng)
            g = g.abs() if self.abs else g
            return self._result(prep, pairs, eng, g, baseline="none", keep_raw=keep_raw)


class InputXGradient(Saliency):
    """x · ∂F/∂x at the site (Captum ``InputXGradient`` / ``LayerGradientXActivation``)."""

    method: ClassVar[str] = "input-x-gradient"

    def __init__(self, subject: Subject, *, site: str | None = None, **kw: Any) -> None:
        super().__init__(subject, site=site, abs=False, **kw)

    def attribute(
        self,
        inputs: Any,
        *,
        target: Any = None,
        output: str = "logit",
        continuation: Continuation | None = None,
        keep_raw: bool = False,
    ) -> AttributionResult:
        """Gradient times input of the target."""
        with eval_mode(self.subject):
            prep, pairs, eng = self._setup(inputs, target, output, continuation)
            g = self._grads(eng) * eng.x[pairs.sample.to(eng.x.device)]
            return self._result(prep, pairs, eng, g, baseline="zero", keep_raw=keep_raw)


class SmoothGrad(Attributor):
    """Average gradient (or gradient × input) over noisy copies of the site value (Smilkov et al. 2017).

    ``noise``: the Gaussian σ as a fraction of each example's value range (max − min), 0.15 by default.
    """

    method: ClassVar[str] = "smoothgrad"

    def __init__(
        self,
        subject: Subject,
        *,
        site: str | None = None,
        n_samples: int = 16,
        noise: float = 0.15,
        multiply_by_inputs: bool = False,
        abs: bool = True,
        **kw: Any,
    ) -> None:
        super().__init__(subject, site=site, **kw)
        if n_samples < 1 or noise < 0:
            raise ConfigError("n_samples must be ≥ 1 and noise ≥ 0")
        self.n_samples, self.noise, self.multiply_by_inputs, self.abs = (
            n_samples,
            noise,
            multiply_by_inputs,
            abs,
        )

    def attribute(
        self,
        inputs: Any,
        *,
        target: Any = None,
        output: str = "logit",
        continuation: Continuation | None = None,
        keep_raw: bool = False,
        seed: int = 0,
    ) -> AttributionResult:
        """Mean (|)gradient(|) over ``n_samples`` noisy inputs."""
        with eval_mode(self.subject):
            prep, pairs, eng = self._setup(inputs, target, output, continuation)
            x = eng.x
            S, K = len(pairs.sample), self.n_samples
            span = (x.amax(dim=tuple(range(1, x.ndim))) - x.amin(dim=tuple(range(1, x.ndim)))).view(
                -1, *([1] * (x.ndim - 1))
            )
            gen = torch.Generator().manual_seed(seed)
            noise = torch.randn((S, K, *x.shape[1:]), generator=gen).to(x.device, x.dtype)
            s_all = pairs.sample.to(x.device)
            noise = noise * (self.noise * span[s_all]).unsqueeze(1)
            fixed = None
            if eng.positional and prep.attributed is not None:
                fixed = (~prep.attributed).view(*x.shape[:2], *([1] * (x.ndim - 2)))

            def make(p_idx: torch.Tensor, k_idx: torch.Tensor, lo: int, hi: int) -> tuple[torch.Tensor, None]:
                s = pairs.sample[p_idx].to(x.device)
                nz = noise[p_idx.to(x.device), k_idx.to(x.device)]
                if fixed is not None:
                    nz = torch.where(fixed[s], torch.zeros_like(nz), nz)
                v = x[s] + nz
                return (v[:, lo:hi] if eng.positional else v), None

            use_abs = self.abs and not self.multiply_by_inputs
            g = eng.grad_sum(torch.arange(S), K, make, torch.full((K,), 1.0 / K), abs_rows=use_abs)
            if self.multiply_by_inputs:
                g = g * x[s_all]
            return self._result(prep, pairs, eng, g, baseline="none", keep_raw=keep_raw)


class GradientShap(Attributor):
    """Expected gradients / GradientSHAP: E over baseline b ~ D and α ~ U(0, 1) of ∂F(b + α(x − b) + ε) · (x − b).

    ``baseline``: a ``Distribution`` of site values (or a baseline name, then noisy copies of it). ``stdev``:
    Gaussian noise added to each point (0 gives expected gradients, Erion et al. 2021).
    """

    method: ClassVar[str] = "gradient-shap"

    def __init__(
        self, subject: Subject, *, site: str | None = None, n_samples: int = 32, stdev: float = 0.0, **kw: Any
    ) -> None:
        super().__init__(subject, site=site, **kw)
        if n_samples < 1 or stdev < 0:
            raise ConfigError("n_samples must be ≥ 1 and stdev ≥ 0")
        self.n_samples, self.stdev = n_samples, stdev

    def attribute(
        self,
        inputs: Any,
        *,
        target: Any = None,
        baseline: Any = "zero",
        output: str = "logit",
        continuation: Continuation | None = None,
        keep_raw: bool = False,
        seed: int = 0,
    ) -> AttributionResult:
        """Monte-Carlo expected gradients with ``n_samples`` rows per (example, target) pair."""
        with eval_mode(self.subject):
            prep, pairs, eng = self._setup(inputs, target, output, continuation)
            x = eng.x
            base = resolve(baseline, self.subject, prep, eng.site_value, x, seed=seed)
            S, K = len(pairs.sample), self.n_samples
            gen = torch.Generator().manual_seed(seed)
            alphas = torch.rand((S, K), generator=gen, dtype=torch.float64)
            if isinstance(base, Distribution):
                pick_b = torch.randint(0, base.samples.shape[0], (S, K), generator=gen)
            noise = (self.stdev * torch.randn((S, K, *x.shape[1:]), generator=gen)).to(x.device, x.dtype)

            def baseline_of(s: torch.Tensor, p_idx: torch.Tensor, k_idx: torch.Tensor) -> torch.Tensor:
                if isinstance(base, Distribution):
                    b = base.samples[pick_b[p_idx, k_idx].to(base.samples.device)]
                else:
                    b = base[s]
                return self._keep_fixed_rows(prep, x, b, s, eng)

            def make(
                p_idx: torch.Tensor, k_idx: torch.Tensor, lo: int, hi: int
            ) -> tuple[torch.Tensor, torch.Tensor]:
                s = pairs.sample[p_idx].to(x.device)
                b = baseline_of(s, p_idx, k_idx)
                a = alphas[p_idx, k_idx].to(x.device, x.dtype).view(-1, *([1] * (x.ndim - 1)))
                v = b + a * (x[s] - b) + noise[p_idx.to(x.device), k_idx.to(x.device)]
                mult = x[s] - b
                if eng.positional:
                    return v[:, lo:hi], mult[:, lo:hi]
                return v, mult

            g = eng.grad_sum(torch.arange(S), K, make, torch.full((K,), 1.0 / K))
            return self._result(prep, pairs, eng, g, baseline=baseline_name(baseline), keep_raw=keep_raw)

    def _keep_fixed_rows(
        self, prep: Prepared, x: torch.Tensor, b: torch.Tensor, s: torch.Tensor, eng: Engine
    ) -> torch.Tensor:
        if not eng.positional or prep.attributed is None:
            return b
        keep = (~prep.attributed | (prep.inputs["attention_mask"] == 0))[s]
        return torch.where(keep.view(*b.shape[:2], *([1] * (b.ndim - 2))), x[s], b)


ExpectedGradients = GradientShap
