"""Built-in probing tasks on the real MultiEmo corpus with spaCy silver parses (small n_sentences).

The first run parses a few thousand sentences with spaCy (cached per chunk under the silver cache);
later runs read the cache.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import numpy as np
import pytest

from layerscope.data import ProbingTask, builtin_tasks, list_builtin_tasks

pytestmark = pytest.mark.integration

N = 400
UD_TAGS = {
    *[
        "ADJ",
        "ADP",
        "ADV",
        "AUX",
        "CCONJ",
        "DET",
        "INTJ",
        "NOUN",
        "NUM",
        "PART",
        "PRON",
        "PROPN",
        "PUNCT",
        "SCONJ",
        "SYM",
        "VERB",
        "X",
    ],
    "other",
}
SENTENCE_TASKS = ["sentlen", "wc", "bshift", "treedepth", "tense", "subjnum", "objnum", "sentiment"]


@pytest.fixture(scope="module")
def tasks() -> dict[str, ProbingTask]:
    return builtin_tasks(n_sentences=N, seed=0, progress=False)


def _by_split(task: ProbingTask, values: list[Any]) -> dict[Any, set[int]]:
    where: dict[Any, set[int]] = {}
    assert task.split is not None
    for v, s in zip(values, task.split, strict=True):
        where.setdefault(v, set()).add(int(s))
    return where


def test_all_tasks_built_deterministic_and_fast(tasks: dict[str, ProbingTask]) -> None:
    assert list(tasks) == list_builtin_tasks()
    assert {"upos", "xpos", "dep", "is_root", *SENTENCE_TASKS} <= set(tasks)
    t0 = time.perf_counter()
    again = builtin_tasks(n_sentences=N, seed=0, progress=False)  # silver cache warm now
    assert time.perf_counter() - t0 < 60
    for name, t in tasks.items():
        assert again[name].dataset.texts == t.dataset.texts and again[name].labels == t.labels
        assert np.array_equal(again[name].split, t.split)
        assert t.description and "Measured" in t.description


def test_sentence_tasks_balanced_and_capped(tasks: dict[str, ProbingTask]) -> None:
    for name in SENTENCE_TASKS:
        t = tasks[name]
        counts = Counter(t.labels)
        assert len(set(counts.values())) == 1, (name, counts)
        assert t.n_examples <= N and t.n_examples >= 0.95 * N, (name, t.n_examples)
        for split in range(3):
            in_split = Counter(lab for lab, s in zip(t.labels, t.split, strict=True) if s == split)
            assert set(in_split) == set(t.classes), (name, split)


def test_no_text_in_two_splits(tasks: dict[str, ProbingTask]) -> None:
    for name, t in tasks.items():
        assert all(len(v) == 1 for v in _by_split(t, t.dataset.texts).values()), name
        assert set(t.split.tolist()) == {0, 1, 2}


@pytest.mark.parametrize("name", ["tense", "subjnum", "objnum"])
def test_lexical_groups_disjoint_across_splits(tasks: dict[str, ProbingTask], name: str) -> None:
    t = tasks[name]
    forms = t.dataset.labels["group"]
    assert all(len(v) == 1 for v in _by_split(t, forms).values())
    for form, words in zip(forms, t.dataset.words, strict=True):
        assert form in {w.lower() for w in words}
    if name == "tense":
        past = {f for f, lab in zip(forms, t.labels, strict=True) if lab == "past"}
        assert {"was", "had"} & past or len(past) > 10


def test_sentlen_labels_match_word_counts(tasks: dict[str, ProbingTask]) -> None:
    t = tasks["sentlen"]
    assert t.classes == ["05-08", "09-12", "13-16", "17-20", "21-25", "26-28"]
    for words, lab in zip(t.dataset.words, t.labels, strict=True):
        lo, hi = map(int, lab.split("-"))
        assert lo <= len(words) <= hi


def test_bshift_differs_in_two_adjacent_words(tasks: dict[str, ProbingTask]) -> None:
    t = tasks["bshift"]
    sources = t.dataset.labels["source"]
    assert len(set(sources)) == len(sources)  # each source sentence used once
    for text, words, spans, src, lab in zip(
        t.dataset.texts, t.dataset.words, t.dataset.word_spans, sources, t.labels, strict=True
    ):
        assert [text[a:b] for a, b in spans] == words
        if lab == "original":
            assert text == src
            continue
        assert len(text) == len(src) and text != src
        diff = [i for i, (x, y) in enumerate(zip(text, src, strict=True)) if x != y]
        k = max(j for j, (a, _) in enumerate(spans) if a <= diff[0])  # the first changed word
        (a0, a1), (b0, b1) = spans[k], spans[k + 1]
        assert k > 0 and diff[-1] < b1  # two adjacent words, never the first one
        assert src[a0:b1] == words[k + 1] + text[a1:b0] + words[k]  # swapping them back gives the source
    per_class = [
        Counter(len(w) for w, x in zip(t.dataset.words, t.labels, strict=True) if x == c) for c in t.classes
    ]
    a, b = per_class
    assert sum(abs(a[k] - b[k]) for k in a | b) <= len(a | b)  # labels alternate within each length


def test_wc_exactly_one_target_word(tasks: dict[str, ProbingTask]) -> None:
    t = tasks["wc"]
    assert len(t.classes) == 100
    targets = set(t.classes)
    for words, lab in zip(t.dataset.words, t.labels, strict=True):
        hits = [w.lower() for w in words if w.lower() in targets]
        assert hits == [lab]


def test_treedepth_length_matched(tasks: dict[str, ProbingTask]) -> None:
    t = tasks["treedepth"]
    assert t.classes == ["3", "4", "5", "6", "7+"]
    hist: dict[str, Counter[int]] = {}
    for words, lab in zip(t.dataset.words, t.labels, strict=True):
        hist.setdefault(lab, Counter())[len(words)] += 1
    assert len({tuple(sorted(h.items())) for h in hist.values()}) == 1


def test_word_tasks_labels_and_targets(tasks: dict[str, ProbingTask]) -> None:
    upos, is_root = tasks["upos"], tasks["is_root"]
    assert upos.dataset is tasks["xpos"].dataset is tasks["dep"].dataset is is_root.dataset
    assert upos.n_examples == N and set(upos.classes) <= UD_TAGS and len(upos.classes) >= 15
    heads = is_root.dataset.labels["head"]
    for hs, labs in zip(heads, is_root.labels, strict=True):
        assert labs == ["root" if h == -1 else "non-root" for h in hs]
    # store-like rows: every word of examples 0..9 plus a non-word row per example
    ex = np.array([i for i in range(10) for _ in range(len(upos.dataset.words[i]) + 1)])
    wid = np.array([w for i in range(10) for w in [-1, *range(len(upos.dataset.words[i]))]])
    got = upos.targets(ex, wid)
    want = [-1 if w < 0 else upos.classes.index(upos.labels[e][w]) for e, w in zip(ex, wid, strict=True)]
    assert got.tolist() == want
    assert tasks["tense"].targets(np.arange(5), np.full(5, -1)).min() >= 0


def test_control_tasks(tasks: dict[str, ProbingTask]) -> None:
    c = tasks["xpos"].control(seed=0)
    assert c.name == "xpos/control" and c.dataset is tasks["xpos"].dataset
    mapping: dict[str, set[str]] = {}
    for words, labs in zip(c.dataset.words, c.labels, strict=True):
        for w, lab in zip(words, labs, strict=True):
            mapping.setdefault(w.lower(), set()).add(lab)
    assert all(len(v) == 1 for v in mapping.values())
    s = tasks["tense"].control(seed=0)
    assert np.array_equal(s.split, tasks["tense"].split)
    assert 0.35 < Counter(s.labels)["past"] / s.n_examples < 0.65
