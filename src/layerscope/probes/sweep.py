"""``probe``: every (task × layer × probe family) of one model in one run, reusing one extraction per dataset.

For each task: extract (or reuse) the task's dataset at every site, join store rows to labels, fit each
probe family on all layers at once (regularisation picked on the validation split), score the test split
with a cluster bootstrap over test examples, repeat with the Hewitt & Liang control task (selectivity),
compute the MDL online code (Voita & Titov), and optionally do it all again on a randomly initialised copy
of the model (same architecture) as a baseline.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .._io import cache_root
from .._precision import resolve_precision
from ..errors import ConfigError
from ._validation import pinned_threads
from .result import ProbeSweepResult

FAMILIES = {"linear": "logistic", "logistic": "logistic", "ridge": "ridge", "lda": "lda", "mlp": "mlp"}


@dataclasses.dataclass(frozen=True)
class _Rows:
    """Store rows of one task: activations of every layer, targets, splits and example ids."""

    X: torch.Tensor  # layers, rows, d
    y: np.ndarray  # rows
    split: np.ndarray  # rows: 0 train, 1 val, 2 test
    example: np.ndarray  # rows
    word: np.ndarray  # rows (-1 for sentence items)


def default_sites(subject: Any) -> list[str]:
    """The embedding layer and every block's residual output."""
    return ["blocks.0.resid_pre", *[f"blocks.{i}.resid_post" for i in range(subject.n_layers)]]


def _resolve_tasks(tasks: Any, *, n_sentences: int, seed: int) -> list[Any]:
    from ..data.tasks import ProbingTask, builtin_tasks, list_builtin_tasks, task_from_file

    items = [tasks] if isinstance(tasks, str | Path | ProbingTask) else list(tasks)
    if not items:
        raise ConfigError(
            "no tasks given; pass built-in names (see list_builtin_tasks()) or ProbingTask objects"
        )
    known = set(list_builtin_tasks())
    names = [t for t in items if isinstance(t, str) and t in known]
    unknown = [t for t in items if isinstance(t, str) and t not in known and not Path(t).exists()]
    if unknown:
        raise ConfigError(
            f"unknown task {unknown[0]!r}; built-in tasks: {', '.join(sorted(known))}, or a task file"
        )
    built = builtin_tasks(names, n_sentences=n_sentences, seed=seed) if names else {}
    out = []
    for t in items:
        if isinstance(t, ProbingTask):
            out.append(t)
        elif isinstance(t, str) and t in built:
            out.append(built[t])
        else:
            out.append(task_from_file(Path(t), seed=seed))
    return out


def _pooling(subject: Any, level: str) -> str:
    if level == "word":
        return "word_first"
    return "last_token" if subject.kind == "causal_lm" else "sentence_mean"


def _store_path(root: Path, subject: Any, fingerprint: str, pooling: str, tag: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in subject.name)[-40:]
    return root / f"{safe}-{subject.revision[-8:]}{tag}-{fingerprint[:12]}-{pooling}"


def _rows(subject: Any, task: Any, sites: list[str], root: Path, tag: str, progress: bool) -> _Rows:
    from ..capture.extract import extract

    pooling = _pooling(subject, task.level)
    ds = task.dataset
    st = extract(
        subject,
        ds,
        sites,
        store=_store_path(root, subject, ds.fingerprint(), pooling, tag),
        pooling=pooling,
        progress=progress,
        overwrite="mismatched",  # the sweep's own cache: a store made with other settings is rebuilt
    )
    if st.manifest["model"]["revision"] != subject.revision:
        raise ConfigError(f"store {st.path} was made from another model; delete it or pass another store_dir")
    ex, wid = st.meta("example_id"), st.meta("word_id")
    y = task.targets(ex, wid)
    keep = y >= 0
    X = np.stack([st.read(s)[keep] for s in st.sites])  # layers, rows, d
    if not np.isfinite(X).all():
        raise ConfigError(
            f"activations of {subject.name} for task {task.name!r} contain NaN/inf; check the model"
        )
    return _Rows(torch.from_numpy(X), y[keep], np.asarray(task.split)[ex[keep]], ex[keep], wid[keep])


def _bootstrap(correct: np.ndarray, example: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Accuracy per layer for each bootstrap resample of test examples: ``[L, B]`` (cluster bootstrap)."""
    uniq, inv = np.unique(example, return_inverse=True)
    per_ex = np.zeros((correct.shape[0], len(uniq)))
    np.add.at(per_ex.T, inv, correct.T.astype(float))
    counts = np.bincount(inv, minlength=len(uniq)).astype(float)
    return per_ex[:, idx].sum(-1) / counts[idx].sum(-1)


def _fit_and_score(
    rows: _Rows, y: np.ndarray, family: str, n_classes: int, seed: int, layer_lambdas: Any = None
) -> tuple[np.ndarray, Any]:
    from .layerwise import fit_layers

    train, val = rows.split == 0, rows.split == 1
    fit = fit_layers(
        rows.X, y, family=family, train=train, val=val, n_classes=n_classes, seed=seed,
        layer_lambdas=layer_lambdas,
    )  # fmt: skip
    return _test_correct(rows, y, fit), fit


def _fit_and_score_with_control(
    rows: _Rows, y: np.ndarray, yc: np.ndarray, family: str, n_classes: int, n_control: int, seed: int
) -> tuple[np.ndarray, Any, np.ndarray]:
    """Task and control probes (the task's λ per layer) in shared work; test correctness of both."""
    from .layerwise import fit_layers_with_control

    train, val = rows.split == 0, rows.split == 1
    fit, cfit = fit_layers_with_control(
        rows.X, y, yc, family=family, train=train, val=val, n_classes=n_classes,
        n_classes_control=n_control, seed=seed,
    )  # fmt: skip
    return _test_correct(rows, y, fit), fit, _test_correct(rows, yc, cfit)


def _test_correct(rows: _Rows, y: np.ndarray, fit: Any) -> np.ndarray:
    """``[L, n_test]``: whether each layer's probe gets each test row right."""
    test = rows.split == 2
    out = fit.predict_proba(rows.X[:, torch.from_numpy(test)])
    proba = out.numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
    return proba.argmax(-1) == y[test][None, :]


def probe(
    subject: Any,
    tasks: Any,
    *,
    sites: Any = None,
    probes: tuple[str, ...] | list[str] = ("linear",),
    control: bool = True,
    mdl: bool = True,
    random_baseline: bool = False,
    seeds: tuple[int, ...] | list[int] = (0,),
    n_bootstrap: int = 1000,
    n_sentences: int = 4000,
    store_dir: str | Path | None = None,
    progress: bool = True,
    log: Any = None,
    workers: int | None = None,
) -> ProbeSweepResult:
    """Probe every task at every site with every probe family (the probing engine's one entry point).

    Args:
        subject: a text ``Subject``.
        tasks: built-in task names (``list_builtin_tasks()``), ``ProbingTask`` objects or task files.
        sites: sites to probe (default: ``blocks.0.resid_pre`` = embeddings, then every ``resid_post``).
        probes: families among ``linear`` (multinomial logistic), ``ridge``, ``lda``, ``mlp``.
        control: also fit the control task and report selectivity (same family and the task probe's
            hyperparameters per layer, as Hewitt & Liang define it).
        mdl: report the MDL online codelength and compression (logistic probes), for the task and control.
        random_baseline: repeat the first family on a randomly initialised copy of the model.
        seeds: repeats (control-task draw, MLP init); numbers are averaged, CIs pooled.
        n_bootstrap: resamples of test examples for the 95 % intervals.
        n_sentences: size of built-in tasks.
        store_dir: where activation stores are kept (reused across runs; default in the cache).
        log: a callable that receives one progress line per task (e.g. ``print``).
        workers: Python threads for independent fits (default: the number of CPUs). With 2 or more, the MLP
            probes of tasks that share their rows train in a worker thread while the other fits go on (torch
            threads are split between the two); 1 runs everything in order. The numbers are the same.
    """
    say = log or (lambda *_: None)
    fams = []
    for p in probes:
        if p not in FAMILIES:
            raise ConfigError(f"unknown probe family {p!r}; choose from {', '.join(FAMILIES)}")
        fams.append(p)
    if not seeds:
        raise ConfigError("seeds must name at least one seed")
    if n_bootstrap < 10:
        raise ConfigError("n_bootstrap must be >= 10")
    task_list = _resolve_tasks(tasks, n_sentences=n_sentences, seed=int(seeds[0]))
    site_names = [s.name for s in subject.adapter.expand(sites or default_sites(subject))]
    root = Path(store_dir) if store_dir else cache_root() / "probe-stores"
    variants = [("trained", subject, fams)]
    if random_baseline:
        variants.append(("random_init", random_copy(subject, seed=int(seeds[0])), fams[:1]))
    task_rows: list[dict[str, Any]] = []
    pieces: dict[tuple[int, int, int], list[dict[str, Any]]] = {}  # (task, variant, family) -> frame rows
    # MLP probes of tasks that share their rows (word-level tasks of one dataset) train as one batched model;
    # with a second core that run goes on in a worker thread beside the per-task fits.
    groups = _row_groups(task_list) if "mlp" in fams else []
    grouped = {task.name for members in groups for task in members}
    joint: dict[tuple[str, str, int], tuple[np.ndarray, Any, np.ndarray | None]] = {}
    shared: dict[tuple[str, str], _Rows] = {}
    n_workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if n_workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    side_by_side = n_workers >= 2 and bool(groups)

    def run_joint(keep_rows: bool, first_rows: dict[tuple[str, str], _Rows]) -> None:
        for variant, subj, vfams in variants:
            if "mlp" in vfams:
                tag = "" if variant == "trained" else "-random"
                for members in groups:
                    _joint_mlp(
                        subj, members, variant, site_names, root, tag, seeds, control, progress,
                        shared if keep_rows else None, joint, say, first_rows.get((variant, members[0].name)),
                    )  # fmt: skip

    deferred: list[tuple[int, int, int, Any, str, Any, np.ndarray, np.ndarray, int]] = []
    with contextlib.ExitStack() as stack:
        future = None
        if side_by_side:
            # stores are extracted here, before the worker starts (never two writers on one store)
            first_rows = {
                (variant, members[0].name): _rows(subj, members[0], site_names, root, _tag(variant), progress)
                for variant, subj, vfams in variants
                if "mlp" in vfams
                for members in groups
            }
            resolve_precision("auto")  # the one-off timing runs before threads are pinned
            per_worker = max(1, torch.get_num_threads() // 2)
            stack.enter_context(pinned_threads(per_worker))

            def worker() -> None:
                torch.set_num_threads(per_worker)  # thread-local for OpenMP: set it in the worker too
                run_joint(False, first_rows)

            future = _Background(worker)
            shared.update(first_rows)  # the main loop reuses them too (both threads only read rows)
        elif groups:
            run_joint(True, {})
        for ti, task in enumerate(task_list):
            t0 = time.perf_counter()
            K = len(task.classes)
            for vi, (variant, subj, vfams) in enumerate(variants):
                rows = shared.pop((variant, task.name), None) or _rows(
                    subj, task, site_names, root, _tag(variant), progress
                )
                test = rows.split == 2
                if test.sum() == 0 or (rows.split == 0).sum() == 0 or (rows.split == 1).sum() == 0:
                    raise ConfigError(
                        f"task {task.name!r} has an empty train/val/test split after joining labels"
                    )
                if variant == "trained":
                    task_rows.append(_task_row(subject.name, task, rows, K))
                rng = np.random.default_rng(int(seeds[0]))
                n_ex = len(np.unique(rows.example[test]))
                idx = rng.integers(0, n_ex, size=(n_bootstrap, n_ex))
                for fi, fam in enumerate(vfams):
                    if fam == "mlp" and task.name in grouped:  # from the shared run, collected below
                        deferred.append((ti, vi, fi, task, variant, subj, idx, rows.example[test], K))
                        continue
                    pieces[(ti, vi, fi)] = _family_rows(
                        subject.name, site_names, task, variant, fam, rows, idx, seeds, control, mdl, K, None
                    )
            say(f"probe {subject.name} · {task.name}: {time.perf_counter() - t0:.1f}s")
        if future is not None:
            future.result()  # waits; re-raises the worker's error, if any
    for ti, vi, fi, task, variant, subj, idx, test_examples, K in deferred:
        got = [joint.pop((variant, task.name, int(seed)), None) for seed in seeds]
        results = [g for g in got if g is not None]
        if len(results) == len(got):
            done = _Done(results, test_examples)
            pieces[(ti, vi, fi)] = _family_rows(
                subject.name, site_names, task, variant, "mlp", None, idx, seeds, control, mdl, K, done
            )
        else:  # the group's rows differed after all: this task's MLP probes on their own
            rows = _rows(subj, task, site_names, root, _tag(variant), progress)
            pieces[(ti, vi, fi)] = _family_rows(
                subject.name, site_names, task, variant, "mlp", rows, idx, seeds, control, mdl, K, None
            )
    frame_rows = [row for key in sorted(pieces) for row in pieces[key]]
    return ProbeSweepResult(frame=pd.DataFrame(frame_rows), tasks=pd.DataFrame(task_rows))


def _row_groups(tasks: list[Any]) -> list[list[Any]]:
    """Tasks on one dataset at one level (e.g. the word-level tasks): candidates for one shared MLP run."""
    by_data: dict[tuple[str, str], list[Any]] = {}
    for task in tasks:
        by_data.setdefault((task.level, task.dataset.fingerprint()), []).append(task)
    return [members for members in by_data.values() if len(members) > 1]


def _joint_mlp(
    subject: Any,
    members: list[Any],
    variant: str,
    sites: list[str],
    root: Path,
    tag: str,
    seeds: Any,
    control: bool,
    progress: bool,
    shared: dict[tuple[str, str], _Rows] | None,
    out: dict[tuple[str, str, int], tuple[np.ndarray, Any, np.ndarray | None]],
    say: Any,
    first: _Rows | None = None,
) -> None:
    """Train the MLP probes of ``members`` (tasks on one dataset) as one batched model, if their rows agree.

    Checks that the tasks' rows are identical (same examples, words and splits) and fits every task and its
    control with :func:`~layerscope.probes.layerwise.fit_mlp_tasks`: each label set's probes are those of its
    own run. The step of the batched probes is compute-bound, so what is shared is the per-step gather,
    dispatch and validation passes, and the batch shrinks as label sets stop. Results land in ``out``; with
    ``shared`` the rows (one activation tensor for the group) are kept there for the per-task loop.
    """
    from .layerwise import fit_mlp_tasks

    t0 = time.perf_counter()
    first = first if first is not None else _rows(subject, members[0], sites, root, tag, progress)
    rows = [first]
    for task in members[1:]:
        r = _rows(subject, task, sites, root, tag, progress)
        if not (
            np.array_equal(r.example, first.example)
            and np.array_equal(r.word, first.word)
            and np.array_equal(r.split, first.split)
        ):
            return  # the per-task loop fits them one by one
        rows.append(dataclasses.replace(r, X=first.X))  # one activation tensor for the group
    train, val = first.split == 0, first.split == 1
    for seed in seeds:
        specs, ys = [], []
        for task, r in zip(members, rows, strict=True):
            ctask = task.control(seed=int(seed)) if control else None
            yc = None if ctask is None else _control_targets(ctask, r)
            specs.append((r.y, len(task.classes), yc, None if ctask is None else len(ctask.classes)))
            ys.append(yc)
        fits = fit_mlp_tasks(first.X, specs, train=train, val=val, seed=int(seed))
        for task, r, yc, (fit, cfit) in zip(members, rows, ys, fits, strict=True):
            ccorrect = None if cfit is None or yc is None else _test_correct(r, yc, cfit)
            out[(variant, task.name, int(seed))] = (_test_correct(r, r.y, fit), fit, ccorrect)
    if shared is not None:
        for task, r in zip(members, rows, strict=True):
            shared[(variant, task.name)] = r
    names = ", ".join(t.name for t in members)
    say(f"probe {subject.name} · mlp probes of {names}: {time.perf_counter() - t0:.1f}s")


class _Background:
    """A function running in a daemon thread (an interrupted sweep exits at once instead of waiting for it)."""

    def __init__(self, fn: Any, *args: Any) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn, *args), daemon=True, name="layerscope-mlp")
        self.thread.start()

    def _run(self, fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except BaseException as e:  # handed to the caller by result()
            self.error = e

    def result(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error


@dataclasses.dataclass
class _Done:
    """Per-seed ``(test correctness, fit, control test correctness)`` computed elsewhere, and the test rows'
    example ids (for the cluster bootstrap)."""

    results: list[tuple[np.ndarray, Any, np.ndarray | None]]
    test_examples: np.ndarray


def _tag(variant: str) -> str:
    return "" if variant == "trained" else "-random"


def _task_row(model: str, task: Any, rows: _Rows, K: int) -> dict[str, Any]:
    test = rows.split == 2
    maj = np.bincount(rows.y[rows.split == 0], minlength=K).argmax()
    return {
        "model": model,
        "task": task.name,
        "level": task.level,
        "n_train": int((rows.split == 0).sum()),
        "n_val": int((rows.split == 1).sum()),
        "n_test": int(test.sum()),
        "n_classes": K,
        "majority_accuracy": float((rows.y[test] == maj).mean()),
    }


def _family_rows(
    model: str,
    sites: list[str],
    task: Any,
    variant: str,
    fam: str,
    rows: _Rows | None,
    idx: np.ndarray,
    seeds: Any,
    control: bool,
    mdl: bool,
    K: int,
    done: _Done | None,
) -> list[dict[str, Any]]:
    """Frame rows of one (task, variant, family): accuracy, control accuracy, selectivity (and MDL).

    Fits here from ``rows``, or takes ``done``'s results (the shared MLP run).
    """
    out: list[dict[str, Any]] = []
    acc_b, ctrl_b, acc, ctrl, best_l2 = [], [], [], [], None
    for i, seed in enumerate(seeds):
        if done is not None:
            correct, fit, ccorrect = done.results[i]
            examples = done.test_examples
        else:
            assert rows is not None
            examples = rows.example[rows.split == 2]
            if control:
                ctask = task.control(seed=int(seed))
                yc = _control_targets(ctask, rows)
                # same family and hyperparameters as the task probe (Hewitt & Liang), fitted alongside it
                # (shared passes over the activations)
                correct, fit, ccorrect = _fit_and_score_with_control(
                    rows, rows.y, yc, FAMILIES[fam], K, len(ctask.classes), int(seed)
                )
            else:
                (correct, fit), ccorrect = _fit_and_score(rows, rows.y, FAMILIES[fam], K, int(seed)), None
        if ccorrect is not None:
            ctrl.append(ccorrect.mean(1))
            ctrl_b.append(_bootstrap(ccorrect, examples, idx))
        acc.append(correct.mean(1))
        acc_b.append(_bootstrap(correct, examples, idx))
        best_l2 = getattr(fit, "best_lambda", None)
    base = {"model": model, "variant": variant, "task": task.name, "level": task.level, "family": fam}
    _add(out, base, sites, "accuracy", np.mean(acc, 0), np.mean(acc_b, 0))
    if control:
        _add(out, base, sites, "control_accuracy", np.mean(ctrl, 0), np.mean(ctrl_b, 0))
        _add(
            out, base, sites, "selectivity", np.mean(acc, 0) - np.mean(ctrl, 0),
            np.mean(acc_b, 0) - np.mean(ctrl_b, 0),
        )  # fmt: skip
    if mdl and FAMILIES[fam] == "logistic" and rows is not None:
        _mdl_rows(out, base, sites, rows, task, K, control, best_l2, int(seeds[0]))
    return out


def _control_targets(ctask: Any, rows: _Rows) -> np.ndarray:
    """Control-task labels for the task's rows.

    The control task merges classes too rare to train on; the few rows it leaves unlabelled get its most
    frequent label (they are counted, never dropped, so task and control score the same test rows).
    """
    yc = np.asarray(ctask.targets(rows.example, rows.word)).copy()
    missing = yc < 0
    if missing.all():
        raise ConfigError(f"control task {ctask.name!r} labels none of the task's rows")
    if missing.any():
        yc[missing] = np.bincount(yc[~missing]).argmax()
    return yc


def _mdl_rows(
    out: list[dict[str, Any]],
    base: dict[str, Any],
    sites: list[str],
    rows: _Rows,
    task: Any,
    K: int,
    control: bool,
    best_l2: Any,
    seed: int,
) -> None:
    from .mdl import online_codes

    train = rows.split == 0
    l2 = torch.as_tensor(np.asarray(best_l2, dtype=np.float32)) if best_l2 is not None else 1.0
    ys, sizes = [torch.from_numpy(rows.y[train])], [K]
    if control:  # the control code shares the item order, blocks, λ and every pass over the activations
        ctask = task.control(seed=seed)
        ys.append(torch.from_numpy(_control_targets(ctask, rows)[train]))
        sizes.append(len(ctask.classes))
    codes = online_codes(rows.X[:, torch.from_numpy(train)], ys, n_classes=sizes, l2=l2, seed=seed)
    _add(out, base, sites, "codelength_bits", codes[0].codelength_bits, None)
    _add(out, base, sites, "compression", codes[0].compression, None)
    if control:
        _add(out, base, sites, "control_compression", codes[1].compression, None)


def _add(
    out: list[dict[str, Any]],
    base: dict[str, Any],
    sites: list[str],
    metric: str,
    value: np.ndarray,
    boot: np.ndarray | None,
) -> None:
    lo = hi = None
    if boot is not None:
        lo, hi = np.percentile(boot, 2.5, axis=1), np.percentile(boot, 97.5, axis=1)
    for layer, site in enumerate(sites):
        out.append(
            {
                **base,
                "layer": layer,
                "site": site,
                "metric": metric,
                "value": float(value[layer]),
                "ci_low": float(lo[layer]) if lo is not None else np.nan,
                "ci_high": float(hi[layer]) if hi is not None else np.nan,
            }
        )


def random_copy(subject: Any, *, seed: int = 0) -> Any:
    """A copy of ``subject`` with the same architecture and tokenizer but freshly initialised weights."""
    from ..models.adapter import Adapter

    torch.manual_seed(seed)
    model = subject.model
    config = getattr(model, "config", None)
    if config is None or not hasattr(type(model), "_from_config"):
        fresh = copy.deepcopy(model)
        for m in fresh.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    else:
        fresh = type(model)._from_config(config)
    fresh.eval().to(subject.device)
    return dataclasses.replace(
        subject,
        model=fresh,
        adapter=Adapter.for_model(fresh),
        name=subject.name,
        revision=f"{subject.revision}-random{seed}",
    )
