"""Sparse probing on a tiny Llama with a planted feature neuron: store → features → probes → pages → ablation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layerscope.capture.extract import extract
from layerscope.neurons import (
    NeuronError,
    NeuronResult,
    ablation_check,
    decode_tokens,
    neuron_page,
    sparse_probe,
    store_features,
)
from layerscope.testing import assert_no_hooks, tiny_llama

PLANTED = 13
TEXTS = [
    "The cat sat on the mat.",
    "Hello world, hello again!",
    "Unbelievable: running dogs played.",
    "A new red ball, an old blue car.",
    "It was small; it is big.",
    "The dogs sat, the cat ran.",
    "An old mat; a new world!",
    "Hello, red car: it is big.",
] * 6


def _is_punct(tokens):
    return np.array([-1 if t is None else int(t.strip() in {".", ",", "!", ":", ";"}) for t in tokens])


@pytest.fixture(scope="module")
def planted():
    """One block; attention silenced; residual dim 0 = 3 on punctuation tokens only; neuron 13 reads it."""
    subject = tiny_llama(n_layers=1, seed=0)
    m = subject.model
    tok = subject.tokenizer
    vocab = len(tok)
    ids = np.arange(vocab)
    punct = _is_punct(decode_tokens(tok, ids)) == 1
    with torch.no_grad():
        emb = m.model.embed_tokens.weight  # tied with the unembedding
        emb[:, 0] = 0.0
        emb[torch.from_numpy(punct), 0] = 3.0
        m.model.layers[0].self_attn.o_proj.weight.zero_()
        mlp = m.model.layers[0].mlp
        mlp.gate_proj.weight[:, 0] = 0.0  # no other neuron reads dim 0 directly
        mlp.up_proj.weight[:, 0] = 0.0
        mlp.gate_proj.weight[PLANTED] = 0.0
        mlp.up_proj.weight[PLANTED] = 0.0
        mlp.gate_proj.weight[PLANTED, 0] = 4.0
        mlp.up_proj.weight[PLANTED, 0] = 1.0
    return subject


@pytest.fixture(scope="module")
def store(planted, tmp_path_factory):
    path = tmp_path_factory.mktemp("neurons") / "store"
    return extract(planted, TEXTS, "blocks.*.mlp.post", store=path, pooling="token", progress=False)


def test_planted_neuron_recovered_exactly_at_k1(store):
    labels = store_features(store, features=["is_punctuation"], prefixes=(), suffixes=(), min_count=1)
    assert set(labels) >= {"is_punctuation"}
    res = sparse_probe(store, labels["is_punctuation"], ks=[1, 2, 4], method=["mean_diff", "search"])
    k1 = res.frame[res.frame.k == 1]
    assert (k1.neurons == str(PLANTED)).all()
    assert np.allclose(k1.f1, 1.0)
    assert res.sites == ["blocks.0.mlp.post"]


def test_neuron_page(store, planted, tmp_path):
    labels = store_features(store, features=["is_punctuation"], prefixes=(), suffixes=(), min_count=1)
    res = sparse_probe(store, labels, ks=[1, 2])
    page = neuron_page(store, "blocks.0.mlp.post", PLANTED, labels=labels["is_punctuation"], subject=planted,
                       result=res, n_examples=5)  # fmt: skip
    assert (page.top_examples.label == 1).all()  # the top-activating tokens are all punctuation
    assert all("⟦" in c and "⟧" in c for c in page.top_examples.context)
    assert page.top_examples.token.str.strip().isin([".", ",", "!", ":", ";"]).all()
    assert set(page.histogram.label) == {"0", "1"}
    assert len(page.promoted_tokens) == 20
    assert (page.rankings["rank"] == 0).any()
    back = NeuronResult.load(page.save(tmp_path / "page"))
    assert back.stats == page.stats and back.neuron == PLANTED
    assert page.figure() is not None and page.summary()
    with pytest.raises(NeuronError, match="out of range"):
        neuron_page(store, "blocks.0.mlp.post", 10_000)
    with pytest.raises(NeuronError, match="not in the store"):
        neuron_page(store, "blocks.0.resid_post", 0)


def test_ablation_zero_only_touches_feature_tokens(planted):
    res = ablation_check(
        planted, TEXTS[:8], _is_punct, site="blocks.0.mlp.post", neurons=[PLANTED], modes=("zero", "mean")
    )
    f = res.frame.set_index("mode")
    # the planted neuron is exactly 0 off the feature, and with one block nothing later reads other positions
    assert abs(f.loc["zero", "delta_loss_neg"]) < 1e-5
    assert abs(f.loc["zero", "delta_loss_pos"]) > 1e-4
    assert abs(f.loc["mean", "delta_loss_neg"]) > 1e-5
    assert f.loc["clean", "delta_loss_pos"] == 0
    assert_no_hooks(planted.model)
    with pytest.raises(NeuronError, match="unknown ablation mode"):
        ablation_check(
            planted, TEXTS[:2], _is_punct, site="blocks.0.mlp.post", neurons=[1], modes=("explode",)
        )


def test_cli_bad_input_and_help(run_cli):
    code, out, _ = run_cli("neurons", "--help")
    assert code == 0 and "probe" in out and "page" in out
    code, _, err = run_cli("neurons", "probe", "--method", "magic")
    assert code == 2 and err.strip().startswith("error: ") and "unknown --method" in err
    code, _, err = run_cli(
        "neurons", "page", "--store", "/definitely/not/a/store", "--site", "x", "--neuron", "0"
    )
    assert code == 2 and "not a layerscope activation store" in err
