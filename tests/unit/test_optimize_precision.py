"""``precision=`` of the optimisation loop: bfloat16 autocast of the model only, float32 everywhere else."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import layerscope._precision as prec
import layerscope.optimize as lo
from layerscope.errors import ConfigError
from layerscope.testing import assert_no_hooks, tiny_cnn

SITE = "module:3"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cnn():
    return tiny_cnn(seed=0)


def _recording(objective: lo.Objective, seen: list[torch.dtype]) -> lo.Objective:
    def fn(trace):
        seen.extend(v.dtype for v in trace.values() if isinstance(v, torch.Tensor))
        return objective(trace)

    return lo.Objective(fn, objective.sites, objective.description)


def test_bfloat16_runs_the_model_in_bfloat16_and_the_objective_in_float32(cnn):
    seen_model: list[torch.dtype] = []
    h = cnn[3].register_forward_hook(lambda m, i, o: seen_model.append(o.dtype))
    seen_obj: list[torch.dtype] = []
    try:
        out = lo.optimize(
            cnn,
            _recording(lo.channel(SITE, [0, 1]), seen_obj),
            lo.FourierParam(2, 32, seed=1),
            steps=12,
            lr=0.1,
            transform=lo.standard_transforms(),
            precision="bfloat16",
        )
    finally:
        h.remove()
    assert set(seen_model) == {torch.bfloat16}  # autocast reached the convolution
    assert seen_obj and set(seen_obj) == {torch.float32}  # the objective read float32 copies
    assert out.best.dtype == torch.float32 and out.history.dtype == np.float32
    assert out.loss[-4:].mean() < out.loss[:3].mean()
    assert_no_hooks(cnn)
    assert all(p.grad is None for p in cnn.parameters())


def test_float32_is_the_loop_default_and_bfloat16_stays_close(cnn):
    def run(**kw):
        return lo.optimize(
            cnn, lo.channel(SITE, [0, 1]), lo.PixelParam(2, 32, seed=2), steps=5, lr=0.05, **kw
        )

    default, f32, bf = run(), run(precision="float32"), run(precision="bfloat16")
    np.testing.assert_array_equal(default.history, f32.history)  # the loop's default is float32, unchanged
    # the same path from the same start: bfloat16 round-off moves the scores by a few parts in a hundred
    np.testing.assert_allclose(bf.history, f32.history, rtol=0.05, atol=0.05 * np.abs(f32.history).max())


def test_prototypes_in_bfloat16_reach_high_target_probability():
    from layerscope.optimize._models import digits_cnn

    s = digits_cnn(epochs=10)  # the digits tests' model (cached per process)
    r = lo.prototypes(
        s, list(range(10)), steps=40, param="pixel", transforms="none", lr=0.2, precision="bfloat16"
    )
    assert (r.target_prob > 0.9).all(), r.target_prob  # probabilities come from a float32 pass
    assert r.settings["precision"] == "bfloat16"
    r32 = lo.prototypes(s, [0], steps=2, param="pixel", transforms="none", precision="float32")
    assert r32.settings["precision"] == "float32"


def test_auto_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(prec, "bf16_matmul_is_fast", lambda: True)
    assert prec.autocast_dtype("auto", "cpu") == torch.bfloat16
    assert prec.resolve_precision("auto") == torch.bfloat16
    monkeypatch.setattr(prec, "bf16_matmul_is_fast", lambda: False)
    assert prec.autocast_dtype("auto", "cpu") is None
    assert prec.resolve_precision("auto") == torch.float32
    assert prec.autocast_dtype("float32", "cpu") is None
    assert prec.autocast_dtype("bfloat16", "cpu") == torch.bfloat16


def test_bad_precision_is_a_clear_error(cnn):
    with pytest.raises(ConfigError, match="precision must be"):
        lo.optimize(cnn, lo.logit(0), lo.PixelParam(1, 32), steps=1, precision="fp16")
    with pytest.raises(ConfigError, match="precision must be"):
        lo.prototypes(cnn, [0], steps=1, precision="half")
    with pytest.raises(ConfigError, match="precision must be"):
        lo.visualize(cnn, SITE, [0], steps=1, precision=None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="precision must be"):
        prec.resolve_precision("float64")


def test_auto_times_a_step_of_each_and_records_the_choice(cnn, monkeypatch):
    import layerscope.optimize.loop as loop

    def run():
        return lo.optimize(
            cnn, lo.channel(SITE, [0, 1]), lo.PixelParam(2, 32, seed=2), steps=3, precision="auto"
        )

    monkeypatch.setattr(prec, "bf16_matmul_is_fast", lambda: False)
    assert run().precision == "float32"  # no native bfloat16: no timing, float32
    monkeypatch.setattr(prec, "bf16_matmul_is_fast", lambda: True)
    monkeypatch.setattr(loop, "AUTO_MIN_GAIN", 1e-9)  # any bfloat16 step counts as faster
    picked = run()
    assert picked.precision == "bfloat16"
    monkeypatch.setattr(loop, "AUTO_MIN_GAIN", 1e9)  # no bfloat16 step is fast enough
    kept = run()
    assert kept.precision == "float32"
    # the timing steps touch neither the parameters nor the run's random draws
    np.testing.assert_array_equal(kept.history, run_plain(cnn).history)
    assert_no_hooks(cnn)


def run_plain(cnn):
    return lo.optimize(cnn, lo.channel(SITE, [0, 1]), lo.PixelParam(2, 32, seed=2), steps=3)


def test_auto_on_cuda_needs_native_bfloat16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))  # T4: emulated
    assert prec.autocast_dtype("auto", "cuda:0") is None
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))  # A100
    assert prec.autocast_dtype("auto", "cuda:0") == torch.bfloat16
