"""Attribution on tiny models: equality with Captum, completeness, exactness, bad input, results."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from layerscope.attribution import (
    AttributionResult,
    AttributionWarning,
    Continuation,
    Distribution,
    FeatureAblation,
    GradientShap,
    InputXGradient,
    IntegratedGradients,
    KernelShap,
    Saliency,
    SmoothGrad,
    TokenBaseline,
    attention,
    attention_rollout,
    baseline_sensitivity,
    quadrature,
)
from layerscope.errors import ConfigError, DataError, UnknownSiteError
from layerscope.models.adapter import Adapter
from layerscope.models.subject import ImageSpec, Subject
from layerscope.testing import assert_no_hooks, tiny_bert, tiny_cnn, tiny_llama

captum_attr = pytest.importorskip("captum.attr")

TEXTS = ["the cat sat on the mat.", "hello world", "a big red dog ran and played in the mat"]


def _generic(model: nn.Module, size: int = 8) -> Subject:
    model.eval()
    return Subject(model=model, adapter=Adapter.for_model(model), name="generic", image=ImageSpec(size=size))


@pytest.fixture(scope="module")
def bert():
    return tiny_bert(classifier=True)


@pytest.fixture(scope="module")
def cnn():
    return _generic(tiny_cnn(), size=32)


def _pad_baseline_ids(s, texts):
    enc = s.tokenize(texts)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    special = torch.tensor(
        [s.tokenizer.get_special_tokens_mask(x, already_has_special_tokens=True) for x in ids.tolist()]
    ).bool()
    ref = torch.where(special | (mask == 0), ids, torch.full_like(ids, s.tokenizer.pad_token_id))
    return ids, mask, ref


# -- quadrature ---------------------------------------------------------------------------------------
def test_gauss_legendre_weights_sum_to_one_and_trapezoid_does_not():
    for n in (2, 7, 50):
        a, w = quadrature("gausslegendre", n)
        assert abs(float(w.double().sum()) - 1) < 1e-6 and (a > 0).all() and (a < 1).all()
        _, wt = quadrature("riemann_trapezoid", n)
        assert abs(float(wt.double().sum()) - (1 - 1 / n)) < 1e-6


class _SumSq(nn.Module):
    def forward(self, x):
        return (x**2).sum(-1, keepdim=True)


@pytest.mark.parametrize(
    ("method", "n", "ratio"),
    [
        ("riemann_right", 10, 1.10),
        ("riemann_left", 10, 0.90),
        ("riemann_middle", 50, 1.00),
        ("gausslegendre", 10, 1.0),
    ],
)
def test_reference_vectors_sum_of_squares(method, n, ratio):
    s = _generic(_SumSq())
    x = torch.tensor([[1.0, -2.0, 3.0]])
    r = IntegratedGradients(s, n_steps=n, method=method).attribute(x, target=0, keep_raw=True)
    assert float(r.raw.sum()) / float((x**2).sum()) == pytest.approx(ratio, abs=2e-3)
    if method == "gausslegendre":
        np.testing.assert_allclose(r.raw[0], (x**2)[0].numpy(), rtol=1e-5)


def test_linear_model_is_exact_and_trapezoid_shows_minus_one_over_n():
    torch.manual_seed(0)
    lin = nn.Linear(6, 3)
    s = _generic(lin)
    x, b = torch.randn(4, 6), torch.randn(4, 6)
    exact = (lin.weight[1] * (x - b)).detach().numpy()
    for n in (1, 3, 20):
        r = IntegratedGradients(s, n_steps=n).attribute(x, target=1, baseline=b, keep_raw=True)
        np.testing.assert_allclose(r.raw, exact, rtol=1e-5, atol=1e-6)
        assert np.abs(r.delta).max() < 1e-5
    r = IntegratedGradients(s, n_steps=10, method="riemann_trapezoid").attribute(
        x, target=1, baseline=b, keep_raw=True
    )
    np.testing.assert_allclose(r.raw, exact * 0.9, rtol=1e-5, atol=1e-6)


# -- equality with Captum -----------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid", "riemann_left"])
def test_ig_equals_captum_on_tiny_cnn(cnn, method):
    torch.manual_seed(1)
    x = torch.randn(3, 3, 12, 12)
    base = torch.randn(3, 3, 12, 12) * 0.1
    r = IntegratedGradients(cnn, n_steps=16, method=method, batch_tokens=500).attribute(
        x, target=[1, 2, 3], baseline=base, keep_raw=True
    )
    ref, delta = captum_attr.IntegratedGradients(cnn.model).attribute(
        x, baselines=base, target=[1, 2, 3], n_steps=16, method=method, return_convergence_delta=True
    )
    np.testing.assert_allclose(r.raw, ref.numpy(), atol=1e-5 * max(1.0, float(ref.abs().max())))
    np.testing.assert_allclose(r.delta, delta.numpy(), atol=1e-5)
    assert r.scores.shape == (3, 12, 12)


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid"])
def test_layer_ig_equals_captum_on_tiny_bert_with_pad_baseline(bert, method):
    ids, mask, ref = _pad_baseline_ids(bert, TEXTS)
    r = IntegratedGradients(bert, n_steps=20, method=method, batch_tokens=100).attribute(
        TEXTS, target=[0, 1, 2], baseline="pad", keep_raw=True
    )

    def f(ids, mask):
        return bert.model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).logits

    lig = captum_attr.LayerIntegratedGradients(f, bert.model.bert.embeddings.word_embeddings)
    a = lig.attribute(
        ids, baselines=ref, target=[0, 1, 2], additional_forward_args=(mask,), n_steps=20, method=method
    )
    scale = float(a.abs().max())
    np.testing.assert_allclose(r.raw, a.numpy(), atol=1e-5 * scale)
    per_tok = a.sum(-1)
    for row in range(3):
        n = len(r.tokens[row])
        np.testing.assert_allclose(r.scores[row, :n], per_tok[row, :n].numpy(), atol=1e-5 * scale)
    assert_no_hooks(bert)


@pytest.mark.parametrize(("share_rows", "jacobian"), [(True, "forward"), (True, "reverse"), (False, "auto")])
def test_continuation_equals_captum_llm_gradient_attribution(share_rows, jacobian):
    s = tiny_llama()
    prompt = "The cat sat on"
    cont = tuple(s.tokenizer(" the mat. Hello", add_special_tokens=False)["input_ids"])
    r = IntegratedGradients(
        s, n_steps=8, batch_tokens=256, share_rows=share_rows, jacobian=jacobian
    ).attribute(prompt, target=Continuation(ids=cont), baseline=TokenBaseline(0))
    llm = captum_attr.LLMGradientAttribution(
        captum_attr.LayerIntegratedGradients(s.model, s.model.get_input_embeddings()), s.tokenizer
    )
    # Captum attributes an indicator of ones; 0 means "TextTokenInput's baseline token" (here id 0)
    inp = captum_attr.TextTokenInput(prompt, s.tokenizer, baselines=0)
    out = llm.attribute(inp, target=torch.tensor(cont), n_steps=8, baselines=0)
    assert r.scores.shape == tuple(out.token_attr.shape) == (len(cont), len(r.tokens[0]))
    np.testing.assert_allclose(
        r.scores, out.token_attr.numpy(), atol=1e-5 * float(out.token_attr.abs().max())
    )
    assert r.tokens[0] == list(out.input_tokens)
    np.testing.assert_allclose(np.nansum(r.scores, 1) - (r.f_input - r.f_baseline), r.delta, atol=1e-5)


def test_forward_mode_is_chosen_for_short_prompts_and_refused_where_it_cannot_serve():
    s = tiny_llama()
    cont = Continuation(ids=tuple(s.tokenizer(" mat", add_special_tokens=False)["input_ids"]))  # 2 tokens
    calls = []
    ig = IntegratedGradients(s, n_steps=4)
    original = ig._forward_mode
    ig._forward_mode = lambda *a: calls.append(original(*a)) or calls[-1]  # type: ignore[method-assign]
    short = ig.attribute("The", target=cont, baseline=TokenBaseline(0))
    ig.attribute("The cat sat on the", target=cont, baseline=TokenBaseline(0))
    assert calls == [True, False]  # positions <= 2 x targets: forward; a long prompt: reverse
    raw = ig.attribute("The", target=cont, baseline=TokenBaseline(0), keep_raw=True)  # raw needs reverse
    assert raw.raw is not None and calls[-1] is False
    np.testing.assert_allclose(short.scores, raw.scores, atol=1e-5 * np.nanmax(np.abs(raw.scores)))
    with pytest.raises(ConfigError, match="jacobian='forward'"):
        IntegratedGradients(s, n_steps=2, jacobian="forward").attribute(
            "The", target=cont, baseline=TokenBaseline(0), keep_raw=True
        )
    with pytest.raises(ConfigError, match="jacobian must be"):
        IntegratedGradients(s, jacobian="sideways")  # type: ignore[arg-type]
    assert_no_hooks(s)


def test_saliency_and_input_x_gradient_equal_captum(cnn):
    torch.manual_seed(2)
    x = torch.randn(2, 3, 12, 12)
    sal = Saliency(cnn).attribute(x, target=[4, 5], keep_raw=True)
    ref = captum_attr.Saliency(cnn.model).attribute(x, target=[4, 5])
    np.testing.assert_allclose(sal.raw, ref.numpy(), atol=1e-6)
    ixg = InputXGradient(cnn).attribute(x, target=[4, 5], keep_raw=True)
    ref = captum_attr.InputXGradient(cnn.model).attribute(x, target=[4, 5])
    np.testing.assert_allclose(ixg.raw, ref.detach().numpy(), atol=1e-6)


def test_feature_ablation_equals_captum_on_tokens(bert):
    ids, mask, _ = _pad_baseline_ids(bert, TEXTS)
    r = FeatureAblation(bert).attribute(TEXTS, target=[0, 1, 2], baseline="pad")

    def f(ids, mask):
        return bert.model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).logits

    a = captum_attr.FeatureAblation(f).attribute(
        ids, baselines=bert.tokenizer.pad_token_id, target=[0, 1, 2], additional_forward_args=(mask,)
    )
    for row in range(3):
        n = len(r.tokens[row])
        np.testing.assert_allclose(r.scores[row, 1 : n - 1], a[row, 1 : n - 1].numpy(), atol=1e-7)


# -- invariants ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: tiny_bert(classifier=True, seed=3), lambda: tiny_llama(seed=4)])
def test_completeness_on_random_tiny_models(make):
    s = make()
    target = [0, 1, 2] if s.kind == "encoder" else [5, 9, 11]
    # Llama's RMSNorm is singular at the zero vector (tiny_llama's pad embedding is zero): use token 5
    baseline = "zero" if s.kind == "encoder" else TokenBaseline(5)
    r = IntegratedGradients(s, n_steps=64).attribute(TEXTS, target=target, baseline=baseline)
    diff = r.f_input - r.f_baseline
    assert np.all(np.abs(r.delta) <= 1e-4 * np.abs(diff) + 1e-7)
    # the per-token scores carry the whole difference (padding columns are NaN)
    np.testing.assert_allclose(np.nansum(r.scores, axis=1), diff, atol=1e-4 * np.abs(diff).max() + 1e-7)


def test_adaptive_steps_reach_tolerance_and_report_steps(bert):
    r = IntegratedGradients(bert, n_steps="auto", tol=0.01, max_steps=128).attribute(
        TEXTS, target=[0, 1, 2], baseline="pad"
    )
    diff = np.abs(r.f_input - r.f_baseline)
    ok = r.steps < 129
    assert np.all(np.abs(r.delta[ok]) <= 0.01 * diff[ok] + 1e-7)
    # Simpson panels: 8 intervals to start (9 nodes), two new nodes per split panel
    assert np.all(r.steps >= 9) and np.all(r.steps % 2 == 1) and np.all(r.steps <= 129)
    np.testing.assert_array_equal(r.evaluations, r.steps)  # nothing evaluated twice
    # the reported delta is the completeness gap of the returned scores
    np.testing.assert_allclose(np.nansum(r.scores, axis=1) - (r.f_input - r.f_baseline), r.delta, atol=1e-5)
    fixed = IntegratedGradients(bert, n_steps=8).attribute(TEXTS, target=[0, 1, 2], baseline="pad")
    np.testing.assert_allclose(r.f_input, fixed.f_input, rtol=1e-6)
    np.testing.assert_allclose(r.f_baseline, fixed.f_baseline, rtol=1e-6)


class _Cube(nn.Module):
    def forward(self, x):
        return (x**3).sum(-1, keepdim=True) + x[:, :1]


class _Sharp(nn.Module):
    """A logistic step along the path at α ≈ 0.7: the derivative is a narrow bump there."""

    def forward(self, x):
        return torch.sigmoid(40 * (x.sum(-1, keepdim=True) - 0.7 * x.shape[-1]))


def test_adaptive_is_exact_for_cubic_paths_and_refines_sharp_ones():
    x = torch.linspace(-1, 2, 6).view(1, 6)
    cube = _generic(_Cube())
    r = IntegratedGradients(cube, site="input", n_steps="auto", min_steps=2).attribute(x, target=0)
    exact = (x**3).sum() + x[0, 0]  # from a zero baseline, F(0) = 0
    assert r.steps[0] == 3 and abs(r.delta[0]) < 1e-6 * float(exact)  # Simpson is exact: no refinement
    np.testing.assert_allclose(r.scores.sum(), float(exact), rtol=1e-6)
    sharp = _generic(_Sharp())
    ones = torch.ones(1, 6)
    r = IntegratedGradients(sharp, site="input", n_steps="auto", tol=1e-3).attribute(ones, target=0)
    gap = float(r.f_input[0] - r.f_baseline[0])
    assert abs(r.delta[0]) <= 1e-3 * gap and 9 < r.steps[0] <= 257
    capped = IntegratedGradients(sharp, site="input", n_steps="auto", tol=1e-9, max_steps=16).attribute(
        ones, target=0
    )
    assert capped.steps[0] <= 17


def test_chunking_does_not_change_results(bert):
    a = IntegratedGradients(bert, n_steps=12, batch_tokens=10_000).attribute(TEXTS, target=1, baseline="mask")
    b = IntegratedGradients(bert, n_steps=12, batch_tokens=40).attribute(TEXTS, target=1, baseline="mask")
    c = IntegratedGradients(bert, n_steps=12, batch_size=5).attribute(TEXTS, target=1, baseline="mask")
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-9, equal_nan=True)
    np.testing.assert_allclose(a.scores, c.scores, atol=1e-9, equal_nan=True)


def test_block_site_matches_captum_layer_ig(bert):
    ids, mask, ref = _pad_baseline_ids(bert, TEXTS[:2])
    r = IntegratedGradients(bert, site="blocks.0.resid_post", n_steps=10).attribute(
        TEXTS[:2], target=[0, 2], baseline="pad", keep_raw=True
    )

    def f(ids, mask):
        return bert.model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).logits

    lig = captum_attr.LayerIntegratedGradients(f, bert.model.bert.encoder.layer[0])
    a = lig.attribute(ids, baselines=ref, target=[0, 2], additional_forward_args=(mask,), n_steps=10)
    a = a[0] if isinstance(a, tuple) else a
    np.testing.assert_allclose(r.raw, a.numpy(), atol=1e-5 * float(a.abs().max()))


def test_kernel_shap_efficiency(bert):
    r = KernelShap(bert, n_samples=300).attribute(TEXTS[:2], target=[0, 1])
    diff = np.abs(r.f_input - r.f_baseline)
    assert np.all(np.abs(r.delta) <= 1e-3 * diff + 1e-8)


def test_expected_gradients_exact_on_linear_model():
    torch.manual_seed(0)
    lin = nn.Linear(5, 2)
    s = _generic(lin)
    x = torch.randn(3, 5)
    dist = torch.randn(7, 5)
    r = GradientShap(s, n_samples=64).attribute(x, target=0, baseline=Distribution(dist), keep_raw=True)
    # linear model: attribution = w * (x - E[b]) up to the Monte-Carlo choice of baselines; its sum is exact
    # for each drawn baseline, so totals lie within the range of w·(x − b) over the samples
    tot = r.raw.sum(1)
    per_b = ((x[:, None, :] - dist[None]) * lin.weight[0].detach()).sum(-1).numpy()
    assert np.all(tot >= per_b.min(1) - 1e-5) and np.all(tot <= per_b.max(1) + 1e-5)


def test_smoothgrad_without_noise_is_saliency(cnn):
    x = torch.randn(1, 3, 12, 12)
    a = SmoothGrad(cnn, n_samples=3, noise=0.0).attribute(x, target=2, keep_raw=True)
    b = Saliency(cnn).attribute(x, target=2, keep_raw=True)
    np.testing.assert_allclose(a.raw, b.raw, atol=1e-6)


def test_words_aggregate_subwords(bert):
    r = IntegratedGradients(bert, n_steps=8).attribute(
        ["unbelievable running dogs"], target=0, baseline="pad"
    )
    assert r.words[0] == ["unbelievable", "running", "dogs"]
    assert len(r.tokens[0]) > 3
    assert np.nansum(r.word_scores[0]) == pytest.approx(np.nansum(r.scores[0]), abs=1e-9)


# -- bad input ----------------------------------------------------------------------------------------
def test_target_out_of_range(bert):
    with pytest.raises(ConfigError, match=r"out of range.*3 classes"):
        IntegratedGradients(bert).attribute(TEXTS[:1], target=3)
    with pytest.raises(ConfigError, match="2 targets for 3 inputs"):
        IntegratedGradients(bert).attribute(TEXTS, target=[0, 1])
    assert_no_hooks(bert)


def test_baseline_of_wrong_shape(bert):
    with pytest.raises(ConfigError, match="baseline has shape"):
        IntegratedGradients(bert).attribute(TEXTS[:1], target=0, baseline=torch.zeros(3, 5))
    with pytest.raises(ConfigError, match="unknown baseline"):
        IntegratedGradients(bert).attribute(TEXTS[:1], target=0, baseline="blur")
    with pytest.raises(ConfigError, match="distribution needs"):
        IntegratedGradients(bert).attribute(TEXTS[:1], target=0, baseline=Distribution(torch.zeros(2, 9, 32)))


def test_empty_text(bert):
    with pytest.raises(DataError, match="empty"):
        IntegratedGradients(bert).attribute(["  "], target=0)
    with pytest.raises(DataError, match="no inputs"):
        IntegratedGradients(bert).attribute([], target=0)


def test_too_long_text_is_truncated_with_a_warning_naming_the_cut(bert):
    text = " ".join(["cat"] * 70) + " zebra"
    with pytest.warns(AttributionWarning, match=r"truncated.*dropping \d+ tokens.*zebra"):
        r = IntegratedGradients(bert, n_steps=4).attribute([text], target=0, baseline="pad")
    assert len(r.tokens[0]) == 64 and r.tokens[0][-1] == "[SEP]"


def test_train_mode_warns_and_restores(bert):
    bert.model.train()
    try:
        with pytest.warns(AttributionWarning, match="train mode"):
            IntegratedGradients(bert, n_steps=4).attribute(TEXTS[:1], target=0)
        assert bert.model.training
    finally:
        bert.model.eval()


def test_bad_site_and_bad_arguments(bert):
    with pytest.raises(UnknownSiteError):
        IntegratedGradients(bert, site="blocks.9.resid_post")
    with pytest.raises(ConfigError):
        IntegratedGradients(bert, n_steps=0)
    with pytest.raises(ConfigError):
        IntegratedGradients(bert, method="simpson")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="Continuation target needs a causal LM"):
        IntegratedGradients(bert).attribute(TEXTS[:1], target=Continuation("the"))


def test_no_hooks_after_error_in_objective(bert):
    def bad(out):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        IntegratedGradients(bert, n_steps=4).attribute(TEXTS[:1], target=bad)
    assert_no_hooks(bert)
    assert all(p.requires_grad for p in bert.model.parameters())


# -- results, sensitivity, attention --------------------------------------------------------------------
def test_result_roundtrip_frame_and_figure(bert, tmp_path):
    r = IntegratedGradients(bert, n_steps=6).attribute(TEXTS, target=[0, 1, 2], baseline="pad")
    r2 = AttributionResult.load(r.save(tmp_path / "r"))
    np.testing.assert_array_equal(r.scores, r2.scores)
    assert r2.tokens == r.tokens and r2.words == r.words and r2.target == r.target
    frame = r.to_frame()
    assert len(frame) == sum(len(t) for t in r.tokens)
    fig = r.figure()
    assert fig.data[0].type == "heatmap" and r.summary()


def test_baseline_sensitivity_identical_and_different(bert):
    ig = IntegratedGradients(bert, n_steps=8)
    same = baseline_sensitivity(ig, TEXTS, target=0, baselines=["pad", TokenBaseline(0)], k=2)
    np.testing.assert_allclose(same.spearman, 1.0)
    np.testing.assert_allclose(same.topk, 1.0)
    diff = baseline_sensitivity(ig, TEXTS, target=0, baselines=["pad", "mask", "zero"], k=2)
    assert diff.spearman.shape == (3, 3) and len(diff.per_example) == 3 * 3
    assert len(diff.figures()) == 2 and diff.summary()


def test_attention_rollout_and_flow(bert):
    eye = np.broadcast_to(np.eye(4), (2, 3, 4, 4))
    np.testing.assert_allclose(attention_rollout(eye)[-1], np.eye(4))
    res = attention(bert, "the cat sat on the mat")
    np.testing.assert_allclose(res.rollout.sum(-1), 1.0, atol=1e-6)
    assert res.patterns.shape[:2] == (2, 4) and np.all(res.flow <= 1 + 1e-9) and res.flow[0] > 0
    assert_no_hooks(bert)


def test_image_baselines_are_normalised():
    spec = ImageSpec(size=8, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    s = Subject(model=tiny_cnn().eval(), adapter=Adapter.for_model(tiny_cnn()), name="cnn", image=spec)
    x = torch.zeros(1, 3, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = IntegratedGradients(s, n_steps=2).attribute(x, target=0, baseline="black")
    # black pixels = (0 - mean) / std; F(baseline) must equal the model on that image
    black = (torch.zeros(1, 3, 8, 8) - torch.tensor(spec.mean).view(1, 3, 1, 1)) / 0.2
    with torch.no_grad():
        expect = float(s.model(black)[0, 0])
    assert r.f_baseline[0] == pytest.approx(expect, abs=1e-6)


def test_attention_view_payload_is_compact_escaped_and_decodes():
    import base64
    import json
    import re

    from layerscope.attribution import attention_view_html

    rng = np.random.default_rng(0)
    pats = rng.random((2, 3, 5, 5))
    pats /= pats.sum(-1, keepdims=True)
    tokens = ["a", "</script><b>", "c", "d", "e"]
    page = attention_view_html(tokens, pats, top_k=2)
    assert "</script><b>" not in page  # the token is inside JSON with "</" escaped
    data = json.loads(re.search(r'type="application/json"[^>]*>(.*?)</script>', page, re.S).group(1))
    assert data["tokens"] == tokens
    idx = np.frombuffer(base64.b64decode(data["layers"][1]["i"]), dtype="<u2").reshape(3, 5, 2)
    val = np.frombuffer(base64.b64decode(data["layers"][1]["v"]), dtype=np.uint8).reshape(3, 5, 2)
    np.testing.assert_array_equal(idx[..., 0], pats[1].argmax(-1))
    np.testing.assert_allclose(val[..., 0] / 255, pats[1].max(-1), atol=1 / 255)
    # 512 tokens x 30 layers x 9 heads at top-8: bytes of payload well under the 15 MB budget
    per_layer = len(attention_view_html(["t"] * 512, np.full((1, 9, 512, 512), 1 / 512), top_k=8))
    assert 30 * per_layer < 15e6
    with pytest.raises(ConfigError):
        attention_view_html(tokens, pats[0])


def test_left_padding_gives_the_same_tokens_and_scores():
    s = tiny_llama(seed=2)
    texts = ["Hi", "A dog ran to the big red house and"]

    def run():
        ig = IntegratedGradients(s, n_steps=3)
        return ig.attribute(texts, target=Continuation(ids=(7, 9)), baseline=TokenBaseline(5))

    right = run()
    s.tokenizer.padding_side = "left"
    try:
        left = run()
    finally:
        s.tokenizer.padding_side = "right"
    assert left.tokens == right.tokens and left.words == right.words
    np.testing.assert_allclose(left.scores, right.scores, atol=1e-5 * float(np.nanmax(np.abs(right.scores))))
