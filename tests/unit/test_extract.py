import numpy as np
import pytest
import torch

import layerscope.capture.extract as ex
from layerscope.capture import capture
from layerscope.capture.extract import extract
from layerscope.capture.store import ActivationStore
from layerscope.data import TextDataset
from layerscope.errors import ConfigError, DataError, StoreError, UnknownSiteError
from layerscope.testing import assert_no_hooks, tiny_bert, tiny_llama

WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "a",
    "mat",
    "hello",
    "world",
    "unbelievable",
    "running",
    "dog",
    "ran",
    "red",
    "blue",
    "new",
    "old",
]


def _texts(n, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(1, 14))) for _ in range(n)]


@pytest.fixture(scope="module")
def bert():
    return tiny_bert()


def _manual(subject, texts, site, pooling):
    rows = []
    for t in texts:
        enc = subject.tokenize([t])
        with torch.no_grad(), capture(subject, [site]) as tr:
            subject.forward(dict(enc))
        h = tr[site][0]
        if pooling == "sentence_mean":
            rows.append(h.mean(0, keepdim=True))
        elif pooling == "token":
            rows.append(h)
        elif pooling == "sentence_last":
            rows.append(h[-1:])
    return torch.cat(rows).numpy()


@pytest.mark.parametrize("pooling", ["sentence_mean", "token", "sentence_last"])
def test_extract_matches_unbatched_capture(bert, tmp_path, pooling):
    texts = _texts(37)
    st = extract(
        bert,
        texts,
        "blocks.*.resid_post",
        store=tmp_path / "s",
        pooling=pooling,
        dtype="float32",
        window=8,
        batch_tokens=64,
        progress=False,
    )
    assert st.complete and st.sites == ["blocks.0.resid_post", "blocks.1.resid_post"]
    ref = _manual(bert, texts, "blocks.1.resid_post", pooling)
    np.testing.assert_allclose(st.read("blocks.1.resid_post"), ref, atol=2e-5)
    ex_ids = st.meta("example_id")
    assert ex_ids[0] == 0 and ex_ids[-1] == len(texts) - 1 and np.all(np.diff(ex_ids) >= 0)
    st.verify()
    assert_no_hooks(bert)


def test_word_pooling_metadata(bert, tmp_path):
    ds = TextDataset.from_words(
        [["the", "cat", "sat"], ["unbelievable", "dog"]], labels={"pos": [["D", "N", "V"], ["A", "N"]]}
    )
    st = extract(bert, ds, ["blocks.0.resid_post"], store=tmp_path / "w", pooling="word_mean", progress=False)
    md = st.metadata()
    assert list(md.example_id) == [0, 0, 0, 1, 1] and list(md.word_id) == [0, 1, 2, 0, 1]
    assert st.read("blocks.0.resid_post").shape == (5, 32)
    assert st.texts() == ["the cat sat", "unbelievable dog"]
    assert st.tokenizer() is not None


def test_resume_after_crash_equals_uninterrupted(bert, tmp_path, monkeypatch):
    texts = _texts(300, seed=1)
    kw = dict(pooling="token", window=16, batch_tokens=128, progress=False, dtype="float16", chunk_rows=512)
    full = extract(bert, texts, ["blocks.0.resid_post", "blocks.1.mlp.post"], store=tmp_path / "full", **kw)
    assert full.n_items > 3 * full.chunk_rows

    real = ActivationStore.write_chunk
    calls = {"n": 0}

    def crashing(self, chunk, arrays):
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        calls["n"] += 1
        real(self, chunk, arrays)

    monkeypatch.setattr(ActivationStore, "write_chunk", crashing)
    with pytest.raises(KeyboardInterrupt):
        extract(bert, texts, ["blocks.0.resid_post", "blocks.1.mlp.post"], store=tmp_path / "part", **kw)
    monkeypatch.setattr(ActivationStore, "write_chunk", real)
    part = ActivationStore.open(tmp_path / "part")
    assert not part.complete and part.progress["rows_committed"] == 2 * part.chunk_rows
    with pytest.raises(StoreError, match="incomplete"):
        part.read("blocks.0.resid_post")
    assert_no_hooks(bert)

    seen = []
    run = ex._run_batch
    monkeypatch.setattr(
        ex, "_run_batch", lambda s, b, *a: (seen.extend(b.indices.tolist()), run(s, b, *a))[1]
    )
    resumed = extract(
        bert, texts, ["blocks.0.resid_post", "blocks.1.mlp.post"], store=tmp_path / "part", **kw
    )
    assert resumed.complete
    committed_examples = int(part.meta("example_id")[2 * part.chunk_rows - 1])
    assert min(seen) >= (committed_examples // 16) * 16  # committed windows were not recomputed
    for s in full.sites:
        np.testing.assert_array_equal(full.read(s), resumed.read(s))
    resumed.verify()


def test_complete_store_is_reused_and_mismatch_is_refused(bert, tmp_path):
    texts = _texts(10)
    st = extract(bert, texts, "blocks.0.resid_post", store=tmp_path / "s", progress=False)
    again = extract(bert, texts, "blocks.0.resid_post", store=tmp_path / "s", progress=False)
    assert again.complete
    with pytest.raises(StoreError, match="different"):
        extract(bert, texts[:5], "blocks.0.resid_post", store=tmp_path / "s", progress=False)
    with pytest.raises(StoreError, match="different"):
        extract(bert, texts, "blocks.0.resid_post", store=tmp_path / "s", pooling="token", progress=False)
    with pytest.raises(StoreError, match="already exists"):
        extract(bert, texts, "blocks.0.resid_post", store=tmp_path / "s", resume=False, progress=False)
    managed = extract(
        bert, texts[:5], "blocks.0.resid_post", store=tmp_path / "s", overwrite="mismatched", progress=False
    )
    assert managed.n_items == 5  # a cache layerscope manages is replaced when its inputs changed
    new = extract(bert, texts, "blocks.1.resid_post", store=tmp_path / "s", overwrite=True, progress=False)
    assert new.sites == ["blocks.1.resid_post"]
    assert st.path == new.path


def test_checksum_detects_corruption(bert, tmp_path):
    st = extract(
        bert, _texts(20), "blocks.0.resid_post", store=tmp_path / "s", dtype="float32", progress=False
    )
    arr = st._array("acts", "blocks.0.resid_post")
    arr[3] = arr[3] + 1.0
    with pytest.raises(StoreError, match="checksum"):
        st.verify()


def test_int8_store_roundtrip(bert, tmp_path):
    texts = _texts(20)
    f32 = extract(bert, texts, "blocks.1.resid_post", store=tmp_path / "a", dtype="float32", progress=False)
    q = extract(bert, texts, "blocks.1.resid_post", store=tmp_path / "b", dtype="int8", progress=False)
    a, b = f32.read("blocks.1.resid_post"), q.read("blocks.1.resid_post")
    assert np.abs(a - b).max() <= np.abs(a).max(axis=1).max() / 127 + 1e-6


def test_causal_lm_last_token(tmp_path):
    s = tiny_llama()
    texts = ["the cat sat", "hello world again and again"]
    st = extract(
        s, texts, "final", store=tmp_path / "l", pooling="last_token", dtype="float32", progress=False
    )
    for i, t in enumerate(texts):
        with torch.no_grad(), capture(s, ["final"]) as tr:
            s.forward(dict(s.tokenize([t])))
        np.testing.assert_allclose(st.read("final")[i], tr["final"][0, -1].numpy(), atol=1e-5)


def test_extract_bad_inputs(bert, tmp_path):
    with pytest.raises(DataError, match="empty"):
        extract(bert, [], "blocks.0.resid_post", store=tmp_path / "a", progress=False)
    with pytest.raises(DataError, match="not a string"):
        extract(bert, ["ok", 3], "blocks.0.resid_post", store=tmp_path / "a", progress=False)
    with pytest.raises(ConfigError, match="unknown pooling"):
        extract(bert, ["ok"], "blocks.0.resid_post", store=tmp_path / "a", pooling="avg", progress=False)
    with pytest.raises(ConfigError, match="capture"):
        extract(bert, ["ok"], "blocks.0.attn.pattern", store=tmp_path / "a", progress=False)
    with pytest.raises(UnknownSiteError):
        extract(bert, ["ok"], "blocks.9.resid_post", store=tmp_path / "a", progress=False)
    with pytest.raises(DataError, match="one string"):
        extract(bert, "just one sentence", "blocks.0.resid_post", store=tmp_path / "a", progress=False)
    with pytest.raises(StoreError, match="not a layerscope"):
        ActivationStore.open(tmp_path)
    assert_no_hooks(bert)


def test_oom_backoff_splits_batches_and_keeps_results(bert, tmp_path, monkeypatch):
    texts = _texts(40, seed=5)
    kw = dict(pooling="token", dtype="float32", window=16, batch_tokens=512, progress=False)
    ref = extract(bert, texts, "blocks.1.resid_post", store=tmp_path / "ref", **kw)
    real = ex._run_batch
    sizes = []

    def flaky(subject, batch, sites, pooling):
        sizes.append(len(batch.indices))
        if len(batch.indices) > 4:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(subject, batch, sites, pooling)

    monkeypatch.setattr(ex, "_run_batch", flaky)
    got = extract(bert, texts, "blocks.1.resid_post", store=tmp_path / "oom", **kw)
    assert max(sizes) > 4 and any(s <= 4 for s in sizes)
    np.testing.assert_allclose(got.read("blocks.1.resid_post"), ref.read("blocks.1.resid_post"), atol=1e-5)

    def always(subject, batch, sites, pooling):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(ex, "_run_batch", always)
    with pytest.raises(ConfigError, match="does not fit in memory"):
        extract(bert, texts[:3], "blocks.1.resid_post", store=tmp_path / "never", **kw)
    assert_no_hooks(bert)
