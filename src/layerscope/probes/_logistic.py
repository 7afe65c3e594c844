"""Batched multinomial logistic regression (L2 via one L-BFGS, elastic net via FISTA) for all layers at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from layerscope.probes._core import _CHUNK_ROWS, SufficientStats, _grid, predict_logits
from layerscope.probes._validation import ProbeDataError, as_float_tensor, as_layers, set_threads, threads_for

Tensor = torch.Tensor
_F64 = torch.float64


def logistic_objective(
    X: Any, y: Any, W: Tensor, b: Tensor, *, l2: Any, sample_weight: Any = None, l1: Any = 0.0
) -> Tensor:
    """Per-layer objective ``Σ w_i·CE_i + ½·l2·||W||² + l1·||W||₁`` that :func:`fit_logistic` minimises.

    Args:
        X: ``[L, n, d]``; y: labels ``[n]`` or ``[L, n]``; W: ``[L, d, K]``; b: ``[L, K]``.
        l2: float or ``[L]``; l1: float or ``[L]``; sample_weight: ``[n]`` or None.

    Returns:
        ``[L]`` objective values (not divided by the sample-weight sum).
    """
    X3 = as_layers(X).to(W.dtype)
    L, n, _ = X3.shape
    Z = torch.baddbmm(b[:, None, :], X3, W)  # [L, n, K]
    yl = _labels(y, L, n)  # [L, n]
    nll = torch.logsumexp(Z, -1) - Z.gather(-1, yl[..., None]).squeeze(-1)  # [L, n]
    sw = _weights(sample_weight, n, W.dtype)  # [n]
    l2t = torch.as_tensor(l2, dtype=W.dtype).reshape(-1)
    l1t = torch.as_tensor(l1, dtype=W.dtype).reshape(-1)
    return (nll * sw).sum(1) + 0.5 * l2t * W.square().sum((1, 2)) + l1t * W.abs().sum((1, 2))


def _labels(y: Any, L: int, n: int) -> Tensor:
    yt = torch.as_tensor(np.asarray(y) if not isinstance(y, Tensor) else y).long()
    if yt.ndim == 1:
        yt = yt[None].expand(L, n)
    if tuple(yt.shape) != (L, n):
        raise ProbeDataError(f"y must have shape [n={n}] or [L={L}, n={n}], got {tuple(yt.shape)}")
    return yt


def _weights(sample_weight: Any, n: int, dtype: torch.dtype) -> Tensor:
    if sample_weight is None:
        return torch.ones(n, dtype=dtype)  # [n]
    sw = torch.as_tensor(
        np.asarray(sample_weight) if not isinstance(sample_weight, Tensor) else sample_weight
    )
    sw = sw.to(dtype).reshape(-1)
    if sw.shape[0] != n or bool((sw < 0).any()) or not bool(torch.isfinite(sw).all()):
        raise ProbeDataError(f"sample_weight must be {n} finite non-negative numbers")
    return sw


def fit_logistic(
    X: Any,
    y: Any,
    *,
    l2: Any,
    n_classes: int,
    sample_weight: Any = None,
    init: tuple[Tensor, Tensor] | None = None,
    max_iter: int = 100,
    tol: float = 1e-6,
    l1: Any = 0.0,
    history_size: int = 20,
    precondition: bool | SufficientStats = False,
    precision: str = "float32",
) -> tuple[Tensor, Tensor]:
    """Multinomial logistic regression with an L2 (or elastic-net) penalty for all layers at once.

    Minimises, for every layer (and every penalty value), ``Σ_i w_i·CE(x_i W + b, y_i) + ½·l2·||W||²``
    (+ ``l1·||W||₁``), the intercept unpenalised: the objective of scikit-learn's
    ``LogisticRegression(C=1/l2)``, so accuracies and coefficients compare at the same ``C``. The blocks are
    independent, so their sum is minimised by ONE ``torch.optim.LBFGS`` (strong-Wolfe line search) over all
    parameters, with analytic gradients; the sum is divided by ``Σ w_i`` (the minimiser is unchanged) and
    ``tol`` bounds the largest absolute gradient entry of that scaled objective over all blocks, as sklearn's
    ``tol`` does for one.

    Several penalties at once: pass ``l2`` as ``[L, G]``; the ``G`` fits of a layer share its ``X`` (no copy:
    their weight matrices are stacked side by side, ``X [L, n, d] @ W [L, d, G·K]``), which is the same as
    stacking ``X`` ``G`` times in the batch dimension, minus the copies. The result then has a ``G`` axis.

    With ``l1 > 0`` the objective is non-smooth and is solved by batched FISTA instead (accelerated proximal
    gradient with a soft-threshold step; per-block backtracking steps starting from Böhning's curvature bound
    ``½·λmax([X 1]ᵀ diag(w) [X 1]) + l2``; adaptive restart); ``tol`` then bounds the gradient mapping.
    Without ``l1``, ``precondition=True`` (or the task's :class:`SufficientStats`, to skip a pass over ``X``)
    rewrites ``W = V·diag(p)·U`` in the eigenbasis ``V`` of the centred ``XᵀX`` with
    ``p = (e/(K·n) + l2/n)^-½`` (and centres the intercept), an approximate inverse square root of the
    Hessian: same minimiser, far fewer iterations on anisotropic activations (``tol`` still applies to the
    gradient in ``(W, b)``). The joint L-BFGS needs about as many iterations as its hardest block.

    Args:
        X: ``[L, n, d]`` (or ``[n, d]``); float64 input is fitted in float64, anything else in float32.
        y: integer labels ``0..K-1``, ``[n]`` (or ``[L, n]``, e.g. a task and its control task).
        l2: L2 penalty (``1/C``): float, per layer ``[L]`` or a grid ``[L, G]``.
        n_classes: ``K``.
        sample_weight: ``[n]`` non-negative weights (class weights go here), default 1.
        init: warm start ``(W, b)`` shaped like the result (``[L, d, K]``/``[L, K]`` or with the ``G`` axis).
        max_iter: L-BFGS iterations (FISTA: 20× as many cheap steps).
        tol: stop when the largest |gradient| entry of the scaled objective, in ``(W, b)``, is at most this
            (scikit-learn's lbfgs criterion); FISTA: the same for the gradient mapping.
        l1: L1 penalty, float or ``[L]`` (elastic net with ``l2``).
        history_size: L-BFGS memory.
        precondition: ``False``, ``True`` or the statistics of ``(X, y)`` (see above).
        precision: ``"float32"`` (default), ``"bfloat16"`` or ``"auto"`` (bfloat16 where the CPU has bfloat16
            units and the fit is large enough to pay, :data:`AUTO_MIN_WORK`): the dtype of the two matrix products per evaluation (accumulated in float32; a bfloat16
            copy of ``X`` is made once). Everything else stays in the working dtype. Float64 ``X`` ignores it.

    Returns:
        ``W [L, d, K]`` and ``b [L, K]``, or ``W [L, G, d, K]`` and ``b [L, G, K]`` for an ``[L, G]`` ``l2``.
    """
    W, b, _ = _fit_logistic(
        X,
        y,
        l2=l2,
        n_classes=n_classes,
        sample_weight=sample_weight,
        init=init,
        max_iter=max_iter,
        tol=tol,
        l1=l1,
        history_size=history_size,
        precondition=precondition,
        mm_dtype=_mm_dtype(precision),
        mm_min_work=auto_min_work(precision),
    )
    return W, b


def _fit_logistic(
    X: Any,
    y: Any,
    *,
    l2: Any,
    n_classes: int,
    sample_weight: Any = None,
    init: tuple[Tensor, Tensor] | None = None,
    max_iter: int = 100,
    tol: float = 1e-6,
    l1: Any = 0.0,
    history_size: int = 20,
    precondition: bool | SufficientStats = False,
    label_sets: Any = None,
    set_classes: Sequence[int] | None = None,
    mm_dtype: torch.dtype | None = None,
    mm_min_work: int = 0,
) -> tuple[Tensor, Tensor, int]:
    """:func:`fit_logistic` that also returns the iteration count.

    ``label_sets [G, n]`` (with a grouped ``l2 [L, G]``) gives every column ``g`` its own labels (``y`` is then
    ignored), so e.g. a task and its control task are fitted in one L-BFGS that reads ``X`` once per
    evaluation; ``set_classes[g] = K_g ≤ K`` masks the classes ``K_g..K-1`` of column ``g`` out of its softmax
    (their weights stay zero), so each column is exactly its own ``K_g``-class problem.
    """
    X3 = as_float_tensor(as_layers(X))
    dtype = _F64 if X3.dtype == _F64 else torch.float32
    X3 = X3.to(dtype)
    L, n, d = X3.shape
    K = int(n_classes)
    l2_in = torch.as_tensor(l2, dtype=_F64)
    grouped = l2_in.ndim == 2
    lam2 = _grid(l2_in if grouped else l2_in.reshape(-1)[:, None].expand(-1, 1), L).to(dtype)  # [L, G]
    lam1 = _grid(torch.as_tensor(l1, dtype=_F64).reshape(-1)[:, None], L).to(dtype)  # [L, 1]
    G = lam2.shape[1]
    mask = None
    if label_sets is None:
        yl = _labels(y, L, n)  # [L, n]
        if n and (int(yl.min()) < 0 or int(yl.max()) >= K):
            raise ProbeDataError(f"labels must lie in 0..{K - 1}")
        idx = yl[:, None, None, :].expand(L, G, 1, n)  # [L, G, 1, n]
    else:
        sets = torch.as_tensor(np.asarray(label_sets) if not isinstance(label_sets, Tensor) else label_sets)
        sets = sets.long()
        sizes = [K] * G if set_classes is None else [int(k) for k in set_classes]
        if tuple(sets.shape) != (G, n) or len(sizes) != G or not all(2 <= k <= K for k in sizes):
            raise ProbeDataError(f"label_sets must be [G={G}, n={n}] with 2 <= set_classes[g] <= {K}")
        top = torch.as_tensor(sizes)[:, None]  # [G, 1]
        if n and (int(sets.min()) < 0 or bool((sets >= top).any())):
            raise ProbeDataError("labels of label set g must lie in 0..set_classes[g] - 1")
        idx = sets[None, :, None, :].expand(L, G, 1, n)  # [L, G, 1, n]
        if min(sizes) < K:
            off = torch.arange(K)[None, :] >= top  # [G, K]
            mask = torch.zeros(G, K, dtype=dtype).masked_fill_(off, float("-inf")).reshape(1, G * K, 1)
    sw = _weights(sample_weight, n, dtype)  # [n]
    sw_sum = float(sw.sum()) or 1.0
    if init is None:
        W = torch.zeros(L, G, d, K, dtype=dtype)  # [L, G, d, K]
        b = torch.zeros(L, G, K, dtype=dtype)  # [L, G, K]
    else:
        W = init[0].to(dtype).reshape(L, G, d, K).clone()
        b = init[1].to(dtype).reshape(L, G, K).clone()
    Wp = W.permute(0, 2, 1, 3).reshape(L, d, G * K).contiguous()  # [L, d, G·K]
    bp = b.reshape(L, G * K).contiguous()  # [L, G·K]
    problem = _Logistic(X3, idx, sw / sw_sum, lam2 / sw_sum, L, G, K)
    problem.class_mask = mask
    with threads_for(X3.numel() * G * K):
        if bool((lam1 > 0).any()):
            n_iter = _fista(problem, Wp, bp, lam1 / sw_sum, max_iter=20 * max_iter, tol=tol)
        else:
            if mm_dtype is not None and mm_dtype != dtype and n * d * G * K >= mm_min_work:
                problem.Xmm = X3.to(mm_dtype)
            if precondition is not False:
                stats = precondition if isinstance(precondition, SufficientStats) else None
                _precondition(problem, X3, stats, lam2)
            Up, cp = problem.to_u(Wp, bp)
            n_iter = _lbfgs(problem, Up, cp, max_iter=max_iter, tol=tol, history_size=history_size)
            if problem.Xmm is not None and n_iter < max_iter and problem.raw_grad_max > tol:
                # stopped by bfloat16 round-off (the line search cannot resolve smaller decreases): finish
                # in the working precision, warm-started, with the iterations left
                problem.Xmm = None
                n_iter += _lbfgs(
                    problem, Up, cp, max_iter=max_iter - n_iter, tol=tol, history_size=history_size
                )
            Wp, bp = problem.to_w(Up, cp)
    W_out = Wp.reshape(L, d, G, K).permute(0, 2, 1, 3).contiguous()  # [L, G, d, K]
    b_out = bp.reshape(L, G, K)
    if grouped:
        return W_out, b_out, n_iter
    return W_out[:, 0], b_out[:, 0], n_iter


#: ``precision="auto"`` keeps fits below this many multiply-adds per layer and evaluation (n·d·columns) in
#: float32: making the bfloat16 copy and the float32 finish cost more than small products save.
AUTO_MIN_WORK = 2**26


def auto_min_work(precision: str) -> int:
    """The smallest fit that ``precision`` runs in bfloat16: :data:`AUTO_MIN_WORK` for ``"auto"``, else 0."""
    return AUTO_MIN_WORK if precision == "auto" else 0


def _mm_dtype(precision: str) -> torch.dtype | None:
    from layerscope._precision import resolve_precision

    mm = resolve_precision(precision)
    return None if mm == torch.float32 else mm


class _Logistic:
    """The scaled smooth objective and its analytic gradient for stacked blocks.

    With a preconditioner (``V [L, d, d]``, ``p [L, d, G, K]``, ``mu [L, d]``) the variables are ``(U, c)``
    with ``W_g = V diag(p_g) U_g`` and ``b = c - muᵀW`` (the intercept of centred inputs): a change of
    variables that leaves the minimiser unchanged and decouples the intercept from the weights.
    """

    def __init__(self, X: Tensor, idx: Tensor, w: Tensor, lam2: Tensor, L: int, G: int, K: int) -> None:
        self.X, self.idx, self.w, self.lam2 = X, idx, w, lam2
        self.L, self.G, self.K = L, G, K
        self.V: Tensor | None = None
        self.p: Tensor | None = None
        self.mu: Tensor | None = None
        self.raw_grad_max = float("inf")
        self.class_mask: Tensor | None = None  # [1, G·K, 1]: 0, or -inf for classes outside a column's task
        self.Xmm: Tensor | None = None  # bfloat16 copy of X: both products run in bfloat16
        self.uniform: float | None = float(w[0]) if len(w) and bool((w == w[0]).all()) else None

    def to_w(self, Up: Tensor, cp: Tensor) -> tuple[Tensor, Tensor]:
        """``(W [L, d, G·K], b [L, G·K])`` from the solver's variables (identity without preconditioner)."""
        if self.V is None or self.p is None or self.mu is None:
            return Up, cp
        L, G, K = self.L, self.G, self.K
        d = Up.shape[1]
        W = self.V @ (Up.view(L, d, G, K) * self.p).reshape(L, d, G * K)  # [L, d, G·K]
        return W, cp - (self.mu[:, None, :] @ W).squeeze(1)

    def to_u(self, Wp: Tensor, bp: Tensor) -> tuple[Tensor, Tensor]:
        """Inverse of :meth:`to_w`."""
        if self.V is None or self.p is None or self.mu is None:
            return Wp.clone(), bp.clone()
        L, G, K = self.L, self.G, self.K
        d = Wp.shape[1]
        rotated = (self.V.mT @ Wp).view(L, d, G, K)  # [L, d, G, K]
        U = (rotated / self.p).reshape(L, d, G * K).contiguous()
        return U, (bp + (self.mu[:, None, :] @ Wp).squeeze(1)).contiguous()

    def loss_grad(self, Up: Tensor, cp: Tensor, *, grad: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        """Per-block losses ``[L, G]`` and gradients w.r.t. the solver's variables ``Up``, ``cp``."""
        if self.V is None or self.p is None or self.mu is None:
            return self._loss_grad(Up, cp, grad=grad)
        W, b = self.to_w(Up, cp)
        loss, gW, gb = self._loss_grad(W, b, grad=grad)
        if not grad:
            return loss, gW, gb
        L, G, K = self.L, self.G, self.K
        d = Up.shape[1]
        gW = gW - self.mu[:, :, None] * gb[:, None, :]  # through b = c - muᵀW
        gU = (self.V.mT @ gW).view(L, d, G, K) * self.p  # [L, d, G, K]
        return loss, gU.reshape(L, d, G * K), gb

    def _loss_grad(self, Wp: Tensor, bp: Tensor, *, grad: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        # Scores are formed transposed, [L, G·K, n]: with n innermost both matmuls stream X in its own
        # layout (measured ~30 % faster than X @ W on CPU) and the class reductions run over a strided axis.
        L, G, K = self.L, self.G, self.K
        d = self.X.shape[2]
        Xmm = self.Xmm
        bias = bp[:, :, None] if self.class_mask is None else bp[:, :, None] + self.class_mask  # [L, G·K, 1]
        if Xmm is None:  # the intercept rides in the product's accumulator: one pass less over the scores
            Zt = torch.baddbmm(bias, Wp.mT, self.X.mT)  # [L, G·K, n]
        else:  # bfloat16 scores + float32 intercept -> float32 in one pass (the intercept is not rounded)
            Zt = torch.bmm(Wp.mT.to(Xmm.dtype), Xmm.mT) + bias
        logp = torch.log_softmax(Zt.view(L, G, K, -1), 2)  # [L, G, K, n]
        nll = -logp.gather(2, self.idx).squeeze(2)  # [L, G, n]
        Wv = Wp.view(L, d, G, K)
        u = self.uniform  # equal sample weights: scale the sums, not every score
        data = nll @ self.w if u is None else nll.sum(2) * u
        loss = data + 0.5 * self.lam2 * Wv.square().sum((1, 3))  # [L, G]
        if not grad:
            return loss, Wp, bp
        P = logp.exp_()  # softmax, reusing the buffer
        P.scatter_add_(2, self.idx, self._minus_one(P.dtype))
        if u is None:
            P *= self.w
        Rt = P.view(L, G * K, -1)  # [L, G·K, n]
        if Xmm is None:
            XtR = torch.bmm(Rt, self.X).mT  # [L, d, G·K]
        else:
            XtR = torch.bmm(Rt.to(Xmm.dtype), Xmm).mT.to(Wp.dtype)
        gb = Rt.sum(2)  # [L, G·K]
        if u is not None:
            XtR = XtR * u
            gb *= u
        gW = XtR + (self.lam2[:, None, :, None] * Wv).view(L, d, G * K)  # [L, d, G·K]
        self.raw_grad_max = max(float(gW.abs().max()), float(gb.abs().max()))
        return loss, gW.contiguous(), gb

    def _minus_one(self, dtype: torch.dtype) -> Tensor:
        """A cached ``-1`` tensor shaped like the label index (for ``softmax - onehot``)."""
        cached = getattr(self, "_neg", None)
        if cached is None or cached.dtype != dtype:
            cached = torch.full(self.idx.shape, -1.0, dtype=dtype)  # [L, G, 1, n]
            self._neg = cached
        return cached


def _precondition(problem: _Logistic, X: Tensor, stats: SufficientStats | None, lam2: Tensor) -> None:
    """Set a preconditioner ``p[j, g] = (e_j/(K·n) + l2_g/n)^-½`` in the eigenbasis ``V`` of the centred XᵀX.

    ``1/K`` stands for the softmax curvature, so this approximates the inverse square root of the Hessian:
    the scaled objective is close to isotropic and L-BFGS needs far fewer iterations on anisotropic
    activations; the minimiser is unchanged. (Per-class curvatures ``π_k(1-π_k)`` were tried and converged
    more slowly on imbalanced token tasks.)
    """
    if stats is None:
        n = X.shape[1]
        mu = X.mean(1, dtype=_F64)  # [L, d]
        scatter = torch.zeros(X.shape[0], X.shape[2], X.shape[2], dtype=_F64)  # [L, d, d]
        for start in range(0, n, _CHUNK_ROWS):  # row chunks bound the float64 copy
            xc = X[:, start : start + _CHUNK_ROWS].to(_F64) - mu[:, None, :]  # [L, c, d]
            scatter += xc.mT @ xc
        evals, V = torch.linalg.eigh(scatter)  # [L, d], [L, d, d]
    else:
        n, mu = stats.n, stats.mean()
        evals, V = stats.centred_eigh()
    curv = evals.clamp_min(0.0)[:, :, None, None] / (problem.K * max(n, 1))  # [L, d, 1, 1]
    p = (curv + lam2.to(_F64)[:, None, :, None] / max(n, 1) + 1e-12).rsqrt()  # [L, d, G, 1]
    p = p.expand(-1, -1, -1, problem.K)  # [L, d, G, K]
    problem.V = V.to(X.dtype)
    problem.p = p.to(X.dtype)
    problem.mu = mu.to(X.dtype)


class _Converged(Exception):
    """Raised inside the closure when the current point meets the gradient tolerance."""


def _lbfgs(
    problem: _Logistic,
    Wp: Tensor,
    bp: Tensor,
    *,
    max_iter: int,
    tol: float,
    history_size: int,
    chunk: int = 10,
) -> int:
    """Run one L-BFGS over every block in place; returns the iteration count.

    Stops when the largest |gradient| entry in the ORIGINAL variables ``(W, b)`` (preconditioned or not) is at
    most ``tol`` — scikit-learn's lbfgs criterion — checked at the start of every ``chunk`` of iterations
    (the optimizer keeps its memory across chunks), or after ``max_iter`` iterations.
    """
    tolerance_change = torch.finfo(Wp.dtype).eps * problem.L * problem.G
    opt = torch.optim.LBFGS(
        [Wp, bp],
        lr=1.0,
        max_iter=chunk,
        max_eval=4 * chunk,
        tolerance_grad=0.0,
        tolerance_change=tolerance_change,
        history_size=history_size,
        line_search_fn="strong_wolfe",
    )
    threads = torch.get_num_threads()
    first = [True]
    start_losses: list[float] = []

    def closure() -> Tensor:
        set_threads(threads)
        try:
            loss, gW, gb = problem.loss_grad(Wp, bp)
        finally:
            set_threads(1)
        total = loss.sum()
        if first[0]:  # the current point: test convergence in (W, b) and progress since the last chunk
            first[0] = False
            if problem.raw_grad_max <= tol:
                raise _Converged
            if start_losses and abs(start_losses[-1] - float(total)) <= tolerance_change:
                raise _Converged  # stalled: no decrease left at this precision
            start_losses.append(float(total))
        Wp.grad, bp.grad = gW, gb
        return total

    # L-BFGS's own work is dozens of dot/axpy ops on a small vector per iteration: on one thread they cost
    # microseconds, whereas an OpenMP fork/join per op costs milliseconds on a busy machine. The closure (the
    # big matmuls) runs with the caller's thread count.
    state = opt.state[opt._params[0]]
    set_threads(1)
    try:
        with torch.no_grad():
            while int(state.get("n_iter", 0)) < max_iter:
                opt.param_groups[0]["max_iter"] = min(chunk, max_iter - int(state.get("n_iter", 0)))
                first[0] = True
                try:
                    opt.step(closure)
                except _Converged:
                    break
    finally:
        set_threads(threads)
    return int(state.get("n_iter", 0))


def _fista(problem: _Logistic, Wp: Tensor, bp: Tensor, lam1: Tensor, *, max_iter: int, tol: float) -> int:
    """Batched FISTA for the elastic-net objective, in place; returns the iteration count.

    Per block: step sizes start at ``1/Lip`` (Böhning's bound), grow by 1.2 each iteration and are halved
    until the quadratic upper bound holds (backtracking); momentum restarts adaptively (O'Donoghue & Candès).
    """
    L, G, K = problem.L, problem.G, problem.K
    n, d = problem.X.shape[1], problem.X.shape[2]
    dtype = Wp.dtype

    def on_w(v: Tensor) -> Tensor:  # [L, G] → [L, d, G·K]
        return v[:, None, :, None].expand(L, d, G, K).reshape(L, d, G * K)

    def on_b(v: Tensor) -> Tensor:  # [L, G] → [L, G·K]
        return v[:, :, None].expand(L, G, K).reshape(L, G * K)

    def per_block(w: Tensor, b: Tensor) -> Tensor:  # sum over each block → [L, G]
        return w.view(L, d, G, K).sum((1, 3)) + b.view(L, G, K).sum(-1)

    Xa = torch.cat([problem.X, torch.ones(L, n, 1, dtype=dtype)], -1)  # [L, n, d+1]
    top = torch.linalg.eigvalsh(((Xa * problem.w[None, :, None]).mT @ Xa).to(_F64))[:, -1]  # [L]
    step = (1.0 / (0.5 * top[:, None] + problem.lam2.to(_F64)).clamp_min(1e-12)).to(dtype)  # [L, G]
    l1 = lam1[:, :1].expand(L, G)  # [L, G]
    xW, xb = Wp.clone(), bp.clone()
    yW, yb = Wp.clone(), bp.clone()
    t = torch.ones(L, G, dtype=dtype)  # [L, G]
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - iteration count returned
        f_y, gW, gb = problem.loss_grad(yW, yb)
        step = step * 1.2
        for _ in range(60):  # backtracking: halve the step of every block whose bound fails
            sw_ = on_w(step)
            vW = yW - sw_ * gW
            nW = vW.sign() * (vW.abs() - sw_ * on_w(l1)).clamp_min(0.0)
            nb = yb - on_b(step) * gb
            dW, db = nW - yW, nb - yb
            f_n = problem.loss_grad(nW, nb, grad=False)[0]
            bound = f_y + per_block(gW * dW, gb * db) + per_block(dW.square(), db.square()) / (2 * step)
            ok = f_n <= bound + 1e-7 * f_y.abs() * (dtype == torch.float32)
            if bool(ok.all()):
                break
            step = torch.where(ok, step, step / 2)
        gmap = torch.maximum(
            (dW.abs() / on_w(step)).view(L, d, G, K).amax((1, 3)),
            (db.abs() / on_b(step)).view(L, G, K).amax(-1),
        )  # [L, G]
        restart = per_block(-dW * (nW - xW), -db * (nb - xb)) > 0  # [L, G]
        t_next = torch.where(restart, torch.ones_like(t), (1 + (1 + 4 * t * t).sqrt()) / 2)
        mom = torch.where(restart, torch.zeros_like(t), (t - 1) / t_next)
        yW, yb = nW + on_w(mom) * (nW - xW), nb + on_b(mom) * (nb - xb)
        xW, xb, t = nW, nb, t_next
        if float(gmap.max()) <= tol:
            break
    Wp.copy_(xW)
    bp.copy_(xb)
    return it


def warm_start_scale(
    X: Tensor,
    y: Tensor,
    W: Tensor,
    b: Tensor,
    *,
    scales: Sequence[float] = (1, 2, 4, 8, 16, 32),
    max_rows: int = 8192,
) -> tuple[Tensor, Tensor]:
    """Rescale closed-form scores into logits: per block, the scale ``c`` in ``scales`` of least log-loss.

    One matmul scores every block; each candidate scale then costs only elementwise work. Beyond
    ``max_rows`` rows the scale is chosen on evenly spaced rows (a warm start only sets where the solver
    begins, and picking among powers of two needs no more).

    Args:
        X: ``[L, n, d]``; y: ``[n]``; W: ``[L, G, d, K]``; b: ``[L, G, K]`` (e.g. from :func:`ridge_path`).

    Returns:
        ``(c·W, c·b)`` with the best ``c`` per layer and grid point.
    """
    yt = torch.as_tensor(y).long()
    step = -(-X.shape[1] // max_rows)  # ceil
    if step > 1:
        X, yt = X[:, ::step], yt[::step]
    S = predict_logits(X, W.to(X.dtype), b.to(X.dtype))  # [L, G, n, K]
    yl = yt[None, None, :, None].expand(S.shape[0], S.shape[1], -1, 1)  # [L, G, n, 1]
    c = torch.as_tensor(scales, dtype=S.dtype)
    losses = []
    for ci in c:  # a handful of candidate scales, each elementwise only
        Z = S * ci
        losses.append((torch.logsumexp(Z, -1, keepdim=True) - Z.gather(-1, yl)).mean((-2, -1)))  # [L, G]
    best = c[torch.stack(losses, -1).argmin(-1)].to(W.dtype)  # [L, G]
    return W * best[..., None, None], b * best[..., None]
