"""layerscope.optimize on EfficientNet-Lite0 (short runs: a few steps each)."""

from __future__ import annotations

import numpy as np
import torch

import layerscope.optimize as lo
from layerscope.data.corpus import cifar10_test
from layerscope.testing import assert_no_hooks


def test_channel_visualisation_raises_the_channel(effnet):
    r = lo.visualize(effnet, "blocks.4.out", [0, 1], steps=12, size=64, seed=0)
    assert r.images.shape == (2, 64, 64, 3)
    assert (r.scores > r.history[0]).all()
    assert_no_hooks(effnet)


def test_pgd_flips_effnet_predictions_within_the_ball(effnet):
    images, _, _ = cifar10_test(limit=4)
    x = torch.nn.functional.interpolate(
        torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255, size=(224, 224), mode="bilinear"
    ).clamp(0, 1)
    with torch.no_grad():
        pred = effnet.model(effnet.image.normalise(x)).argmax(1)
    r = lo.pgd(effnet, x, pred, eps=4 / 255, steps=5)
    assert r.perturbation_norms().max() <= 4 / 255 + 1e-6
    assert r.success_rate >= 0.75
    np.testing.assert_array_equal(r.pred_before, pred.numpy())
