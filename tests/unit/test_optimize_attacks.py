"""Prototypes, entanglement, feature isolation and adversarial attacks on small models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import layerscope.optimize as lo
from layerscope.errors import ConfigError, DataError
from layerscope.optimize._models import as_subject, digits_cnn, digits_data
from layerscope.testing import assert_no_hooks, tiny_bert, tiny_cnn

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    subject = digits_cnn(epochs=10)
    x, y = digits_data()
    return subject, x[1400:], y[1400:]


@pytest.fixture(scope="module")
def bert():
    """A tiny BERT classifier whose logits depend on the input (default init is nearly constant)."""
    subject = tiny_bert(classifier=True)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in subject.model.parameters():
            if p.ndim == 2:
                p.normal_(0, 0.3)
    return subject


def test_adam_matches_torch():
    from layerscope.optimize.loop import _Adam

    torch.manual_seed(0)
    a = torch.randn(5, requires_grad=True)
    b = a.detach().clone()
    ref, ours = torch.optim.Adam([a], lr=0.1), _Adam([b], 0.1)
    for _ in range(10):
        g = torch.randn(5)
        a.grad = g.clone()
        ref.step()
        ours.step([g])
    torch.testing.assert_close(a.detach(), b)


def test_digits_cnn_is_trained(digits):
    s, x, y = digits
    with torch.no_grad():
        acc = (s.model(s.image.normalise(x)).argmax(1) == y).float().mean()
    assert acc > 0.85


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("targeted", [False, True])
def test_pgd_stays_in_the_eps_ball_and_bounds(digits, norm, targeted):
    s, x, y = digits
    eps = 0.1 if norm == "linf" else 0.8
    r = lo.pgd(s, x[:64], y[:64], eps=eps, steps=5, norm=norm, targeted=targeted, targets=(y[:64] + 1) % 10)
    assert r.perturbation_norms().max() <= eps + 1e-5
    assert r.adversarial.min() >= 0.0 and r.adversarial.max() <= 1.0
    assert r.success.dtype == bool and r.success.shape == (64,)
    assert_no_hooks(s)
    # parameters are frozen during the attack only (image gradients need no weight gradients)
    assert all(p.requires_grad for p in s.model.parameters())


def test_targeted_pgd_succeeds_on_digits(digits):
    s, x, y = digits
    r = lo.pgd(s, x[:200], y[:200], eps=0.3, steps=20, targeted=True, targets=(y[:200] + 1) % 10)
    assert r.success_rate > 0.95, r.success_rate
    # success is what the model says on the returned images
    with torch.no_grad():
        pred = s.model(s.image.normalise(torch.as_tensor(r.adversarial))).argmax(1).numpy()
    np.testing.assert_array_equal(pred == r.targets, r.success)


def test_untargeted_pgd_beats_fgsm_and_clean(digits):
    s, x, y = digits
    f = lo.fgsm(s, x[:128], y[:128], eps=0.1)
    p = lo.pgd(s, x[:128], y[:128], eps=0.1, steps=20)
    assert p.success_rate >= f.success_rate
    assert p.success_rate > float(np.mean(p.pred_before != p.labels))


def test_fgsm_is_one_signed_gradient_step(digits):
    s, x, y = digits
    xs, ys = x[:8].clone(), y[:8]
    r = lo.fgsm(s, xs, ys, eps=0.05)
    xr = xs.clone().requires_grad_(True)
    loss = F.cross_entropy(s.model(s.image.normalise(xr)), ys, reduction="sum")
    (g,) = torch.autograd.grad(loss, xr)
    expected = (xs + 0.05 * g.sign()).clamp(0, 1)
    np.testing.assert_allclose(r.adversarial, expected.numpy(), atol=1e-6)


def test_success_curve_is_one_batched_attack_and_matches_pgd(digits):
    s, x, y = digits
    c = lo.success_curve(s, x[:48], y[:48], [0.05, 0.1, 0.3], steps=8)
    assert c.curve["eps"] == [0.05, 0.1, 0.3]
    rates = c.curve["success_rate"]
    assert rates[2] >= rates[0]
    single = lo.success_curve(s, x[:48], y[:48], [0.1], steps=8, seed=3)
    ref = lo.pgd(s, x[:48], y[:48], eps=0.1, steps=8, seed=3)
    np.testing.assert_allclose(single.adversarial, ref.adversarial, atol=1e-6)
    assert len(c.figures()) == 2


def test_attack_bad_input(digits):
    s, x, y = digits
    with pytest.raises(ConfigError, match="eps must be > 0"):
        lo.pgd(s, x[:4], y[:4], eps=0.0)
    with pytest.raises(ConfigError, match="eps must be > 0"):
        lo.fgsm(s, x[:4], y[:4], eps=-0.1)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        lo.pgd(s, s.image.normalise(x[:4]), y[:4])  # already normalised: out of range
    with pytest.raises(DataError, match="8x8"):
        lo.pgd(s, torch.rand(2, 3, 16, 16), y[:2])
    with pytest.raises(DataError):
        lo.pgd(s, torch.rand(2, 8, 8), y[:2])
    with pytest.raises(ConfigError, match="labels"):
        lo.pgd(s, x[:4], y[:3])
    with pytest.raises(ConfigError, match="targets"):
        lo.pgd(s, x[:4], y[:4], targeted=True)
    with pytest.raises(ConfigError, match="norm"):
        lo.pgd(s, x[:4], y[:4], norm="l1")
    soft = as_subject(torch.nn.Sequential(s.model, torch.nn.Softmax(-1)), image=s.image)
    with pytest.raises(lo.ObjectiveError, match="softmax"):
        lo.pgd(soft, x[:4], y[:4])


def test_prototypes_reach_high_target_probability_on_the_tiny_cnn(digits):
    s, _, _ = digits
    r = lo.prototypes(s, list(range(10)), steps=40, param="pixel", transforms="none", lr=0.2)
    assert r.images.shape == (10, 8, 8, 3)
    assert (r.target_prob > 0.9).all(), r.target_prob
    assert r.history.shape == (40, 10)


def test_prototypes_need_logits_and_valid_classes():
    with pytest.raises(ConfigError, match="out of range"):
        lo.prototypes(tiny_cnn(), [10], steps=1)
    with pytest.raises(ConfigError, match="empty"):
        lo.prototypes(tiny_cnn(), [], steps=1)


def test_prototypes_and_entanglement_on_digits(digits, tmp_path):
    s, x, y = digits
    protos = lo.prototypes(s, steps=30, size=8, transforms="standard", lr=0.1)
    assert np.median(protos.target_prob) > 0.5
    ent = lo.entanglement(s, protos, x, y)
    assert ent.from_prototypes.shape == ent.from_similarity.shape == ent.confusion.shape == (10, 10)
    np.testing.assert_allclose(np.diag(ent.from_similarity), 1.0, atol=1e-5)
    np.testing.assert_allclose(ent.confusion.sum(1), 1.0, atol=1e-9)
    assert -1 <= ent.spearman["prototypes"] <= 1 and -1 <= ent.spearman["similarity"] <= 1
    assert ent.accuracy > 0.85
    assert len(ent.pairs()) == 45 and len(ent.figures()) == 3
    for res in (protos, ent):
        back = type(res).load(res.save(tmp_path / type(res).__name__))
        assert back.summary() == res.summary()
    assert_no_hooks(s)


def test_isolation_masks_respect_the_area(digits, tmp_path):
    s, x, _ = digits
    r = lo.isolate(s, x[0], areas=(0.2, 0.5), top_k=2, steps=80)
    assert r.masks.shape == (4, 8, 8)
    means = r.masks.reshape(4, -1).mean(1)
    np.testing.assert_allclose(means, np.array(r.areas), atol=0.12)
    share = r.share(np.ones((8, 8), dtype=bool))
    np.testing.assert_allclose(share, 1.0)
    back = lo.IsolationResult.load(r.save(tmp_path / "iso"))
    np.testing.assert_array_equal(back.masks, r.masks)
    with pytest.raises(ConfigError, match="areas"):
        lo.isolate(s, x[0], areas=(1.5,))
    with pytest.raises(ConfigError, match="one image"):
        lo.isolate(s, x[:2])


def test_adversarial_result_round_trip(digits, tmp_path):
    s, x, y = digits
    r = lo.pgd(s, x[:8], y[:8], eps=0.1, steps=2)
    back = lo.AdversarialResult.load(r.save(tmp_path / "adv"))
    np.testing.assert_array_equal(back.adversarial, r.adversarial)
    assert back.to_frame().equals(r.to_frame())
    assert r.figure().data[0].type == "image"


def test_embedding_pgd_on_a_text_classifier(bert, tmp_path):
    texts = ["the cat sat on the mat", "a big dog ran", "hello world", "it was small"]
    with torch.no_grad():
        enc = bert.tokenize(texts)
        pred = bert.model(**enc).logits.argmax(1)
    small = lo.pgd_embeddings(bert, texts, pred, eps=0.01, steps=5)
    big = lo.pgd_embeddings(bert, texts, pred, eps=1.0, steps=20)
    assert small.pred_before == pred.tolist()
    assert big.success_rate >= small.success_rate
    assert big.success_rate == 1.0
    back = lo.TextAttackResult.load(big.save(tmp_path / "txt"))
    assert back.adversarial_texts == big.adversarial_texts
    with pytest.raises(ConfigError, match="eps"):
        lo.pgd_embeddings(bert, texts, pred, eps=0)
    assert_no_hooks(bert)


def test_word_substitution_changes_whole_words_only(bert):
    texts = ["the cat sat on the mat", "a big dog ran", "it was small"]
    with torch.no_grad():
        pred = bert.model(**bert.tokenize(texts)).logits.argmax(1)
    r = lo.word_substitution(bert, texts, pred, max_subs=3)
    for before, after, n in zip(r.texts, r.adversarial_texts, r.n_changed, strict=True):
        a, b = before.split(), after.split()
        assert len(a) == len(b)
        assert sum(x != y for x, y in zip(a, b, strict=True)) == n <= 3
        assert all(w.isalpha() for w in b)
    assert r.success_rate > 0
    with torch.no_grad():
        new_pred = bert.model(**bert.tokenize(r.adversarial_texts)).logits.argmax(1).tolist()
    assert new_pred == r.pred_after


def test_embedding_pgd_on_a_causal_lm_uses_the_last_real_position():
    from layerscope.testing import tiny_gpt2

    lm = tiny_gpt2()
    texts = ["The cat sat on the mat.", "Hello world"]
    enc = lm.tokenize(texts)
    with torch.no_grad():
        logits = lm.model(**enc).logits  # batch, pos, vocab
    last = enc["attention_mask"].sum(1) - 1  # right padding
    nxt = logits[torch.arange(2), last].argmax(-1)
    r = lo.pgd_embeddings(lm, texts, nxt, eps=2.0, steps=10)
    assert r.pred_before == nxt.tolist()
    assert all(n >= 1 for n in r.n_changed)
