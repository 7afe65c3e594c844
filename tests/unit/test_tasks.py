"""Probing-task layer on synthetic data (no spaCy, no corpus): splits, controls, ProbingTask, builders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from layerscope.data import (
    ProbingTask,
    TextDataset,
    control_labels_sentence,
    control_labels_word,
    merge_rare_classes,
    split_examples,
    task_from_file,
)
from layerscope.data import _senteval as se
from layerscope.errors import ConfigError, DataError


# -- splits -----------------------------------------------------------------------------------------------
def test_split_deterministic_and_seeded() -> None:
    a = split_examples(500, seed=3)
    assert a.dtype == np.int8 and a.shape == (500,)
    assert np.array_equal(a, split_examples(500, seed=3))
    assert not np.array_equal(a, split_examples(500, seed=4))


def test_split_fractions_close_for_singletons() -> None:
    s = split_examples(1000, fractions=(0.6, 0.15, 0.25), seed=0)
    assert np.bincount(s, minlength=3).tolist() == [600, 150, 250]


def test_split_keeps_groups_together() -> None:
    rng = np.random.default_rng(0)
    groups = [f"doc{k}" for k in rng.integers(0, 120, size=2000)]
    s = split_examples(len(groups), groups=groups, seed=1)
    where: dict[str, set[int]] = {}
    for g, k in zip(groups, s, strict=True):
        where.setdefault(g, set()).add(int(k))
    assert all(len(v) == 1 for v in where.values())
    share = np.bincount(s, minlength=3) / len(s)
    assert np.allclose(share, [0.7, 0.1, 0.2], atol=0.03)


def test_split_identical_texts_and_heavy_groups() -> None:
    texts = ["same"] * 50 + [f"t{i}" for i in range(200)]
    s = split_examples(len(texts), groups=texts, seed=0)
    assert len(set(s[:50].tolist())) == 1
    assert set(s.tolist()) == {0, 1, 2}


def test_split_stratified_keeps_class_proportions() -> None:
    labels = ["a"] * 700 + ["b"] * 300
    s = split_examples(1000, stratify=labels, seed=0)
    for k in range(3):
        in_split = [lab for lab, x in zip(labels, s, strict=True) if x == k]
        assert abs(Counter(in_split)["a"] / len(in_split) - 0.7) < 0.02


def test_split_three_groups_fill_three_splits() -> None:
    s = split_examples(3, seed=0)
    assert sorted(s.tolist()) == [0, 1, 2]
    s = split_examples(30, groups=[0] * 28 + [1, 2], seed=5)
    assert set(s.tolist()) == {0, 1, 2}


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"fractions": (0.5, 0.2, 0.2)}, ConfigError, "sum to 1"),
        ({"fractions": (0.8, 0.0, 0.2)}, ConfigError, "> 0"),
        ({"fractions": (1.2, -0.1, -0.1)}, ConfigError, "> 0"),
        ({"fractions": (0.5, 0.5)}, ConfigError, "three numbers"),
        ({"fractions": ("a", 0.5, 0.5)}, ConfigError, "three numbers"),
        ({"groups": ["a"] * 9}, DataError, "9 entries for 10"),
        ({"groups": ["a"] * 5 + ["b"] * 5}, DataError, "2 group"),
        ({"groups": [[1]] * 10}, DataError, "not hashable"),
        ({"stratify": [0] * 3}, DataError, "3 entries"),
        ({"seed": 1.5}, ConfigError, "seed"),
    ],
)
def test_split_bad_input(kwargs: dict, err: type[Exception], match: str) -> None:
    with pytest.raises(err, match=match):
        split_examples(10, **kwargs)


@pytest.mark.parametrize("n", [0, -1, 2.0, True])
def test_split_bad_n(n: object) -> None:
    with pytest.raises((ConfigError, DataError)):
        split_examples(n)


def test_split_too_few_examples() -> None:
    with pytest.raises(DataError, match="at least 3"):
        split_examples(2)


# -- control tasks ----------------------------------------------------------------------------------------
def test_word_control_fixed_per_type_and_none_kept() -> None:
    words = [["The", "cat", "sat"], ["the", "dog", "sat", "."], ["THE", "cat"]]
    labels = [["DET", "NOUN", "VERB"], ["DET", "NOUN", "VERB", None], ["DET", "NOUN"]]
    ctl = control_labels_word(words, labels, seed=0)
    assert ctl[0][0] == ctl[1][0] == ctl[2][0]  # one label per lower-cased type
    assert ctl[0][1] == ctl[2][1] and ctl[0][2] == ctl[1][2]
    assert ctl[1][3] is None
    assert all(c in {"DET", "NOUN", "VERB"} for row in ctl for c in row if c is not None)
    assert ctl == control_labels_word(words, labels, seed=0)


def test_word_control_matches_label_distribution() -> None:
    rng = np.random.default_rng(0)
    classes = np.array(["A", "B", "C", "D"])
    p = np.array([0.5, 0.3, 0.15, 0.05])
    n_types = 20000
    real = rng.choice(classes, size=n_types, p=p)
    words = [[f"w{i}" for i in range(n_types)]]
    ctl = control_labels_word(words, [real.tolist()], seed=7)[0]
    observed = np.array([Counter(ctl)[c] for c in classes], dtype=float)
    empirical = np.array([Counter(real.tolist())[c] for c in classes], dtype=float) / n_types
    expected = empirical * n_types
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 16.3  # chi-square, 3 degrees of freedom, p = 0.001
    other = control_labels_word(words, [real.tolist()], seed=8)[0]
    assert sum(a != b for a, b in zip(ctl, other, strict=True)) > n_types / 3  # another seed, another map


def test_word_control_same_mapping_in_any_subset() -> None:
    words = [["alpha", "beta"], ["gamma", "alpha"], ["beta", "delta"]] * 10
    labels = [["X", "Y"], ["Y", "X"], ["Y", "X"]] * 10
    full = control_labels_word(words, labels, seed=1)
    part = control_labels_word(words[:3], labels[:3], seed=1)
    assert full[:3] == part  # same distribution here, so the same mapping: independent of the split


def test_sentence_control_distribution_and_identity() -> None:
    texts = [f"sentence number {i}" for i in range(8000)] + ["repeated"] * 5
    labels = ["pos"] * 6000 + ["neg"] * 2000 + ["pos", "neg", "pos", "neg", "pos"]
    ctl = control_labels_sentence(texts, labels, seed=0)
    share = Counter(ctl)["pos"] / len(ctl)
    assert abs(share - 6003 / 8005) < 0.02
    assert len(set(ctl[-5:])) == 1  # identical texts, identical label


def test_sentence_control_stable_across_processes() -> None:
    texts = ["a first text", "another one", "and a third", "fourth", "fifth text here"]
    labels = ["x", "y", "z", "x", "y"]
    here = control_labels_sentence(texts, labels, seed=3)
    code = (
        "import json, sys; from layerscope.data.control import control_labels_sentence as c; "
        f"print(json.dumps(c({texts!r}, {labels!r}, seed=3)))"
    )
    for hashseed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hashseed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        assert json.loads(out.stdout) == here


def test_control_bad_input() -> None:
    with pytest.raises(DataError, match="example 0: 1 labels for 2 words"):
        control_labels_word([["a", "b"]], [["X"]], seed=0)
    with pytest.raises(DataError, match="every label is None"):
        control_labels_word([["a"]], [[None]], seed=0)
    with pytest.raises(DataError, match="one label per text"):
        control_labels_sentence(["a", "b"], ["x"], seed=0)
    with pytest.raises(ConfigError, match="seed"):
        control_labels_sentence(["a"], ["x"], seed="0")
    with pytest.raises(DataError, match="not a string"):
        control_labels_sentence([1], ["x"], seed=0)


# -- ProbingTask ------------------------------------------------------------------------------------------
def _sentence_task(n: int = 60) -> ProbingTask:
    texts = [f"text {i}" for i in range(n)]
    labels = ["a" if i % 3 else "b" for i in range(n)]
    split = split_examples(n, stratify=labels, seed=0)
    return ProbingTask(
        name="toy", level="sentence", dataset=TextDataset.from_texts(texts), labels=labels, split=split
    )


def _word_task() -> ProbingTask:
    ds = TextDataset.from_texts([f"the cat {i} sat" for i in range(30)])
    labels = [["DET", "NOUN", None, "VERB"] for _ in range(30)]
    return ProbingTask(name="pos", level="word", dataset=ds, labels=labels)


def test_task_defaults_classes_and_split() -> None:
    t = _word_task()
    assert t.classes == ["DET", "NOUN", "VERB"]
    assert t.split is not None and set(t.split.tolist()) == {0, 1, 2}
    assert not t.split.flags.writeable
    assert "ProbingTask(name='pos'" in repr(t)


def test_targets_sentence_join() -> None:
    t = _sentence_task()
    ex = np.array([0, 1, 3, 3, 59])
    expected = [t.classes.index(t.labels[i]) for i in ex]
    assert t.targets(ex, np.full(5, -1)).tolist() == expected
    assert t.targets(ex).dtype == np.int64


def test_targets_word_join() -> None:
    t = _word_task()
    ex = np.array([0, 0, 0, 0, 0, 5, 29])
    wid = np.array([-1, 0, 1, 2, 3, 3, 1])
    assert t.targets(ex, wid).tolist() == [-1, 0, 1, -1, 2, 2, 1]
    with pytest.raises(DataError, match="example_id out of range"):
        t.targets(np.array([30]), np.array([0]))
    with pytest.raises(DataError, match="has 4 words"):
        t.targets(np.array([1]), np.array([4]))
    with pytest.raises(ConfigError, match="word_id"):
        t.targets(np.array([1]))
    assert t.targets(np.zeros(0, np.int64), np.zeros(0, np.int64)).shape == (0,)


def test_control_task_same_inputs_fixed_mapping() -> None:
    t = _word_task()
    c = t.control(seed=1)
    assert c.name == "pos/control" and c.dataset is t.dataset
    assert np.array_equal(c.split, t.split)
    firsts = {row[0] for row in c.labels}
    assert len(firsts) == 1  # every "the" gets the same label
    assert all(row[2] is None for row in c.labels)
    s = _sentence_task().control(seed=0)
    assert s.name == "toy/control" and s.level == "sentence" and len(s.labels) == 60


def test_label_distribution_frame() -> None:
    t = _sentence_task()
    df = t.label_distribution()
    assert list(df.columns) == ["split", "class", "count", "share"]
    assert set(df["split"]) == {"train", "val", "test", "all"}
    all_rows = df[df["split"] == "all"].set_index("class")
    assert all_rows.loc["a", "count"] == 40 and all_rows.loc["b", "count"] == 20
    for _, grp in df.groupby("split"):
        assert abs(grp["share"].sum() - 1) < 1e-9


def test_subsample_keeps_split_and_balance() -> None:
    t = _sentence_task(300)
    s = t.subsample(90, seed=0)
    assert s.n_examples == 90
    assert Counter(s.labels) == {"a": 60, "b": 30}
    kept = {text: k for text, k in zip(t.dataset.texts, t.split, strict=True)}
    pairs = zip(s.dataset.texts, s.split, strict=True)
    assert all(kept[text] == k for text, k in pairs)
    assert t.subsample(1000) is t
    with pytest.raises(ConfigError):
        t.subsample(2)


def _ds(n: int) -> TextDataset:
    return TextDataset.from_texts([f"w{i} x" for i in range(n)])


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"labels": ["a", "b"]}, DataError, "2 labels for 6 examples"),
        ({"labels": ["a"] * 6}, DataError, "at least 2"),
        ({"labels": ["a", "b", None, "a", "b", "a"]}, DataError, "example 2"),
        ({"level": "token"}, ConfigError, "level"),
        ({"name": ""}, ConfigError, "name"),
        ({"split": np.array([0, 0, 0, 0, 1, 1])}, DataError, "test split"),
        ({"split": np.array([0, 0, 0, 1, 2, 3])}, DataError, "split values"),
        ({"split": np.array([0.0] * 6)}, DataError, "integer array"),
        ({"split": np.array([0, 1, 2])}, DataError, "shape"),
        ({"classes": ["a", "b", "c"]}, DataError, "differ"),
        ({"split": np.array([0, 0, 0, 1, 2, 2])}, DataError, "'b' \\(1\\)"),
        ({"dataset": ["x"] * 6}, DataError, "TextDataset"),
    ],
)
def test_task_validation(kwargs: dict, err: type[Exception], match: str) -> None:
    base = {
        "name": "t",
        "level": "sentence",
        "dataset": _ds(6),
        "labels": ["a", "a", "b", "a", "b", "b"],
        "split": np.array([0, 0, 0, 0, 1, 2]),
    }
    with pytest.raises(err, match=match):
        ProbingTask(**{**base, **kwargs})


def test_word_task_validation_names_example() -> None:
    ds = TextDataset.from_texts(["a b", "c d e", "f g"])
    with pytest.raises(DataError, match=r"example 1 \(1\) has 2 labels for 3 words"):
        ProbingTask(name="w", level="word", dataset=ds, labels=[["X", "Y"], ["X", "Y"], ["X", "Y"]])
    with pytest.raises(DataError, match="one list per example"):
        ProbingTask(name="w", level="word", dataset=ds, labels=["X", "Y", "X"])


def test_merge_rare_classes() -> None:
    split = np.array([0, 0, 0, 0, 0, 1, 2])
    labels, keep = merge_rare_classes(["a", "a", "b", "c", "a", "d", "b"], split, level="sentence")
    assert labels == ["a", "a", "other", "other", "a", "other", "other"] and keep == list(range(7))
    labels, keep = merge_rare_classes(["a", "a", "b", "a", "a", "a", "a"], split, level="sentence")
    assert keep == [0, 1, 3, 4, 5, 6]  # "other" would hold one training example: dropped
    words, keep = merge_rare_classes([["X", "Y"], ["X", None], ["X", "Z"]], split[:3], level="word")
    assert words == [["X", "other"], ["X", None], ["X", "other"]] and keep == [0, 1, 2]


# -- user task files --------------------------------------------------------------------------------------
def test_task_from_csv_and_jsonl(tmp_path: Path) -> None:
    rows = [(f"sentence {i}", "pos" if i % 2 else "neg") for i in range(40)] + [("odd one", "rare")]
    csv = tmp_path / "t.csv"
    csv.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows))
    t = task_from_file(csv)
    assert t.name == "t:label" and t.level == "sentence" and t.classes == ["neg", "pos"]  # "rare" dropped
    assert t.n_examples == 40
    jl = tmp_path / "t.jsonl"
    jl.write_text("".join(json.dumps({"sentence": t, "y": i % 3}) + "\n" for i, (t, _) in enumerate(rows)))
    t2 = task_from_file(jl, text_column="sentence", label_column="y", name="mine", seed=1)
    assert t2.name == "mine" and t2.classes == ["0", "1", "2"]


def test_task_from_word_jsonl(tmp_path: Path) -> None:
    lines = [{"words": ["a", "b"], "text": "a b", "tag": ["X", None]} for _ in range(10)]
    lines = [{**d, "text": f"a b{i}", "words": ["a", f"b{i}"]} for i, d in enumerate(lines)]
    lines += [{"words": ["c", "d"], "text": f"c d{i}", "tag": ["Y", "X"]} for i in range(10)]
    p = tmp_path / "w.jsonl"
    p.write_text("".join(json.dumps(d) + "\n" for d in lines))
    t = task_from_file(p, level="word", label_column="tag")
    assert t.classes == ["X", "Y"] and t.labels[0] == ["X", None]


CONLLU = """# sent_id = s{k}
1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_
2\tcat{k}\tcat\tNOUN\tNN\t_\t3\tnsubj\t_\t_
3\tsat\tsit\tVERB\tVBD\t_\t0\troot\t_\t_

"""


def test_task_from_conllu(tmp_path: Path) -> None:
    p = tmp_path / "tb.conllu"
    p.write_text("".join(CONLLU.format(k=k) for k in range(12)))
    t = task_from_file(p, level="word", label_column="upos")
    assert t.classes == ["DET", "NOUN", "VERB"] and t.dataset.words[0] == ["The", "cat0", "sat"]
    d = task_from_file(p, level="word", label_column="dep", seed=2)
    assert d.classes == ["det", "nsubj", "root"]


def test_task_from_file_bad_input(tmp_path: Path) -> None:
    p = tmp_path / "tb.conllu"
    p.write_text("".join(CONLLU.format(k=k) for k in range(12)))
    with pytest.raises(ConfigError, match="not class labels"):
        task_from_file(p, level="word", label_column="head")
    with pytest.raises(ConfigError, match="label_column"):
        task_from_file(p, level="word")
    with pytest.raises(DataError, match="level='word'"):
        task_from_file(p)
    csv = tmp_path / "t.csv"
    csv.write_text("text,label\na,x\nb,y\n")
    with pytest.raises(DataError, match=r"\.conllu or \.jsonl"):
        task_from_file(csv, level="word")
    with pytest.raises(DataError, match="group"):
        task_from_file(csv)
    with pytest.raises(DataError, match="no label column"):
        task_from_file(csv, label_column="nope")
    with pytest.raises(ConfigError, match="level"):
        task_from_file(csv, level="doc")


# -- built-in builders on a synthetic parsed pool ---------------------------------------------------------
SING = [f"noun{k}" for k in range(60)]
VERBS_PAST = [f"walk{k}ed" for k in range(40)]
VERBS_PRES = [f"walk{k}s" for k in range(40)]


def _synthetic_pool(n: int = 3000) -> se.Pool:
    """Parsed-looking sentences "The <subj> <verb> the <obj> ." with silver-style labels."""
    rng = np.random.default_rng(0)
    words: list[list[str]] = []
    labels: dict[str, list] = {k: [] for k in ("upos", "xpos", "dep", "head", "morph", "sentiment")}
    for i in range(n):
        subj_pl, obj_pl, past = rng.random(3) < [0.3, 0.4, 0.5]
        subj = SING[int(rng.integers(60))] + ("s" if subj_pl else "")
        obj = SING[int(rng.integers(60))] + ("s" if obj_pl else "")
        verb = (VERBS_PAST if past else VERBS_PRES)[int(rng.integers(40))]
        n_extra = int(rng.integers(0, 20))
        o = 4 + n_extra  # the object's position
        chain = int(rng.integers(0, n_extra + 1))  # extras 0..chain-1 form a chain: depth varies
        rows = [  # word, upos, xpos, dep, head
            ("The", "DET", "DT", "det", 1),
            (subj, "NOUN", "NNS" if subj_pl else "NN", "nsubj", 2),
            (verb, "VERB", "VBD" if past else "VBZ", "ROOT", -1),
            ("the", "DET", "DT", "det", o),
            *[("very", "ADV", "RB", "advmod", 5 + j if j < chain else o) for j in range(n_extra)],
            (obj, "NOUN", "NNS" if obj_pl else "NN", "dobj", 2),
            (f"x{i}", "NOUN", "NN", "npadvmod", 2),
            (".", "PUNCT", ".", "punct", 2),
        ]
        words.append([r[0] for r in rows])
        for k, key in enumerate(("upos", "xpos", "dep", "head"), start=1):
            labels[key].append([r[k] for r in rows])
        labels["morph"].append([""] * len(rows))
        labels["sentiment"].append(["positive", "negative", "neutral", "ambivalent"][i % 4])
    ds = TextDataset.from_words(words, labels=labels, name="synthetic")
    return se.Pool.from_parsed(ds)


@pytest.fixture(scope="module")
def pool() -> se.Pool:
    return _synthetic_pool()


@pytest.mark.parametrize("name, slot", [("tense", 2), ("subjnum", 1), ("objnum", -3)])
def test_lexical_groups_disjoint_across_splits(pool: se.Pool, name: str, slot: int) -> None:
    builder, _ = se.SENTENCE_TASKS[name]
    built = builder(pool, len(pool), 400, 0)
    assert built.full
    t = built.make()
    assert Counter(t.labels) == {c: 200 for c in t.classes}
    forms: dict[str, set[int]] = {}
    for ws, k in zip(t.dataset.words, t.split, strict=True):
        forms.setdefault(ws[slot].lower(), set()).add(int(k))
    assert all(len(v) == 1 for v in forms.values())
    assert max(Counter(ws[slot].lower() for ws in t.dataset.words).values()) <= 10  # 5% of 200
    assert set(t.split.tolist()) == {0, 1, 2}


def test_tense_labels_follow_root_tag(pool: se.Pool) -> None:
    t = se.SENTENCE_TASKS["tense"][0](pool, len(pool), 200, 1).make()
    for ws, lab in zip(t.dataset.words, t.labels, strict=True):
        assert lab == ("past" if ws[2].endswith("ed") else "present")


def test_bshift_swaps_two_adjacent_words(pool: se.Pool) -> None:
    t = se.SENTENCE_TASKS["bshift"][0](pool, len(pool), 400, 0).make()
    assert Counter(t.labels) == {"inverted": 200, "original": 200}
    by_id = dict(zip(pool.ids, pool.words, strict=True))
    for ws, text, spans, lab, i in zip(
        t.dataset.words, t.dataset.texts, t.dataset.word_spans, t.labels, t.dataset.ids, strict=True
    ):
        src = by_id[i]
        diff = [k for k, (a, b) in enumerate(zip(src, ws, strict=True)) if a != b]
        assert [text[a:b] for a, b in spans] == ws
        if lab == "original":
            assert diff == []
        else:
            assert len(diff) == 2 and diff[1] == diff[0] + 1 and diff[0] > 0
            assert ws[diff[0]] == src[diff[1]] and ws[diff[1]] == src[diff[0]]


def test_treedepth_length_matched(pool: se.Pool) -> None:
    t = se.SENTENCE_TASKS["treedepth"][0](pool, len(pool), 200, 0).make()
    lengths: dict[str, Counter[int]] = {}
    for ws, lab in zip(t.dataset.words, t.labels, strict=True):
        lengths.setdefault(lab, Counter())[len(ws)] += 1
    assert len({tuple(sorted(c.items())) for c in lengths.values()}) == 1  # same length histogram per class


def test_sentlen_and_sentiment_balanced(pool: se.Pool) -> None:
    t = se.SENTENCE_TASKS["sentlen"][0](pool, len(pool), 120, 0).make()
    for ws, lab in zip(t.dataset.words, t.labels, strict=True):
        lo, hi = map(int, lab.split("-"))
        assert lo <= len(ws) <= hi
    s = se.SENTENCE_TASKS["sentiment"][0](pool, len(pool), 200, 0).make()
    assert Counter(s.labels) == {c: 50 for c in ["ambivalent", "negative", "neutral", "positive"]}


def test_word_tasks_share_dataset_and_split(pool: se.Pool) -> None:
    tasks = se._word_tasks(pool, ["upos", "xpos", "is_root"], 100, 0)
    assert tasks["upos"].dataset is tasks["xpos"].dataset is tasks["is_root"].dataset
    assert np.array_equal(tasks["upos"].split, tasks["is_root"].split)
    assert tasks["is_root"].labels[0][2] == "root" and tasks["is_root"].classes == ["non-root", "root"]


def test_builtin_tasks_bad_arguments() -> None:
    from layerscope.data import builtin_tasks, list_builtin_tasks

    assert {"upos", "xpos", "dep", "is_root", "sentlen", "wc", "bshift", "treedepth"} <= set(
        list_builtin_tasks()
    )
    with pytest.raises(ConfigError, match="unknown built-in task"):
        builtin_tasks(["nope"])
    with pytest.raises(ConfigError, match="n_sentences"):
        builtin_tasks(["upos"], n_sentences=5)
    with pytest.raises(ConfigError, match="too small"):
        se._quota("treedepth", 12, 5)


def test_pool_ensure_never_reloads(pool: se.Pool) -> None:
    n = len(pool)
    pool.ensure(n + 5000)
    assert len(pool) == n and pool.root(0) == 2 and pool.depth(0) >= 2
