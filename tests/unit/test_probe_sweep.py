"""The probing sweep on a tiny model with planted tasks (no real model): numbers, structure, bad input."""

import numpy as np
import pandas as pd
import pytest
import torch

from layerscope.data import ProbingTask, TextDataset
from layerscope.errors import ConfigError
from layerscope.probes.result import ProbeSweepResult
from layerscope.probes.sweep import probe, random_copy
from layerscope.result import Result
from layerscope.testing import assert_no_hooks, tiny_bert

NOUNS = ["cat", "dog", "mat", "world"]
VERBS = ["sat", "ran", "run", "played"]


def _sentences(n, seed=0):
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        words = list(rng.choice(["the", "a", "red", "blue", "new", "old"], size=rng.integers(2, 6)))
        has = rng.random() < 0.5
        words.insert(int(rng.integers(0, len(words))), "cat" if has else "dog")
        texts.append(" ".join(words))
        labels.append("cat" if has else "dog")
    return texts, labels


@pytest.fixture(scope="module")
def subject():
    return tiny_bert(n_layers=2)


def test_sentence_task_sweep(subject, tmp_path):
    texts, labels = _sentences(240)
    task = ProbingTask(name="has_cat", level="sentence", dataset=TextDataset.from_texts(texts), labels=labels)
    res = probe(
        subject, [task], probes=("linear", "ridge"), store_dir=tmp_path, n_bootstrap=200, progress=False
    )
    f = res.frame
    assert set(f.metric) >= {
        "accuracy",
        "control_accuracy",
        "selectivity",
        "compression",
        "control_compression",
    }
    acc = f[(f.metric == "accuracy") & (f.family == "linear")].sort_values("layer")
    assert list(acc.site) == ["blocks.0.resid_pre", "blocks.0.resid_post", "blocks.1.resid_post"]
    assert (acc.value > 0.9).all()  # a planted lexical cue is linearly decodable everywhere
    assert (acc.ci_low <= acc.value).all() and (acc.value <= acc.ci_high).all()
    sel = f[(f.metric == "selectivity") & (f.family == "linear")]
    assert (sel.value > 0.2).all()
    comp = f[(f.metric == "compression")].value
    ctrl = f[(f.metric == "control_compression")].value
    assert comp.mean() > ctrl.mean()
    assert res.tasks.majority_accuracy.iloc[0] == pytest.approx(0.5, abs=0.15)
    el = res.expected_layer()
    assert set(el.columns) >= {"expected_layer", "best_layer"}
    assert len(res.figures()) == 5
    res.save(tmp_path / "res")
    again = Result.load(tmp_path / "res")
    assert isinstance(again, ProbeSweepResult) and again.frame.shape == res.frame.shape
    assert_no_hooks(subject)


def test_word_task_and_random_baseline(subject, tmp_path):
    rng = np.random.default_rng(1)
    words = [list(rng.choice(NOUNS + VERBS, size=rng.integers(2, 7))) for _ in range(150)]
    labels = [["N" if w in NOUNS else "V" for w in ws] for ws in words]
    task = ProbingTask(name="nv", level="word", dataset=TextDataset.from_words(words), labels=labels)
    res = probe(
        subject, [task], mdl=False, random_baseline=True, store_dir=tmp_path, n_bootstrap=100, progress=False
    )
    f = res.frame
    trained = f[(f.metric == "accuracy") & (f.variant == "trained")]
    assert (trained.value > 0.9).all()
    assert set(f.variant) == {"trained", "random_init"}
    assert res.tasks.n_test.iloc[0] > 50


def test_word_tasks_of_one_dataset_share_their_mlp_run(subject, tmp_path):
    """Two word tasks on one dataset: MLP probes trained together give each task's own sweep numbers."""
    rng = np.random.default_rng(2)
    words = [list(rng.choice(NOUNS + VERBS, size=rng.integers(2, 7))) for _ in range(150)]
    ds = TextDataset.from_words(words)
    nv = ProbingTask(
        name="nv", level="word", dataset=ds, labels=[["N" if w in NOUNS else "V" for w in ws] for ws in words]
    )
    vowel = ProbingTask(
        name="has_a",
        level="word",
        dataset=ds,
        labels=[["A" if "a" in w else "-" for w in ws] for ws in words],
    )
    kw = {"probes": ("mlp",), "mdl": False, "store_dir": tmp_path, "n_bootstrap": 50, "progress": False}
    logs: list[str] = []
    both = probe(subject, [nv, vowel], log=logs.append, workers=2, **kw).frame  # shared run in a worker
    assert any("mlp probes of nv, has_a" in line for line in logs)  # the shared path ran
    in_order = probe(subject, [nv, vowel], workers=1, **kw).frame  # the same, without a worker thread
    pd.testing.assert_frame_equal(in_order, both)
    with pytest.raises(ConfigError, match="workers"):
        probe(subject, [nv, vowel], workers=0, **kw)
    for task in (nv, vowel):
        alone = probe(subject, [task], **kw).frame
        mine = both[both.task == task.name].reset_index(drop=True)
        np.testing.assert_allclose(mine.value.to_numpy(), alone.value.to_numpy(), atol=1e-9)
        np.testing.assert_array_equal(mine.metric.to_numpy(), alone.metric.to_numpy())
    acc = both[(both.metric == "accuracy") & (both.task == "nv")]
    assert (acc.value > 0.9).all()  # planted: the numbers compared above are not chance-level


def test_an_error_in_the_shared_mlp_worker_reaches_the_caller(subject, tmp_path, monkeypatch):
    from layerscope.probes import layerwise

    rng = np.random.default_rng(3)
    words = [list(rng.choice(NOUNS + VERBS, size=rng.integers(2, 7))) for _ in range(80)]
    ds = TextDataset.from_words(words)
    tasks = [
        ProbingTask(
            name="nv",
            level="word",
            dataset=ds,
            labels=[["N" if w in NOUNS else "V" for w in ws] for ws in words],
        ),
        ProbingTask(
            name="has_a",
            level="word",
            dataset=ds,
            labels=[["A" if "a" in w else "-" for w in ws] for ws in words],
        ),
    ]

    def broken(*args, **kwargs):
        raise RuntimeError("worker failed")

    monkeypatch.setattr(layerwise, "fit_mlp_tasks", broken)
    with pytest.raises(RuntimeError, match="worker failed"):
        probe(
            subject,
            tasks,
            probes=("mlp",),
            mdl=False,
            store_dir=tmp_path,
            n_bootstrap=20,
            progress=False,
            workers=2,
        )
    assert torch.get_num_threads() >= 1 and not _pinned()  # thread counts were released


def _pinned() -> bool:
    from layerscope.probes._validation import _PINNED

    return _PINNED.is_set()


def test_random_copy_has_same_architecture_and_new_weights(subject):
    r = random_copy(subject, seed=3)
    a = dict(subject.model.named_parameters())["encoder.layer.0.attention.self.query.weight"]
    b = dict(r.model.named_parameters())["encoder.layer.0.attention.self.query.weight"]
    assert a.shape == b.shape and not np.allclose(a.detach().numpy(), b.detach().numpy())
    assert r.adapter.n_layers == subject.adapter.n_layers and r.revision != subject.revision


def test_sweep_bad_inputs(subject, tmp_path):
    texts, labels = _sentences(60)
    task = ProbingTask(name="t", level="sentence", dataset=TextDataset.from_texts(texts), labels=labels)
    with pytest.raises(ConfigError, match="unknown probe family"):
        probe(subject, [task], probes=("svm",), store_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="unknown task"):
        probe(subject, ["no_such_task"], store_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="seeds"):
        probe(subject, [task], seeds=(), store_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="no tasks"):
        probe(subject, [], store_dir=tmp_path, progress=False)
    from layerscope.errors import UnknownSiteError

    with pytest.raises(UnknownSiteError):
        probe(subject, [task], sites=["blocks.7.resid_post"], store_dir=tmp_path, progress=False)


def test_expected_layer_is_the_center_of_gravity_of_running_best_gains():
    import pandas as pd

    def frame(values):
        return pd.DataFrame(
            {
                "model": "m", "variant": "trained", "task": "t", "level": "sentence", "family": "linear",
                "layer": range(len(values)), "site": [f"s{i}" for i in range(len(values))],
                "metric": "accuracy", "value": values,
            }
        )  # fmt: skip

    def ev(values):
        res = ProbeSweepResult(frame=frame(values), tasks=pd.DataFrame({"task": ["t"]}))
        return float(res.expected_layer()["expected_layer"].iloc[0])

    # monotone scores: Tenney's formula on the raw differences
    assert ev([0.5, 0.6, 0.9]) == pytest.approx((1 * 0.1 + 2 * 0.3) / 0.4)
    # a rise then a fall: later drops do not pull the center outside the layer range
    assert ev([0.5, 0.6, 0.7, 0.55]) == pytest.approx((1 * 0.1 + 2 * 0.1) / 0.2)
    # best at the first layer: 0 (raw differences would give a negative or exploding ratio)
    assert ev([0.8, 0.6, 0.5]) == 0.0
    assert 0.0 <= ev([0.5, 0.62, 0.65, 0.675, 0.63, 0.61, 0.56]) <= 6.0


def test_sweep_rebuilds_a_cached_store_made_with_other_extraction_settings(subject, tmp_path):
    """The sweep's store cache survives changed extraction defaults (a stale store is rebuilt, not an error)."""
    import zarr

    texts, labels = _sentences(120)
    task = ProbingTask(name="has_cat", level="sentence", dataset=TextDataset.from_texts(texts), labels=labels)
    kw = {"probes": ("ridge",), "store_dir": tmp_path, "n_bootstrap": 50, "progress": False, "mdl": False}
    first = probe(subject, [task], **kw)
    (store,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    group = zarr.open_group(str(store), mode="r+")
    group.attrs["window"] = 7  # as if made by an older version with other defaults
    again = probe(subject, [task], **kw)
    assert again.frame["value"].tolist() == pytest.approx(first.frame["value"].tolist())
    assert zarr.open_group(str(store), mode="r").attrs["window"] != 7


def test_probe_cli_rejects_bad_worker_count(run_cli):
    code, _, err = run_cli("probe", "--workers", "0", "--task", "sentlen")
    assert code == 2 and "--workers must be >= 1" in err and "Traceback" not in err
