"""Prompt inversion on a tiny causal LM trained in the test on a planted rule ("cat" is always followed by "mat")."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from layerscope.inversion import InversionError, InversionResult, Vocabulary, allowed_tokens, invert
from layerscope.result import Result
from layerscope.testing import assert_no_hooks, tiny_bert, tiny_wordpiece_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


def _planted_lm(seed: int = 0):
    """A 1-layer Llama over the tiny WordPiece vocabulary where token A ("cat") is always followed by B ("mat")."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from layerscope.models.adapter import Adapter
    from layerscope.models.subject import Subject

    tok = tiny_wordpiece_tokenizer(with_specials=False)
    a, b = (
        tok("cat", add_special_tokens=False)["input_ids"][0],
        tok("mat", add_special_tokens=False)["input_ids"][0],
    )
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    model = LlamaForCausalLM(cfg)
    normal = torch.tensor([i for i in range(5, len(tok)) if i != b])  # no specials, B only after A
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(150):
        x = normal[torch.randint(0, len(normal), (32, 12), generator=gen)]
        # plant the rule: the token after every A is B (and B appears nowhere else)
        after_a = torch.zeros_like(x, dtype=torch.bool)
        after_a[:, 1:] = x[:, :-1] == a
        x = torch.where(after_a, torch.full_like(x, b), x)
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    model.requires_grad_(False)
    return Subject(model=model, adapter=Adapter.for_model(model), name="planted", tokenizer=tok), a, b


@pytest.fixture(scope="module")
def planted(one_thread):
    return _planted_lm()


def test_planted_rule_was_learned(planted):
    subject, a, b = planted
    with torch.no_grad():
        p = torch.softmax(
            subject.model(input_ids=torch.tensor([[a], [a + 1 if a + 1 != b else a + 2]])).logits, -1
        )
    assert p[0, -1, b] > 0.9  # p(mat | cat)
    assert p[1, -1, b] < 0.01  # p(mat | another token)


def test_inversion_finds_the_planted_trigger(planted):
    subject, a, _ = planted
    res = invert(subject, "mat", restarts=16, steps=25, length=1, seed=0)
    assert_no_hooks(subject)
    found = (res.prompt_ids[0, :, -1] == a).mean()
    assert found >= 0.75, res.prompt_texts
    assert res.token_map("mat").iloc[0]["item"] == "cat"
    assert res.success_rate()[0] >= 0.75
    assert res.hard_prob.max() > 0.9 > np.median(res.random_prob)
    # soft (continuous-embedding) optimisation with the distance penalty finds it too
    soft = invert(
        subject, "mat", restarts=16, steps=40, length=1, project=False, lam=1.0, hard_every=1, seed=1
    )
    assert (soft.prompt_ids[0, :, -1] == a).mean() >= 0.5, soft.prompt_texts


def test_distance_penalty_pulls_soft_prompts_onto_tokens(planted):
    subject, _, _ = planted
    w = subject.model.get_input_embeddings().weight
    sq = torch.cdist(w, w).pow(2).fill_diagonal_(float("inf"))
    eps = 1e-3 * float(sq.min(1).values.median())  # 0.1 % of the typical squared gap between two tokens
    dist = []
    for lam in (0.0, 1.0, 100.0, 1e4):
        r = invert(
            subject, "mat", restarts=8, steps=30, length=2, project=False, lam=lam, metric="l2", seed=0
        )
        dist.append(float(np.median(r.soft_distance)))
    assert all(x > y for x, y in itertools.pairwise(dist)), dist
    assert dist[-1] < eps < 1000 * eps < dist[0], dist  # squared L2 to the nearest vocabulary embedding


def test_hard_probability_equals_plain_forward(planted):
    subject, _, _ = planted
    tok = subject.tokenizer
    res = invert(
        subject, ["mat", "the dog"], restarts=4, steps=4, length=2, prefix="hello", suffix="on the", seed=3
    )
    pre = tok("hello")["input_ids"]
    suf = tok("on the", add_special_tokens=False)["input_ids"]
    for k, tgt in enumerate(res.target_ids):
        for r in range(res.restarts):
            ids = pre + res.prompt_ids[k, r].tolist() + suf + tgt
            with torch.no_grad():
                logp = torch.log_softmax(subject.model(input_ids=torch.tensor([ids])).logits[0], -1)
            n = len(ids) - len(tgt)
            expected = sum(float(logp[n - 1 + t, tgt[t]]) for t in range(len(tgt)))
            assert res.hard_logprob[k, r] == pytest.approx(expected, abs=1e-4)
    # the best kept prompt is at least as good as the random start
    assert (res.hard_logprob >= res.random_logprob - 1e-5).all()


def test_exclusions_and_ascii(planted):
    subject, a, b = planted
    tok = subject.tokenizer
    mask = allowed_tokens(tok, len(tok), [[b]], exclude=["cat"], ascii_only=True)
    assert not mask[0, a] and not mask[0, b]
    assert not mask[0, tok.all_special_ids].any()
    res = invert(subject, "mat", restarts=6, steps=5, length=2, exclude=["cat"], seed=0)
    used = set(res.prompt_ids.reshape(-1).tolist())
    assert a not in used and b not in used and not used & set(tok.all_special_ids)
    # nearest neighbour honours the per-row mask
    vocab = Vocabulary(subject.model.get_input_embeddings().weight, mask)
    emb = subject.model.get_input_embeddings().weight[[a, b]].unsqueeze(0)
    assert set(vocab.nearest(emb).reshape(-1).tolist()).isdisjoint({a, b})


def test_deterministic_and_save_load(planted, tmp_path):
    subject, _, _ = planted
    r1 = invert(subject, ["mat", "dog"], restarts=3, steps=3, length=2, seed=7, fluency_weight=0.5)
    r2 = invert(subject, ["mat", "dog"], restarts=3, steps=3, length=2, seed=7, fluency_weight=0.5)
    np.testing.assert_array_equal(r1.prompt_ids, r2.prompt_ids)
    back = Result.load(r1.save(tmp_path / "inv"))
    assert isinstance(back, InversionResult)
    np.testing.assert_array_equal(back.prompt_ids, r1.prompt_ids)
    np.testing.assert_allclose(back.hard_logprob, r1.hard_logprob)
    assert back.prompt_texts == r1.prompt_texts and back.targets == ["mat", "dog"]
    assert len(back.figures()) == 4 and back.summary()
    assert set(back.to_frame()["target"]) == {"mat", "dog"}
    assert back.token_map("dog", unit="word")["restarts"].sum() >= 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"targets": ""}, "empty"),
        ({"targets": []}, "at least one"),
        ({"targets": "   "}, "tokenises to no tokens"),
        ({"targets": "mat", "length": 0}, "length"),
        ({"targets": "mat", "lam": -1.0}, "lam"),
        ({"targets": "mat", "metric": "manhattan"}, "metric"),
        ({"targets": "mat", "restarts": 0}, "restarts"),
        ({"targets": "mat", "length": 100}, "the model takes"),
    ],
)
def test_bad_input(planted, kwargs, match):
    subject, _, _ = planted
    with pytest.raises(InversionError, match=match):
        invert(subject, **kwargs)


def test_non_causal_model_is_rejected():
    with pytest.raises(InversionError, match="causal"):
        invert(tiny_bert(), "cat")


def test_cli_invert(planted, run_cli, tmp_path):
    subject, _, _ = planted
    folder = tmp_path / "planted"
    subject.model.save_pretrained(folder)
    subject.tokenizer.save_pretrained(folder)
    code, out, err = run_cli(
        "invert", str(folder), "--target", "mat", "--target", "dog", "--restarts", "4", "--steps", "20",
        "--length", "1", "--save", str(tmp_path / "res"), "--out", str(tmp_path / "inv.html"),
    )  # fmt: skip
    assert code == 0, err
    assert "'mat'" in out and "cat" in out
    res = Result.load(tmp_path / "res")
    assert isinstance(res, InversionResult) and res.targets == ["mat", "dog"]
    assert (tmp_path / "inv.html").is_file()
    code, _, err = run_cli("invert", str(folder), "--target", "mat", "--length", "0")
    assert code == 2 and err.startswith("error: ") and "length" in err
    code, _, err = run_cli("invert", str(folder), "--target", "mat", "--lam", "-1")
    assert code == 2 and "lam" in err


def test_gpt2_family_and_soft_mode_hard_scores():
    from layerscope.testing import tiny_gpt2

    subject = tiny_gpt2()
    res = invert(
        subject, " cat sat", restarts=3, steps=6, length=2, project=False, lam=0.5, hard_every=2, seed=0
    )
    assert_no_hooks(subject)
    tgt = res.target_ids[0]
    seqs = torch.tensor([row.tolist() + tgt for row in res.prompt_ids[0]])
    with torch.no_grad():
        logp = torch.log_softmax(subject.model(input_ids=seqs).logits, -1)
    expected = sum(logp[:, 1 + t, tgt[t]] for t in range(len(tgt)))
    np.testing.assert_allclose(res.hard_logprob[0], expected.numpy(), atol=1e-4)
    assert np.isfinite(res.soft_logprob).all() and (res.soft_distance > 0).all()
