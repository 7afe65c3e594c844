import pytest
import torch

from layerscope.capture import SiteOptions, capture, intervene
from layerscope.errors import InterventionError, UnknownSiteError
from layerscope.testing import assert_no_hooks, tiny_bert, tiny_cnn, tiny_llama


@pytest.fixture(scope="module")
def llama():
    return tiny_llama()


def _inputs(s):
    return dict(s.tokenize(["the cat sat on the mat", "hello"]))


def test_hooks_removed_after_success_and_exception(llama):
    with capture(llama, ["blocks.0.resid_post"]) as tr:
        llama.forward(_inputs(llama))
    assert "blocks.0.resid_post" in tr
    assert_no_hooks(llama)
    with pytest.raises(RuntimeError, match="boom"), capture(llama, ["blocks.*.resid_post"], stop=False):
        raise RuntimeError("boom")
    assert_no_hooks(llama)

    def bad_forward(*a, **k):
        raise ValueError("inside forward")

    handle = llama.model.model.layers[1].register_forward_pre_hook(bad_forward)
    try:
        with (
            pytest.raises(ValueError, match="inside forward"),
            capture(llama, ["blocks.1.resid_post"], stop=False),
        ):
            llama.forward(_inputs(llama))
    finally:
        handle.remove()
    assert_no_hooks(llama)
    with pytest.raises(InterventionError), intervene(llama, {"blocks.0.mlp.out": lambda t, site: t[:, :1]}):
        llama.forward(_inputs(llama))
    assert_no_hooks(llama)


def test_unknown_site_registers_nothing(llama):
    with pytest.raises(UnknownSiteError), capture(llama, ["blocks.0.resid_post", "blocks.0.nope"]):
        pass
    assert_no_hooks(llama)


def test_stop_cuts_forward_after_last_site(llama):
    calls = []
    h = llama.model.model.layers[1].register_forward_hook(lambda *a: calls.append(1))
    try:
        with torch.no_grad(), capture(llama, ["blocks.0.resid_post"], stop=True) as tr:
            llama.forward(_inputs(llama))
            calls.append("after")  # never reached: the forward was cut
        assert calls == [] and tr.complete
        with torch.no_grad(), capture(llama, ["blocks.0.resid_post"], stop=False):
            llama.forward(_inputs(llama))
        assert calls == [1]
    finally:
        h.remove()


def test_gradients_flow_when_not_detached(llama):
    inputs = _inputs(llama)
    with capture(
        llama, {"blocks.0.resid_post": SiteOptions(retain_grad=True)}, stop=False, detach=False
    ) as tr:
        out = llama.forward(inputs)
    out.logits[..., 3].sum().backward()
    g = tr["blocks.0.resid_post"].grad
    assert g is not None and g.abs().sum() > 0
    llama.model.zero_grad()


def test_site_fn_dtype_and_cpu(llama):
    with (
        torch.no_grad(),
        capture(
            llama,
            {"blocks.0.mlp.post": SiteOptions(fn=lambda t: t.mean(1), dtype=torch.float16, to_cpu=True)},
        ) as tr,
    ):
        llama.forward(_inputs(llama))
    v = tr["blocks.0.mlp.post"]
    assert v.shape == (2, 64) and v.dtype == torch.float16


def test_noop_intervention_is_bit_identical(llama):
    inputs = _inputs(llama)
    with torch.no_grad():
        ref = llama.forward(inputs).logits
        with intervene(
            llama, {"blocks.*.resid_post": lambda t, site: None, "blocks.0.mlp.post": lambda t, site: t}
        ):
            got = llama.forward(inputs).logits
    assert torch.equal(ref, got)
    assert_no_hooks(llama)


def test_zero_ablation_changes_output_and_equals_manual(llama):
    inputs = _inputs(llama)
    with torch.no_grad():
        ref = llama.forward(inputs).logits
        with intervene(llama, {"blocks.1.mlp.out": lambda t, site: torch.zeros_like(t)}):
            ablated = llama.forward(inputs).logits
        with capture(llama, ["blocks.1.resid_mid"]) as tr:
            llama.forward(inputs)
        manual = llama.model.lm_head(llama.model.model.norm(tr["blocks.1.resid_mid"]))
    assert not torch.allclose(ref, ablated)
    torch.testing.assert_close(ablated, manual)


def test_intervene_on_input_site_and_capture_sees_edit(llama):
    inputs = _inputs(llama)
    with (
        torch.no_grad(),
        intervene(llama, {"blocks.1.resid_pre": lambda t, site: t * 0}),
        capture(llama, ["blocks.1.resid_pre"]) as tr,
    ):
        llama.forward(inputs)
    assert tr["blocks.1.resid_pre"].abs().max() == 0


def test_intervene_bad_inputs(llama):
    with pytest.raises(InterventionError, match="read-only"):
        intervene(llama, {"blocks.0.attn.pattern": lambda t, site: t})
    with pytest.raises(InterventionError, match="non-empty"):
        intervene(llama, {})
    with pytest.raises(InterventionError, match="not a callable"):
        intervene(llama, {"blocks.0.mlp.out": 3})
    with (
        pytest.raises(InterventionError, match="returned a"),
        torch.no_grad(),
        intervene(llama, {"blocks.0.mlp.out": lambda t, site: "x"}),
    ):
        llama.forward(_inputs(llama))
    assert_no_hooks(llama)


def test_plain_module_capture():
    cnn = tiny_cnn()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), capture(cnn, ["module:3", "logits"], stop=False) as tr:
        out = cnn(x)
    assert tr["module:3"].shape == (2, 16, 16, 16)
    torch.testing.assert_close(tr["logits"], out)
    assert_no_hooks(cnn)


def test_trace_errors():
    s = tiny_bert()
    with torch.no_grad(), capture(s, ["blocks.0.resid_post"]) as tr:
        s.forward(dict(s.tokenize(["hello"])))
    with pytest.raises(KeyError, match="not captured"):
        tr["blocks.1.resid_post"]


def test_public_capture_works_after_the_subpackage_is_imported():
    import layerscope
    import layerscope.capture.extract

    s = tiny_bert()
    with torch.no_grad(), layerscope.capture(s, ["blocks.0.resid_post"]) as tr:
        s.forward(dict(s.tokenize(["hello"])))
    assert "blocks.0.resid_post" in tr
    assert_no_hooks(s)
