"""layerscope.optimize core: objectives, parametrisations, transforms, regularisers and the loop."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

import layerscope.optimize as lo
from layerscope.errors import ConfigError, DataError
from layerscope.models.subject import ImageSpec
from layerscope.optimize.transforms import Transform
from layerscope.testing import assert_no_hooks, tiny_cnn

SITE = "module:3"  # second conv of tiny_cnn: [batch, 16, 16, 16]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cnn():
    return tiny_cnn(seed=0)


def _objectives():
    return {
        "channel": lo.channel(SITE, [0, 1, 2]),
        "neuron": lo.neuron(SITE, 5),
        "layer": lo.layer(SITE),
        "logit": lo.logit([1, 2, 3]),
        "logit_margin": lo.logit_margin([1, 2, 3]),
        "direction": lo.direction("module:6", torch.linspace(-1, 1, 16)),
        "layer+diversity": lo.layer(SITE) + 0.5 * lo.diversity(SITE),
    }


@pytest.mark.parametrize(
    ("obj_name", "param", "transform"),
    list(itertools.product(list(_objectives()), ["pixel", "fourier"], ["none", "standard"])),
)
def test_loss_decreases_for_every_combination(cnn, obj_name, param, transform):
    obj = _objectives()[obj_name]
    p = lo.image_param(param, 3, 32, seed=1)
    out = lo.optimize(
        cnn,
        obj,
        p,
        steps=20,
        lr=0.1,
        transform=lo.standard_transforms() if transform == "standard" else None,
        regularizers=[lo.total_variation(0.01)],
        seed=0,
    )
    assert out.history.shape == (20, 3)
    assert out.loss[-5:].mean() < out.loss[:3].mean(), f"{obj_name}/{param}/{transform}: {out.loss}"
    assert out.best.shape == (3, 3, 32, 32)
    assert float(out.best.min()) >= 0.0 and float(out.best.max()) <= 1.0
    assert_no_hooks(cnn)


@pytest.mark.parametrize("reg", [lo.total_variation(1.0), lo.l1(1.0), lo.l2(1.0), lo.blur(10.0)])
def test_each_regulariser_alone_decreases_its_penalty(cnn, reg):
    obj = 0.0 * lo.channel(SITE, 0)
    p = lo.PixelParam(2, 32, sd=1.0, seed=3)
    before = float(reg(p.render()).sum().detach())
    lo.optimize(cnn, obj, p, steps=20, lr=0.1, regularizers=[reg])
    assert float(reg(p.render()).sum().detach()) < before


def test_best_so_far_is_the_maximum_of_the_history(cnn):
    out = lo.optimize(
        cnn, lo.channel(SITE, [0, 1]), lo.FourierParam(2, 32), steps=15, transform=lo.standard_transforms()
    )
    np.testing.assert_allclose(out.best_score.numpy(), out.history.max(0), rtol=1e-6)


def test_same_seed_same_result(cnn):
    def run():
        p = lo.FourierParam(2, 32, seed=4)
        return lo.optimize(
            cnn, lo.channel(SITE, [3, 4]), p, steps=8, transform=lo.standard_transforms(), seed=7
        )

    a, b = run(), run()
    torch.testing.assert_close(a.best, b.best)
    np.testing.assert_array_equal(a.history, b.history)


def test_forward_is_truncated_after_the_objective_site(cnn):
    calls = []
    h = cnn[7].register_forward_hook(lambda *a: calls.append(1))
    try:
        lo.optimize(cnn, lo.channel(SITE, 0), lo.PixelParam(1, 32), steps=3)
    finally:
        h.remove()
    assert calls == []


def test_model_weights_get_no_gradients_and_mode_is_restored(cnn):
    cnn.train()
    lo.optimize(cnn, lo.logit(0), lo.PixelParam(1, 32), steps=2)
    assert cnn.training
    cnn.eval()
    assert all(p.grad is None for p in cnn.parameters())


def test_lr_finder_picks_a_candidate(cnn):
    out = lo.optimize(cnn, lo.channel(SITE, 0), lo.FourierParam(1, 32), steps=10, lr="auto")
    assert out.lr in lo.loop.LR_CANDIDATES


def test_objective_algebra_values_sites_and_description():
    t = {"a": torch.tensor([[1.0, 2.0], [3.0, 4.0]]), "b": torch.tensor([[0.5, 0.0], [0.0, 1.0]])}
    a, b = lo.neuron("a", 1), lo.neuron("b", [0, 1])
    obj = a + 2 * b - a / 2
    torch.testing.assert_close(obj(t), torch.tensor([2.0 + 1.0 - 1.0, 4.0 + 2.0 - 2.0]))
    assert obj.sites == ("a", "b")
    assert obj.description == "neuron(a, 1) + 2 * neuron(b, [0, 1]) - 0.5 * neuron(a, 1)"
    torch.testing.assert_close((-a)(t), -a(t))
    torch.testing.assert_close((a - 1.0)(t), a(t) - 1.0)
    with pytest.raises(TypeError):
        _ = a * b  # type: ignore[operator]


def test_channel_and_margin_values_by_hand():
    fmap = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    got = lo.channel("f", [2, 0])({"f": fmap})
    torch.testing.assert_close(got, torch.stack([fmap[0, 2].mean(), fmap[1, 0].mean()]))
    logits = torch.tensor([[1.0, 2.0, 6.0], [0.0, 3.0, 0.0]])
    torch.testing.assert_close(lo.logit_margin([2, 1])({"logits": logits}), torch.tensor([4.5, 3.0]))


def test_diversity_is_higher_for_different_images():
    same = torch.ones(3, 4, 5, 5)
    diff = torch.randn(3, 4, 5, 5, generator=torch.Generator().manual_seed(0)).abs()
    d = lo.diversity("x")
    assert float(d({"x": diff}).mean()) > float(d({"x": same}).mean())


@pytest.mark.parametrize("decorrelate", [True, False])
def test_fourier_round_trip(decorrelate):
    img = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.05
    p = lo.FourierParam.from_image(img, decorrelate=decorrelate)
    torch.testing.assert_close(p.render(), img, atol=1e-4, rtol=0)
    q = lo.PixelParam.from_image(img, decorrelate=decorrelate)
    torch.testing.assert_close(q.render(), img, atol=1e-4, rtol=0)


def test_fourier_spectrum_is_scaled_towards_low_frequencies():
    p = lo.FourierParam(1, 32, seed=0)
    assert float(p.scale[0, 0]) > float(p.scale[16, 16]) * 10


def test_colour_correlation_is_lucids_normalised_matrix():
    raw = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
    torch.testing.assert_close(lo.param.COLOR_CORRELATION, raw / raw.norm(dim=0).max())
    assert abs(float(lo.param.COLOR_CORRELATION.norm(dim=0).max()) - 1.0) < 1e-6


def test_transforms_preserve_shape_and_resample_to_out_size():
    x = torch.rand(5, 3, 20, 20)
    t = lo.standard_transforms()
    g = torch.Generator().manual_seed(0)
    assert t(x, generator=g).shape == x.shape
    assert t(x, out_size=32, generator=g).shape == (5, 3, 32, 32)


def test_transforms_are_identity_at_zero_strength():
    x = torch.rand(4, 3, 16, 16)
    zero = lo.no_transforms()
    assert torch.equal(zero(x), x)
    theta = zero.matrices(4, 16)
    torch.testing.assert_close(theta, torch.eye(2, 3).expand(4, 2, 3))
    grid = torch.nn.functional.affine_grid(theta, [4, 3, 16, 16], align_corners=False)
    out = torch.nn.functional.grid_sample(x, grid, align_corners=False)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_transforms_are_per_sample_and_seeded():
    t = Transform(pad=4, jitter=6, scales=(0.9, 1.1), angles=(-10.0, 10.0))
    x = torch.rand(1, 3, 16, 16).expand(8, -1, -1, -1)
    a = t(x, generator=torch.Generator().manual_seed(1))
    b = t(x, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert not torch.allclose(a[0], a[1])  # each sample drew its own transform
    # padding shows the fill colour at the border
    padded = Transform(pad=8, jitter=0, scales=(1.0,), angles=(0.0,))(torch.zeros(1, 3, 16, 16))
    assert float(padded[0, :, 0, 0].mean()) == pytest.approx(0.5, abs=1e-5)


def test_regularisers_are_zero_on_grey():
    grey = torch.full((2, 3, 8, 8), 0.5)
    for r in (lo.total_variation(), lo.l1(), lo.l2(), lo.blur()):
        assert torch.allclose(r(grey), torch.zeros(2))


# -- bad input -----------------------------------------------------------------------------------------
def test_channel_index_out_of_range_is_a_clear_error(cnn):
    with pytest.raises(lo.ObjectiveError, match=r"out of range.*16 channels"):
        lo.optimize(cnn, lo.channel(SITE, 16), lo.PixelParam(1, 32), steps=2)
    assert_no_hooks(cnn)


def test_site_without_channels_is_a_clear_error(cnn):
    with pytest.raises(lo.ObjectiveError, match="no channels"):
        lo.visualize(cnn, "module:6", [0], steps=2, size=32)
    assert_no_hooks(cnn)


def test_unit_list_must_match_the_batch(cnn):
    with pytest.raises(lo.ObjectiveError, match="indices for a batch of 3"):
        lo.optimize(cnn, lo.channel(SITE, [0, 1]), lo.PixelParam(3, 32), steps=1)


def test_softmax_models_are_detected():
    soft = nn.Sequential(tiny_cnn(), nn.Softmax(dim=-1))
    with pytest.raises(lo.ObjectiveError, match="softmax"):
        lo.prototypes(soft, [0, 1], steps=2)

    class Hidden(nn.Module):  # softmax inside forward, not a module: caught from the output
        def __init__(self) -> None:
            super().__init__()
            self.net = tiny_cnn()

        def forward(self, x):
            return torch.log_softmax(self.net(x), -1)

    with pytest.raises(lo.ObjectiveError, match="log-probabilities"):
        lo.optimize(Hidden(), lo.logit(0), lo.PixelParam(1, 32), steps=1)


def test_bad_arguments(cnn):
    with pytest.raises(ConfigError, match="steps"):
        lo.optimize(cnn, lo.logit(0), lo.PixelParam(1, 32), steps=0)
    with pytest.raises(ConfigError, match="Objective"):
        lo.optimize(cnn, "logit", lo.PixelParam(1, 32))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="parametrisation"):
        lo.image_param("wavelet", 1, 32)
    with pytest.raises(ConfigError, match="kind"):
        lo.visualize(cnn, SITE, [0], kind="pixel")
    with pytest.raises(ConfigError, match="pad and jitter"):
        Transform(pad=-1)
    with pytest.raises(ConfigError, match="tv weight"):
        lo.total_variation(-1.0)
    with pytest.raises(ConfigError, match="out of range"):
        lo.prototypes(cnn, [10], steps=1)


# -- feature visualisation + results ------------------------------------------------------------------
def test_visualize_all_kinds_and_result_round_trip(cnn, tmp_path):
    for kind, site, units in [
        ("channel", SITE, [0, 1]),
        ("neuron", SITE, [2]),
        ("layer", SITE, None),
        ("logit", "logits", [0, 9]),
    ]:
        r = lo.visualize(cnn, site, units, kind=kind, steps=6, size=32, n_samples=2)
        assert r.images.shape[1:] == (32, 32, 3)
        assert len(r.to_frame()) == len(r.units)
        fig = r.figure()
        assert fig.data[0].type == "image"
    back = lo.FeatureVisResult.load(r.save(tmp_path / "fv"))
    np.testing.assert_array_equal(back.images, r.images)
    assert back.units == r.units and back.kind == "logit"


def test_image_spec_normalisation_is_applied(cnn):
    spec = ImageSpec(size=32, mean=(0.2, 0.3, 0.4), std=(0.5, 0.5, 0.5))
    p = lo.PixelParam(1, 32, spec=spec)
    x = p.render()
    torch.testing.assert_close(p.model_inputs(x)["x"], spec.normalise(x))


def test_data_errors_for_images():
    from layerscope.optimize._models import to_images

    with pytest.raises(DataError, match=r"\[0, 1\]"):
        to_images(torch.full((1, 3, 8, 8), 255.0))
    with pytest.raises(DataError, match="must be"):
        to_images(
            torch.zeros(2, 8, 8)
        )  # missing channel axis -> rank 3 taken as one HWC image? no: 8 channels
    with pytest.raises(DataError, match="8x8"):
        to_images(torch.zeros(1, 3, 16, 16), size=8)


def test_standard_transforms_scale_with_small_images():
    assert lo.standard_transforms() == lo.standard_transforms(224) == lo.standard_transforms(128)
    small = lo.standard_transforms(32)
    assert (small.pad, small.jitter) == (3, 3) and small.scales == lo.standard_transforms().scales
    with pytest.raises(ConfigError, match="positive number of pixels"):
        lo.standard_transforms(0)
