"""Time the built-in probing suite on MiniLM (extraction included) and print the layer tables.

Target in issue 3: all tasks, all layers, linear + MLP, control, MDL in < 10 minutes on a 2-core machine.
Usage: HF_HUB_OFFLINE=1 .venv/bin/python bench/probe_suite.py [--n-sentences 4000] [--probes linear,mlp]
       [--tasks upos,sentlen] [--no-control] [--no-mdl] [--threads N] [--workers N]

Prints the time per task (extraction of a task's dataset is included in the first task that needs it; the
word-level tasks share one), the total, the load average before and after, and the layer tables.
"""

from __future__ import annotations

import argparse
import os
import time

import layerscope as ls
from layerscope.data import list_builtin_tasks
from layerscope.probes.sweep import probe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-sentences", type=int, default=4000)
    ap.add_argument("--probes", default="linear,mlp")
    ap.add_argument("--tasks", default=",".join(list_builtin_tasks()))
    ap.add_argument("--no-control", action="store_true")
    ap.add_argument("--no-mdl", action="store_true")
    ap.add_argument("--save", default=None, help="save the ProbeSweepResult here")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: the library default)")
    ap.add_argument(
        "--workers", type=int, default=None, help="Python threads for independent fits (default: CPUs)"
    )
    a = ap.parse_args()
    t = time.perf_counter()
    subject = ls.load("minilm")
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    print(f"loadavg at start {os.getloadavg()}, {os.cpu_count()} cpus, workers {a.workers}", flush=True)
    res = probe(
        subject,
        a.tasks.split(","),
        probes=tuple(a.probes.split(",")),
        n_sentences=a.n_sentences,
        control=not a.no_control,
        mdl=not a.no_mdl,
        log=print,
        progress=False,
        workers=a.workers,
    )
    print(f"total {time.perf_counter() - t:.1f}s; loadavg at end {os.getloadavg()}")
    for metric in ("accuracy", "selectivity", "compression"):
        if (res.frame.metric == metric).any():
            print(f"\n{metric}\n{res.table(metric).to_string()}")
    print(res.expected_layer().to_string(index=False))
    if a.save:
        res.save(a.save)


if __name__ == "__main__":
    main()
