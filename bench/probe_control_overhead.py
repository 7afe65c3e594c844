"""Cost of the control task: a sweep with ``control=True`` vs the task alone, same data, one run.

Target in issue 3: control + selectivity for all layers adds < 30 % to the time of the task alone. The
control probe reuses the task probe's per-layer hyperparameters (Hewitt & Liang), so it needs no grid search,
and it shares work with the task probe (``fit_layers_with_control``): the logistic control is fitted in the
same L-BFGS as the task's final fit, the MLP control in the same batched model, the control MDL code in the
same fit per block. Extraction is done before timing (the store is cached).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/probe_control_overhead.py [--task sentiment] [--n-sentences 4000]
        [--probe linear] [--rounds 3] [--mdl] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import layerscope as ls
from layerscope.probes.sweep import probe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--task", default="sentiment")
    ap.add_argument("--n-sentences", type=int, default=4000)
    ap.add_argument("--probe", default="linear")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mdl", action="store_true", help="include MDL (task and control codes)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: the library default)")
    a = ap.parse_args()
    subject = ls.load("minilm")
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    kw = {
        "probes": (a.probe,),
        "n_sentences": a.n_sentences,
        "mdl": a.mdl,
        "progress": False,
        "n_bootstrap": 200,
    }
    probe(subject, [a.task], control=False, **kw)  # warm-up: extraction into the cache
    times: dict[bool, list[float]] = {False: [], True: []}
    for r in range(a.rounds):
        for control in (r % 2 == 0, r % 2 != 0):  # alternate the order between rounds
            t = time.perf_counter()
            out = probe(subject, [a.task], control=control, **kw)
            if control:
                res = out
            times[control].append(time.perf_counter() - t)
    alone, with_control = statistics.median(times[False]), statistics.median(times[True])
    print(f"task {a.task}, {a.n_sentences} sentences, {a.probe} probes, mdl={a.mdl}, {a.rounds} rounds")
    print(f"task alone   median {alone:.2f}s  {[round(x, 2) for x in times[False]]}")
    print(f"with control median {with_control:.2f}s  {[round(x, 2) for x in times[True]]}")
    print(f"control adds {100 * (with_control / alone - 1):.0f} % (target < 30 %)")
    print(res.table("selectivity").round(3).to_string())


if __name__ == "__main__":
    main()
