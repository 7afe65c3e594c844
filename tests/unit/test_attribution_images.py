"""Image attribution display: bundled photos, heat-map overlays, photos carried by results."""

from __future__ import annotations

import numpy as np
import pytest

from layerscope.attribution import FeatureAblation, IntegratedGradients, Saliency
from layerscope.attribution.images import (
    PHOTOS,
    available_photos,
    display_images,
    heat_overlay,
    overlay_figure,
    sample_photos,
)
from layerscope.attribution.result import AttributionResult
from layerscope.errors import ConfigError, DataError
from layerscope.models.adapter import Adapter
from layerscope.models.subject import ImageSpec, Subject
from layerscope.result import Result
from layerscope.testing import tiny_cnn

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cnn():
    model = tiny_cnn().eval()
    spec = ImageSpec(size=32, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3))
    return Subject(model=model, adapter=Adapter.for_model(model), name="cnn", image=spec)


def _photos(n: int = 2, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def test_sample_photos_are_square_uint8_and_named():
    have = available_photos()
    assert "china" in have and "flower" in have  # scikit-learn is a core dependency
    imgs, names = sample_photos(["flower", "china"], size=64)
    assert imgs.shape == (2, 64, 64, 3) and imgs.dtype == np.uint8 and names == ["flower", "china"]
    assert imgs.std() > 10  # real photos, not blank
    default, dnames = sample_photos(size=16)
    assert len(default) == len(dnames) >= 2 and set(dnames) <= set(PHOTOS)


def test_sample_photos_bad_input():
    with pytest.raises(ConfigError, match="unknown photo 'nope'"):
        sample_photos(["nope"])
    with pytest.raises(ConfigError, match="at least 8"):
        sample_photos(["china"], size=2)


def test_heat_overlay_colours_follow_the_sign():
    img = np.full((8, 8, 3), 128, np.uint8)
    scores = np.zeros((8, 8))
    scores[:4] = 1.0
    scores[4:] = -1.0
    out = heat_overlay(img, scores, smooth=0)
    assert out.shape == (8, 8, 3) and out.min() >= 0 and out.max() <= 1
    assert out[0, 0, 0] > out[0, 0, 2]  # positive: red
    assert out[7, 7, 2] > out[7, 7, 0]  # negative: blue
    flat = heat_overlay(img, np.zeros((8, 8)), smooth=0)
    assert np.allclose(flat, flat[0, 0])  # no evidence: only the dimmed photo


def test_heat_overlay_unsigned_highlights_above_median():
    img = np.full((10, 10, 3), 100, np.uint8)
    scores = np.ones((10, 10))
    scores[0, 0] = 5.0
    out = heat_overlay(img, scores, signed=False, smooth=0, percentile=100)
    assert out[0, 0, 0] > out[5, 5, 0] + 0.3
    assert np.allclose(out[5, 5], out[9, 9])


def test_heat_overlay_bad_input():
    with pytest.raises(DataError, match=r"\[H, W, 3\]"):
        heat_overlay(np.zeros((8, 8)), np.zeros((8, 8)))
    with pytest.raises(DataError, match="do not match"):
        heat_overlay(np.zeros((8, 8, 3)), np.zeros((4, 4)))


def test_display_images_inverts_normalisation(cnn):
    photos = _photos()
    x = cnn.image.preprocess(photos)
    back = display_images(cnn, x)
    assert back is not None and back.dtype == np.uint8
    assert np.abs(back.astype(int) - photos.astype(int)).max() <= 1
    assert display_images(cnn, x[:, :1]) is None  # not RGB images


def test_input_attributions_carry_photos_and_draw_overlays(cnn, tmp_path):
    photos = _photos(3)
    ig = IntegratedGradients(cnn, n_steps=4).attribute(photos, target=[1, 2, 3], baseline="black")
    sal = Saliency(cnn).attribute(photos, target=[1, 2, 3])
    occ = FeatureAblation(cnn, window=8, stride=8).attribute(photos, target=[1, 2, 3])
    assert ig.images is not None and ig.images.shape == (3, 32, 32, 3)
    assert np.abs(ig.images.astype(int) - photos.astype(int)).max() <= 1
    fig = overlay_figure({"IG": ig, "saliency": sal, "occlusion": occ}, names=["a", "b", "c"])
    tiles = [t for t in fig.data if t.type == "image"]
    assert len(tiles) == 3 * 4  # photo + three methods per row
    assert all(t.source.startswith("data:image/png;base64,") for t in tiles)
    titles = [a.text for a in fig.layout.annotations]
    assert titles[0].startswith("a → ") and titles[1:4] == ["IG", "saliency", "occlusion"]
    # the result's own figure shows the overlays too, and the photos survive save/load
    assert len([t for t in ig.figure().data if t.type == "image"]) == 3 * 2
    back = Result.load(ig.save(tmp_path / "ig"))
    assert isinstance(back, AttributionResult) and np.array_equal(back.images, ig.images)


def test_overlay_figure_bad_input(cnn):
    photos = _photos(2)
    ig = IntegratedGradients(cnn, n_steps=2).attribute(photos, target=[0, 1])
    one = IntegratedGradients(cnn, n_steps=2).attribute(photos[:1], target=0)
    with pytest.raises(ConfigError, match="no attribution results"):
        overlay_figure([])
    with pytest.raises(DataError, match="same images and targets"):
        overlay_figure([ig, one])
    bare = AttributionResult(**{**ig.__dict__, "images": None})
    with pytest.raises(DataError, match="carry no photos"):
        overlay_figure(bare)
    with pytest.raises(DataError, match="only 1 images"):
        overlay_figure(bare, images=photos[:1])
