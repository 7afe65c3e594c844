"""Shared work between a task and its control task: joint logistic fits, joint MLP training, joint MDL codes,
and the mixed-precision MLP trainer. Each shared path must give the numbers of the separate fits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layerscope._precision import resolve_precision
from layerscope.errors import ConfigError, DataError
from layerscope.probes import fit_layers, fit_logistic
from layerscope.probes._logistic import _fit_logistic
from layerscope.probes.layerwise import fit_layers_with_control, fit_mlp_tasks
from layerscope.probes.mdl import online_code, online_codes

pytestmark = pytest.mark.usefixtures("one_thread")


def _data(n: int = 300, d: int = 6, K: int = 3, L: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``X [L, n, d]`` float32 with class-dependent means per layer, labels ``[n]`` (every class present)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    y[:K] = np.arange(K)
    X = rng.normal(size=(L, K, d))[:, y] * np.linspace(0.5, 1.5, L)[:, None, None] + rng.normal(
        size=(L, n, d)
    )
    return X.astype(np.float32), y


def _control(n: int, K: int, seed: int = 1) -> np.ndarray:
    """Random control labels with ``K`` classes (every class present)."""
    yc = np.random.default_rng(seed).integers(0, K, n)
    yc[:K] = np.arange(K)
    return yc


def _splits(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    part = np.arange(n) % 5
    return part < 3, part == 3, part == 4


@pytest.mark.parametrize("Kc", [3, 2])
def test_logistic_with_control_equals_task_then_control(Kc: int) -> None:
    X, y = _data()
    X = X.astype(np.float64)  # fitted in float64: both runs converge to tol, so they agree closely
    yc = _control(300, Kc)
    train, val, _ = _splits(300)
    opts = {"family": "logistic", "train": train, "val": val, "tol": 1e-7, "max_iter": 500}
    task, control = fit_layers_with_control(X, y, yc, **opts)
    alone = fit_layers(X, y, **opts)
    alone_control = fit_layers(X, yc, layer_lambdas=alone.best_lambda, **opts)
    np.testing.assert_array_equal(task.best_lambda.numpy(), alone.best_lambda.numpy())
    np.testing.assert_array_equal(control.best_lambda.numpy(), task.best_lambda.numpy())  # H&L: same λ
    assert control.n_classes == Kc and control.predict_proba(X).shape == (3, 300, Kc)
    torch.testing.assert_close(task.predict_proba(X), alone.predict_proba(X), atol=2e-4, rtol=0)
    torch.testing.assert_close(control.predict_proba(X), alone_control.predict_proba(X), atol=2e-4, rtol=0)
    torch.testing.assert_close(control.val_accuracy_grid, alone_control.val_accuracy_grid)


def test_mlp_with_control_trains_both_groups_as_their_separate_runs() -> None:
    X, y = _data()
    yc = _control(300, 3)  # same K: the separate control run then draws the same minibatch order
    train, val, _ = _splits(300)
    opts = {
        "family": "mlp",
        "train": train,
        "val": val,
        "mlp_options": {"hidden_size": 8, "max_epochs": 12, "precision": "float32"},
    }
    task, control = fit_layers_with_control(X, y, yc, seed=3, **opts)
    alone = fit_layers(X, y, seed=3, **opts)
    alone_control = fit_layers(X, yc, seed=3, layer_lambdas=alone.best_lambda, **opts)
    torch.testing.assert_close(task.predict_proba(X), alone.predict_proba(X), atol=1e-5, rtol=0)
    torch.testing.assert_close(control.predict_proba(X), alone_control.predict_proba(X), atol=1e-5, rtol=0)
    assert (task.n_iter, control.n_iter) == (alone.n_iter, alone_control.n_iter)
    # a control task with fewer classes: its probes only ever score its own classes
    _, small = fit_layers_with_control(X, y, _control(300, 2), seed=3, **opts)
    assert small.predict_proba(X).shape == (3, 300, 2)


def test_mlp_tasks_on_shared_rows_train_as_their_separate_runs() -> None:
    """Several tasks (each with or without a control) in one batched model = one run per task."""
    X, y = _data(K=3)
    y2 = _control(300, 5, seed=7)  # another labelling of the same rows, more classes
    yc = _control(300, 2)
    train, val, _ = _splits(300)
    mlp = {"hidden_size": 8, "max_epochs": 12, "precision": "float32"}
    joint = fit_mlp_tasks(
        X, [(y2, None, None, None), (y, None, yc, None)], train=train, val=val, seed=3, mlp_options=mlp
    )
    opts = {"family": "mlp", "train": train, "val": val, "seed": 3, "mlp_options": mlp}
    alone2 = fit_layers(X, y2, **opts)
    task, control = fit_layers_with_control(X, y, yc, **opts)
    assert joint[0][1] is None and joint[1][1] is not None
    for got, want in ((joint[0][0], alone2), (joint[1][0], task), (joint[1][1], control)):
        assert got.n_classes == want.n_classes
        torch.testing.assert_close(got.predict_proba(X), want.predict_proba(X), atol=1e-5, rtol=0)
        torch.testing.assert_close(got.val_accuracy, want.val_accuracy)
        assert got.n_iter == want.n_iter  # each label set early-stops on its own
    # groups stopped at different epochs, so the batch was compacted mid-run: that path is covered too
    assert len({joint[0][0].n_iter, joint[1][0].n_iter, joint[1][1].n_iter}) > 1
    # a configuration with nothing to share fits the tasks one after the other
    two = {**mlp, "n_layers": 2, "hidden_size": 4, "max_epochs": 3}
    ((fallback, none),) = fit_mlp_tasks(
        X, [(y, None, None, None)], train=train, val=val, seed=3, mlp_options=two
    )
    ref = fit_layers(X, y, **{**opts, "mlp_options": two})
    assert none is None
    torch.testing.assert_close(fallback.predict_proba(X), ref.predict_proba(X))
    with pytest.raises(ConfigError, match="at least one task"):
        fit_mlp_tasks(X, [], train=train, val=val)
    with pytest.raises(ConfigError, match="unknown mlp_options"):
        fit_mlp_tasks(
            X, [(y, None, None, None), (y2, None, None, None)], train=train, val=val, mlp_options={"width": 3}
        )
    with pytest.raises(DataError, match=r"300 rows .* 299 labels"):
        fit_mlp_tasks(X, [(y, None, None, None), (y2[:299], None, None, None)], train=train, val=val)
    with pytest.raises(DataError, match="overlap"):
        fit_mlp_tasks(X, [(y, None, None, None), (y2, None, None, None)], train=train, val=train)


def test_with_control_falls_back_to_separate_fits_where_nothing_is_shared() -> None:
    X, y = _data()
    yc = _control(300, 2)
    train, val, _ = _splits(300)
    task, control = fit_layers_with_control(X, y, yc, family="ridge", train=train, val=val)
    alone = fit_layers(X, yc, family="ridge", train=train, val=val, layer_lambdas=task.best_lambda)
    torch.testing.assert_close(control.predict_proba(X), alone.predict_proba(X))


def test_with_control_rejects_bad_control_labels() -> None:
    X, y = _data()
    train, val, _ = _splits(300)
    with pytest.raises(DataError, match="single class"):
        fit_layers_with_control(X, y, np.zeros(300, int), train=train, val=val)
    with pytest.raises(DataError, match=r"300 rows .* 299 labels"):
        fit_layers_with_control(X, y, _control(299, 2), train=train, val=val)
    with pytest.raises(DataError, match="n_classes=2"):
        fit_layers_with_control(X, y, _control(300, 3), n_classes_control=2, train=train, val=val)


def test_label_sets_fit_each_column_as_its_own_problem() -> None:
    X, y = _data(n=200, L=2)
    X = X.astype(np.float64)
    yc = _control(200, 2)
    lam = torch.tensor([[1.0, 3.0], [0.5, 0.5]], dtype=torch.float64)
    W, b = fit_logistic(X, y, l2=lam[:, 0], n_classes=3, tol=1e-9, max_iter=500)
    Wc, bc = fit_logistic(X, yc, l2=lam[:, 1], n_classes=2, tol=1e-9, max_iter=500)
    Wj, bj, _ = _fit_logistic(
        X, None, l2=lam, n_classes=3, tol=1e-9, max_iter=500, label_sets=np.stack([y, yc]), set_classes=[3, 2]
    )
    Xt = torch.from_numpy(X)

    def proba(W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # the intercept has a gauge: compare these
        return torch.softmax(Xt @ W + b[:, None, :], -1)

    torch.testing.assert_close(proba(Wj[:, 0], bj[:, 0]), proba(W, b), atol=1e-6, rtol=0)
    torch.testing.assert_close(proba(Wj[:, 1, :, :2], bj[:, 1, :2]), proba(Wc, bc), atol=1e-6, rtol=0)
    assert float(Wj[:, 1, :, 2].abs().max()) == 0.0  # the masked class never moves
    with pytest.raises(DataError, match="label_sets must be"):
        _fit_logistic(X, None, l2=lam, n_classes=3, label_sets=np.stack([y]), set_classes=[3])
    with pytest.raises(DataError, match="label set g"):
        _fit_logistic(X, None, l2=lam, n_classes=3, label_sets=np.stack([y, y]), set_classes=[3, 2])


def test_joint_online_codes_match_separate_codes() -> None:
    g = torch.Generator().manual_seed(0)
    n, d = 1500, 6
    y = torch.randint(0, 3, (n,), generator=g)
    yc = torch.randint(0, 2, (n,), generator=g)
    signal = torch.nn.functional.one_hot(y, 3).float() @ torch.randn(3, d, generator=g) * 2
    X = torch.stack([signal + torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)])
    lam, exact = torch.tensor([1.0, 10.0]), {"precision": "float32"}
    task, control = online_codes(X, [y, yc], n_classes=[3, 2], l2=lam, seed=2, **exact)
    alone = online_code(X, y, n_classes=3, l2=lam, seed=2, **exact)
    alone_control = online_code(X, yc, n_classes=2, l2=lam, seed=2, **exact)
    # Blocks 1-3 are fitted on 2-6 items: a class absent from them has no finite intercept (the fit runs
    # off towards -inf until it stops), so those bits depend on the path; from 12 items on they agree.
    np.testing.assert_allclose(task.block_bits[:, 4:], alone.block_bits[:, 4:], rtol=1e-3, atol=0.02)
    np.testing.assert_allclose(
        control.block_bits[:, 4:], alone_control.block_bits[:, 4:], rtol=1e-3, atol=0.02
    )
    np.testing.assert_array_equal(task.block_sizes, alone.block_sizes)
    assert control.uniform_bits == pytest.approx(n)  # its own K: log2(2) bits per item
    (single,) = online_codes(X, [y], n_classes=[3], l2=lam, seed=2, **exact)
    np.testing.assert_array_equal(single.block_bits, alone.block_bits)
    # bfloat16 products (the sweep's default where fast) change the blocks that are not path-dependent by
    # hundredths of a bit
    rounded = online_code(X, y, n_classes=3, l2=lam, seed=2, precision="bfloat16")
    np.testing.assert_allclose(rounded.block_bits[:, 4:], alone.block_bits[:, 4:], rtol=1e-2, atol=0.05)
    with pytest.raises(ConfigError, match="one n_classes per label"):
        online_codes(X, [y, yc], n_classes=[3], seed=2)
    with pytest.raises(ConfigError, match="at least 2 classes"):
        online_codes(X, [y, yc], n_classes=[3, 1], seed=2)


def test_mixed_precision_mlp_learns_as_well_as_float32() -> None:
    X, y = _data(n=1500, K=4)
    train, val, test = _splits(1500)
    accs = {}
    for precision in ("float32", "bfloat16"):
        options = {"hidden_size": 16, "batch_size": 32, "precision": precision}
        fit = fit_layers(X, y, family="mlp", train=train, val=val, mlp_options=options)
        accs[precision] = fit.accuracy(X[:, test], y[test]).numpy()
    assert accs["float32"].min() > 0.5  # well above chance (0.25): the check below is not vacuous
    np.testing.assert_allclose(accs["bfloat16"], accs["float32"], atol=0.05)
    assert resolve_precision("auto") in (torch.float32, torch.bfloat16)
    with pytest.raises(ConfigError, match="precision"):
        fit_layers(X, y, family="mlp", train=train, val=val, mlp_options={"precision": "float8"})


def test_bfloat16_logistic_products_reach_the_float32_optimum_closely() -> None:
    """Mixed precision (bfloat16 products, float32 everything else) moves the logistic optimum very little.

    The objective is evaluated exactly (float32) at both solutions; the rounded fit may not be better than the
    float32 optimum by more than round-off, and not worse by more than 1e-3 of it.
    """
    from layerscope.probes._logistic import logistic_objective

    X, y = _data(n=2000, K=4)
    train, val, test = _splits(2000)
    fits = {
        p: fit_layers(X, y, family="logistic", train=train, val=val, precision=p, tol=1e-6)
        for p in ("float32", "bfloat16")
    }
    exact, rounded = fits["float32"], fits["bfloat16"]
    torch.testing.assert_close(rounded.best_lambda, exact.best_lambda)
    Xs = exact._standardised(X[:, train])
    lam = exact.best_lambda
    f32 = logistic_objective(Xs, y[train], exact.weight, exact.bias, l2=lam)
    f16 = logistic_objective(Xs, y[train], rounded.weight, rounded.bias, l2=lam)
    assert bool((f16 >= f32 * (1 - 1e-5)).all()) and bool((f16 <= f32 * (1 + 1e-3)).all())
    acc32, acc16 = exact.accuracy(X[:, test], y[test]), rounded.accuracy(X[:, test], y[test])
    assert float(acc32.min()) > 0.5  # a real signal: the comparison is not between two chance-level fits
    torch.testing.assert_close(acc16, acc32, atol=2 / int(test.sum()), rtol=0)
    W, b = fit_logistic(Xs, y[train], l2=lam, n_classes=4, precision="bfloat16", precondition=True)
    torch.testing.assert_close(
        torch.softmax(Xs @ W + b[:, None], -1), exact.predict_proba(X[:, train]), atol=0.02, rtol=0
    )
    # "auto" keeps fits this small in float32 (the bfloat16 copy would cost more than it saves): bit-identical
    auto = fit_layers(X, y, family="logistic", train=train, val=val, precision="auto", tol=1e-6)
    assert torch.equal(auto.weight, exact.weight) and torch.equal(auto.bias, exact.bias)
    with pytest.raises(ConfigError, match="precision"):
        fit_layers(X, y, family="logistic", train=train, val=val, precision="float8")
    with pytest.raises(ConfigError, match="precision"):
        fit_logistic(Xs, y[train], l2=1.0, n_classes=4, precision="half")


def test_warm_start_scale_picks_the_loss_minimising_scale_on_a_row_subsample() -> None:
    from layerscope.probes import ridge_path, warm_start_scale
    from layerscope.probes.solvers import SufficientStats

    X, y = _data(n=3000, K=3, L=2)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    W, b = ridge_path(SufficientStats.from_arrays(Xt, yt, n_classes=3), [1.0, 100.0], coding="onehot")
    W, b = W.float(), b.float()
    full = warm_start_scale(Xt, yt, W, b, max_rows=10_000)
    sub = warm_start_scale(Xt, yt, W, b, max_rows=1_000)  # every third row
    torch.testing.assert_close(sub[0], full[0])
    torch.testing.assert_close(sub[1], full[1])
    c = (full[0] / W).flatten(2).nanmedian(-1).values  # [L, G] the chosen scales
    assert bool((c > 1).all())  # ridge scores are too flat to be logits: the check is not vacuous
    for layer in range(2):  # the chosen scale is the best of the candidates on the full data
        losses = [
            torch.nn.functional.cross_entropy(Xt[layer] @ (s * W[layer, 0]) + s * b[layer, 0], yt)
            for s in (1, 2, 4, 8, 16, 32)
        ]
        assert float(c[layer, 0]) == (1, 2, 4, 8, 16, 32)[int(torch.stack(losses).argmin())]
