"""The CEM paper's synthetic suite: every model variant × N seeds × XOR / Trig / Dot, timed.

Prints the wall time, the mean ± std table (test split, %), and the time of the same training run
seed-by-seed (one stack per seed) next to the stacked run for one variant, so the gain of stacking seeds is
measured on the same machine in the same run.

    .venv/bin/python bench/concepts_suite.py                      # 5 seeds, the full suite
    .venv/bin/python bench/concepts_suite.py --seeds 2 --datasets trig --no-stack-check
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    import torch

    from layerscope.concepts import SUITE, TrainConfig, data, fit, run

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--datasets", nargs="+", default=["xor", "trig", "dot"])
    ap.add_argument("--models", nargs="+", default=list(SUITE))
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a loaded 2-core box)"
    )
    ap.add_argument("--no-cas", action="store_true", help="skip the Concept Alignment Score")
    ap.add_argument("--no-stack-check", action="store_true", help="skip the stacked vs one-by-one timing")
    ap.add_argument("--save", default=None, help="save the ConceptModelResult to this folder")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs, load {os.getloadavg()}"
    )

    t0 = time.perf_counter()
    c0 = time.process_time()
    res = run(args.datasets, args.models, seeds=args.seeds, cas=not args.no_cas, log=print)
    total = time.perf_counter() - t0
    cpu = time.process_time() - c0
    print(
        f"\nsuite: {len(args.models)} variants × {args.seeds} seeds × {len(args.datasets)} datasets "
        f"in {total:.1f} s wall ({total / 60:.1f} min), {cpu:.1f} s CPU time of this process"
    )
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(res.table().to_string(index=False))
        curves = res.interventions[res.interventions.policy == "random"]
        if not curves.empty:
            piv = curves.pivot_table(
                index=["dataset", "model"], columns="n_intervened", values="task_accuracy"
            )
            print("\nrandom-order interventions, mean task accuracy (%) by concepts intervened:")
            print((100 * piv).round(1).to_string())
    if args.save:
        print("saved:", res.save(args.save))

    if not args.no_stack_check:
        ds = data.trig()
        tc = TrainConfig()
        seeds = list(range(args.seeds))
        t, c = time.perf_counter(), time.process_time()
        stacked = fit(ds, "cbm-joint", seeds=seeds, train=tc)
        t_stack, c_stack = time.perf_counter() - t, time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        for s in seeds:
            fit(ds, "cbm-joint", seeds=[s], train=tc)
        t_loop, c_loop = time.perf_counter() - t, time.process_time() - c
        print(
            f"\ncbm-joint on trig, {len(seeds)} seeds: stacked {t_stack:.1f} s wall / {c_stack:.1f} s CPU vs "
            f"one-by-one {t_loop:.1f} s wall / {c_loop:.1f} s CPU (wall ×{t_loop / t_stack:.2f}, "
            f"CPU ×{c_loop / c_stack:.2f}); epochs {stacked.epochs.tolist()}"
        )
    print(f"load at end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
