"""Extraction on the embedded models and corpus: alignment with real tokenizers, kill-and-resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from layerscope.capture.extract import extract
from layerscope.capture.pooling import align_tokens_to_words, word_token_ranges
from layerscope.capture.store import ActivationStore
from layerscope.data import TextDataset, multiemo, silver_labels

pytestmark = pytest.mark.integration

TRICKY = [
    "Don't stop-believing, Mr. O'Neil!! It's 9:30 a.m.",
    "Café naïve façade — coöperate… 😀 ok",
    "   leading and   multiple   spaces ",
    "URL: https://example.com/a_b?c=d&e=f #tag @user",
]


@pytest.mark.parametrize("which", ["minilm", "smollm2"])
def test_alignment_with_real_tokenizers_and_spacy_words(which, request):
    subject = request.getfixturevalue(which)
    ds = silver_labels(TextDataset.from_texts(TRICKY), progress=False)
    tok = subject.tokenizer
    enc = tok(ds.texts, return_offsets_mapping=True, return_special_tokens_mask=True)
    for i, text in enumerate(ds.texts):
        args = (text, enc["offset_mapping"][i], enc["special_tokens_mask"][i], ds.word_spans[i])
        t2w = align_tokens_to_words(*args)
        assert np.all(np.diff(t2w[t2w >= 0]) >= 0)  # tokens walk the words in order
        ranges = word_token_ranges(*args)
        assert (ranges[:, 0] >= 0).all(), (which, text, ds.words[i], enc.tokens(i))  # every word has tokens
        assert (ranges[:, 0] <= ranges[:, 1]).all()
        for w, (a, b) in enumerate(ranges):  # the word's own primary tokens lie inside its range
            own = np.nonzero(t2w == w)[0]
            assert all(a <= t <= b for t in own)


def test_word_pooling_on_silver_words(minilm, tmp_path):
    ds = silver_labels(multiemo(limit=120, seed=3), progress=False)
    st = extract(
        minilm, ds, ["blocks.2.resid_post"], store=tmp_path / "w", pooling="word_mean", progress=False
    )
    md = st.metadata()
    n_words = sum(len(w) for w in ds.words)
    assert (
        st.n_items <= n_words and st.n_items >= 0.97 * n_words
    )  # only truncated/untokenisable words dropped
    upos = [ds.labels["upos"][e][w] for e, w in zip(md.example_id, md.word_id, strict=True)]
    assert {"NOUN", "VERB", "DET"} <= set(upos)
    assert np.isfinite(st.read("blocks.2.resid_post")).all()


CHILD = """
import sys, torch
torch.set_num_threads(2)
from layerscope import load
from layerscope.capture.extract import extract
from layerscope.data import multiemo
extract(load("minilm"), multiemo(limit=int(sys.argv[2]), seed=1), ["blocks.1.resid_post", "blocks.4.mlp.post"],
        store=sys.argv[1], pooling="token", window=32, chunk_rows=256, progress=False)
"""


def test_sigkill_then_resume_equals_uninterrupted(minilm, tmp_path):
    n = 600
    store = tmp_path / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(store), str(n)], env=env)
    deadline = time.time() + 240
    rows = 0
    while time.time() < deadline and proc.poll() is None:
        p = store / "progress.json"
        if p.is_file():
            rows = json.loads(p.read_text())["rows_committed"]
            if rows >= 3 * 256:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "extraction finished before it could be killed; raise n"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    part = ActivationStore.open(store)
    assert not part.complete and part.progress["rows_committed"] >= 3 * 256
    import torch

    torch.set_num_threads(2)
    ds = multiemo(limit=n, seed=1)
    kw = dict(pooling="token", window=32, chunk_rows=256, progress=False)
    resumed = extract(minilm, ds, ["blocks.1.resid_post", "blocks.4.mlp.post"], store=store, **kw)
    full = extract(minilm, ds, ["blocks.1.resid_post", "blocks.4.mlp.post"], store=tmp_path / "full", **kw)
    resumed.verify()
    for s in full.sites:
        a, b = full.read(s), resumed.read(s)
        assert a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    assert Path(store, "tokenizer").is_dir()
