"""LRP on the embedded models: conservation where it must be exact, SDPA = eager, no trace left behind."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from layerscope.attribution.lrp import LRP, conservation
from layerscope.models.adapter import Adapter
from layerscope.models.subject import Subject
from layerscope.testing import assert_no_hooks

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_thread")]

TEXTS = [
    "The room was clean and the staff were wonderful.",
    "Terrible service, the food was cold and nobody cared.",
    "Breakfast is served from seven.",
]


@pytest.fixture(scope="module")
def clf():
    from layerscope.models.classifier import sentiment_classifier

    return sentiment_classifier()


def _zero_biases(model: torch.nn.Module) -> torch.nn.Module:
    """A copy with every bias (Linear, LayerNorm, folded BatchNorm shift) set to zero."""
    out = copy.deepcopy(model).eval()
    with torch.no_grad():
        for m in out.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.bias.copy_(m.weight / torch.sqrt(m.running_var + m.eps) * m.running_mean)
            elif getattr(m, "bias", None) is not None and isinstance(m.bias, torch.Tensor):
                m.bias.zero_()
    return out


def test_minilm_sentiment_lrp_sdpa_equals_eager_and_bias_free_cp_conserves(clf):
    targets = [3, 1, 2]  # positive, negative, neutral
    r = LRP(clf).attribute(TEXTS, target=targets, keep_raw=True)
    assert dict(r.word_scores_of(0))["wonderful"] > 0  # pushes towards "positive"
    assert dict(r.word_scores_of(1))["Terrible"] > 0  # pushes towards "negative"
    impl = clf.model.config._attn_implementation
    clf.model.set_attn_implementation("eager" if impl != "eager" else "sdpa")
    try:
        other = LRP(clf).attribute(TEXTS, target=targets, keep_raw=True)
    finally:
        clf.model.set_attn_implementation(impl)
    np.testing.assert_allclose(other.raw, r.raw, atol=1e-5 * np.abs(r.raw).max())
    assert_no_hooks(clf)
    # all biases zeroed, relevance read after the embeddings (position embeddings are constants): CP-LRP
    # (constant attention weights) must pass every bit of the logit through LayerNorm, GELU, attention, pooling
    model = _zero_biases(clf.model)
    nb = Subject(model=model, adapter=Adapter.for_model(model), name="minilm-nobias", tokenizer=clf.tokenizer)
    cp = LRP(nb, site="blocks.0.resid_pre", attention="cp").attribute(TEXTS, target=targets)
    np.testing.assert_allclose(conservation(cp), 1.0, atol=1e-3)


def test_smollm2_cp_lrp_conserves_the_next_token_logit_and_sdpa_equals_eager(smollm2):
    from layerscope.attribution._inputs import prepare_text
    from layerscope.data.corpus import multiemo

    prompts = [t[:60] for t in multiemo(limit=16, seed=1).texts]
    prep = prepare_text(smollm2, prompts)
    with torch.no_grad():
        logits = smollm2.forward(prep.inputs).logits
    nxt = [int(logits[i, int(prep.last[i])].argmax()) for i in range(len(prompts))]
    cp = LRP(smollm2, attention="cp").attribute(prompts, target=nxt)
    # Llama has no biases: with constant attention weights the relevance is the logit, to float precision
    np.testing.assert_allclose(conservation(cp), 1.0, atol=1e-3)
    full = LRP(smollm2).attribute(prompts[:3], target=nxt[:3], keep_raw=True)
    impl = smollm2.model.config._attn_implementation
    smollm2.model.set_attn_implementation("eager" if impl != "eager" else "sdpa")
    try:
        other = LRP(smollm2).attribute(prompts[:3], target=nxt[:3], keep_raw=True)
    finally:
        smollm2.model.set_attn_implementation(impl)
    np.testing.assert_allclose(other.raw, full.raw, atol=1e-5 * np.abs(full.raw).max())
    with torch.no_grad():
        again = smollm2.forward(prep.inputs).logits
    assert torch.equal(again, logits)
    assert_no_hooks(smollm2)


def test_effnet_bias_free_copy_conserves_and_real_model_gives_pixel_maps(effnet):
    from layerscope.data import cifar10_test

    images, _, _ = cifar10_test(limit=4)
    x = effnet.image.preprocess(images)
    with torch.no_grad():
        out0 = effnet.model(x)
    pred = out0.argmax(-1).tolist()
    nb_model = _zero_biases(effnet.model)
    nb = Subject(
        model=nb_model, adapter=Adapter.for_model(nb_model), name="effnet-nobias", image=effnet.image
    )
    for rule in ("epsilon", "gamma"):  # conv+BN folded, depthwise convs, ReLU6, residuals, pooling
        r = LRP(nb, rule=rule).attribute(x, target=pred)
        np.testing.assert_allclose(conservation(r), 1.0, atol=1e-3)
    r = LRP(effnet).attribute(images, target=pred)  # γ-rule by default on an image model
    assert r.scores.shape == (4, 224, 224) and np.isfinite(r.scores).all()
    assert np.isfinite(r.delta).all() and np.all(np.abs(r.f_input - out0[range(4), pred].numpy()) < 1e-4)
    with torch.no_grad():
        assert torch.equal(effnet.model(x), out0)
    assert_no_hooks(effnet)
