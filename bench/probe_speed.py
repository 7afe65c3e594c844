"""Probe fitting speed: layerscope's batched probes vs scikit-learn and a NeuroX-style loop, same data, one run.

Real MiniLM activations (7 sites: ``blocks.0.resid_pre`` + ``blocks.*.resid_post``) of two tasks:

* sentences: 4,000 MultiEmo sentences (``sentence_mean``, d=384), 4 sentiment classes, split 60/20/20;
* tokens: the words of 3,000 MultiEmo sentences (``word_first``), 17 silver UPOS classes (spaCy), split
  60/20/20 by sentence (no leakage between splits).

Contenders (train on train, λ chosen on val where a grid is searched, accuracy on test; every layer):

* (a) logistic. ``ls``: ``fit_layers(family="logistic")`` — standardise, ridge warm start, the whole λ grid in
  one L-BFGS, λ per layer on val, the chosen λ polished; bfloat16 products where the CPU has bfloat16 units
  (``precision="auto"``, the default), ``ls-f32`` the same in float32. ``sk``: ``LogisticRegression`` (lbfgs, defaults) in a
  loop over the 7 layers at the SAME C (``1/λ`` chosen by ``ls``), on the same standardised data (its
  standardisation is not timed). ``ls-same``: ``fit_logistic`` at those same per-layer λ (the same fits as
  ``sk``, batched, ``precision="auto"``). ``sk-grid``: what ``fit_layers`` does, with sklearn (every layer × every λ of the same grid,
  best val accuracy). Target: ≥ 20× with test accuracy within 0.5 points on every layer.
* (b) closed form. ``sk``: ``RidgeClassifier`` over 7 layers × the α grid (fit, val score, pick α per layer);
  ``ls``: ``fit_layers(family="ridge")`` with the same grid. ``sk-one``/``ls-one``: one α (the one sklearn
  picked most often) for every layer. Target ≥ 50×.
* (c) NeuroX. NeuroX 1.0.9 cannot be installed on Python 3.11, so ``neurox`` is a faithful rewrite of ``train_logistic_regression_probe``: ``nn.Linear``, Adam lr 0.001,
  batches of 32 in order, 10 epochs, cross-entropy + 0.001·L1 + 0.001·L2 (NeuroX's norm, not squared), one
  probe per layer in a loop (standardised inputs, like the others).

Rounds are interleaved (order alternates); medians of wall and CPU seconds; no timing assertions.
``--threads N`` (default 1) limits torch AND scikit-learn's BLAS/OpenMP pools to N after the data are loaded;
``--threads 0`` keeps the libraries' defaults. On the 2-vCPU development VM the defaults are pathological
for both sides (OpenBLAS, sklearn's OpenMP and torch's OpenMP pools spin against each other in one process:
single fits swing 10-40× between rounds), so only equal single-thread runs give meaningful ratios there.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/probe_speed.py             # full, one thread (≈ 15 min)
    HF_HUB_OFFLINE=1 .venv/bin/python bench/probe_speed.py --quick     # smoke run (subsampled, 1 round)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from threadpoolctl import threadpool_limits

from layerscope.probes import fit_layers, fit_logistic, ridge_path, warm_start_scale
from layerscope.probes.layerwise import DEFAULT_L2, DEFAULT_LAMBDAS
from layerscope.probes.solvers import SufficientStats

RESULTS = Path(__file__).resolve().parent / "results"
STORE = Path("/tmp/bench_probe_store")
SITES = ["blocks.0.resid_pre", "blocks.*.resid_post"]
RIDGE_GRID = DEFAULT_LAMBDAS


def load_task(kind: str, quick: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """``X [7, n, 384]`` float32, labels, split (0 train / 1 val / 2 test), class names (extracts once)."""
    import layerscope as ls
    from layerscope.data import multiemo, silver_labels

    subject = ls.load("minilm")
    rng = np.random.default_rng(0)
    if kind == "sentences":
        ds = multiemo(limit=4000, seed=0)
        st = _extract(ls, subject, ds, STORE / "sent", "sentence_mean")
        names = sorted(set(ds.labels["sentiment"]))
        y = np.array([names.index(v) for v in ds.labels["sentiment"]])
        unit = np.arange(len(y))
    else:
        ds = silver_labels(multiemo(limit=3000, seed=0), progress=False)
        st = _extract(ls, subject, ds, STORE / "tok", "word_first")
        meta = st.metadata()
        upos = ds.labels["upos"]
        tags = [upos[e][w] for e, w in zip(meta["example_id"], meta["word_id"], strict=True)]
        names = sorted(set(tags))
        y = np.array([names.index(t) for t in tags])
        unit = meta["example_id"].to_numpy()
    X = np.stack([st.read(site) for site in st.sites])  # [7, n, 384] float32
    uniq = rng.permutation(np.unique(unit))
    part = np.zeros(unit.max() + 1, dtype=int)
    part[uniq[int(0.6 * len(uniq)) : int(0.8 * len(uniq))]] = 1
    part[uniq[int(0.8 * len(uniq)) :]] = 2
    split = part[unit]
    if quick:
        keep = np.sort(rng.permutation(len(y))[: min(len(y), 3000)])
        X, y, split = X[:, keep], y[keep], split[keep]
    return np.ascontiguousarray(X), y, split, names


def _extract(ls: Any, subject: Any, ds: Any, store: Path, pooling: str) -> Any:
    """Reuse a finished store; re-extract when it was made with other settings."""
    from layerscope.errors import StoreError

    try:
        return ls.extract(subject, ds, SITES, store=store, pooling=pooling, progress=False)
    except StoreError:
        return ls.extract(subject, ds, SITES, store=store, pooling=pooling, progress=False, overwrite=True)


def standardise(X: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Per-layer standardisation with training statistics (what ``fit_layers`` does internally)."""
    mean = X[:, train].mean(1, keepdims=True, dtype=np.float64)
    std = X[:, train].std(1, keepdims=True, dtype=np.float64)
    std[std < 1e-6] = 1.0
    return ((X - mean) / std).astype(np.float32)


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def sk_logistic(Xs: np.ndarray, y: np.ndarray, split: np.ndarray, lambdas: np.ndarray) -> dict[str, Any]:
    """One ``LogisticRegression`` per layer at ``C = 1/λ_layer``; test accuracy and convergence."""
    acc, iters = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning is reported through n_iter instead
        for layer, lam in enumerate(lambdas):
            model = LogisticRegression(C=1.0 / float(lam)).fit(Xs[layer][split == 0], y[split == 0])
            acc.append(model.score(Xs[layer][split == 2], y[split == 2]))
            iters.append(int(model.n_iter_[0]))
    return {"test_acc": np.array(acc), "n_iter": iters}


def sk_logistic_grid(
    Xs: np.ndarray, y: np.ndarray, split: np.ndarray, grid: tuple[float, ...]
) -> dict[str, Any]:
    """What ``fit_layers`` does, with sklearn: per layer, every λ on train, best val accuracy, test accuracy."""
    tr, va, te = split == 0, split == 1, split == 2
    acc, best = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for X in Xs:
            fits = [LogisticRegression(C=1.0 / lam).fit(X[tr], y[tr]) for lam in grid]
            val = [m.score(X[va], y[va]) for m in fits]
            i = len(grid) - 1 - int(np.argmax(val[::-1]))  # ties → larger λ, like fit_layers
            acc.append(fits[i].score(X[te], y[te]))
            best.append(grid[i])
    return {"test_acc": np.array(acc), "best_lambda": best}


def ls_logistic(X: np.ndarray, y: np.ndarray, split: np.ndarray, precision: str = "auto") -> dict[str, Any]:
    fit = fit_layers(
        torch.from_numpy(X), y, family="logistic", train=split == 0, val=split == 1, precision=precision
    )
    acc = fit.accuracy(X[:, split == 2], y[split == 2]).numpy()
    return {"test_acc": acc, "best_lambda": fit.best_lambda.numpy(), "n_iter": fit.n_iter}


def ls_logistic_same(Xs: np.ndarray, y: np.ndarray, split: np.ndarray, lambdas: np.ndarray) -> dict[str, Any]:
    """The same fits as ``sk_logistic`` (one λ per layer), batched; ridge warm start and preconditioning."""
    Xtr, ytr = torch.from_numpy(np.ascontiguousarray(Xs[:, split == 0])), torch.from_numpy(y[split == 0])
    K = int(y.max()) + 1
    stats = SufficientStats.from_arrays(Xtr, ytr, n_classes=K, mixed_precision=True)
    lam = torch.as_tensor(lambdas, dtype=torch.float64)[:, None]  # [L, 1]
    W0, b0 = warm_start_scale(Xtr, ytr, *ridge_path(stats, lam, coding="onehot"))
    W, b = fit_logistic(
        Xtr, ytr, l2=lam, n_classes=K, init=(W0, b0), tol=1e-4, precondition=stats, precision="auto"
    )
    logits = torch.from_numpy(np.ascontiguousarray(Xs[:, split == 2])) @ W[:, 0] + b[:, 0, None, :]
    return {"test_acc": (logits.argmax(-1).numpy() == y[split == 2]).mean(1)}


def sk_ridge(Xs: np.ndarray, y: np.ndarray, split: np.ndarray, grid: tuple[float, ...]) -> dict[str, Any]:
    acc, best = [], []
    for layer in range(Xs.shape[0]):
        fits = [RidgeClassifier(alpha=a).fit(Xs[layer][split == 0], y[split == 0]) for a in grid]
        val = [m.score(Xs[layer][split == 1], y[split == 1]) for m in fits]
        i = len(grid) - 1 - int(np.argmax(val[::-1]))  # ties → larger α, like fit_layers
        acc.append(fits[i].score(Xs[layer][split == 2], y[split == 2]))
        best.append(grid[i])
    return {"test_acc": np.array(acc), "best_alpha": best}


def ls_ridge(X: np.ndarray, y: np.ndarray, split: np.ndarray, grid: Any) -> dict[str, Any]:
    fit = fit_layers(torch.from_numpy(X), y, family="ridge", train=split == 0, val=split == 1, lambdas=grid)
    return {"test_acc": fit.accuracy(X[:, split == 2], y[split == 2]).numpy(), "best_alpha": fit.best_lambda}


def neurox_style(Xs: np.ndarray, y: np.ndarray, split: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """NeuroX's ``train_logistic_regression_probe`` (λ_L1 = λ_L2 = 0.001), rewritten, one layer at a time."""
    torch.manual_seed(seed)
    K = int(y.max()) + 1
    acc = []
    for layer in range(Xs.shape[0]):
        X_train = torch.from_numpy(np.ascontiguousarray(Xs[layer][split == 0]))
        y_train = torch.from_numpy(y[split == 0])
        probe = torch.nn.Linear(X_train.shape[1], K)
        criterion = torch.nn.CrossEntropyLoss()
        optimizer = torch.optim.Adam(probe.parameters(), lr=0.001)
        for _epoch in range(10):
            for start in range(0, X_train.shape[0], 32):  # NeuroX's batch_generator: in order, no shuffling
                inputs, labels = X_train[start : start + 32].float(), y_train[start : start + 32]
                optimizer.zero_grad()
                weights = probe.weight
                loss = (
                    criterion(probe(inputs), labels)
                    + 0.001 * weights.abs().sum()
                    + 0.001 * weights.pow(2).sum().sqrt()
                )
                loss.backward()
                optimizer.step()
        with torch.no_grad():
            pred = probe(torch.from_numpy(Xs[layer][split == 2])).argmax(-1).numpy()
        acc.append(float((pred == y[split == 2]).mean()))
    return {"test_acc": np.array(acc)}


def run_task(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    X, y, split, names = load_task(kind, args.quick)
    if not args.threads:
        return measure(kind, X, y, split, names, args)
    # after loading (the extraction stack loads its own thread pools): torch and every BLAS/OpenMP pool
    torch.set_num_threads(args.threads)
    with threadpool_limits(args.threads):
        return measure(kind, X, y, split, names, args)


def measure(
    kind: str, X: np.ndarray, y: np.ndarray, split: np.ndarray, names: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    Xs = standardise(X, split == 0)
    print(
        f"\n=== {kind}: X {tuple(X.shape)}, {len(names)} classes, train/val/test "
        f"{[(split == s).sum() for s in range(3)]}",
        flush=True,
    )
    fit_logistic(torch.randn(2, 300, 8), torch.arange(300) % 3, l2=1.0, n_classes=3)  # warm-up (lazy imports)
    first = ls_logistic(X, y, split)
    lambdas = first["best_lambda"]
    contenders: dict[str, Callable[[], dict[str, Any]]] = {
        "logistic/ls": lambda: ls_logistic(X, y, split),
        "logistic/ls-f32": lambda: ls_logistic(X, y, split, "float32"),
        "logistic/ls-same": lambda: ls_logistic_same(Xs, y, split, lambdas),
        "logistic/sk": lambda: sk_logistic(Xs, y, split, lambdas),
        "logistic/sk-grid": lambda: sk_logistic_grid(Xs, y, split, DEFAULT_L2),
        "ridge/ls": lambda: ls_ridge(X, y, split, RIDGE_GRID),
        "ridge/sk": lambda: sk_ridge(Xs, y, split, RIDGE_GRID),
    }
    if not args.no_neurox:
        contenders["neurox"] = lambda: neurox_style(Xs, y, split)
    wall: dict[str, list[float]] = {k: [] for k in contenders}
    cpu: dict[str, list[float]] = {k: [] for k in contenders}
    outs: dict[str, dict[str, Any]] = {}
    for r in range(args.rounds):
        order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
        for name in order:
            if name in ("neurox", "logistic/sk", "logistic/sk-grid") and r >= args.peer_rounds:
                continue
            outs[name], w, c = timed(contenders[name])
            wall[name].append(w)
            cpu[name].append(c)
            print(f"  round {r + 1}/{args.rounds} {name:<18} {w:8.2f} s wall {c:8.2f} s cpu", flush=True)
    values, counts = np.unique(np.asarray(outs["ridge/sk"]["best_alpha"], dtype=float), return_counts=True)
    alpha = float(values[counts.argmax()])  # the α sklearn picked most often, for every layer
    ridge_one = {
        "ridge/sk-one": lambda: sk_ridge_one(Xs, y, split, alpha),
        "ridge/ls-one": lambda: ls_ridge(X, y, split, [alpha]),
    }
    for name, fn in ridge_one.items():
        outs[name], w, c = timed(fn)
        wall[name], cpu[name] = [w], [c]
    med = {k: statistics.median(v) for k, v in wall.items() if v}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items() if v}
    report(kind, med, med_cpu, outs, lambdas)
    return {
        "kind": kind,
        "shape": list(X.shape),
        "classes": len(names),
        "split_sizes": [int((split == s).sum()) for s in range(3)],
        "wall_s": wall,
        "cpu_s": cpu,
        "median_wall_s": med,
        "best_lambda": [float(v) for v in lambdas],
        "test_acc": {k: [float(a) for a in v["test_acc"]] for k, v in outs.items()},
        "sk_logistic_n_iter": outs["logistic/sk"]["n_iter"],
        "ls_logistic_n_iter": first["n_iter"],
    }


def sk_ridge_one(Xs: np.ndarray, y: np.ndarray, split: np.ndarray, alpha: float) -> dict[str, Any]:
    tr, te = split == 0, split == 2
    acc = [RidgeClassifier(alpha=alpha).fit(X[tr], y[tr]).score(X[te], y[te]) for X in Xs]
    return {"test_acc": np.array(acc)}


def report(
    kind: str, med: dict[str, float], med_cpu: dict[str, float], outs: dict[str, Any], lambdas: np.ndarray
) -> None:
    print(f"\n{kind}: median wall s (cpu s)")
    for k in med:
        print(f"  {k:<18} {med[k]:9.3f} ({med_cpu[k]:8.2f})")

    def ratio(a: str, b: str) -> str:
        return f"{med[a] / med[b]:7.1f}x wall, {med_cpu[a] / med_cpu[b]:6.1f}x cpu"

    print(f"  logistic  sk-grid / ls  {ratio('logistic/sk-grid', 'logistic/ls')}   (both search the λ grid)")
    print(f"  logistic  sk-grid / ls-f32 {ratio('logistic/sk-grid', 'logistic/ls-f32')}   (float32 products)")
    print(f"  logistic  sk / ls       {ratio('logistic/sk', 'logistic/ls')}   (ls also searched the λ grid)")
    print(f"  logistic  sk / ls-same  {ratio('logistic/sk', 'logistic/ls-same')}   (identical fits)")
    print(f"  ridge     sk / ls       {ratio('ridge/sk', 'ridge/ls')}   (α grid {len(RIDGE_GRID)} values)")
    print(f"  ridge     sk-one/ls-one {ratio('ridge/sk-one', 'ridge/ls-one')}   (one α)")
    if "neurox" in med:
        print(f"  neurox / ls             {ratio('neurox', 'logistic/ls')}")
    print(f"  λ chosen per layer (C = 1/λ for sklearn): {[float(v) for v in lambdas]}")
    print(f"  sklearn LogisticRegression n_iter per layer: {outs['logistic/sk']['n_iter']} (max_iter 100)")
    base = outs["logistic/sk"]["test_acc"]
    for name in ("logistic/ls", "logistic/ls-f32", "logistic/ls-same", "logistic/sk-grid", "neurox"):
        if name in outs:
            diff = 100 * (outs[name]["test_acc"] - base)
            print(
                f"  test acc {name:<16} - sklearn (points): {np.round(diff, 2).tolist()}  "
                f"max |diff| {np.abs(diff).max():.2f}"
            )
    print(f"  sklearn logistic test acc (%): {np.round(100 * base, 2).tolist()}")
    diff = 100 * (outs["ridge/ls"]["test_acc"] - outs["ridge/sk"]["test_acc"])
    print(f"  test acc ridge ls - sk (points): {np.round(diff, 2).tolist()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds for the fast contenders")
    ap.add_argument(
        "--peer-rounds", type=int, default=1, help="rounds for sklearn logistic and NeuroX (slow)"
    )
    ap.add_argument("--tasks", default="sentences,tokens")
    ap.add_argument("--no-neurox", action="store_true")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads for torch AND sklearn's BLAS/OpenMP (0: library defaults)",
    )
    ap.add_argument("--quick", action="store_true", help="smoke run: ≤ 3,000 rows per task, 1 round")
    ap.add_argument("--json", type=Path, default=RESULTS / "probe_speed.json")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.quick:
        args.rounds, args.peer_rounds = 1, 1
    print(
        "NeuroX 1.0.9 cannot be installed on Python 3.11; 'neurox' is a faithful rewrite of its probe training."
    )
    info = {
        "nproc": os.cpu_count(),
        "torch": torch.__version__,
        "threads": args.threads or torch.get_num_threads(),
    }
    info["loadavg_start"] = list(os.getloadavg())
    print(f"machine: {info}")
    results = [run_task(kind, args) for kind in args.tasks.split(",")]
    info["loadavg_end"] = list(os.getloadavg())
    if not args.quick:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": info, "tasks": results}, indent=1, default=float))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
