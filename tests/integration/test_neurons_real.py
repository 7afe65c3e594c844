"""Sparse probing on SmolLM2's MLP neurons: token features from a real store, neuron page, ablation."""

from __future__ import annotations

import numpy as np
import pytest

from layerscope.capture.extract import extract
from layerscope.data import corpus
from layerscope.neurons import ablation_check, neuron_page, sparse_probe, store_features

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def mlp_store(smollm2, tmp_path_factory):
    ds = corpus.multiemo(limit=60, seed=0)
    path = tmp_path_factory.mktemp("neurons") / "store"
    return extract(smollm2, ds, ["blocks.2.mlp.post", "blocks.20.mlp.post"], store=path, pooling="token",
                   progress=False)  # fmt: skip


def test_punctuation_neurons_in_smollm2(mlp_store, smollm2):
    labels = store_features(
        mlp_store, features=["is_punctuation", "leading_capital"], prefixes=(), suffixes=()
    )
    res = sparse_probe(mlp_store, labels, ks=[1, 2, 8, 32])
    f = res.frame
    assert res.sites == ["blocks.2.mlp.post", "blocks.20.mlp.post"]
    punct = f[f.feature == "is_punctuation"]
    assert punct.f1.max() > 0.9  # punctuation is linearly obvious in MLP neurons
    assert punct[punct.k == 32].f1.max() >= punct[punct.k == 1].f1.max() - 0.05
    best = res.best().query("feature == 'is_punctuation' and k == 1").iloc[0]
    page = neuron_page(mlp_store, best.site, int(best.neurons), labels=labels["is_punctuation"], subject=smollm2,
                       result=res, n_examples=5)  # fmt: skip
    assert len(page.promoted_tokens) == 20
    assert np.isfinite(page.stats["max"]) and (page.rankings["feature"] == "is_punctuation").any()


def test_ablation_on_smollm2(smollm2):
    texts = corpus.multiemo(limit=6, seed=3).texts
    res = ablation_check(smollm2, texts, "is_punctuation", site="blocks.2.mlp.post", neurons=list(range(64)),
                         modes=("zero",), max_length=32)  # fmt: skip
    f = res.frame.set_index("mode")
    assert set(f.index) == {"clean", "zero"}
    assert np.isfinite(f.loc["zero", "delta_loss_pos"]) and f.loc["zero", "delta_loss_pos"] != 0
