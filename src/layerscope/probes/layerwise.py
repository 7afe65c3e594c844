"""``fit_layers``: one probe per layer (and per regularisation value) in batched calls, λ picked on validation.

The entry point the probing sweep calls. Per layer it standardises with training statistics, fits every
layer × every λ at once, picks λ per layer by validation accuracy (the test split is never seen) and keeps
(closed forms) or polishes (logistic) the chosen fit. Closed forms come from one pass of sufficient
statistics and one eigendecomposition per layer; the logistic family is warm-started from the ridge path and
fits the whole λ grid with one preconditioned L-BFGS, then continues only the chosen λ to convergence.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from layerscope._precision import resolve_precision
from layerscope.errors import ConfigError
from layerscope.probes._core import SufficientStats, predict_logits
from layerscope.probes._logistic import _fit_logistic, auto_min_work, warm_start_scale
from layerscope.probes._mlp import check_mlp_params, train_mlp
from layerscope.probes._validation import ProbeDataError, as_float_tensor, as_layers, threads_for
from layerscope.probes.solvers import lda_path, ridge_path

Tensor = torch.Tensor

FAMILIES = ("logistic", "ridge", "lda", "mlp")
#: Ridge ``alpha`` grid, in scikit-learn's units (penalty against sums over samples).
DEFAULT_LAMBDAS = (0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5)
#: Logistic L2 grid ``λ = 1/C`` (scikit-learn's units); every value costs L-BFGS work, hence fewer.
DEFAULT_L2 = (1.0, 10.0, 100.0, 1e3, 1e4)
#: LDA shrinkage grid.
DEFAULT_SHRINKAGES = (1e-4, 1e-3, 1e-2, 0.05, 0.1, 0.2, 0.4, 0.8)
#: MLP weight-decay grid (one value: the MLP's capacity is set by its hyperparameters).
DEFAULT_WEIGHT_DECAYS = (0.0,)
#: rows per chunk of the MLP trainer's validation pass (bounds its ``[models, rows, hidden]`` buffers)
_VAL_ROWS = 4096
#: L-BFGS iterations for the whole-grid stage of the logistic family (the chosen λ then runs to ``max_iter``).
SELECT_ITER = 20
MLP_DEFAULTS: dict[str, Any] = {
    "hidden_size": 256,
    "n_layers": 1,
    "rank": None,
    "dropout": 0.0,
    "lr": 1e-3,
    "max_epochs": 50,
    "batch_size": 256,
    "early_stopping": True,
    # matmul precision of the batched one-hidden-layer trainer: "auto" = bfloat16 products with float32
    # weights, optimizer state and losses (mixed precision) where the CPU has bfloat16 units, else float32
    "precision": "auto",
}


@dataclasses.dataclass
class LayerwiseFit:
    """Probes of every layer, as fitted by :func:`fit_layers`.

    Linear families keep ``weight [L, d, K]``/``bias [L, K]`` in standardised units (``coef``/``intercept``
    give raw units); the MLP family keeps one module per layer.

    Attributes:
        family: ``"logistic"``, ``"ridge"``, ``"lda"`` or ``"mlp"``.
        n_classes: ``K``.
        lambdas: the grid searched, ascending ``[G]``.
        best_lambda: chosen value per layer ``[L]``; best_index: its index ``[L]``.
        val_accuracy: validation accuracy of the returned probe per layer ``[L]``.
        val_accuracy_grid: validation accuracy of every grid point ``[L, G]`` (logistic: after the grid stage).
        train_accuracy: training accuracy per layer ``[L]``.
        mean, scale: the per-layer standardisation ``[L, d]`` (training statistics).
        n_iter: solver iterations (logistic: grid stage + final stage; MLP: total epochs).
    """

    family: str
    n_classes: int
    lambdas: Tensor
    best_lambda: Tensor
    best_index: Tensor
    val_accuracy: Tensor
    val_accuracy_grid: Tensor
    train_accuracy: Tensor
    mean: Tensor
    scale: Tensor
    weight: Tensor | None = None
    bias: Tensor | None = None
    modules: list[nn.Module] | None = None
    n_iter: int = 0

    @property
    def n_layers(self) -> int:
        """Number of layers ``L``."""
        return int(self.mean.shape[0])

    @property
    def coef(self) -> Tensor | None:
        """Linear weights in raw input units ``[L, d, K]`` (None for the MLP family)."""
        if self.weight is None:
            return None
        return self.weight / self.scale[:, :, None].to(self.weight.dtype)

    @property
    def intercept(self) -> Tensor | None:
        """Intercepts in raw input units ``[L, K]`` (None for the MLP family)."""
        coef = self.coef
        if coef is None or self.bias is None:
            return None
        return self.bias - (self.mean[:, None, :].to(coef.dtype) @ coef).squeeze(1)

    def _standardised(self, X: Any) -> Tensor:
        X3 = as_float_tensor(as_layers(X)).to(self.mean.dtype)
        if X3.shape[0] != self.n_layers or X3.shape[2] != self.mean.shape[1]:
            raise ProbeDataError(
                f"X has {X3.shape[0]} layers × {X3.shape[2]} features; the probes were fitted on "
                f"{self.n_layers} × {self.mean.shape[1]}"
            )
        return (X3 - self.mean[:, None, :]) / self.scale[:, None, :]  # [L, n, d]

    def decision_function(self, X: Any) -> Tensor:
        """Class scores (logits; ridge: one-vs-rest scores) ``[L, n, K]`` for ``X [L, n, d]``."""
        Xs = self._standardised(X)
        if self.modules is not None:
            with torch.no_grad():
                return torch.stack([m(Xs[i]) for i, m in enumerate(self.modules)])  # [L, n, K]
        assert self.weight is not None and self.bias is not None
        return predict_logits(Xs, self.weight, self.bias)

    def predict_proba(self, X: Any) -> Tensor:
        """Class probabilities ``[L, n, K]`` (ridge: softmax of its scores, uncalibrated)."""
        return torch.softmax(self.decision_function(X), -1)

    def predict(self, X: Any) -> Tensor:
        """Predicted class indices ``[L, n]``."""
        return self.decision_function(X).argmax(-1)

    def accuracy(self, X: Any, y: Any) -> Tensor:
        """Accuracy per layer ``[L]`` on ``X [L, n, d]`` with labels ``y [n]``."""
        yt = torch.as_tensor(np.asarray(y)).long()
        return (self.predict(X) == yt[None]).double().mean(1)


def fit_layers(
    X: Any,
    y: Any,
    *,
    family: str = "logistic",
    train: Any,
    val: Any,
    lambdas: Any = None,
    n_classes: int | None = None,
    class_weight: Any = None,
    seed: int = 0,
    max_iter: int = 100,
    tol: float = 1e-4,
    mlp_options: Mapping[str, Any] | None = None,
    layer_lambdas: Any = None,
    precision: str = "auto",
) -> LayerwiseFit:
    """Fit a probe of ``family`` on every layer, choosing its regularisation per layer on ``val``.

    Args:
        X: activations ``[L, n, d]`` (torch or numpy; ``[n, d]`` means one layer). Fitted in float32, or in
            float64 when ``X`` is float64.
        y: integer labels ``[n]`` in ``0..K-1``.
        family: ``"logistic"`` (multinomial, L2), ``"ridge"`` (±1 one-vs-rest), ``"lda"`` or ``"mlp"``.
        train: training rows, a boolean mask ``[n]`` or an index array.
        val: validation rows (disjoint from ``train``), used only to pick λ (and MLP early stopping).
        lambdas: grid, ascending or not: L2 penalty ``1/C`` (logistic), ``alpha`` (ridge), shrinkage in
            ``[0, 1]`` (lda), weight decay (mlp). Defaults: :data:`DEFAULT_L2`, :data:`DEFAULT_LAMBDAS`,
            :data:`DEFAULT_SHRINKAGES`, :data:`DEFAULT_WEIGHT_DECAYS`.
        n_classes: ``K`` (default ``max(y) + 1``).
        class_weight: ``None``, ``"balanced"`` or ``{class index: weight}`` (logistic and mlp only).
        seed: seeds the MLP family (the others are deterministic).
        max_iter: L-BFGS iterations of the final logistic fit.
        tol: L-BFGS gradient tolerance, scikit-learn's default and meaning (see
            :func:`~layerscope.probes.solvers.fit_logistic`).
        mlp_options: MLP hyperparameters overriding :data:`MLP_DEFAULTS`.
        layer_lambdas: ``[L]`` regularisation fixed per layer instead of searched (``lambdas`` is then
            ignored). Control tasks use the task probe's choice: same family *and* hyperparameters, as
            Hewitt & Liang define selectivity — and no grid search to pay for.
        precision: matmul precision of the logistic family's L-BFGS (and the MLP's, unless
            ``mlp_options`` sets its own): ``"auto"`` (bfloat16 products where the CPU has bfloat16 units,
            else float32), ``"bfloat16"`` or ``"float32"``. In bfloat16 the two products of every evaluation
            read a bfloat16 copy of ``X`` (accumulated in float32); weights, softmax, losses, the optimizer and
            the validation scores stay float32. Accuracies match float32 within a few hundredths of a point
            (``docs/probing.md``); ``"float32"`` gives scikit-learn's optimum to ``tol``. Float64 ``X`` is
            always fitted in float64.

    Returns:
        A :class:`LayerwiseFit`.

    Raises:
        ProbeDataError: malformed inputs (dims, lengths, NaN/inf, labels, empty or overlapping splits, a
            class with fewer than 2 training examples).
        ConfigError: unknown family or bad grid / options.
    """
    fit, _ = _fit_layers(
        X, y, family=family, train=train, val=val, lambdas=lambdas, n_classes=n_classes,
        class_weight=class_weight, seed=seed, max_iter=max_iter, tol=tol, mlp_options=mlp_options,
        layer_lambdas=layer_lambdas, precision=precision,
    )  # fmt: skip
    return fit


def fit_layers_with_control(
    X: Any,
    y: Any,
    y_control: Any,
    *,
    family: str = "logistic",
    train: Any,
    val: Any,
    lambdas: Any = None,
    n_classes: int | None = None,
    n_classes_control: int | None = None,
    seed: int = 0,
    max_iter: int = 100,
    tol: float = 1e-4,
    mlp_options: Mapping[str, Any] | None = None,
    precision: str = "auto",
) -> tuple[LayerwiseFit, LayerwiseFit]:
    """A task probe and its control-task probe on every layer: same family, the task's λ per layer.

    The result equals ``fit = fit_layers(X, y, ...)`` followed by
    ``fit_layers(X, y_control, ..., layer_lambdas=fit.best_lambda)`` (Hewitt & Liang: the control probe has
    the task probe's family and hyperparameters), but the two share work: the logistic family polishes the
    task's chosen λ and fits the control in ONE L-BFGS whose evaluations read ``X`` once for both (the
    control warm-started from its own ridge path at that λ); the one-hidden-layer MLP with a single weight
    decay trains the task's and the control's probes as one batched model (same minibatches; each group
    early-stops on its own validation accuracy). Other configurations run the two fits one after the other.
    Up to solver round-off (the joint L-BFGS shares its line search), the numbers are those of the two
    separate calls.

    Args:
        X, y, family, train, val, lambdas, n_classes, seed, max_iter, tol, mlp_options, precision: as in
            :func:`fit_layers` (no ``class_weight``: the control task has no class weighting to share).
        y_control: control-task labels ``[n]`` in ``0..n_classes_control-1``.
        n_classes_control: its number of classes (default ``max(y_control) + 1``).

    Returns:
        ``(task fit, control fit)``.
    """
    kw: dict[str, Any] = {
        "family": family, "train": train, "val": val, "seed": seed, "max_iter": max_iter, "tol": tol,
        "mlp_options": mlp_options, "precision": precision,
    }  # fmt: skip
    fit, control = _fit_layers(
        X, y, lambdas=lambdas, n_classes=n_classes, control=(y_control, n_classes_control), **kw
    )
    if control is None:  # no shared path for this family / configuration
        control = fit_layers(X, y_control, n_classes=n_classes_control, layer_lambdas=fit.best_lambda, **kw)
    return fit, control


def _fit_layers(
    X: Any,
    y: Any,
    *,
    family: str,
    train: Any,
    val: Any,
    lambdas: Any = None,
    n_classes: int | None = None,
    class_weight: Any = None,
    seed: int = 0,
    max_iter: int = 100,
    tol: float = 1e-4,
    mlp_options: Mapping[str, Any] | None = None,
    layer_lambdas: Any = None,
    control: tuple[Any, int | None] | None = None,
    precision: str = "auto",
) -> tuple[LayerwiseFit, LayerwiseFit | None]:
    """:func:`fit_layers`; with ``control = (labels, K_c)`` also the control fit where it can share work."""
    if family not in FAMILIES:
        raise ConfigError(f"unknown probe family {family!r}; choose from {', '.join(FAMILIES)}")
    X3 = as_layers(X)
    L, n, _ = X3.shape
    yt = _labels(y, n)
    tr, va = _rows(train, n, "train"), _rows(val, n, "val")
    if np.intersect1d(tr, va).size:
        raise ProbeDataError("train and val overlap; λ must be chosen on rows the probe was not fitted on")
    K = _n_classes(yt, n_classes)
    _check_class_counts(yt, tr, K)
    yc: Tensor | None = None
    Kc = 0
    if control is not None:
        yc = _labels(control[0], n)
        Kc = _n_classes(yc, control[1])
        _check_class_counts(yc, tr, Kc)
    fixed: Tensor | None = None
    if layer_lambdas is not None:
        per_layer = torch.as_tensor(np.asarray(layer_lambdas, dtype=np.float64)).reshape(-1)
        if per_layer.numel() != L:
            raise ConfigError(f"layer_lambdas needs one value per layer ({L}), got {per_layer.numel()}")
        grid = _grid(family, per_layer)
        fixed = torch.searchsorted(grid, per_layer)  # [L] index of each layer's value in the grid
    else:
        grid = _grid(family, lambdas)  # [G], ascending
    sw = _sample_weight(class_weight, yt[tr], K, family)
    mm = resolve_precision(precision)

    work = torch.float64 if X3.dtype == torch.float64 else torch.float32
    mm_dtype = None if work == torch.float64 or mm == torch.float32 else mm  # float64 stays exact
    min_work = auto_min_work(precision)  # "auto" keeps small fits in float32
    ytr, yva = yt[tr], yt[va]
    Xtr, Xva, mean, scale, centred = _standardised_splits(X3, tr, va, ytr, K, work)
    common: dict[str, Any] = {
        "family": family,
        "n_classes": K,
        "lambdas": grid,
        "mean": mean.to(work),
        "scale": scale.to(work),
    }

    if family == "mlp":
        _check_finite(Xva.sum((1, 2)), "val")
        common.update(mean=mean.float(), scale=scale.float())
        yc_split = None if yc is None else (yc[tr], yc[va], Kc)
        options = {"precision": precision, **(mlp_options or {})}
        return _fit_mlp(
            Xtr.float(), ytr, Xva.float(), yva, grid, K, sw, seed, options, common, fixed, yc_split
        )
    stats = centred.scaled(1.0 / scale)
    with threads_for(Xtr.numel() * Xtr.shape[2]):
        stats.centred_eigh()
    n_iter = 0
    if family == "ridge":
        W, b = ridge_path(stats, grid, coding="pm1")  # [L, G, d, K], [L, G, K]
    elif family == "lda":
        W, b = lda_path(stats, grid)
    else:
        W, b = warm_start_scale(Xtr, ytr, *ridge_path(stats, grid, coding="onehot"))
        if len(grid) > 1 and fixed is None:  # the grid stage; a fixed λ goes straight to the final fit
            lam = grid[None].expand(L, -1)  # [L, G]
            W, b, n_iter = _fit_logistic(
                Xtr, ytr, l2=lam, n_classes=K, sample_weight=sw, init=(W, b), max_iter=SELECT_ITER, tol=tol,
                precondition=stats, mm_dtype=mm_dtype, mm_min_work=min_work,
            )  # fmt: skip
    scores = predict_logits(Xva, W.to(work), b.to(work))  # [L, G, n_va, K]
    _check_finite(scores, "val")  # NaN/inf in the val rows of X propagate into their scores
    acc_grid = _accuracy(scores, yva)  # [L, G]
    best = _best_index(acc_grid) if fixed is None else fixed  # [L]
    rows = torch.arange(L)
    Wb, bb = W[rows, best], b[rows, best]  # [L, d, K], [L, K]
    control_fit: LayerwiseFit | None = None
    if family == "logistic" and yc is not None and sw is None:
        yctr, ycva = yc[tr], yc[va]
        cgrid = torch.unique(grid[best])  # what fit_layers(layer_lambdas=...) searches: the chosen values
        cfixed = torch.searchsorted(cgrid, grid[best])
        Wc, bc = warm_start_scale(
            Xtr, yctr, *ridge_path(_relabelled(stats, Xtr, yctr, Kc), cgrid, coding="onehot")
        )
        cscores = predict_logits(Xva, Wc.to(work), bc.to(work))  # [L, G', n_va, K_c]
        cacc_grid = _accuracy(cscores, ycva)
        Kj = max(K, Kc)
        init = (
            torch.stack(
                [_pad_classes(Wb.to(work), Kj - K), _pad_classes(Wc[rows, cfixed].to(work), Kj - Kc)], 1
            ),
            torch.stack(
                [_pad_classes(bb.to(work), Kj - K), _pad_classes(bc[rows, cfixed].to(work), Kj - Kc)], 1
            ),
        )  # [L, 2, d, Kj], [L, 2, Kj]: task polish from its grid stage, control from its ridge warm start
        Wj, bj, extra = _fit_logistic(
            Xtr, None, l2=grid[best][:, None].expand(L, 2), n_classes=Kj, init=init, max_iter=max_iter, tol=tol,
            precondition=stats, label_sets=torch.stack([ytr, yctr]), set_classes=[K, Kc], mm_dtype=mm_dtype,
            mm_min_work=min_work,
        )  # fmt: skip
        n_iter += extra
        Wb, bb = Wj[:, 0, :, :K], bj[:, 0, :K]
        Wcb, bcb = Wj[:, 1, :, :Kc].to(work).contiguous(), bj[:, 1, :Kc].to(work).contiguous()
        control_fit = LayerwiseFit(
            **{**common, "n_classes": Kc, "lambdas": cgrid},
            best_lambda=cgrid[cfixed],
            best_index=cfixed,
            val_accuracy=_accuracy(predict_logits(Xva, Wcb, bcb), ycva),
            val_accuracy_grid=cacc_grid,
            train_accuracy=_accuracy(predict_logits(Xtr, Wcb, bcb), yctr),
            weight=Wcb,
            bias=bcb,
            n_iter=extra,
        )
    elif family == "logistic":
        Wb, bb, extra = _fit_logistic(
            Xtr, ytr, l2=grid[best], n_classes=K, sample_weight=sw, init=(Wb, bb), max_iter=max_iter, tol=tol,
            precondition=stats, mm_dtype=mm_dtype, mm_min_work=min_work,
        )  # fmt: skip
        n_iter += extra
    Wb, bb = Wb.to(work).contiguous(), bb.to(work).contiguous()
    polished = family == "logistic"
    fit = LayerwiseFit(
        **common,
        best_lambda=grid[best],
        best_index=best,
        val_accuracy=_accuracy(predict_logits(Xva, Wb, bb), yva) if polished else acc_grid[rows, best],
        val_accuracy_grid=acc_grid,
        train_accuracy=_accuracy(predict_logits(Xtr, Wb, bb), ytr),
        weight=Wb,
        bias=bb,
        n_iter=n_iter,
    )
    return fit, control_fit


def _standardised_splits(
    X3: Tensor, tr: np.ndarray, va: np.ndarray, ytr: Tensor, K: int, work: torch.dtype
) -> tuple[Tensor, Tensor, Tensor, Tensor, SufficientStats]:
    """Train and val rows standardised with training statistics, the mean, scale and centred statistics.

    Few passes: the mean by a matrix product, centre in place, one Gram pass on the centred rows (its
    diagonal is the variance; the statistics serve the closed forms and the preconditioner), scale in place.
    """
    L = X3.shape[0]
    Xtr = as_float_tensor(X3.index_select(1, torch.as_tensor(tr))).to(work)  # [L, n_tr, d]
    Xva = as_float_tensor(X3.index_select(1, torch.as_tensor(va))).to(work)  # [L, n_va, d]
    n_tr = Xtr.shape[1]
    mean = (torch.full((L, 1, n_tr), 1.0 / n_tr, dtype=work) @ Xtr).squeeze(1).double()  # [L, d]
    _check_finite(mean, "train")
    Xtr.sub_(mean[:, None].to(work))
    with threads_for(Xtr.numel() * Xtr.shape[2]):  # the Gram pass and eigh are O(n·d²) per layer
        centred = SufficientStats.from_arrays(Xtr, ytr, n_classes=K, mixed_precision=True)
    std = (torch.diagonal(centred.centred_xtx(), dim1=-2, dim2=-1).clamp_min(0.0) / n_tr).sqrt()  # [L, d]
    _check_finite(std, "train")
    scale = torch.where(std > 1e-6 * mean.abs().clamp_min(1.0), std, torch.ones_like(std))
    Xtr.div_(scale[:, None].to(work))
    Xva.sub_(mean[:, None].to(work)).div_(scale[:, None].to(work))
    return Xtr, Xva, mean, scale, centred


def fit_mlp_tasks(
    X: Any,
    tasks: Sequence[tuple[Any, int | None, Any, int | None]],
    *,
    train: Any,
    val: Any,
    seed: int = 0,
    mlp_options: Mapping[str, Any] | None = None,
    precision: str = "auto",
) -> list[tuple[LayerwiseFit, LayerwiseFit | None]]:
    """MLP probes of several tasks on the SAME rows (and their control tasks) trained as one batched model.

    Each ``(y, K, y_control, K_control)`` of ``tasks`` gives the result of
    ``fit_layers_with_control(X, y, y_control, family="mlp", ...)`` (or ``fit_layers`` when ``y_control`` is
    None): every label set is a group of L probes with its own initialisation and minibatch order (both
    seeded with ``seed``, as in a run of its own), its own early stopping and best weights, so the probes are
    those of the separate runs up to batched round-off. What is shared is the work: one minibatch gather and
    one batched product per step for every task, which is what a CPU step of these small models costs. Word-
    level tasks of one dataset (UPOS, XPOS, dependency label, is-root) are fitted this way by the sweep.

    Only the batched one-hidden-layer configuration with one weight decay shares work; any other
    ``mlp_options`` fit the tasks one after the other (same results).

    Args:
        X: activations ``[L, n, d]``; train, val, seed, mlp_options, precision: as in :func:`fit_layers`.
        tasks: ``(labels [n], n_classes or None, control labels [n] or None, control n_classes or None)``.

    Returns:
        ``(task fit, control fit or None)`` per task, in order.
    """
    if not tasks:
        raise ConfigError("fit_mlp_tasks needs at least one task")
    opts = {**MLP_DEFAULTS, "precision": precision, **dict(mlp_options or {})}
    unknown = set(opts) - set(MLP_DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown mlp_options {sorted(unknown)}; valid: {sorted(MLP_DEFAULTS)}")
    grid = _grid("mlp", None)  # the default weight decay (one value)
    batched = opts["n_layers"] == 1 and opts["rank"] is None and grid.numel() == 1
    if not batched or len(tasks) == 1:
        kw: dict[str, Any] = {"train": train, "val": val, "seed": seed, "mlp_options": mlp_options}
        out: list[tuple[LayerwiseFit, LayerwiseFit | None]] = []
        for y, k, yc, kc in tasks:
            if yc is None:
                out.append((fit_layers(X, y, family="mlp", n_classes=k, precision=precision, **kw), None))
            else:
                out.append(
                    fit_layers_with_control(
                        X, y, yc, family="mlp", n_classes=k, n_classes_control=kc, precision=precision, **kw
                    )
                )
        return out
    X3 = as_layers(X)
    L, n, _ = X3.shape
    tr, va = _rows(train, n, "train"), _rows(val, n, "val")
    if np.intersect1d(tr, va).size:
        raise ProbeDataError("train and val overlap; λ must be chosen on rows the probe was not fitted on")
    sets: list[tuple[Tensor, int]] = []  # every label set in group order: task 0, its control, task 1, ...
    for y, k, yc, kc in tasks:
        for labels, classes in ((y, k), (yc, kc)) if yc is not None else ((y, k),):
            yt = _labels(labels, n)
            K = _n_classes(yt, classes)
            _check_class_counts(yt, tr, K)
            sets.append((yt, K))
    work = torch.float64 if X3.dtype == torch.float64 else torch.float32
    Xtr, Xva, mean, scale, _ = _standardised_splits(X3, tr, va, sets[0][0][tr], sets[0][1], work)
    _check_finite(Xva.sum((1, 2)), "val")
    Xtr, Xva = Xtr.float(), Xva.float()
    check_mlp_params(**{k: opts[k] for k in MLP_DEFAULTS if k not in ("early_stopping", "precision")})
    mm_dtype = resolve_precision(str(opts["precision"]))
    (y0, K0), rest = sets[0], sets[1:]
    extra = [(yt[tr], yt[va], K, grid.expand(L)) for yt, K in rest]
    modules, acc_all, epochs = _train_mlp_batched(
        Xtr, y0[tr], Xva, y0[va], grid, K0, opts, seed, mm_dtype, extra=extra
    )
    zero = torch.zeros(L, dtype=torch.long)
    fits: list[LayerwiseFit] = []
    for j, (yt, K) in enumerate(sets):
        mods = modules[j * L : (j + 1) * L]
        fits.append(
            LayerwiseFit(
                family="mlp",
                n_classes=K,
                lambdas=grid,
                mean=mean.float(),
                scale=scale.float(),
                best_lambda=grid[zero],
                best_index=zero,
                val_accuracy=acc_all[:, j],
                val_accuracy_grid=acc_all[:, j : j + 1],
                train_accuracy=_train_accuracy(mods, Xtr, yt[tr]),
                modules=mods,
                n_iter=epochs[j],
            )
        )
    out, i = [], 0
    for _y, _k, yc, _kc in tasks:
        if yc is None:
            out.append((fits[i], None))
            i += 1
        else:
            out.append((fits[i], fits[i + 1]))
            i += 2
    return out


def _relabelled(stats: SufficientStats, Xtr: Tensor, y: Tensor, K: int) -> SufficientStats:
    """``stats`` of ``Xtr`` with other labels: only the label products are new (one narrow pass over ``Xtr``).

    The Gram matrix, feature sums and the cached eigendecomposition do not depend on the labels and are shared.
    """
    Y = torch.nn.functional.one_hot(y, K).to(Xtr.dtype)  # [n, K]
    xty = (Xtr.mT @ Y).double()  # [L, d, K]
    counts = Y.sum(0).double()
    out = SufficientStats(
        n=stats.n, counts=counts, class_sums=xty.mT.clone(), xtx=stats.xtx, sum_x=stats.sum_x, xty=xty,
        sum_y=counts.clone(),
    )  # fmt: skip
    out._eigh = stats.centred_eigh()
    return out


def _fit_mlp(
    Xtr: Tensor,
    ytr: Tensor,
    Xva: Tensor,
    yva: Tensor,
    grid: Tensor,
    K: int,
    sw: Tensor | None,
    seed: int,
    options: Mapping[str, Any] | None,
    common: dict[str, Any],
    fixed: Tensor | None = None,
    control: tuple[Tensor, Tensor, int] | None = None,
) -> tuple[LayerwiseFit, LayerwiseFit | None]:
    """MLP family: one small training run per (layer, weight decay); lean loop, early stopping on ``val``.

    ``control = (train labels, val labels, K_c)``: the control probes are trained in the same batched model
    when there is one weight decay (the task's choice is then known in advance); otherwise None is returned
    for them and the caller fits them separately.
    """
    opts = {**MLP_DEFAULTS, **dict(options or {})}
    unknown = set(opts) - set(MLP_DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown mlp_options {sorted(unknown)}; valid: {sorted(MLP_DEFAULTS)}")
    check_mlp_params(**{k: opts[k] for k in MLP_DEFAULTS if k not in ("early_stopping", "precision")})
    mm_dtype = resolve_precision(str(opts["precision"]))
    if sw is not None:
        raise ConfigError("class_weight is not supported for the mlp family")
    L, G = Xtr.shape[0], grid.shape[0]
    if opts["n_layers"] == 1 and opts["rank"] is None:
        # the usual one-hidden-layer probe: every (layer, weight decay) trained together as one batched model
        joint = None
        if control is not None and G == 1:
            yc_tr, yc_va, Kc = control
            joint = (yc_tr, yc_va, Kc, grid.expand(L))
        modules, acc_all, epochs = _train_mlp_batched(
            Xtr, ytr, Xva, yva, grid, K, opts, seed, mm_dtype, extra=[] if joint is None else [joint]
        )
        acc_grid = acc_all[:, :G]
        best = _best_index(acc_grid) if fixed is None else fixed
        chosen = [modules[layer * G + int(best[layer])] for layer in range(L)]
        fit = LayerwiseFit(
            **common, best_lambda=grid[best], best_index=best, val_accuracy=acc_grid[torch.arange(L), best],
            val_accuracy_grid=acc_grid, train_accuracy=_train_accuracy(chosen, Xtr, ytr), modules=chosen,
            n_iter=epochs[0],
        )  # fmt: skip
        if joint is None:
            return fit, None
        cmods = modules[L * G :]
        zero = torch.zeros(L, dtype=torch.long)
        control_fit = LayerwiseFit(
            **{**common, "n_classes": Kc}, best_lambda=grid[zero], best_index=zero,
            val_accuracy=acc_all[:, G], val_accuracy_grid=acc_all[:, G:], modules=cmods,
            train_accuracy=_train_accuracy(cmods, Xtr, yc_tr), n_iter=epochs[1],
        )  # fmt: skip
        return fit, control_fit
    acc_grid = torch.zeros(L, G, dtype=torch.float64)  # [L, G]
    fitted: list[list[nn.Module]] = []
    n_epochs = 0
    train_opts = {k: v for k, v in opts.items() if k != "precision"}  # the general loop runs in float32
    for layer in range(L):  # a loop is acceptable for the MLP family (small independent runs)
        per_layer: list[nn.Module] = []
        for g in range(G):
            run = train_mlp(
                Xtr[layer], ytr, X_val=Xva[layer], y_val=yva, n_classes=K, weight_decay=float(grid[g]),
                seed=seed + layer, **train_opts,
            )  # fmt: skip
            n_epochs += run.n_epochs
            with torch.no_grad():
                acc_grid[layer, g] = (run.module(Xva[layer]).argmax(-1) == yva).double().mean()
            per_layer.append(run.module)
        fitted.append(per_layer)
    best = _best_index(acc_grid) if fixed is None else fixed
    modules = [fitted[layer][int(best[layer])] for layer in range(L)]
    tr_acc = _train_accuracy(modules, Xtr, ytr)
    fit = LayerwiseFit(
        **common,
        best_lambda=grid[best],
        best_index=best,
        val_accuracy=acc_grid[torch.arange(L), best],
        val_accuracy_grid=acc_grid,
        train_accuracy=tr_acc,
        modules=modules,
        n_iter=n_epochs,
    )
    return fit, None


def _train_accuracy(modules: list[nn.Module], Xtr: Tensor, ytr: Tensor) -> Tensor:
    """Training accuracy of each layer's module ``[L]``."""
    with torch.no_grad():
        return torch.stack([(m(Xtr[i]).argmax(-1) == ytr).double().mean() for i, m in enumerate(modules)])


def _check_finite(summary: Tensor, name: str) -> None:
    """Raise if a summary of the ``name`` rows is non-finite (NaN/inf anywhere in them propagate into it)."""
    if not bool(torch.isfinite(summary).all()):
        raise ProbeDataError(f"X contains NaN or inf in the {name} rows; drop or fix those rows first")


def _train_mlp_batched(
    Xtr: Tensor,
    ytr: Tensor,
    Xva: Tensor,
    yva: Tensor,
    grid: Tensor,
    K: int,
    opts: Mapping[str, Any],
    seed: int,
    mm_dtype: torch.dtype = torch.float32,
    patience: int = 3,
    extra: Sequence[tuple[Tensor, Tensor, int, Tensor]] = (),
) -> tuple[list[nn.Module], Tensor, list[int]]:
    """Train L·G one-hidden-layer MLPs at once (layers × weight decays in the batch dim, ``baddbmm``).

    Adam on the summed per-model losses (cross-entropy + ½·wd·‖W‖², i.e. coupled L2 as in ``MLPProbe``),
    shared minibatch order, early stopping per model on validation accuracy (best weights kept), stop when no
    model improved for ``patience`` epochs. With ``mm_dtype=torch.bfloat16`` the training products run in
    bfloat16 (inputs and weights rounded, float32 accumulation; weights, Adam state and losses stay float32),
    and so do the per-epoch validation scores that early stopping compares (in row chunks): standard mixed
    precision, 5-10× faster on CPUs with bfloat16 units. The returned validation accuracies are those early
    scores; test accuracies (the sweep's) come from the float32 weights afterwards.

    ``extra = [(y_train, y_val, K_j, wd [L]), ...]`` trains more label sets of the same rows in the same batch
    (a control task, other tasks), L probes each (one per layer, at the given weight decays): the same
    minibatches, every product batched with the task's. Every group is initialised from its own generator
    seeded with ``seed`` and the minibatch order has its own too, so each group's probes are those of a run of
    that label set alone (up to batched round-off); each group stops on its own patience and keeps its own
    best weights.

    Returns per-model modules (task: index ``layer·G + g``; then L per extra group), ``[L, G + len(extra)]``
    validation accuracy (the extra groups in the last columns), and the epochs per group.
    """
    L, n, d = Xtr.shape
    G, h = grid.shape[0], int(opts["hidden_size"])
    M = L * G
    gen = torch.Generator().manual_seed(seed)
    order_gen = torch.Generator().manual_seed(seed)  # minibatch order: independent of the label sets' sizes
    lim1, lim2 = 1 / d**0.5, 1 / h**0.5

    def init(models: int, classes: int, g: torch.Generator) -> list[Tensor]:
        return [
            (torch.rand(models, d, h, generator=g) * 2 - 1) * lim1,  # models, d, hidden
            (torch.rand(models, 1, h, generator=g) * 2 - 1) * lim1,
            (torch.rand(models, h, classes, generator=g) * 2 - 1) * lim2,  # models, hidden, K
            (torch.rand(models, 1, classes, generator=g) * 2 - 1) * lim2,
        ]

    Kj = max([K] + [int(e[2]) for e in extra])
    labels_tr, labels_va = [ytr.view(1, -1).expand(M, -1)], [yva.view(1, -1).expand(M, -1)]
    wd = grid.to(torch.float32).repeat(L)  # models (layer-major)
    sizes = [K] * M
    inits = [init(M, K, gen)]
    for e_tr, e_va, Ke, e_wd in extra:  # own generators: the task's draws and minibatch order stay unchanged
        inits.append(init(L, int(Ke), torch.Generator().manual_seed(seed)))
        labels_tr.append(e_tr.view(1, -1).expand(L, -1))
        labels_va.append(e_va.view(1, -1).expand(L, -1))
        wd = torch.cat([wd, e_wd.to(torch.float32)])
        sizes += [int(Ke)] * L
    parts = [  # W1, b1 as drawn; W2, b2 padded with zero columns up to the widest label set
        torch.cat([g[i] if i < 2 else _pad_classes(g[i], Kj - g[i].shape[-1]) for g in inits])
        for i in range(4)
    ]
    W1, b1, W2, b2 = (p.requires_grad_() for p in parts)
    Mt = len(sizes)  # models in the batch: task (M) then L per extra group
    ytr_m, yva_m = torch.cat(labels_tr), torch.cat(labels_va)  # [Mt, n], [Mt, n_va]
    mask = None
    if min(sizes) < Kj:  # classes beyond a model's own K are masked out of its softmax
        off = torch.arange(Kj)[None, :] >= torch.as_tensor(sizes)[:, None]  # [Mt, Kj]
        mask = torch.zeros(Mt, 1, Kj).masked_fill_(off[:, None, :], float("-inf"))
    params = [W1, b1, W2, b2]
    optim = _adam(params, float(opts["lr"]))
    drop = float(opts["dropout"])
    bs = int(opts["batch_size"])
    Xtr32, Xva32 = Xtr.float(), Xva.float()
    Xtr_mm = Xtr32.to(mm_dtype)  # one rounded copy, not one per minibatch
    Xva_mm = Xva32.to(mm_dtype)  # the per-epoch validation pass uses the training products' precision
    layer_of = torch.cat([torch.arange(M) // G] + [torch.arange(L)] * len(extra))  # [Mt]
    alive = torch.arange(Mt)  # the models still in the batch (groups that stopped are dropped from it)

    def logits(X: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:  # X: [L, b, d] -> [alive, b, Kj]
        xm = X if same_layers else X.index_select(0, layer_of)  # each model reads its layer
        w1, w2 = W1.to(dtype), W2.to(dtype)
        hid = torch.relu(torch.baddbmm(b1.to(dtype), xm, w1))
        if drop and torch.is_grad_enabled():
            hid = torch.nn.functional.dropout(hid, drop, training=True)
        out = torch.baddbmm(b2.to(dtype), hid, w2).float()
        return out if mask is None else out + mask

    same_layers = Mt == L
    groups = [torch.arange(M)] + [M + j * L + torch.arange(L) for j in range(len(extra))]
    active = [True] * len(groups)
    stale = [0] * len(groups)
    epochs = [0] * len(groups)
    best_acc = torch.full((Mt,), -1.0, dtype=torch.float64)
    best = [p.detach().clone() for p in params]
    # bfloat16 products take about a millisecond per minibatch, so the step is bound by small ops whose OpenMP
    # fork/join costs more than they do (and far more on a shared machine): one thread. float32: by size.
    work = 0 if mm_dtype == torch.bfloat16 else Mt * bs * d * h
    with threads_for(work):
        for _ in range(int(opts["max_epochs"])):
            for gi in range(len(groups)):
                epochs[gi] += int(active[gi])
            order = torch.randperm(n, generator=order_gen)
            n_alive = len(alive)
            penalised = bool((wd > 0).any())
            for start in range(0, n, bs):
                idx = order[start : start + bs]
                out = logits(
                    Xtr_mm.index_select(1, idx), mm_dtype
                )  # alive, b, Kj (index_select: 4× faster gather)
                yb = ytr_m.index_select(1, idx)  # alive, b
                ce = torch.nn.functional.cross_entropy(out.reshape(-1, Kj), yb.reshape(-1), reduction="none")
                loss = ce.view(n_alive, -1).mean(1).sum()
                if penalised:
                    loss = loss + (0.5 * wd * (W1.pow(2).sum((1, 2)) + W2.pow(2).sum((1, 2)))).sum()
                optim.zero_grad(set_to_none=True)
                loss.backward()
                optim.step()
            with torch.no_grad():
                acc = torch.full((Mt,), -1.0, dtype=torch.float64)
                hits = torch.zeros(len(alive), dtype=torch.float64)
                for lo in range(0, Xva_mm.shape[1], _VAL_ROWS):  # row chunks: no [models, n_va, d] copy
                    pred = logits(Xva_mm[:, lo : lo + _VAL_ROWS], mm_dtype).argmax(-1)
                    hits += (pred == yva_m[:, lo : lo + _VAL_ROWS]).sum(1)
                acc[alive] = hits / max(Xva_mm.shape[1], 1)
                slot = torch.full((Mt,), -1, dtype=torch.long)
                slot[alive] = torch.arange(n_alive)  # model id -> row in the current batch
                for gi, members in enumerate(groups):
                    if not active[gi]:
                        continue  # a stopped group keeps the best weights it had when it stopped
                    up = members[acc[members] > best_acc[members] + 1e-12]
                    if len(up):
                        best_acc[up] = acc[up]
                        for keep, p in zip(best, params, strict=True):
                            keep[up] = p.detach()[slot[up]]
                        stale[gi] = 0
                    else:
                        stale[gi] += 1
                    if opts.get("early_stopping", True) and stale[gi] >= patience:
                        active[gi] = False
            if not any(active):
                break
            keep_ids = torch.cat([members for gi, members in enumerate(groups) if active[gi]])
            if (
                len(keep_ids) < n_alive
            ):  # a group stopped: its models leave the batch (the others are unchanged)
                rows = slot[keep_ids]
                params, optim = _compact(optim, params, rows, float(opts["lr"]))
                W1, b1, W2, b2 = params
                alive, layer_of, wd = keep_ids, layer_of[rows], wd[rows]
                ytr_m, yva_m = ytr_m[rows], yva_m[rows]
                mask = None if mask is None else mask[rows]
                same_layers = len(alive) == L and bool((layer_of == torch.arange(L)).all())
    modules: list[nn.Module] = []
    for m in range(Mt):
        k = sizes[m]
        first, second = nn.Linear(d, h), nn.Linear(h, k)
        with torch.no_grad():
            first.weight.copy_(best[0][m].T)
            first.bias.copy_(best[1][m, 0])
            second.weight.copy_(best[2][m, :, :k].T)
            second.bias.copy_(best[3][m, 0, :k])
        modules.append(nn.Sequential(first, nn.ReLU(), second).eval())
    acc_out = torch.cat(
        [best_acc[:M].view(L, G)] + [best_acc[M + j * L : M + (j + 1) * L, None] for j in range(len(extra))],
        1,
    )
    return modules, acc_out, epochs


def _pad_classes(p: Tensor, extra: int) -> Tensor:
    """Zero columns appended to the class axis (last) of an output-layer parameter."""
    return p if extra <= 0 else torch.cat([p, p.new_zeros(*p.shape[:-1], extra)], -1)


def _compact(
    optim: torch.optim.Optimizer, params: list[Tensor], rows: Tensor, lr: float
) -> tuple[list[Tensor], torch.optim.Optimizer]:
    """Keep only ``rows`` (models) of every batched parameter, with their Adam moments and step count."""
    kept = [p.detach()[rows].clone().requires_grad_() for p in params]
    fresh = _adam(kept, lr)
    for old, new in zip(params, kept, strict=True):
        state = optim.state.get(old)
        if state:
            fresh.state[new] = {
                k: (v[rows].clone() if v.ndim and v.shape[0] == old.shape[0] else v.clone())
                if isinstance(v, Tensor)
                else v
                for k, v in state.items()
            }
    return kept, fresh


def _adam(params: list[Tensor], lr: float) -> torch.optim.Optimizer:
    """Adam, fused (one kernel for every parameter: ~5× faster steps on CPU) where this torch supports it."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # older torch: no fused CPU kernel
        return torch.optim.Adam(params, lr=lr)


def _accuracy(logits: Tensor, y: Tensor) -> Tensor:
    """Accuracy over the sample axis (second to last) of ``[..., n, K]`` logits → ``[...]`` (float64)."""
    return (logits.argmax(-1) == y).double().mean(-1)


def _best_index(acc: Tensor) -> Tensor:
    """Per layer, the grid index of highest accuracy; ties go to the larger (more regularised) value."""
    G = acc.shape[1]
    return (G - 1) - acc.flip(1).argmax(1)


def _labels(y: Any, n: int) -> Tensor:
    arr = y.detach().cpu().numpy() if isinstance(y, Tensor) else np.asarray(y)
    if arr.ndim != 1:
        raise ProbeDataError(f"y must be 1-D integer labels [n], got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ProbeDataError(f"X has {n} rows (items) but y has {arr.shape[0]} labels; they must match")
    integral = arr.dtype.kind in "iub" or (
        arr.dtype.kind == "f" and bool(np.all(np.isfinite(arr))) and bool(np.all(arr == np.round(arr)))
    )
    if not integral:
        raise ProbeDataError(f"y must hold integer class indices 0..K-1, got dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise ProbeDataError(f"y must hold class indices >= 0, got {arr.min()}")
    return torch.as_tensor(arr.astype(np.int64))


def _rows(split: Any, n: int, name: str) -> np.ndarray:
    """Sorted row indices of a boolean mask ``[n]`` or an index array."""
    arr = split.detach().cpu().numpy() if isinstance(split, Tensor) else np.asarray(split)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ProbeDataError(f"{name} mask has shape {arr.shape}; expected ({n},) to match X's rows")
        idx = np.flatnonzero(arr)
    elif arr.dtype.kind in "iu" and arr.ndim == 1:
        idx = np.unique(arr)
        if idx.size and (idx[0] < 0 or idx[-1] >= n):
            raise ProbeDataError(f"{name} indices must lie in 0..{n - 1}")
    else:
        raise ProbeDataError(f"{name} must be a boolean mask [n] or a 1-D integer index array")
    if idx.size == 0:
        raise ProbeDataError(f"the {name} split is empty; give it at least one row")
    return idx


def _n_classes(y: Tensor, n_classes: int | None) -> int:
    top = int(y.max()) + 1 if y.numel() else 0
    if n_classes is None:
        return top
    if n_classes < 2 or n_classes < top:
        raise ProbeDataError(
            f"n_classes={n_classes} but labels go up to {top - 1} (and at least 2 are needed)"
        )
    return int(n_classes)


def _check_class_counts(y: Tensor, tr: np.ndarray, K: int) -> None:
    counts = torch.bincount(y[torch.as_tensor(tr)], minlength=K)
    present = torch.bincount(y, minlength=K) > 0
    if int((counts > 0).sum()) < 2:
        raise ProbeDataError("the training labels hold a single class; a probe needs at least 2 classes")
    rare = [k for k in range(K) if present[k] and counts[k] < 2]
    if rare:
        what = ", ".join(f"class {k} ({int(counts[k])} training example(s))" for k in rare[:5])
        raise ProbeDataError(
            f"{what}: every class needs at least 2 training examples; merge or drop rare classes, or resplit"
        )


def _grid(family: str, lambdas: Any) -> Tensor:
    default = {"lda": DEFAULT_SHRINKAGES, "mlp": DEFAULT_WEIGHT_DECAYS, "logistic": DEFAULT_L2}.get(
        family, DEFAULT_LAMBDAS
    )
    values = torch.as_tensor(default if lambdas is None else lambdas, dtype=torch.float64).reshape(-1)
    if values.numel() == 0 or not bool(torch.isfinite(values).all()) or bool((values < 0).any()):
        raise ConfigError(f"lambdas must be a non-empty list of finite values >= 0, got {lambdas!r}")
    if family == "lda" and bool((values > 1).any()):
        raise ConfigError("for the lda family, lambdas are shrinkage values in [0, 1]")
    return torch.unique(values)  # sorted ascending, duplicates dropped


def _sample_weight(class_weight: Any, ytr: Tensor, K: int, family: str) -> Tensor | None:
    if class_weight is None:
        return None
    if family in ("ridge", "lda"):
        raise ConfigError(f"class_weight is not supported for the {family} family (closed form)")
    counts = torch.bincount(ytr, minlength=K).double()
    if class_weight == "balanced":
        per_class = ytr.numel() / (K * counts.clamp_min(1.0))
    elif isinstance(class_weight, Mapping):
        per_class = torch.ones(K, dtype=torch.float64)
        for k, w in class_weight.items():
            if not 0 <= int(k) < K:
                raise ConfigError(f"class_weight names class {k!r}, outside 0..{K - 1}")
            per_class[int(k)] = float(w)
    else:
        raise ConfigError(f"class_weight must be None, 'balanced' or a dict, got {class_weight!r}")
    return per_class[ytr]
