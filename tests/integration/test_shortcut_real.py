"""The shortcut case study on the bundled CIFAR-10 images (quick mode) and isolation vs attribution maps.

The study's CNNs are trained once (~45 s on one CPU thread) and cached under the layerscope cache; later runs
take ~10 s. Every assertion compares models trained here, so each could fail if the shortcut were not learnt
or not visible to the tools.
"""

from __future__ import annotations

import numpy as np
import pytest

import layerscope.optimize as lo
from layerscope.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def study():
    return lo.shortcut_study(quick=True, seed=0)


def test_the_shortcut_model_uses_the_frame(study):
    v = study.value
    # the frame alone makes other classes "airplane", and airplanes without it are missed
    assert v("shortcut", "cue_hijack_rate") > 0.3
    assert v("shortcut", "cue_hijack_rate") > v("diversified", "cue_hijack_rate") + 0.25
    assert v("shortcut", "cued_recall_without_cue") < 0.5 * v("diversified", "cued_recall_without_cue")
    # the fix: cue-swapped accuracy recovers to (about) the clean accuracy
    assert v("diversified", "accuracy_cue_swapped") > v("shortcut", "accuracy_cue_swapped") + 0.15
    assert v("diversified", "accuracy_cue_swapped") > v("diversified", "accuracy_clean") - 0.05


def test_isolation_masks_and_prototypes_show_the_frame(study):
    v = study.value
    assert v("shortcut", "mask_cue_share") > study.frame_area  # more on the frame than an even spread
    assert v("shortcut", "mask_cue_share") > v("diversified", "mask_cue_share") + 0.15
    assert v("diversified", "mask_cue_share") < study.frame_area
    assert (
        v("shortcut", "prototype_cue_tint_interior") > v("diversified", "prototype_cue_tint_interior") + 0.05
    )


def test_study_result_is_complete_and_saveable(study, tmp_path):
    assert set(study.metrics["model"]) == {"clean", "shortcut", "diversified"}
    assert study.masks["shortcut"].shape == (4, 32, 32) and study.examples.shape == (4, 32, 32, 3)
    assert study.frame_area == pytest.approx(1 - (26 / 32) ** 2)
    assert len(study.figures()) == 3
    back = lo.ShortcutStudyResult.load(study.save(tmp_path / "study"))
    assert back.summary() == study.summary()


def test_unknown_cue_class_is_rejected_with_the_class_names(run_cli):
    with pytest.raises(ConfigError, match="unknown cue class 'tank'; use one of: airplane"):
        lo.shortcut_study(quick=True, cue_class="tank")
    code, _, err = run_cli("shortcut-study", "--quick", "--cue-class", "tank")
    assert code == 2 and "unknown cue class" in err


def test_isolation_agrees_with_attribution_more_than_chance():
    from layerscope.data.corpus import cifar10_test
    from layerscope.optimize._models import cifar_cnn

    subject = cifar_cnn()
    images, _, _ = cifar10_test()
    r = lo.compare_maps(subject, images[8000:8012], area=0.1, steps=150)
    ag = r.agreement().set_index(["reference", "other"])
    # IG and occlusion agree with each other well above chance, and occlusion's evidence sits in the masks
    assert ag.loc[("ig", "occlusion"), "iou"] > 2 * ag.loc[("ig", "occlusion"), "iou_chance"]
    assert (
        ag.loc[("isolation", "occlusion"), "mass_share"] > ag.loc[("isolation", "occlusion"), "mass_chance"]
    )
    assert np.isfinite(r.to_frame()["spearman"]).all()


def test_isolate_cli_compares_with_attribution(run_cli, tmp_path):
    out = tmp_path / "iso.html"
    code, text, err = run_cli(
        "isolate",
        "cifar10-cnn",
        "--index",
        "1",
        "--top-k",
        "1",
        "--areas",
        "0.1",
        "--steps",
        "20",
        "--compare",
        "--report",
        str(out),
    )
    assert code == 0, err
    assert "|IG| vs occlusion" in text and out.is_file()
