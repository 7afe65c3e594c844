"""Batched isolation, the mean-colour perturbation, and isolation masks vs attribution maps (small models)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import layerscope.optimize as lo
from layerscope.errors import ConfigError
from layerscope.optimize._models import digits_cnn, digits_data
from layerscope.optimize.isolation import hidden_image
from layerscope.optimize.param import gaussian_blur
from layerscope.optimize.prototypes import predict_proba
from layerscope.testing import assert_no_hooks

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    subject = digits_cnn(epochs=10)
    x, y = digits_data()
    return subject, x[1400:], y[1400:]


# -- map_agreement: hand-checkable values -------------------------------------------------------------------
def test_agreement_of_a_map_with_itself_and_its_reverse():
    ref = np.arange(16, dtype=float).reshape(4, 4)
    same = lo.map_agreement(ref, ref, 0.25)
    assert same["spearman"] == pytest.approx(1.0)
    assert same["iou"] == 1.0 and same["pointing"] == 1.0
    # top 4 pixels of 0..15 hold 12+13+14+15 = 54 of the total 120
    assert same["mass_share"] == pytest.approx(54 / 120)
    assert same["mass_chance"] == 0.25 and same["iou_chance"] == pytest.approx(0.25 / 1.75)
    rev = lo.map_agreement(ref, -ref, 0.25)
    assert rev["spearman"] == pytest.approx(-1.0)
    assert rev["iou"] == 0.0 and rev["pointing"] == 0.0
    assert np.isnan(rev["mass_share"])  # -ref has no positive mass


def test_agreement_counts_only_positive_mass_and_handles_constant_maps():
    ref = np.zeros((2, 4))
    ref[0, :2] = 1.0  # region = the first two pixels (area 0.25 of 8)
    other = np.array([[3.0, -5.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    ag = lo.map_agreement(ref, other, 0.25)
    assert ag["mass_share"] == pytest.approx(3 / 4)  # positive mass 3 + 1, of which 3 inside
    assert ag["pointing"] == 1.0
    assert ag["iou"] == pytest.approx(1 / 3)  # other's top 2: pixels 0 and 2
    assert np.isnan(lo.map_agreement(ref, np.ones((2, 4)), 0.25)["spearman"])


def test_agreement_rejects_bad_input():
    with pytest.raises(ConfigError, match="same shape"):
        lo.map_agreement(np.zeros((4, 4)), np.zeros((3, 4)), 0.1)
    with pytest.raises(ConfigError, match="area"):
        lo.map_agreement(np.zeros((4, 4)), np.zeros((4, 4)), 1.0)


# -- batched isolation and the mean-colour perturbation ---------------------------------------------------
def test_isolate_batch_equals_one_image_at_a_time(digits):
    s, x, _ = digits
    batch = lo.isolate_batch(s, x[:3], classes=[1, 2, 3], area=0.3, steps=40)
    assert len(batch) == 3 and all(r.masks.shape == (1, 8, 8) for r in batch)
    for i, r in enumerate(batch):
        single = lo.isolate(s, x[i], classes=[i + 1], areas=(0.3,), steps=40)
        np.testing.assert_allclose(r.masks, single.masks, atol=2e-3)
        assert r.classes == [i + 1] and r.prob_masked[0] == pytest.approx(single.prob_masked[0], abs=2e-3)
    predicted = lo.isolate_batch(s, x[:2], area=0.3, steps=5)
    assert [r.classes[0] for r in predicted] == predict_proba(s, x[:2]).argmax(1).tolist()
    assert_no_hooks(s)


def test_mean_perturbation_hides_pixels_behind_the_mean_colour(digits):
    s, x, _ = digits
    hidden = hidden_image(s.image, x[:2], "mean", 1.0)
    np.testing.assert_allclose(hidden[:, :, 0, 0].numpy(), np.array([s.image.mean] * 2), rtol=1e-6)
    torch.testing.assert_close(hidden_image(s.image, x[:2], "blur", 1.0), gaussian_blur(x[:2], 1.0))
    r = lo.isolate(
        s, x[0], classes=[int(predict_proba(s, x[:1]).argmax())], areas=(0.3,), steps=30, perturbation="mean"
    )
    assert r.perturbation == "mean"
    m = torch.as_tensor(r.masks[:1]).unsqueeze(1)
    composite = m * x[:1] + (1 - m) * hidden[:1]
    p = predict_proba(s, composite)[0, r.classes[0]]
    assert r.prob_masked[0] == pytest.approx(p, abs=1e-5)  # the mask was applied over the mean colour
    with pytest.raises(ConfigError, match="perturbation"):
        lo.isolate(s, x[0], perturbation="noise")


def test_isolate_batch_rejects_bad_classes(digits):
    s, x, _ = digits
    with pytest.raises(ConfigError, match="one class per image"):
        lo.isolate_batch(s, x[:3], classes=[1, 2], steps=2)
    with pytest.raises(ConfigError, match="out of range"):
        lo.isolate_batch(s, x[:2], classes=12, steps=2)
    with pytest.raises(ConfigError, match="areas"):
        lo.isolate_batch(s, x[:2], area=0.0, steps=2)


def test_share_rejects_a_region_of_the_wrong_shape(digits):
    s, x, _ = digits
    r = lo.isolate(s, x[0], areas=(0.3,), top_k=1, steps=5)
    with pytest.raises(ConfigError, match=r"region must be a boolean mask of the image's shape \(8, 8\)"):
        r.share(np.ones((32, 32), dtype=bool))


# -- isolation vs attribution maps -------------------------------------------------------------------------
def test_compare_maps_uses_the_attribution_package(digits, tmp_path):
    from layerscope.attribution import DatasetMean, FeatureAblation, IntegratedGradients

    s, x, _ = digits
    r = lo.compare_maps(s, x[:2], targets=[3, 5], area=0.25, steps=30, ig_steps=8)
    assert r.methods == ["isolation", "ig", "occlusion"]
    assert all(m.shape == (2, 8, 8) for m in r.maps.values())
    # the maps are the attribution package's, with the blurred image as the baseline of both methods
    xn = s.image.normalise(x[:2])
    base = s.image.normalise(gaussian_blur(x[:2], r.settings["blur_sigma"]))
    ig = IntegratedGradients(s, n_steps=8).attribute(xn, target=[3, 5], baseline=base)
    np.testing.assert_allclose(r.maps["ig"], np.abs(ig.scores), rtol=1e-4, atol=1e-6)
    occ = FeatureAblation(s, window=r.settings["window"], stride=r.settings["stride"])
    occ0 = occ.attribute(xn[:1], target=[3], baseline=DatasetMean(base[0])).scores[0]
    np.testing.assert_allclose(r.maps["occlusion"][0], occ0, rtol=1e-4, atol=1e-6)
    df = r.to_frame()
    assert len(df) == 2 * 3 and set(df["target"]) == {"3", "5"}
    assert df["iou"].between(0, 1).all() and df["pointing"].isin([0.0, 1.0]).all()
    assert len(r.agreement()) == 3 and "|IG| vs occlusion" in r.summary()
    assert len(r.figures()) == 2
    back = lo.MapComparisonResult.load(r.save(tmp_path / "cmp"))
    np.testing.assert_array_equal(back.maps["occlusion"], r.maps["occlusion"])
    assert back.summary() == r.summary()
    assert_no_hooks(s)


def test_isolation_result_compare_pairs_each_mask_with_its_class(digits):
    s, x, _ = digits
    iso = lo.isolate(s, x[0], areas=(0.2, 0.4), top_k=2, steps=20, perturbation="mean")
    cmp = iso.compare(s, methods=("ig",), ig_steps=4)
    assert cmp.methods == ["isolation", "ig"]
    assert cmp.targets == iso.classes and cmp.areas == iso.areas
    np.testing.assert_array_equal(cmp.maps["isolation"], iso.masks)
    assert cmp.settings["perturbation"] == "mean"
    # the mean perturbation's attribution baseline is the normalised zero: IG completeness against it
    xn = s.image.normalise(torch.as_tensor(iso.image).permute(2, 0, 1)[None].float())
    with torch.no_grad():
        f_x = s.model(xn)[0, iso.classes[0]]
        f_0 = s.model(torch.zeros_like(xn))[0, iso.classes[0]]
    assert abs(cmp.settings["ig_abs_delta"]) < 0.2 * abs(float(f_x - f_0)) + 1e-3


def test_compare_rejects_bad_options(digits):
    s, x, _ = digits
    with pytest.raises(ConfigError, match="unknown attribution method"):
        lo.compare_maps(s, x[:1], methods=("lime",), steps=2)
    with pytest.raises(ConfigError, match="perturbation"):
        lo.compare_maps(s, x[:1], perturbation="zero", steps=2)
    with pytest.raises(ConfigError, match="ig_steps"):
        lo.compare_maps(s, x[:1], ig_steps=0, steps=2)
    with pytest.raises(ConfigError, match="occlusion window"):
        lo.compare_maps(s, x[:1], window=20, steps=2)


def test_compare_says_so_when_attribution_cannot_be_imported(digits, monkeypatch):
    s, x, _ = digits
    iso = lo.isolate(s, x[0], areas=(0.3,), top_k=1, steps=5)
    monkeypatch.setitem(sys.modules, "layerscope.attribution", None)  # makes the import fail
    with pytest.raises(ConfigError, match="failed to import"):
        iso.compare(s)
    assert lo.isolate(s, x[0], areas=(0.3,), top_k=1, steps=5).masks.shape == (
        1,
        8,
        8,
    )  # isolation still works


def test_optimize_does_not_import_attribution():
    code = "import sys, layerscope.optimize; print('layerscope.attribution' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_isolate_cli_rejects_an_unknown_perturbation(run_cli):
    code, _, err = run_cli("isolate", "cifar10-cnn", "--perturbation", "noise")
    assert code == 2 and "--perturbation" in err
    code, out, _ = run_cli("isolate", "--help")
    assert code == 0 and "--compare" in out
