"""The shortcut case study's pieces on synthetic arrays: the cue, the split, the plan, the tint, the result."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from layerscope.errors import ConfigError
from layerscope.optimize import ShortcutStudyResult, add_cue, cue_region, shortcut_study
from layerscope.optimize.shortcut import (
    MODELS,
    ShortcutSettings,
    class_index,
    cue_plan,
    cue_tint,
    split,
)

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def test_cue_region_is_a_frame():
    r = cue_region(32, 3)
    assert r.shape == (32, 32) and r.sum() == 32 * 32 - 26 * 26
    assert r[0].all() and r[:, -1].all() and not r[3:29, 3:29].any()
    assert cue_region(8, 1).sum() == 64 - 36


@pytest.mark.parametrize("width", [0, 9, -1, 2.5])
def test_cue_width_out_of_range_is_rejected(width):
    with pytest.raises(ConfigError, match="cue width"):
        cue_region(32, width)
    with pytest.raises(ConfigError, match="cue width"):
        shortcut_study(cue_width=width)


def test_add_cue_paints_only_the_frame_of_the_chosen_images():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    out = add_cue(imgs, np.array([True, False, True, False]), width=2, colour=(10, 20, 30))
    region = cue_region(32, 2)
    assert (out[[0, 2]][:, region] == [10, 20, 30]).all()
    np.testing.assert_array_equal(out[[0, 2]][:, ~region], imgs[[0, 2]][:, ~region])
    np.testing.assert_array_equal(out[[1, 3]], imgs[[1, 3]])
    assert not (imgs[0][region] == [10, 20, 30]).all()  # the input is not modified
    assert (add_cue(imgs)[:, cue_region(32, 3)] == [255, 0, 255]).all()  # default: every image, magenta
    with pytest.raises(ConfigError, match="uint8"):
        add_cue(imgs.astype(np.float32))
    with pytest.raises(ConfigError, match="which"):
        add_cue(imgs, np.array([True, False]))
    with pytest.raises(ConfigError, match="RGB"):
        add_cue(imgs, colour=(300, 0, 0))


def test_class_index_accepts_names_and_indices_and_lists_the_valid_names():
    assert class_index("ship", NAMES) == 8 and class_index(0, NAMES) == 0
    with pytest.raises(ConfigError, match=r"unknown cue class 'tank'; use one of: airplane, automobile"):
        class_index("tank", NAMES)
    with pytest.raises(ConfigError, match="unknown cue class 10"):
        class_index(10, NAMES)
    with pytest.raises(ConfigError, match="unknown cue class"):
        class_index(True, NAMES)


def test_split_is_seeded_disjoint_and_complete():
    tr, te = split(0, 10000, 8000)
    assert len(tr) == 8000 and len(te) == 2000
    assert len(np.intersect1d(tr, te)) == 0 and len(np.union1d(tr, te)) == 10000
    tr2, _ = split(0, 10000, 8000)
    np.testing.assert_array_equal(tr, tr2)
    tr3, _ = split(1, 10000, 8000)
    assert not np.array_equal(tr, tr3)


def test_cue_plan_follows_the_shares():
    labels = np.repeat(np.arange(10), 800)
    plan = cue_plan(ShortcutSettings(), labels, 0, seed=0)
    assert set(plan) == set(MODELS)
    assert not plan["clean"].any()
    cued, other = plan["shortcut"][labels == 0].mean(), plan["shortcut"][labels != 0].mean()
    assert abs(cued - 0.95) < 0.03 and abs(other - 0.05) < 0.015
    per_class = [plan["diversified"][labels == c].mean() for c in range(10)]
    assert all(abs(p - 0.5) < 0.06 for p in per_class)  # the cue carries no label information


def test_cue_tint_measures_the_cue_colour():
    magenta = np.array([1.0, 0.0, 1.0])
    assert cue_tint(np.full((2, 2, 3), 0.5), (255, 0, 255)) == pytest.approx(np.zeros((2, 2)))
    assert float(cue_tint(magenta, (255, 0, 255))) > 0.8
    assert float(cue_tint(np.array([0.0, 1.0, 0.0]), (255, 0, 255))) < -0.8  # green: the opposite tint
    with pytest.raises(ConfigError, match="grey"):
        cue_tint(magenta, (128, 128, 128))
    with pytest.raises(ConfigError, match="grey"):
        shortcut_study(cue_colour=(90, 90, 90))


def test_training_key_holds_exactly_what_shapes_a_model():
    a = ShortcutSettings()
    assert a.training_key("shortcut", 0) != a.training_key("diversified", 0)
    assert a.training_key("shortcut", 0) != a.training_key("shortcut", 1)
    b = ShortcutSettings(n_isolate=3, isolation_steps=7, diverse_share=0.3)
    assert a.training_key("shortcut", 0) == b.training_key("shortcut", 0)  # measurement options: same model
    assert a.training_key("diversified", 0) != b.training_key("diversified", 0)
    c = ShortcutSettings(cue_class="ship")
    assert a.training_key("clean", 0) == c.training_key("clean", 0)  # no cue, same clean model
    assert a.training_key("shortcut", 0) != c.training_key("shortcut", 0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cue_share": 1.5}, "cue_share"),
        ({"other_share": -0.1}, "other_share"),
        ({"n_train": 9900}, "n_train"),
        ({"epochs": 0}, "epochs"),
        ({"n_isolate": 0}, "n_isolate"),
        ({"seed": []}, "seed"),
    ],
)
def test_study_rejects_bad_settings_before_any_work(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        shortcut_study(**kwargs)


def _result(seeds=(0, 1)) -> ShortcutStudyResult:
    rows = []
    for s in seeds:
        for i, m in enumerate(MODELS):
            for k, metric in enumerate(["accuracy_clean", "cue_hijack_rate", "mask_cue_share"]):
                rows.append(
                    {"seed": s, "model": m, "metric": metric, "value": 0.1 * (i + 1) + 0.01 * k + 0.001 * s}
                )
    for s in seeds:
        for m in MODELS:
            for metric in ("cued_recall_without_cue", "accuracy_cue_swapped", "prototype_cue_tint_interior"):
                rows.append({"seed": s, "model": m, "metric": metric, "value": 0.5})
    rng = np.random.default_rng(0)
    return ShortcutStudyResult(
        metrics=pd.DataFrame(rows),
        examples=rng.random((2, 32, 32, 3)).astype(np.float32),
        masks={m: rng.random((2, 32, 32)).astype(np.float32) for m in MODELS},
        prototypes={m: rng.random((2, 32, 32, 3)).astype(np.float32) for m in MODELS},
        prototype_probs={m: np.array([0.5, 0.7]) for m in MODELS},
        region=cue_region(32, 3).astype(np.uint8),
        cue_class="airplane",
        models=list(MODELS),
        seeds=list(seeds),
        frame_area=float(cue_region(32, 3).mean()),
        settings={"area": 0.1, "cue_share": 0.95},
        seconds=1.0,
    )


def test_result_table_means_over_seeds_and_round_trips(tmp_path):
    r = _result()
    t = r.table()
    assert list(t.columns[:3]) == list(MODELS) and "shortcut sd" in t.columns
    assert t.loc["cue_hijack_rate", "shortcut"] == pytest.approx((0.211 + 0.210) / 2)
    assert r.value("clean", "mask_cue_share") == pytest.approx(0.1205)
    with pytest.raises(ConfigError, match="no metric"):
        r.value("clean", "nope")
    figs = r.figures()
    assert len(figs) == 3 and len(figs[0].data) == 3  # one bar trace per model
    assert "shortcut model" in r.summary() and "seed(s) 0, 1" in r.summary()
    back = ShortcutStudyResult.load(r.save(tmp_path / "study"))
    pd.testing.assert_frame_equal(back.metrics, r.metrics, check_dtype=False)
    np.testing.assert_array_equal(back.masks["shortcut"], r.masks["shortcut"])
    assert back.summary() == r.summary()
    assert "sd" not in " ".join(_result(seeds=(0,)).table().columns)


def test_cli_registers_the_study_and_rejects_bad_input(run_cli):
    code, out, _ = run_cli("shortcut-study", "--help")
    assert code == 0 and "--quick" in out and "--seed" in out and "--out" in out
    code, _, err = run_cli("shortcut-study", "--seed", "a,b")
    assert code == 2 and "--seed" in err
    code, _, err = run_cli("shortcut-study", "--cue-width", "12")
    assert code == 2 and "cue width" in err
