"""Attribution on the embedded models: MiniLM sentiment vs Captum, SmolLM2 continuation vs Captum, EfficientNet."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.integration
captum_attr = pytest.importorskip("captum.attr")

TEXTS = [
    "The room was clean and the staff were wonderful.",
    "Terrible service, the food was cold and nobody cared.",
    "Breakfast is served from seven.",
]


@pytest.fixture(scope="module")
def clf():
    from layerscope.models.classifier import sentiment_classifier

    return sentiment_classifier()


def test_sentiment_head_beats_majority_and_has_sites(clf):
    from layerscope.models.classifier import classifier_metadata

    meta = classifier_metadata(clf)
    assert meta["heldout_accuracy"] > meta["majority_baseline"] + 0.1
    assert {"embed", "blocks.3.resid_post", "logits"} <= set(clf.adapter.site_names())
    with torch.no_grad():
        pred = clf.forward(dict(clf.tokenize(TEXTS[:2]))).logits.argmax(-1).tolist()
    assert [clf.class_names[i] for i in pred] == ["positive", "negative"]


def test_ig_equals_captum_layer_ig_on_minilm(clf):
    from layerscope.attribution import IntegratedGradients

    enc = clf.tokenize(TEXTS)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    special = torch.tensor(
        [clf.tokenizer.get_special_tokens_mask(x, already_has_special_tokens=True) for x in ids.tolist()]
    ).bool()
    ref = torch.where(special | (mask == 0), ids, torch.full_like(ids, clf.tokenizer.pad_token_id))
    r = IntegratedGradients(clf, n_steps=20).attribute(TEXTS, target=[3, 1, 2], baseline="pad", keep_raw=True)

    def f(ids, mask):
        return clf.model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).logits

    lig = captum_attr.LayerIntegratedGradients(f, clf.model.bert.embeddings.word_embeddings)
    a = lig.attribute(ids, baselines=ref, target=[3, 1, 2], additional_forward_args=(mask,), n_steps=20)
    np.testing.assert_allclose(r.raw, a.numpy(), atol=1e-5 * max(1.0, float(a.abs().max())))
    words = dict(r.word_scores_of(0))
    assert words["wonderful"] > 0  # "wonderful" pushes towards "positive"
    ra = IntegratedGradients(clf, n_steps="auto", max_steps=128).attribute(
        TEXTS, target=[3, 1, 2], baseline="pad"
    )
    ok = ra.steps < 129
    assert ok.any()
    assert np.all(np.abs(ra.delta[ok]) <= 0.01 * np.abs(ra.f_input - ra.f_baseline)[ok] + 1e-7)


def test_smollm2_continuation_equals_captum(smollm2):
    from layerscope.attribution import Continuation, IntegratedGradients, TokenBaseline
    from layerscope.attribution._inputs import prepare_text
    from layerscope.attribution.baselines import token_baseline_ids

    prompt = "The capital of France is"
    tok = smollm2.tokenizer
    cont = tuple(tok(" Paris.", add_special_tokens=False)["input_ids"])
    pad = int(tok.pad_token_id)
    r = IntegratedGradients(smollm2, n_steps=4).attribute(
        prompt, target=Continuation(ids=cont), baseline=TokenBaseline(pad)
    )
    # SmolLM2 adds no BOS: every prompt token is replaced, as Captum's TextTokenInput does
    assert int(token_baseline_ids(smollm2, prepare_text(smollm2, [prompt]), pad).ne(pad).sum()) == 0
    llm = captum_attr.LLMGradientAttribution(
        captum_attr.LayerIntegratedGradients(smollm2.model, smollm2.model.get_input_embeddings()), tok
    )
    # Captum attributes an indicator of ones; baseline 0 means "TextTokenInput's baseline token"
    out = llm.attribute(
        captum_attr.TextTokenInput(prompt, tok, baselines=pad),
        target=torch.tensor(cont),
        n_steps=4,
        baselines=0,
    )
    np.testing.assert_allclose(
        r.scores, out.token_attr.numpy(), atol=1e-5 * max(1.0, float(out.token_attr.abs().max()))
    )


def test_effnet_ig_with_blur_baseline_equals_captum(effnet):
    from layerscope.attribution import IntegratedGradients
    from layerscope.attribution.baselines import _gaussian_blur

    torch.manual_seed(0)
    img = (torch.rand(1, 224, 224, 3) * 255).to(torch.uint8)
    r = IntegratedGradients(effnet, n_steps=6).attribute(img, target=1, baseline="blur", keep_raw=True)
    x = effnet.image.preprocess(img)
    blurred = _gaussian_blur(x, 10.0)
    a = captum_attr.IntegratedGradients(effnet.model).attribute(x, baselines=blurred, target=1, n_steps=6)
    assert r.scores.shape == (1, 224, 224)
    np.testing.assert_allclose(r.raw, a.detach().numpy(), atol=1e-5 * max(1.0, float(a.abs().max())))


def test_attention_rollout_on_minilm(clf):
    from layerscope.attribution import attention

    res = attention(clf, TEXTS[0])
    assert res.patterns.shape[:2] == (6, 12)
    np.testing.assert_allclose(res.rollout.sum(-1), 1.0, atol=1e-5)
    assert np.isfinite(res.flow).all()


def test_effnet_on_bundled_photos_names_classes_and_completes(effnet):
    from layerscope.attribution import IntegratedGradients
    from layerscope.attribution.images import overlay_figure, sample_photos

    photos, names = sample_photos(["chelsea"])
    with torch.no_grad():
        pred = int(effnet.forward({"x": effnet.image.preprocess(photos)}).argmax(-1))
    assert effnet.class_names is not None and len(effnet.class_names) == 1000
    assert any(w in effnet.class_names[pred].lower() for w in ("cat", "mau", "tabby", "lynx"))  # it is a cat
    # ReLU6 paths are rough: 16 fixed steps leave a 20 % completeness gap here; adaptive steps close it
    r = IntegratedGradients(effnet, n_steps="auto", tol=0.05).attribute(photos, target=pred, baseline="blur")
    gap = float(r.f_input[0] - r.f_baseline[0])
    assert gap > 1.0 and abs(float(r.delta[0])) <= 0.05 * gap and r.steps[0] > 16
    assert r.images is not None and r.images.shape == (1, 224, 224, 3)
    assert len([t for t in overlay_figure(r, names=names).data if t.type == "image"]) == 2


def test_attribute_cli_on_photos(run_cli, tmp_path):
    code, out, _ = run_cli(
        "attribute", "effnet-lite0", "coffee", "--method", "saliency", "--report", str(tmp_path / "r.html")
    )
    assert code == 0 and "espresso" in out and (tmp_path / "r.html").stat().st_size > 100_000
    code, _, err = run_cli("attribute", "effnet-lite0", "no-such-photo.png", "--method", "saliency")
    assert code == 2 and "no image file" in err
    code, _, err = run_cli("attribute", "effnet-lite0", "coffee", "--continuation", "x")
    assert code == 2 and "causal LMs" in err
