"""The embedded real models: adapter identities, equality with transformers' own outputs, sanity."""

import numpy as np
import pytest
import torch

from layerscope.capture import capture, intervene
from layerscope.testing import assert_no_hooks

pytestmark = pytest.mark.integration
TEXTS = ["The movie was surprisingly good.", "I would not stay at this hotel again, the staff was rude."]


def _run(subject, sites, texts=TEXTS):
    enc = subject.tokenize(texts)
    with torch.no_grad(), capture(subject, sites, stop=False) as tr:
        out = subject.forward(dict(enc))
    return tr, out, enc


def test_minilm_sites_match_hidden_states_and_attentions(minilm):
    names = minilm.adapter.site_names()
    assert minilm.adapter.family == "bert" and minilm.n_layers == 6
    assert len(names) == 1 + 6 * 8 + 1  # embed, 8 per block, final (no head: no logits)
    tr, _, enc = _run(minilm, ["blocks.*.resid_post", "blocks.0.resid_pre", "blocks.*.attn.pattern"])
    with torch.no_grad():
        ref = minilm.model(**enc, output_hidden_states=True)
    torch.testing.assert_close(tr["blocks.0.resid_pre"], ref.hidden_states[0])
    for i in range(6):
        # patterns switch to eager attention while read; the reference ran SDPA: equal to kernel rounding
        torch.testing.assert_close(
            tr[f"blocks.{i}.resid_post"], ref.hidden_states[i + 1], atol=1e-4, rtol=1e-4
        )
    p = tr["blocks.3.attn.pattern"]
    assert p.shape[1] == 12
    torch.testing.assert_close(p.sum(-1), torch.ones(p.shape[:-1]))
    assert minilm.model.config._attn_implementation == "sdpa"  # restored after reading patterns
    assert_no_hooks(minilm)


def test_minilm_post_ln_identities(minilm):
    tr, _, _ = _run(
        minilm,
        [
            "blocks.2.resid_pre",
            "blocks.2.attn.out",
            "blocks.2.resid_mid",
            "blocks.2.mlp.out",
            "blocks.2.resid_post",
            "blocks.2.mlp.post",
        ],
    )
    layer = minilm.model.encoder.layer[2]
    torch.testing.assert_close(
        tr["blocks.2.resid_mid"],
        layer.attention.output.LayerNorm(tr["blocks.2.resid_pre"] + tr["blocks.2.attn.out"]),
    )
    torch.testing.assert_close(
        tr["blocks.2.resid_post"], layer.output.LayerNorm(tr["blocks.2.resid_mid"] + tr["blocks.2.mlp.out"])
    )
    torch.testing.assert_close(layer.output.dense(tr["blocks.2.mlp.post"]), tr["blocks.2.mlp.out"])


def test_smollm2_identities_and_logits(smollm2):
    assert smollm2.adapter.family == "llama" and smollm2.n_layers == 30
    sites = [
        "blocks.10.resid_pre",
        "blocks.10.attn.out",
        "blocks.10.resid_mid",
        "blocks.10.mlp.out",
        "blocks.10.resid_post",
        "blocks.11.resid_pre",
        "final",
        "logits",
        "embed",
        "blocks.0.resid_pre",
    ]
    tr, out, _ = _run(smollm2, sites)
    torch.testing.assert_close(
        tr["blocks.10.resid_mid"], tr["blocks.10.resid_pre"] + tr["blocks.10.attn.out"]
    )
    torch.testing.assert_close(
        tr["blocks.10.resid_post"], tr["blocks.10.resid_mid"] + tr["blocks.10.mlp.out"]
    )
    torch.testing.assert_close(tr["blocks.11.resid_pre"], tr["blocks.10.resid_post"])
    torch.testing.assert_close(tr["embed"], tr["blocks.0.resid_pre"])
    torch.testing.assert_close(tr["logits"], out.logits)
    torch.testing.assert_close(smollm2.model.lm_head(tr["final"]), out.logits, atol=1e-4, rtol=1e-4)


def test_smollm2_converted_from_gguf_is_a_working_lm(smollm2):
    enc = smollm2.tokenizer(["The capital of France is"], return_tensors="pt")
    with torch.no_grad():
        logits = smollm2.model(**enc).logits[0, -1]
    assert smollm2.tokenizer.decode(int(logits.argmax())).strip() == "Paris"


def test_smollm2_noop_intervention_bit_identical_and_ablation_changes(smollm2):
    enc = dict(smollm2.tokenize(TEXTS))
    with torch.no_grad():
        ref = smollm2.forward(enc).logits
        with intervene(smollm2, {"blocks.*.mlp.post": lambda t, site: None}):
            same = smollm2.forward(enc).logits
        with intervene(smollm2, {"blocks.5.mlp.post": lambda t, site: torch.zeros_like(t)}):
            ablated = smollm2.forward(enc).logits
    assert torch.equal(ref, same)
    assert (ref - ablated).abs().max() > 1e-3
    assert_no_hooks(smollm2)


def test_effnet_sites(effnet):
    x = effnet.image.preprocess(np.zeros((2, 32, 32, 3), np.uint8))
    assert x.shape == (2, 3, 224, 224)
    with (
        torch.no_grad(),
        capture(effnet, ["embed", "blocks.15.out", "final", "pooled", "logits"], stop=False) as tr,
    ):
        out = effnet.model(x)
    torch.testing.assert_close(tr["logits"], out)
    torch.testing.assert_close(tr["pooled"], tr["final"].mean((2, 3)))
    torch.testing.assert_close(effnet.model._fc(tr["pooled"]), out)
    assert tr["blocks.15.out"].shape == (2, 320, 7, 7) and tr["embed"].shape == (2, 32, 112, 112)
    assert_no_hooks(effnet)


def test_hooks_removed_after_exception_in_real_model(minilm):
    with pytest.raises(IndexError), capture(minilm, ["blocks.*.resid_post"], stop=False):
        minilm.model(input_ids=torch.tensor([[10**7]]))  # out-of-vocabulary id: index error inside torch
    assert_no_hooks(minilm)
