"""Sparse probing core: rankings, batched probes and metrics against scikit-learn, small-k search, bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from layerscope.neurons import (
    GURNEE_KS,
    NeuronError,
    NeuronStats,
    SparseProbeResult,
    binary_metrics,
    fisher,
    rank_scores,
    small_k_search,
    sparse_probe,
    token_features,
)
from layerscope.neurons._fit import fit_binary
from layerscope.neurons.search import class_moments


def _planted(n=1200, d=48, L=2, seed=0):
    """Layer 0: noise. Layer 1: neuron 7 carries the label alone; neurons 11, 23, 31 only jointly."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    X = rng.normal(size=(L, n, d)).astype(np.float32)
    z = 2.0 * y - 1.0
    single, (a, b, c) = (7, (11, 23, 31)) if d > 31 else (0, (d - 3, d - 2, d - 1))
    X[1, :, single] += 4.0 * z  # a dedicated neuron
    u, v, w = rng.normal(size=(3, n)) * 2.0
    X[0, :, a] = u + v + 0.5 * z  # a sparse combination of 3: shared noise cancels only in the sum
    X[0, :, b] = -u + w + 0.5 * z
    X[0, :, c] = -v - w + 0.5 * z
    return X, y


def test_planted_single_neuron_recovered_at_k1():
    X, y = _planted()
    res = sparse_probe(X, y, ks=[1, 2, 4])
    row = res.frame[(res.frame.layer == 1) & (res.frame.k == 1)].iloc[0]
    assert row.neurons == "7"
    assert row.f1 == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["mean_diff", "search", "telescopic", "f_stat"])
def test_planted_combination_of_three_recovered_at_k3(method):
    X, y = _planted()
    res = sparse_probe(X, y, ks=[1, 2, 3, 8], method=method)
    f = res.frame[res.frame.layer == 0].set_index("k")
    assert set(f.loc[3, "neurons"].split(",")) == {"11", "23", "31"}
    assert f.loc[3, "f1"] == pytest.approx(1.0)
    assert f.loc[1, "f1"] < 0.9 and f.loc[2, "f1"] < 0.95  # no single neuron or pair carries it


def test_small_k_search_matches_exhaustive_for_k_le_2():
    rng = np.random.default_rng(1)
    n, d = 800, 24
    y = (rng.random(n) < 0.4).astype(np.int64)
    z = 2.0 * y - 1.0
    X = rng.normal(size=(n, d))
    u = rng.normal(size=n) * 3
    X[:, 3] = u + 0.6 * z  # best pair {3, 17}: the shared noise cancels in the difference
    X[:, 17] = u - 0.4 * z
    X[:, 5] += 0.8 * z  # the best single neuron by mean difference, not part of the best pair
    Xt = torch.tensor(X[None], dtype=torch.float32)
    cand = torch.arange(d)[None]
    found = small_k_search(Xt, torch.tensor(y), [1, 2], candidates=cand)
    delta, cov = class_moments(Xt, torch.tensor(y), cand)
    for k in (1, 2):  # exhaustive reference: every subset of size k, scored one at a time in numpy
        best, best_j = None, -np.inf
        for sub in itertools.combinations(range(d), k):
            S = cov[0].numpy()[np.ix_(sub, sub)]
            eps = 1e-6 * np.diag(cov[0].numpy()).mean()
            dl = delta[0].numpy()[list(sub)]
            j = float(dl @ np.linalg.solve(S + eps * np.eye(k), dl))
            if j > best_j:
                best, best_j = set(sub), j
        assert set(found[k][0].tolist()) == best
    assert set(found[2][0].tolist()) == {3, 17}
    # fisher() scores agree with the numpy reference on arbitrary subsets
    subs = torch.tensor([[[3, 17], [5, 3], [0, 1]]])
    J = fisher(delta, cov, subs)
    for c in range(3):
        sub = subs[0, c].tolist()
        S = cov[0].numpy()[np.ix_(sub, sub)] + 1e-6 * np.diag(cov[0].numpy()).mean() * np.eye(2)
        dl = delta[0].numpy()[sub]
        assert float(J[0, c]) == pytest.approx(float(dl @ np.linalg.solve(S, dl)), rel=1e-8)


def test_search_at_least_mean_difference_at_every_small_k():
    rng = np.random.default_rng(2)
    n, d = 1500, 64
    y = (rng.random(n) < 0.3).astype(np.int64)
    z = 2.0 * y - 1.0
    X = rng.normal(size=(2, n, d)).astype(np.float32)
    for layer in range(2):
        noise = rng.normal(size=(6, n)) * 2
        for j in range(12):  # neurons sharing noise with different signs: mean difference is a poor guide
            X[layer, :, 2 * j] = noise[j % 6] * (1 if j < 6 else -1) + (0.3 + 0.05 * j) * z
        X[layer, :, 40:46] += 0.7 * z[:, None]  # individually strong but redundant neurons
    ks = [k for k in GURNEE_KS if k <= 16]
    res = sparse_probe(X, y, ks=ks, method=["mean_diff", "search"])
    t = res.frame.pivot_table(index=["layer", "k"], columns="method", values="f1")
    assert (t["search"] >= t["mean_diff"] - 1e-12).all(), t
    assert (t["search"] > t["mean_diff"] + 0.02).any()


def test_metrics_match_sklearn():
    from sklearn import metrics as skm

    rng = np.random.default_rng(3)
    y = (rng.random(300) < 0.3).astype(np.int64)
    s = np.round(rng.normal(size=(4, 300)) + y, 1)  # rounding makes ties for AUROC
    m = binary_metrics(torch.tensor(s), torch.tensor(y))
    for b in range(4):
        pred = (s[b] > 0).astype(int)
        assert float(m["f1"][b]) == pytest.approx(skm.f1_score(y, pred))
        assert float(m["precision"][b]) == pytest.approx(skm.precision_score(y, pred))
        assert float(m["recall"][b]) == pytest.approx(skm.recall_score(y, pred))
        assert float(m["mcc"][b]) == pytest.approx(skm.matthews_corrcoef(y, pred))
        assert float(m["auroc"][b]) == pytest.approx(skm.roc_auc_score(y, s[b]))
        assert float(m["accuracy"][b]) == pytest.approx(skm.accuracy_score(y, pred))
        assert float(m["balanced_accuracy"][b]) == pytest.approx(skm.balanced_accuracy_score(y, pred))


def test_subset_probe_matches_sklearn_balanced_logistic():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(4)
    X, y = _planted(n=600, d=40, seed=4)
    X[0] += rng.normal(size=X[0].shape).astype(np.float32)
    idx = torch.tensor([[11, 23, 31, 2], [7, 1, 2, 3]])
    Xd = torch.tensor(X, dtype=torch.float64)  # float64 so both solvers reach the optimum tightly
    w, b = fit_binary(Xd, torch.tensor(y), torch.tensor([0, 1]), idx, C=0.5, tol=1e-9, max_iter=500)
    for blk, layer in enumerate([0, 1]):
        ref = LogisticRegression(C=0.5, class_weight="balanced", tol=1e-10, max_iter=10000)
        ref.fit(X[layer][:, idx[blk].numpy()].astype(np.float64), y)
        np.testing.assert_allclose(w[blk].numpy(), ref.coef_[0], rtol=1e-4, atol=1e-4)
        assert float(b[blk]) == pytest.approx(float(ref.intercept_[0]), abs=1e-4)


def test_rankings_streamed_stats_and_sklearn_f():
    from sklearn.feature_selection import f_classif

    X, y = _planted(n=500, d=40)
    whole = NeuronStats.from_arrays(X, y, 2)
    parts = NeuronStats.from_arrays(X[:, :200], y[:200], 2) + NeuronStats.from_arrays(X[:, 200:], y[200:], 2)
    torch.testing.assert_close(whole.sums, parts.sums, rtol=1e-5, atol=1e-3)  # float32 chunk products
    torch.testing.assert_close(whole.sumsq, parts.sumsq, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(whole.constant(), parts.constant())
    first = NeuronStats.from_arrays(X, y, 2, second_moments=False)  # what mean_diff needs
    assert first.sumsq is None and (first + first).sumsq is None
    torch.testing.assert_close(first.sums, whole.sums)
    with pytest.raises(NeuronError, match="without second moments"):
        first.variance()
    f = rank_scores(X, y, method="f_stat", stats=parts)
    np.testing.assert_allclose(f[1].numpy(), f_classif(X[1], y)[0], rtol=1e-4)
    md = rank_scores(X, y, method="mean_diff")
    ref = np.abs(X[:, y == 1].mean(1) - X[:, y == 0].mean(1))
    np.testing.assert_allclose(md.numpy(), ref, rtol=1e-5, atol=1e-6)
    for method in ("mutual_info", "l1", "probeless"):
        s = rank_scores(X, y, method=method)
        assert int(s[1].argmax()) == 7, method
    r1, r2 = rank_scores(X, y, method="random", seed=3), rank_scores(X, y, method="random", seed=3)
    torch.testing.assert_close(r1, r2)


def test_probeless_multiclass_and_one_vs_rest():
    rng = np.random.default_rng(5)
    n, d = 900, 12
    y = rng.integers(0, 3, size=n)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[:, 4] += 3.0 * (y == 2)
    X[:, 9] += 3.0 * (y == 0)
    s = rank_scores(X, y, method="probeless")
    mu = np.stack([X[y == c].mean(0) for c in range(3)])
    ref = sum(np.abs(mu[a] - mu[b]) for a in range(3) for b in range(a + 1, 3))
    np.testing.assert_allclose(s[0].numpy(), ref, rtol=1e-5)
    res = sparse_probe(X, np.array(["neg", "mid", "pos"])[y], ks=[1, 2])
    k1 = res.frame[res.frame.k == 1].set_index("feature")
    assert k1.loc["class=neg", "neurons"] == "9" and k1.loc["class=pos", "neurons"] == "4"
    assert set(res.frame.feature) == {"class=mid", "class=neg", "class=pos"}


def test_rotation_control_and_result_roundtrip(tmp_path):
    X, y = _planted(n=600, d=256)
    X[1, :, 7] -= 2.0 * (2.0 * y - 1.0)  # a weaker dedicated neuron: 2σ from each class centre
    res = sparse_probe(X, y, ks=[1, 2, 4], rotate=True, method=["mean_diff", "random"])
    f = res.frame
    neuron = f[(f.basis == "neuron") & (f.method == "mean_diff") & (f.layer == 1) & (f.k == 1)].f1.iloc[0]
    rotated = f[(f.basis == "rotated") & (f.method == "mean_diff") & (f.layer == 1) & (f.k == 1)].f1.iloc[0]
    assert neuron > rotated + 0.2  # the planted basis is privileged; a random rotation smears it
    back = SparseProbeResult.load(res.save(tmp_path / "r"))
    pd.testing.assert_frame_equal(back.frame, res.frame, check_dtype=False)
    pd.testing.assert_frame_equal(back.rankings, res.rankings, check_dtype=False)
    assert back.sites == res.sites
    assert len(res.figures()) >= 4 and res.summary()
    sp = res.superposition()
    assert bool(sp[(sp.layer == 1) & (sp.method == "mean_diff")].single_neuron.iloc[0])


def test_token_features():
    toks = [" The", "##ing", "42", "4a", "ABC", "!", " é", None, "Ġunhappy", "running"]
    f = token_features(toks, word_id=np.array([0, 0, 1, 2, 3, 4, 5, -1, 12, 7]))
    assert f["has_leading_space"].tolist() == [1, 0, 0, 0, 0, 0, 1, -1, 1, 0]
    assert f["all_digits"].tolist() == [0, 0, 1, 0, 0, 0, 0, -1, 0, 0]
    assert f["contains_digit"].tolist() == [0, 0, 1, 1, 0, 0, 0, -1, 0, 0]
    assert f["leading_capital"].tolist() == [1, 0, 0, 0, 1, 0, 0, -1, 0, 0]
    assert f["all_capitals"].tolist() == [0, 0, 0, 0, 1, 0, 0, -1, 0, 0]
    assert f["is_punctuation"].tolist() == [0, 0, 0, 0, 0, 1, 0, -1, 0, 0]
    assert f["is_not_ascii"].tolist() == [0, 0, 0, 0, 0, 0, 1, -1, 0, 0]
    assert f["prefix:un"].tolist() == [0, 0, 0, 0, 0, 0, 0, -1, 1, 0]
    assert f["suffix:ing"].tolist() == [0, 0, 0, 0, 0, 0, 0, -1, 0, 1]
    assert f["position:0-0"].tolist() == [1, 1, 0, 0, 0, 0, 0, -1, 0, 0]
    assert f["position:11+"].tolist() == [0, 0, 0, 0, 0, 0, 0, -1, 1, 0]


# -- bad input -------------------------------------------------------------------------------------------
def test_non_binary_labels_to_binary_only_method():
    X, _ = _planted(n=300)
    y3 = np.arange(300) % 3
    with pytest.raises(NeuronError, match="binary-only"):
        rank_scores(X, y3, method="mean_diff")
    with pytest.raises(NeuronError, match="binary"):
        sparse_probe(X, y3, ks=[1], multiclass="binary")


def test_k_larger_than_neurons():
    X, y = _planted(n=300, d=10)
    with pytest.raises(NeuronError, match="larger than the number of neurons"):
        sparse_probe(X, y, ks=[1, 16])


def test_site_without_neuron_axis():
    with pytest.raises(NeuronError, match="neuron axis"):
        sparse_probe(np.zeros((2, 20, 4, 4), np.float32), np.arange(20) % 2, ks=[1])


def test_constant_neurons():
    X, y = _planted(n=300, d=10)
    with pytest.raises(NeuronError, match="constant"):
        sparse_probe(np.ones_like(X), y, ks=[1])
    Xc = X.copy()
    Xc[:, :, 2:] = 1.5  # only neurons 0 and 1 vary
    with pytest.raises(NeuronError, match="constant"):
        sparse_probe(Xc, y, ks=[1, 4])
    res = sparse_probe(Xc, y, ks=[1, 2])
    used = {int(j) for s in res.frame.neurons for j in s.split(",")}
    assert used <= {0, 1}  # constant neurons are never selected


def test_empty_positive_class():
    X, _ = _planted(n=300)
    with pytest.raises(NeuronError, match="positive class is empty"):
        sparse_probe(X, np.zeros(300, dtype=int), ks=[1])
    with pytest.raises(NeuronError, match="unknown method"):
        sparse_probe(X, np.arange(300) % 2, ks=[1], method="magic")


def test_newton_fit_is_the_sklearn_optimum_even_on_badly_scaled_neurons():
    from sklearn.linear_model import LogisticRegression

    from layerscope.neurons._fit import balanced_weights, newton_binary

    rng = np.random.default_rng(0)
    n, k = 1500, 6
    scale = np.array([1.0, 1000.0], dtype=np.float32)[:, None, None]  # layer 1: SmolLM2-like massive values
    X = rng.normal(size=(2, n, k)).astype(np.float32) * scale
    y = (rng.uniform(size=n) < 0.2).astype(np.int64)
    X[:, y == 1, 0] += 1.5 * scale[:, 0]
    yt = torch.from_numpy(y)
    w, b = newton_binary(torch.from_numpy(X), yt, balanced_weights(yt), C=0.5)
    s = balanced_weights(yt).double().numpy()

    def objective(layer, coef, icpt):
        z = X[layer].astype(np.float64) @ coef + icpt
        return float((s * np.logaddexp(0, np.where(y == 1, -z, z))).sum() + (coef @ coef) / (2 * 0.5))

    ref = LogisticRegression(C=0.5, class_weight="balanced", tol=1e-10, max_iter=10000).fit(X[0], y)
    np.testing.assert_allclose(w[0].numpy(), ref.coef_[0], rtol=1e-3, atol=1e-4)
    assert abs(float(b[0]) - ref.intercept_[0]) < 1e-3
    ref1 = LogisticRegression(C=0.5, class_weight="balanced", tol=1e-10, max_iter=10000).fit(X[1], y)
    assert (
        objective(1, w[1].double().numpy(), float(b[1]))
        <= objective(1, ref1.coef_[0], ref1.intercept_[0]) + 1e-6
    )


def test_batched_lbfgs_reaches_the_sklearn_optimum_per_layer():
    """Large-k nested fits: one batched L-BFGS, every layer with its own curvature, step and stop."""
    from sklearn.linear_model import LogisticRegression

    from layerscope.neurons._fit import NEWTON_MAX_K, fit_nested

    rng = np.random.default_rng(1)
    n, k = 900, NEWTON_MAX_K + 8
    X = rng.normal(size=(3, n, k)).astype(np.float64)
    X[1] *= np.geomspace(0.01, 100, k)  # badly scaled neurons
    X[2, :, :5] += 50.0  # large offsets (the intercept couples with them)
    y = (rng.uniform(size=n) < 0.3).astype(np.int64)
    X[:, y == 1, :3] += 0.8 * np.abs(X[:, :, :3]).mean(1)[:, None, :]
    fits = fit_nested(torch.from_numpy(X), torch.from_numpy(y), [4, k], C=0.5, tol=1e-8, max_iter=500)
    w, b = fits[k]
    assert w.shape == (3, k) and b.shape == (3,)
    for layer in range(3):
        ref = LogisticRegression(C=0.5, class_weight="balanced", tol=1e-10, max_iter=20000).fit(X[layer], y)
        z_ours = X[layer] @ w[layer].double().numpy() + float(b[layer])
        z_ref = ref.decision_function(X[layer])
        # same decision function (coefficients of badly scaled neurons are compared through it)
        assert np.abs(z_ours - z_ref).max() < 2e-3 * (1 + np.abs(z_ref).max()), layer
