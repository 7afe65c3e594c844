"""Batched binary logistic probes on neuron subsets, and batched classification metrics."""

from __future__ import annotations

import torch

from ._common import Tensor

METRICS: tuple[str, ...] = ("f1", "precision", "recall", "mcc", "auroc", "accuracy", "balanced_accuracy")
_BUDGET = 2**27  # float32 entries per gathered block (512 MiB)


def balanced_weights(y: Tensor) -> Tensor:
    """scikit-learn's ``class_weight='balanced'`` as per-sample weights ``n / (2·n_c)`` ``[n]``."""
    n = y.shape[0]
    counts = torch.bincount(y, minlength=2).to(torch.float32).clamp_min(1)
    return (n / (2 * counts))[y]


def gather_subsets(X: Tensor, layer_of: Tensor, idx: Tensor) -> Tensor:
    """``X[layer_of[b]][:, idx[b]]`` for every block: ``[B, n, w]`` (only the selected columns are copied)."""
    Xt = X.transpose(1, 2)  # [L, d, n] view
    return Xt[layer_of[:, None], idx].transpose(1, 2)  # [B, n, w]


def fit_binary(
    X: Tensor,
    y: Tensor,
    layer_of: Tensor,
    idx: Tensor,
    *,
    C: float = 1.0,
    l1_ratio: float = 0.0,
    max_iter: int = 100,
    tol: float = 1e-4,
    init: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Class-balanced binary logistic regression of ``y`` on neurons ``idx[b]`` of layer ``layer_of[b]``.

    Minimises scikit-learn's ``LogisticRegression(C, class_weight='balanced')`` objective (elastic net with
    ``l1_ratio > 0``), every block in one batched solve (chunked by memory). A two-class softmax with both
    weight columns penalised equals the one-logit binary model at ``l2 = 2/C`` (the optimum splits
    ``w`` as ``±w/2``).

    ``init``: a warm start ``(w [B, w], b [B])`` (e.g. the fit of a nested smaller subset, zero-padded).

    Returns:
        ``w [B, w]`` and ``b [B]`` of the logit ``x·w + b`` of the positive class.
    """
    from ..probes import fit_logistic

    B, width = idx.shape
    n = X.shape[1]
    sw = balanced_weights(y)
    W_out = torch.zeros(B, width)
    b_out = torch.zeros(B)
    step = max(1, _BUDGET // max(1, n * width))
    l2 = 2.0 * (1.0 - l1_ratio) / C
    l1 = l1_ratio / C
    for s in range(0, B, step):
        Xs = gather_subsets(X, layer_of[s : s + step], idx[s : s + step])
        if l1 > 0:
            W, b = fit_logistic(
                Xs, y, l2=l2, l1=l1, n_classes=2, sample_weight=sw, max_iter=max_iter, tol=tol
            )
        else:
            W, b = fit_logistic(
                Xs, y, l2=l2, n_classes=2, sample_weight=sw, max_iter=max_iter, tol=tol, precondition=True
            )
        W_out[s : s + step] = (W[..., 1] - W[..., 0]).float()
        b_out[s : s + step] = (b[..., 1] - b[..., 0]).float()
    return W_out, b_out


#: Up to this many neurons, nested fits use batched Newton steps (exact k×k Hessians) instead of L-BFGS.
NEWTON_MAX_K = 32


def newton_binary(
    X: Tensor,
    y: Tensor,
    sw: Tensor,
    *,
    C: float,
    init: tuple[Tensor, Tensor] | None = None,
    max_iter: int = 50,
    rtol: float = 1e-10,
) -> tuple[Tensor, Tensor]:
    """Weighted L2 binary logistic regression, every layer at once, by damped Newton steps.

    Minimises ``Σ sᵢ·log(1 + exp(−ỹᵢ(xᵢ·w + b))) + ‖w‖²/(2C)`` (scikit-learn's objective; ``b`` unpenalised)
    for each of the ``L`` problems in ``X [L, n, k]``. The Hessian is only ``(k+1)²``, so one batched
    Cholesky solve per iteration gives quadratic convergence: every layer finishes in a handful of
    iterations, however badly scaled its neurons are (L-BFGS needs many on SmolLM2's massive activations,
    and a joint L-BFGS waits for the worst layer). Backtracking halves the step per layer until the objective
    decreases. Stops when every layer's Newton decrement is below ``rtol·(1 + |F|)``.

    Returns ``w [L, k]`` and ``b [L]`` (float32).
    """
    L, n, k = X.shape
    Xt = torch.cat([X.double(), torch.ones(L, n, 1, dtype=torch.float64)], 2)  # [L, n, k+1]
    yd, s = y.double(), sw.double()
    reg = torch.full((k + 1,), 1.0 / C, dtype=torch.float64)
    reg[-1] = 0.0
    theta = torch.zeros(L, k + 1, dtype=torch.float64)
    if init is not None:
        theta[:, :k] = init[0].double()
        theta[:, k] = init[1].double()

    def objective(th: Tensor) -> Tensor:
        z = torch.bmm(Xt, th[..., None])[..., 0]
        # log(1 + exp(-z)) for y=1 and log(1 + exp(z)) for y=0, stably
        loss = torch.nn.functional.softplus(torch.where(yd.bool(), -z, z))
        return (loss * s).sum(1) + 0.5 * (reg * th * th).sum(1)

    f = objective(theta)
    for _ in range(max_iter):
        z = torch.bmm(Xt, theta[..., None])[..., 0]
        p = torch.sigmoid(z)
        g = torch.bmm((s * (p - yd))[:, None, :], Xt)[:, 0] + reg * theta  # [L, k+1]
        h = (s * p * (1 - p)).clamp_min(1e-12)
        H = torch.bmm((Xt * h[..., None]).transpose(1, 2), Xt) + torch.diag(reg)
        H.diagonal(dim1=-2, dim2=-1).add_(1e-10 * H.diagonal(dim1=-2, dim2=-1).abs().amax(-1, keepdim=True))
        chol, info = torch.linalg.cholesky_ex(H)
        step = torch.where(
            (info == 0)[:, None],
            torch.cholesky_solve(g[..., None], chol)[..., 0],
            torch.linalg.lstsq(H, g[..., None]).solution[..., 0],
        )
        decrement = (g * step).sum(1)  # gᵀH⁻¹g
        active = decrement > rtol * (1 + f.abs())
        if not bool(active.any()):
            break
        t = torch.ones(L, dtype=torch.float64)
        new_theta, new_f = theta, f
        for _ in range(30):  # backtracking, per layer
            cand = theta - t[:, None] * step
            fc = objective(cand)
            ok = (fc <= f + 1e-4 * t * -decrement) | ~active
            new_theta = torch.where(ok[:, None], cand, new_theta)
            new_f = torch.where(ok, fc, new_f)
            if bool(ok.all()):
                break
            t = torch.where(ok, t, t / 2)
        theta, f = torch.where(active[:, None], new_theta, theta), torch.where(active, new_f, f)
    return theta[:, :k].float(), theta[:, k].float()


def fit_nested(
    Xtop: Tensor,
    y: Tensor,
    ks: list[int],
    *,
    C: float = 1.0,
    max_iter: int = 100,
    tol: float = 1e-4,
    layer_batch: int = 1,
) -> dict[int, tuple[Tensor, Tensor]]:
    """Fits on nested subsets: for each ``k``, the first ``k`` columns of ``Xtop [L, n, m]`` (ranked neurons).

    Up to :data:`NEWTON_MAX_K` columns, every layer is fitted at once by :func:`newton_binary` (exact
    optimum in a few batched iterations). Larger ``k`` use L-BFGS on a contiguous copy of the first ``k``
    columns, warm-started from the previous k and preconditioned from ONE set of sufficient statistics of
    all ``m`` columns (sliced per k). ``layer_batch`` layers share one L-BFGS (``1``: every layer converges on
    its own; a joint solve runs as many iterations as its hardest layer needs, and was 2.2× slower over six
    SmolLM2 layers with massive activations in some of them). Returns ``{k: (w [L, k], b [L])}``.
    """
    from ..probes import SufficientStats, fit_logistic

    L = Xtop.shape[0]
    sw = balanced_weights(y)
    ks = sorted(ks)
    out_w = {k: torch.zeros(L, k) for k in ks}
    out_b = {k: torch.zeros(L) for k in ks}
    prev_all: tuple[Tensor, Tensor] | None = None
    for k in (k for k in ks if k <= NEWTON_MAX_K):
        start = None
        if prev_all is not None:
            start = (torch.cat([prev_all[0], torch.zeros(L, k - prev_all[0].shape[1])], 1), prev_all[1])
        prev_all = newton_binary(Xtop[:, :, :k], y, sw, C=C, init=start)
        out_w[k], out_b[k] = prev_all
    large = [k for k in ks if k > NEWTON_MAX_K]
    if not large:
        return {k: (out_w[k], out_b[k]) for k in ks}
    full = SufficientStats.from_arrays(Xtop, y, 2, mixed_precision=True)
    step = max(1, int(layer_batch))
    for s in range(0, L, step):
        sl = slice(s, min(L, s + step))
        Xl = Xtop[sl]
        nl = Xl.shape[0]
        prev: tuple[Tensor, Tensor] | None = None
        if prev_all is not None:
            prev = (prev_all[0][sl], prev_all[1][sl])
        for k in large:
            stats = SufficientStats(
                n=full.n, counts=full.counts, class_sums=full.class_sums[sl, :, :k], xtx=full.xtx[sl, :k, :k],
                sum_x=full.sum_x[sl, :k], xty=full.xty[sl, :k], sum_y=full.sum_y,
            )  # fmt: skip
            start = None
            if prev is not None:
                w0 = torch.cat([prev[0], torch.zeros(nl, k - prev[0].shape[1])], 1).to(Xl.dtype)
                b0 = prev[1].to(Xl.dtype)
                start = (torch.stack([-w0 / 2, w0 / 2], -1), torch.stack([-b0 / 2, b0 / 2], -1))
            W, b = fit_logistic(
                Xl[:, :, :k].contiguous(), y, l2=2.0 / C, n_classes=2, sample_weight=sw, max_iter=max_iter,
                tol=tol, precondition=stats, init=start,
            )  # fmt: skip
            prev = ((W[..., 1] - W[..., 0]).float(), (b[..., 1] - b[..., 0]).float())
            out_w[k][sl], out_b[k][sl] = prev
    return {k: (out_w[k], out_b[k]) for k in ks}


def scores_of(X: Tensor, layer_of: Tensor, idx: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Logits ``[B, n]`` of the fitted subset probes on ``X``."""
    B, width = idx.shape
    n = X.shape[1]
    out = torch.empty(B, n)
    step = max(1, _BUDGET // max(1, n * width))
    for s in range(0, B, step):
        Xs = gather_subsets(X, layer_of[s : s + step], idx[s : s + step])
        out[s : s + step] = torch.baddbmm(b[s : s + step, None, None], Xs, w[s : s + step, :, None])[..., 0]
    return out


def binary_metrics(scores: Tensor, y: Tensor) -> dict[str, Tensor]:
    """F1, precision, recall, MCC, AUROC, accuracy and balanced accuracy of ``scores > 0`` ``[B]`` each.

    AUROC is the Mann-Whitney statistic with average ranks for ties.
    """
    yb = y.bool()[None]
    pred = scores > 0
    tp = (pred & yb).sum(1).double()
    fp = (pred & ~yb).sum(1).double()
    fn = (~pred & yb).sum(1).double()
    tn = (~pred & ~yb).sum(1).double()
    precision = tp / (tp + fp).clamp_min(1)
    recall = tp / (tp + fn).clamp_min(1)
    f1 = 2 * tp / (2 * tp + fp + fn).clamp_min(1)
    denom = ((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)).sqrt()
    mcc = torch.where(denom > 0, (tp * tn - fp * fn) / denom.clamp_min(1e-300), torch.zeros_like(denom))
    n_pos, n_neg = tp + fn, tn + fp
    acc = (tp + tn) / (n_pos + n_neg)
    bal = 0.5 * (recall + tn / n_neg.clamp_min(1))
    # average ranks (ties share their mean rank): rank = (#less) + (#equal + 1) / 2, via sorting
    s_sorted, order = scores.double().sort(1)
    n = scores.shape[1]
    pos_r = torch.arange(1, n + 1, dtype=torch.float64).expand_as(s_sorted)
    lo = torch.searchsorted(s_sorted, s_sorted, right=False)
    hi = torch.searchsorted(s_sorted, s_sorted, right=True)
    avg = (lo + hi + 1).double() / 2
    del pos_r
    ranks = torch.empty_like(avg).scatter_(1, order, avg)
    r_pos = (ranks * yb.double()).sum(1)
    auroc = (r_pos - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg).clamp_min(1)
    return {
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "mcc": mcc,
        "auroc": auroc,
        "accuracy": acc,
        "balanced_accuracy": bal,
    }
