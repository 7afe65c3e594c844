"""Concept models on MiniLM sentence embeddings with corpus-derived concepts (MultiEmo sentences)."""

from __future__ import annotations

import numpy as np
import pytest

from layerscope.concepts import SENTENCE_CONCEPTS, TrainConfig, evaluate_model, fit, from_sentences
from layerscope.data import corpus

pytestmark = pytest.mark.usefixtures("one_thread")


def test_minilm_sentence_concepts(minilm):
    ds_text = corpus.multiemo(limit=240, seed=0)
    labels = ds_text.labels["sentiment"]
    ds = from_sentences(minilm, ds_text.texts, labels, name="multiemo-minilm")
    assert ds.x.shape == (240, 384) and ds.concept_names == SENTENCE_CONCEPTS
    assert ds.n_classes == 4
    # every concept occurs, and not everywhere
    rate = ds.c.mean(0)
    assert ((rate > 0.02) & (rate < 0.98)).all(), dict(zip(SENTENCE_CONCEPTS, rate, strict=True))
    f = fit(ds, "cbm-joint", seeds=2, train=TrainConfig(max_epochs=20, patience=5))
    rows, curves = evaluate_model(f, ds, cas=False)
    acc = {r["metric"]: r["value"] for r in rows if r["seed"] == 0}
    # the embedding linearly encodes surface properties such as negation and digits well above chance
    assert acc["concept_accuracy"] > 0.75
    assert np.isfinite(acc["task_accuracy"])
    assert curves
