"""Concept bottleneck / embedding models: datasets, ceilings, training invariants, interventions, metrics."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from layerscope.concepts import (
    ConceptModelConfig,
    ConceptModelResult,
    TrainConfig,
    concept_alignment_score,
    data,
    evaluate_model,
    fit,
    from_arrays,
    from_file,
    intervention_curve,
    monte_carlo_ceiling,
    run,
    sentence_concepts,
)
from layerscope.errors import ConfigError, DataError
from layerscope.result import Result

pytestmark = pytest.mark.usefixtures("one_thread")


SMALL = dict(hidden=(32, 32), latent_dim=32, emb_size=16)
FAST = TrainConfig(max_epochs=60, patience=8)


# -- datasets and ceilings ----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), [("xor", 1.0), ("trig", 0.813), ("dot", 0.750)])
def test_monte_carlo_ceilings(name, expected):
    # 1M samples: the estimate's standard error is ~4e-4
    assert monte_carlo_ceiling(name, n=1_000_000, seed=1) == pytest.approx(expected, abs=2e-3)


def test_synthetic_definitions_and_splits():
    for make in (data.xor, data.trig, data.dot):
        ds = make()
        assert (len(ds.train), len(ds.val), len(ds.test)) == (2100, 300, 600)
        assert ds.binary_concepts and ds.n_classes == 2
        assert not set(ds.train) & set(ds.test) and not set(ds.val) & set(ds.test)
    x = data.xor()
    np.testing.assert_array_equal(x.c, (x.x > 0.5).astype(np.float32))
    np.testing.assert_array_equal(x.y, np.logical_xor(x.c[:, 0], x.c[:, 1]))
    d = data.dot()
    v1 = (d.x[:, :2] + d.x[:, 2:]) / 2  # features are [v1 + v3, v1 − v3]
    v3 = (d.x[:, :2] - d.x[:, 2:]) / 2
    np.testing.assert_array_equal(d.c[:, 0], (v1.sum(1) > 0))
    np.testing.assert_array_equal(d.c[:, 1], (-v3.sum(1) > 0))
    agree = (d.y == ((v1 * v3).sum(1) > 0)).mean()
    assert agree > 0.999  # float32 round-off can flip a product right at 0
    t = data.trig()
    assert t.x.shape[1] == 7 and t.n_concepts == 3
    # sin(a) + a and cos(a) + a differ by sin(a) − cos(a) ∈ [−√2, √2]
    assert np.abs(t.x[:, 0] - t.x[:, 1]).max() <= np.sqrt(2) + 1e-4
    assert np.array_equal(data.trig(seed=3).x, data.trig(seed=3).x)
    assert not np.array_equal(data.trig(seed=3).x, data.trig(seed=4).x)


def test_bad_input():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 3))
    c = (rng.random((100, 2)) > 0.5).astype(float)
    y = rng.integers(0, 2, 100)
    with pytest.raises(DataError, match="rows"):
        from_arrays(x, c[:90], y)
    bad = x.copy()
    bad[5, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        from_arrays(bad, c, y)
    cn = c.copy()
    cn[3, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        from_arrays(x, cn, y)
    with pytest.raises(DataError, match="single class"):
        from_arrays(x, c, np.zeros(100))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        from_arrays(x, c * 2, y)
    soft = from_arrays(x, c * 0.5 + 0.25, y)  # soft concepts are fine for sigmoid bottlenecks ...
    with pytest.raises(DataError, match="boolean bottleneck needs 0/1"):  # ... but not for a boolean one
        fit(soft, dataclasses.replace(ConceptModelConfig(bottleneck="boolean"), **SMALL), seeds=1, train=FAST)
    with pytest.raises(ConfigError):
        fit(soft, "no-such-model")
    with pytest.raises(ConfigError):
        ConceptModelConfig(kind="cem", training="sequential")
    with pytest.raises(ConfigError):
        ConceptModelConfig(randint_p=1.5)


def test_user_files(tmp_path):
    rng = np.random.default_rng(0)
    n = 60
    csv = tmp_path / "d.csv"
    f = rng.normal(size=(n, 2))
    cc = (f > 0).astype(int)
    lab = np.where(cc[:, 0] == cc[:, 1], "same", "diff")
    lines = ["f1,f2,c_a,c_b,y"] + [
        f"{a},{b},{p},{q},{t}" for (a, b), (p, q), t in zip(f, cc, lab, strict=True)
    ]
    csv.write_text("\n".join(lines) + "\n")
    ds = from_file(csv)
    assert ds.concept_names == ("c_a", "c_b") and ds.class_names == ("diff", "same") and ds.n_features == 2
    np.save(tmp_path / "ignored.npy", f)
    np.savez(tmp_path / "d.npz", x=f, c=cc, y=(lab == "same").astype(int))
    assert from_file(tmp_path / "d.npz").n_concepts == 2
    np.savez(tmp_path / "short.npz", x=f, c=cc[:50], y=(lab == "same").astype(int))
    with pytest.raises(DataError, match=r"short\.npz.*rows"):
        from_file(tmp_path / "short.npz")
    with pytest.raises(DataError, match="label column"):
        from_file(csv, label_column="label")
    with pytest.raises(DataError, match="not found"):
        from_file(tmp_path / "missing.csv")


def test_sentence_concepts():
    c = sentence_concepts(["I did not like it!", "Room 12 is great", "We walked home", "Fine."])
    np.testing.assert_array_equal(c, [[1, 0, 1, 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])


# -- training invariants ------------------------------------------------------------------------------


def _small(name: str, **kw) -> ConceptModelConfig:
    from layerscope.concepts import PRESETS

    return dataclasses.replace(PRESETS[name], **{**SMALL, **kw})


def test_seed_stacking_is_independent_and_deterministic():
    ds = data.xor(n=300)
    cfg = _small("cem")
    tc = TrainConfig(max_epochs=5, patience=5)
    both = fit(ds, cfg, seeds=[0, 1], train=tc)
    alone = fit(ds, cfg, seeds=[1], train=tc)
    again = fit(ds, cfg, seeds=[1], train=tc)
    x = ds.split("test")[0]
    _, p_both = both.predict(x)
    _, p_alone = alone.predict(x)
    _, p_again = again.predict(x)
    np.testing.assert_array_equal(p_alone, p_again)
    np.testing.assert_allclose(p_both[1], p_alone[0], atol=1e-5)
    assert not np.allclose(p_both[0], p_both[1])


def test_early_stopping_restores_best_validation_weights():
    ds = data.trig(n=600)
    tc = TrainConfig(max_epochs=40, patience=3)
    f = fit(ds, _small("cbm-joint"), seeds=2, train=tc)
    assert (f.epochs <= 40).all() and (f.epochs >= 4).all()


def test_hard_bottleneck_below_ceiling_and_full_intervention_reaches_it():
    ds = data.trig()
    ceiling = ds.ceiling()
    f = fit(ds, _small("cbm-joint-bool"), seeds=2, train=FAST)
    x, c, y = ds.split("test")
    _, yp = f.predict(x)
    acc = (yp.argmax(-1) == y).mean(1)
    assert (acc <= ceiling + 0.01).all(), (acc, ceiling)
    curve = intervention_curve(f, x, c, y, policy="random")
    # with every concept set to its true value, the (linear) head sees exactly the concepts: ≈ the ceiling
    assert curve[:, -1] == pytest.approx([ceiling, ceiling], abs=0.015)
    # XOR needs a non-linear head; with one, a fully intervened boolean CBM is perfect
    dx = data.xor()
    fx = fit(dx, _small("cbm-independent", bottleneck="boolean", head_hidden=(16,)), seeds=1, train=FAST)
    xx, cx, yx = dx.split("test")
    assert intervention_curve(fx, xx, cx, yx)[0, -1] == 1.0


def test_interventions_policies_and_logit_values():
    ds = data.dot(n=900)
    f = fit(ds, _small("cbm-joint-logit"), seeds=1, train=FAST)
    m = f.module
    assert (m.on_value > m.off_value).all()
    x, c, y = ds.split("test")
    for policy in ("random", "uncertainty"):
        curve = intervention_curve(f, x, c, y, policy=policy)
        assert curve.shape == (1, 3)
    with pytest.raises(ConfigError):
        intervention_curve(f, x, c, y, policy="oracle")
    dnn = fit(ds, _small("dnn"), seeds=1, train=TrainConfig(max_epochs=2))
    with pytest.raises(ConfigError, match="no concept bottleneck"):
        intervention_curve(dnn, x, c, y)


@pytest.mark.parametrize("name", ["trig", "dot"])
def test_cem_approaches_dnn_and_beats_boolean_cbm(name):
    ds = getattr(data, name)()
    x, _, y = ds.split("test")
    tc = TrainConfig(max_epochs=150, patience=15)
    accs = {}
    for model in ("cem", "dnn", "cbm-joint-bool"):
        cfg = _small(model, hidden=(64, 64), latent_dim=64)
        _, yp = fit(ds, cfg, seeds=2, train=tc).predict(x)
        accs[model] = (yp.argmax(-1) == y).mean()
    assert accs["cem"] >= accs["dnn"] - 0.03, accs
    assert accs["cem"] > accs["cbm-joint-bool"] + 0.05, accs
    assert accs["cem"] > ds.ceiling(), accs


# -- metrics and results ------------------------------------------------------------------------------


def test_concept_alignment_score():
    rng = np.random.default_rng(0)
    c = (rng.random((200, 2)) > 0.5).astype(float)
    aligned = [c[:, [0]] + 0.01 * rng.normal(size=(200, 1)), c[:, [1]] + 0.01 * rng.normal(size=(200, 1))]
    noise = [rng.normal(size=(200, 4)), rng.normal(size=(200, 4))]
    hi = concept_alignment_score(aligned, c)
    lo = concept_alignment_score(noise, c)
    assert hi > 0.95 and lo < hi - 0.3
    with pytest.raises(ConfigError):
        concept_alignment_score(aligned[:1], c)


def test_result_round_trip_table_and_figures(tmp_path):
    res = run(
        [data.xor(n=300), data.dot(n=300)],
        [_small("cbm-joint"), _small("dnn")],
        seeds=2,
        train=TrainConfig(max_epochs=3),
    )
    assert isinstance(res, ConceptModelResult)
    tab = res.table()
    assert list(tab.columns[:3]) == ["dataset", "model", "ceiling"] and len(tab) == 4
    assert tab.loc[tab.model == "custom1", "concept_accuracy"].iloc[0] == "—"  # the DNN has no concepts
    assert set(res.interventions.policy) == {"random", "uncertainty"}
    assert len(res.figures()) == 2 and res.summary()
    back = Result.load(res.save(tmp_path / "r"))
    assert isinstance(back, ConceptModelResult)
    np.testing.assert_allclose(back.metrics.value.to_numpy(), res.metrics.value.to_numpy(), equal_nan=True)
    assert back.ceilings == res.ceilings and back.config == res.config
    assert back.interventions.shape == res.interventions.shape


def test_evaluate_rows_cover_every_seed():
    ds = data.xor(n=300)
    f = fit(ds, _small("cem"), seeds=[3, 7], train=TrainConfig(max_epochs=2))
    rows, curves = evaluate_model(f, ds, cas=False)
    assert {r["seed"] for r in rows} == {3, 7}
    assert {r["n_intervened"] for r in curves} == {0, 1, 2}


def test_adam_matches_torch():
    from layerscope.concepts.train import _Adam

    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(4, 3))
    b = torch.nn.Parameter(a.detach().clone())
    ref = torch.optim.Adam([a], lr=0.01, weight_decay=0.1)
    ours = _Adam([b], lr=0.01, weight_decay=0.1)
    for _ in range(30):
        x = torch.randn(3)
        for p, opt in ((a, ref), (b, ours)):
            opt.zero_grad()
            ((p @ x) ** 2).sum().backward()
            opt.step()
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
