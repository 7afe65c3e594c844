"""Adapter identity checks on tiny random models of each family (the tables are data; these test them)."""

import pytest
import torch

from layerscope.capture import capture
from layerscope.testing import tiny_bert, tiny_gpt2, tiny_llama

TEXTS = ["the cat sat on the mat .", "hello world"]


def _run(subject, sites):
    enc = subject.tokenize(TEXTS)
    with torch.no_grad(), capture(subject, sites, stop=False) as tr:
        out = subject.forward(dict(enc))
    return tr, out, enc


@pytest.mark.parametrize("make", [tiny_llama, tiny_gpt2])
def test_pre_ln_residual_identities(make):
    s = make()
    tr, out, _ = _run(
        s,
        [
            "blocks.*.resid_pre",
            "blocks.*.attn.out",
            "blocks.*.resid_mid",
            "blocks.*.mlp.out",
            "blocks.*.resid_post",
            "final",
            "logits",
            "embed",
        ],
    )
    for i in range(s.n_layers):
        torch.testing.assert_close(
            tr[f"blocks.{i}.resid_mid"], tr[f"blocks.{i}.resid_pre"] + tr[f"blocks.{i}.attn.out"]
        )
        torch.testing.assert_close(
            tr[f"blocks.{i}.resid_post"], tr[f"blocks.{i}.resid_mid"] + tr[f"blocks.{i}.mlp.out"]
        )
        if i + 1 < s.n_layers:
            torch.testing.assert_close(tr[f"blocks.{i + 1}.resid_pre"], tr[f"blocks.{i}.resid_post"])
    torch.testing.assert_close(tr["logits"], out.logits)
    head = s.model.lm_head
    torch.testing.assert_close(head(tr["final"]), out.logits)


def test_llama_embed_is_resid_pre0_and_mlp_post_is_gated():
    s = tiny_llama()
    tr, _, _enc = _run(s, ["embed", "blocks.0.resid_pre", "blocks.0.resid_mid", "blocks.0.mlp.post"])
    torch.testing.assert_close(tr["embed"], tr["blocks.0.resid_pre"])
    mlp = s.model.model.layers[0].mlp
    x = s.model.model.layers[0].post_attention_layernorm(tr["blocks.0.resid_mid"])
    torch.testing.assert_close(tr["blocks.0.mlp.post"], mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x))
    assert tr["blocks.0.mlp.post"].shape[-1] == 64


def test_gpt2_embed_plus_positions_is_resid_pre0():
    s = tiny_gpt2()
    tr, _, enc = _run(s, ["embed", "blocks.0.resid_pre"])
    pos = s.model.transformer.wpe(torch.arange(enc["input_ids"].shape[1]))
    torch.testing.assert_close(tr["embed"] + pos, tr["blocks.0.resid_pre"])


def test_bert_post_ln_identities():
    s = tiny_bert()
    tr, out, _ = _run(
        s,
        [
            "blocks.*.resid_pre",
            "blocks.*.attn.out",
            "blocks.*.resid_mid",
            "blocks.*.mlp.out",
            "blocks.*.resid_post",
            "blocks.*.mlp.post",
            "final",
        ],
    )
    for i in range(s.n_layers):
        layer = s.model.encoder.layer[i]
        ln1, ln2 = layer.attention.output.LayerNorm, layer.output.LayerNorm
        torch.testing.assert_close(
            tr[f"blocks.{i}.resid_mid"], ln1(tr[f"blocks.{i}.resid_pre"] + tr[f"blocks.{i}.attn.out"])
        )
        torch.testing.assert_close(
            tr[f"blocks.{i}.resid_post"], ln2(tr[f"blocks.{i}.resid_mid"] + tr[f"blocks.{i}.mlp.out"])
        )
        torch.testing.assert_close(layer.output.dense(tr[f"blocks.{i}.mlp.post"]), tr[f"blocks.{i}.mlp.out"])
    torch.testing.assert_close(tr["final"], out.last_hidden_state)


def test_bert_classifier_logits_site():
    s = tiny_bert(classifier=True)
    assert "logits" in s.adapter.site_names()
    tr, out, _ = _run(s, ["logits"])
    torch.testing.assert_close(tr["logits"], out.logits)


@pytest.mark.parametrize("make", [tiny_bert, tiny_llama, tiny_gpt2])
def test_attention_pattern_rows_sum_to_one(make):
    s = make()
    before = s.model.config._attn_implementation
    tr, _, enc = _run(s, ["blocks.0.attn.pattern"])
    p = tr["blocks.0.attn.pattern"]
    assert p.shape[:2] == (2, 4) and p.shape[-1] == p.shape[-2] == enc["input_ids"].shape[1]
    torch.testing.assert_close(p.sum(-1), torch.ones(p.shape[:-1]))
    if s.kind == "causal_lm":
        assert torch.triu(p[0, 0], diagonal=1).abs().max() == 0
    assert s.model.config._attn_implementation == before  # eager only while reading patterns
