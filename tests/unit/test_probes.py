"""Probe solvers, estimators and fit_layers: equality with scikit-learn, batching, additivity, errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression, Ridge, RidgeClassifier
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from layerscope.errors import ConfigError, DataError, LayerscopeError
from layerscope.probes import (
    LDAProbe,
    LinearProbe,
    MLPProbe,
    RidgeProbe,
    RidgeRegressionProbe,
    SufficientStats,
    fit_layers,
    fit_logistic,
    lda,
    lda_path,
    logistic_objective,
    predict_logits,
    ridge_path,
)


def _blobs(n: int = 240, d: int = 6, K: int = 3, L: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``X [L, n, d]`` float64 with class-dependent means (a different shift per layer), labels ``[n]``."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    y[:K] = np.arange(K)
    centres = rng.normal(size=(L, K, d))
    X = centres[:, y] * np.linspace(0.5, 1.5, L)[:, None, None] + rng.normal(size=(L, n, d))
    return X * rng.uniform(0.5, 3.0, size=(L, 1, d)) + rng.normal(size=(L, 1, d)), y


# ---------------------------------------------------------------------------------------------- statistics


def test_stats_are_additive_and_streamable() -> None:
    X, y = _blobs(L=3, n=101)
    whole = SufficientStats.from_arrays(X, y)
    a = SufficientStats.from_arrays(X[:, :40], y[:40], n_classes=3)
    b = SufficientStats.from_arrays(X[:, 40:], y[40:], n_classes=3)
    streamed = (
        SufficientStats.zeros(3, X.shape[2], n_classes=3).update(X[:, :70], y[:70]).update(X[:, 70:], y[70:])
    )
    for other in (a + b, SufficientStats.merge([a, b]), streamed):
        assert other.n == whole.n
        for field in ("counts", "class_sums", "xtx", "sum_x", "xty", "sum_y"):
            torch.testing.assert_close(getattr(other, field), getattr(whole, field), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(whole.xtx[1], torch.from_numpy(X[1].T @ X[1]))
    torch.testing.assert_close(whole.counts, torch.bincount(torch.from_numpy(y)).double())


def test_ridge_path_one_eigh_equals_direct_solves() -> None:
    X, y = _blobs(L=2)
    stats = SufficientStats.from_arrays(X, y)
    lambdas = [0.01, 1.0, 30.0]
    W, b = ridge_path(stats, lambdas, coding="onehot")
    Y = np.eye(3)[y]
    for layer in range(2):
        Xc = X[layer] - X[layer].mean(0)
        for g, lam in enumerate(lambdas):
            direct = np.linalg.solve(Xc.T @ Xc + lam * np.eye(X.shape[2]), Xc.T @ (Y - Y.mean(0)))
            np.testing.assert_allclose(W[layer, g].numpy(), direct, rtol=1e-9, atol=1e-11)
            np.testing.assert_allclose(b[layer, g].numpy(), Y.mean(0) - X[layer].mean(0) @ direct, atol=1e-10)


@pytest.mark.parametrize("K", [2, 4])
def test_ridge_probe_equals_ridge_classifier(K: int) -> None:
    X, y = _blobs(K=K)
    ours = RidgeProbe(alpha=3.0).fit(X[0], y)
    ref = RidgeClassifier(alpha=3.0).fit(X[0], y)
    # sklearn 1.9 returns a 1-D coef_ for two classes; ours keeps LogisticRegression's [1, d]
    np.testing.assert_allclose(ours.coef_.ravel(), ref.coef_.ravel(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.intercept_.ravel(), np.ravel(ref.intercept_), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.decision_function(X[0]), ref.decision_function(X[0]), atol=1e-10)


@pytest.mark.parametrize("two_d", [False, True])
def test_ridge_regression_equals_ridge(two_d: bool) -> None:
    X, _ = _blobs()
    rng = np.random.default_rng(1)
    target = X[0] @ rng.normal(size=(6, 2)) + rng.normal(size=(240, 2))
    t = target if two_d else target[:, 0]
    ours = RidgeRegressionProbe(alpha=2.0).fit(torch.from_numpy(X[0]), t)
    ref = Ridge(alpha=2.0).fit(X[0], t)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.predict(X[0]), ref.predict(X[0]), atol=1e-9)
    assert ours.score(X[0], t) == pytest.approx(ref.score(X[0], t))


@pytest.mark.parametrize(("K", "shrinkage"), [(3, None), (3, 0.3), (2, 0.1)])
def test_lda_equals_sklearn(K: int, shrinkage: float | None) -> None:
    X, y = _blobs(K=K)
    ours = LDAProbe(shrinkage=shrinkage).fit(X[0], y)
    ref = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=shrinkage).fit(X[0], y)
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.intercept_, ref.intercept_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.predict_proba(X[0]), ref.predict_proba(X[0]), atol=1e-10)


def test_lda_auto_shrinkage_close_to_sklearn() -> None:
    X, y = _blobs(n=400, d=20)
    ours = LDAProbe().fit(X[0], y)
    ref = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(X[0], y)
    assert np.mean(ours.predict(X[0]) == ref.predict(X[0])) > 0.97


def test_lda_path_batched_equals_per_layer_and_scalar() -> None:
    X, y = _blobs(L=3)
    stats = SufficientStats.from_arrays(X, y)
    W, b = lda_path(stats, [0.0, 0.2])
    for layer in range(3):
        single = SufficientStats.from_arrays(X[layer], y)
        W1, b1 = lda(single, 0.2)
        torch.testing.assert_close(W[layer, 1], W1[0])
        torch.testing.assert_close(b[layer, 1], b1[0])


# ---------------------------------------------------------------------------------------------- logistic


@pytest.mark.parametrize("C", [0.05, 1.0])
def test_fit_logistic_equals_sklearn(C: float) -> None:
    X, y = _blobs()
    Xs = StandardScaler().fit_transform(X[0])
    W, b = fit_logistic(Xs, y, l2=1 / C, n_classes=3, tol=1e-10, max_iter=500)
    ref = LogisticRegression(C=C, tol=1e-10, max_iter=10_000).fit(Xs, y)
    np.testing.assert_allclose(W[0].numpy().T, ref.coef_, atol=1e-6)
    np.testing.assert_allclose(b[0].numpy(), ref.intercept_, atol=1e-6)
    proba = torch.softmax(predict_logits(Xs, W, b), -1)[0].numpy()
    np.testing.assert_allclose(proba, ref.predict_proba(Xs), atol=1e-7)


@pytest.mark.parametrize(("K", "class_weight"), [(3, None), (2, None), (3, "balanced")])
def test_linear_probe_equals_logistic_regression(K: int, class_weight: str | None) -> None:
    X, y = _blobs(K=K)
    ours = LinearProbe(C=0.5, standardize=False, class_weight=class_weight, tol=1e-10, max_iter=500).fit(
        X[0], y
    )
    ref = LogisticRegression(C=0.5, class_weight=class_weight, tol=1e-10, max_iter=10_000).fit(X[0], y)
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=1e-5)
    np.testing.assert_allclose(ours.predict_proba(X[0]), ref.predict_proba(X[0]), atol=1e-6)
    std = LinearProbe(C=0.5, tol=1e-10, max_iter=500).fit(X[0], y)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, tol=1e-10, max_iter=10_000)).fit(X[0], y)
    np.testing.assert_allclose(std.predict_proba(X[0]), pipe.predict_proba(X[0]), atol=1e-6)


@pytest.mark.parametrize("K", [2, 3])
def test_elastic_net_equals_saga(K: int) -> None:
    X, y = _blobs(d=8, K=K)
    Xs = StandardScaler().fit_transform(X[0])
    ours = LinearProbe(C=0.2, penalty="elasticnet", l1_ratio=0.6, standardize=False, tol=1e-9).fit(Xs, y)
    ref = LogisticRegression(C=0.2, l1_ratio=0.6, solver="saga", tol=1e-9, max_iter=100_000).fit(Xs, y)
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=1e-4)
    assert np.array_equal(ours.coef_ == 0, ref.coef_ == 0)
    assert (ours.coef_ == 0).any()


def test_fit_logistic_batched_equals_per_layer_loop() -> None:
    X, y = _blobs(L=3)
    opts = {"n_classes": 3, "tol": 1e-10, "max_iter": 500, "precondition": True}
    W, b = fit_logistic(X, y, l2=torch.tensor([0.5, 2.0, 8.0]), **opts)
    for layer, l2 in enumerate([0.5, 2.0, 8.0]):
        W1, b1 = fit_logistic(X[layer], y, l2=l2, **opts)
        torch.testing.assert_close(W[layer], W1[0], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(b[layer], b1[0], atol=1e-6, rtol=1e-6)


def test_lambda_grid_in_one_fit_equals_separate_fits() -> None:
    X, y = _blobs(L=2)
    grid = torch.tensor([[0.1, 1.0, 10.0], [0.3, 3.0, 30.0]], dtype=torch.float64)
    W, b = fit_logistic(X, y, l2=grid, n_classes=3, tol=1e-10, max_iter=500, precondition=True)
    assert W.shape == (2, 3, 6, 3) and b.shape == (2, 3, 3)
    for g in range(3):
        Wg, bg = fit_logistic(X, y, l2=grid[:, g], n_classes=3, tol=1e-10, max_iter=500, precondition=True)
        torch.testing.assert_close(W[:, g], Wg, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(b[:, g], bg, atol=1e-5, rtol=1e-5)


def test_logistic_converges_to_a_stationary_point_and_loss_decreases() -> None:
    X, y = _blobs(L=2)
    Xt = torch.from_numpy(X)
    zero_W, zero_b = torch.zeros(2, 6, 3, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64)
    start = logistic_objective(Xt, y, zero_W, zero_b, l2=1.0)
    losses = []
    for it in (1, 3, 10, 200):
        W, b = fit_logistic(Xt, y, l2=1.0, n_classes=3, max_iter=it, tol=1e-12, precondition=True)
        losses.append(logistic_objective(Xt, y, W, b, l2=1.0))
    assert bool((losses[0] < start).all())
    assert all(bool((later <= earlier + 1e-9).all()) for earlier, later in itertools.pairwise(losses))
    W, b = W.requires_grad_(), b.requires_grad_()
    logistic_objective(Xt, y, W, b, l2=1.0).sum().backward()
    assert W.grad is not None and b.grad is not None
    n = X.shape[1]  # the solver's tolerance applies to the objective divided by n
    assert float(W.grad.abs().max()) / n < 1e-7 and float(b.grad.abs().max()) / n < 1e-7


def test_warm_start_reaches_the_same_optimum() -> None:
    X, y = _blobs(L=2)
    cold = fit_logistic(X, y, l2=2.0, n_classes=3, tol=1e-11, max_iter=500)
    stats = SufficientStats.from_arrays(X, y)
    W0, b0 = ridge_path(stats, [2.0], coding="onehot")
    warm = fit_logistic(X, y, l2=2.0, n_classes=3, tol=1e-11, max_iter=500, init=(W0[:, 0], b0[:, 0]))
    torch.testing.assert_close(warm[0], cold[0], atol=1e-6, rtol=1e-6)


# ---------------------------------------------------------------------------------------------- MLP


def test_rank_constrained_linear_probe_has_rank_at_most_r() -> None:
    X, y = _blobs(K=5, d=10, n=300)
    probe = MLPProbe(hidden_size=0, rank=2, max_epochs=5, random_state=0).fit(X[0], y)
    assert np.linalg.matrix_rank(probe.coef_, tol=1e-8) <= 2
    full = MLPProbe(hidden_size=0, max_epochs=5, random_state=0).fit(X[0], y)
    assert np.linalg.matrix_rank(full.coef_, tol=1e-8) > 2
    np.testing.assert_allclose(full.decision_function(X[0]), X[0] @ full.coef_.T + full.intercept_, atol=1e-8)


def test_mlp_is_deterministic_with_a_seed() -> None:
    X, y = _blobs()
    a = MLPProbe(hidden_size=16, max_epochs=5, dropout=0.2, random_state=3).fit(X[0], y)
    b = MLPProbe(hidden_size=16, max_epochs=5, dropout=0.2, random_state=3).fit(X[0], y)
    c = MLPProbe(hidden_size=16, max_epochs=5, dropout=0.2, random_state=4).fit(X[0], y)
    np.testing.assert_array_equal(a.predict_proba(X[0]), b.predict_proba(X[0]))
    assert not np.allclose(a.predict_proba(X[0]), c.predict_proba(X[0]))
    assert a.loss_curve_[-1] < a.loss_curve_[0]


# ---------------------------------------------------------------------------------------------- estimators


def test_estimators_accept_torch_and_work_in_grid_search() -> None:
    X, y = _blobs()
    Xt, yt = torch.from_numpy(X[0]), torch.from_numpy(y)
    probe = LinearProbe().fit(Xt, yt)
    np.testing.assert_array_equal(probe.predict(Xt), LinearProbe().fit(X[0], y).predict(X[0]))
    search = GridSearchCV(
        make_pipeline(StandardScaler(), RidgeProbe()), {"ridgeprobe__alpha": [0.1, 10.0]}, cv=3
    )
    search.fit(X[0], y)
    assert search.best_score_ > 0.5
    assert LDAProbe().fit(X[0], y).score(X[0], y) > 0.5


def test_estimator_errors_are_layerscope_errors() -> None:
    X, y = _blobs()
    with pytest.raises(DataError, match="1 class"):
        LinearProbe().fit(X[0], np.zeros(240))
    with pytest.raises(ConfigError, match="penalty"):
        LinearProbe(penalty="l1").fit(X[0], y)


# ---------------------------------------------------------------------------------------------- fit_layers


def _splits(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    part = np.arange(n) % 5
    return part < 3, part == 3, part == 4


@pytest.mark.parametrize("family", ["logistic", "ridge", "lda"])
def test_fit_layers_batched_equals_per_layer(family: str) -> None:
    X, y = _blobs(L=3, n=300, K=3)
    train, val, _ = _splits(300)
    opts = {"family": family, "train": train, "val": val, "tol": 1e-7, "max_iter": 300}
    fit = fit_layers(X, y, lambdas=None if family == "lda" else [0.1, 10.0], **opts)
    probs = fit.predict_proba(X).numpy()
    assert probs.shape == (3, 300, 3)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    for layer in range(3):
        one = fit_layers(X[layer], y, lambdas=fit.lambdas, **opts)
        assert float(one.best_lambda[0]) == float(fit.best_lambda[layer])
        np.testing.assert_allclose(one.predict_proba(X[layer]).numpy()[0], probs[layer], atol=1e-5)


def test_fit_layers_picks_lambda_on_validation_and_matches_sklearn() -> None:
    X, y = _blobs(L=2, n=300, d=8)
    train, val, test = _splits(300)
    fit = fit_layers(
        torch.from_numpy(X).float(), y, train=train, val=val, lambdas=[0.01, 1.0, 100.0], tol=1e-7,
        precision="float32",
    )  # fmt: skip
    scaler = [StandardScaler().fit(X[i][train]) for i in range(2)]
    for layer in range(2):
        Xs = scaler[layer].transform(X[layer])
        accs = [
            LogisticRegression(C=1 / lam, tol=1e-8, max_iter=5000)
            .fit(Xs[train], y[train])
            .score(Xs[val], y[val])
            for lam in [0.01, 1.0, 100.0]
        ]
        np.testing.assert_allclose(fit.val_accuracy_grid[layer].numpy(), accs, atol=1.5 / val.sum())
        ref = LogisticRegression(C=1 / float(fit.best_lambda[layer]), tol=1e-8, max_iter=5000)
        ref.fit(Xs[train], y[train])
        ours = fit.predict_proba(X[:, test])[layer].numpy()
        np.testing.assert_allclose(ours, ref.predict_proba(Xs[test]), atol=2e-3)
    assert fit.coef is not None and fit.intercept is not None
    raw = predict_logits(torch.from_numpy(X).float(), fit.coef, fit.intercept)
    torch.testing.assert_close(torch.softmax(raw, -1), fit.predict_proba(X), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("family", ["logistic", "ridge", "lda", "mlp"])
def test_fixed_layer_lambdas_equal_a_one_value_fit_per_layer(family: str) -> None:
    X, y = _blobs(L=3, n=300, K=3)
    train, val, _ = _splits(300)
    lam = [0.05, 0.4, 0.05] if family == "lda" else [0.1, 10.0, 0.1]
    opts = {"family": family, "train": train, "val": val, "tol": 1e-7, "max_iter": 300}
    if family == "mlp":
        opts["mlp_options"] = {"hidden_size": 8, "max_epochs": 3}
    fit = fit_layers(X, y, layer_lambdas=lam, lambdas=[123.0], **opts)
    np.testing.assert_allclose(fit.best_lambda.numpy(), lam)
    if family == "mlp":
        return  # one batched MLP run: its layers are not separate runs with their own seeds
    probs = fit.predict_proba(X).numpy()
    for layer in range(3):
        one = fit_layers(X[layer], y, lambdas=[lam[layer]], **opts)
        np.testing.assert_allclose(one.predict_proba(X[layer]).numpy()[0], probs[layer], atol=1e-5)
    with pytest.raises(ConfigError, match="one value per layer"):
        fit_layers(X, y, layer_lambdas=lam[:2], **opts)


def test_fit_layers_mlp_family() -> None:
    X, y = _blobs(L=2, n=200)
    train, val, _ = _splits(200)
    fit = fit_layers(
        X, y, family="mlp", train=train, val=val, mlp_options={"hidden_size": 8, "max_epochs": 5}
    )
    assert fit.predict_proba(X).shape == (2, 200, 3)
    assert fit.val_accuracy.shape == (2,)


def test_fit_layers_rejects_bad_input() -> None:
    X, y = _blobs(L=2, n=100)
    train, val, _ = _splits(100)
    cases: list[tuple[dict, str]] = [
        ({"y": np.zeros(100, int)}, "single class"),
        ({"y": np.where(np.arange(100) == 0, 3, y)}, "class 3 \\(1 training"),
        ({"X": np.where(np.arange(6) == 2, np.nan, X)}, "NaN or inf"),
        ({"X": np.where(np.arange(6) == 2, np.inf, X)}, "NaN or inf"),
        ({"train": np.zeros(100, bool)}, "train split is empty"),
        ({"val": np.array([], dtype=int)}, "val split is empty"),
        ({"y": y[:-1]}, "100 rows .* 99 labels"),
        ({"X": X[..., None]}, "X must be"),
        ({"y": y[:, None]}, "1-D"),
        ({"val": train}, "overlap"),
        ({"train": train[:-1]}, "mask has shape"),
        ({"y": y + 0.5}, "integer"),
    ]
    for change, message in cases:
        args = {"X": X, "y": y, "train": train, "val": val, **change}
        with pytest.raises(DataError, match=message):
            fit_layers(args.pop("X"), args.pop("y"), **args)
    with pytest.raises(ConfigError, match="family"):
        fit_layers(X, y, family="svm", train=train, val=val)
    fit = fit_layers(X, y, family="ridge", train=train, val=val)
    with pytest.raises(LayerscopeError, match="features"):
        fit.predict_proba(X[..., :3])
