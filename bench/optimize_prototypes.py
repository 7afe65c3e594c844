"""Class prototypes for the 10 CIFAR-10 classes: one batched run vs 10 sequential runs, one process.

Model: ``cifar10-cnn`` (small CNN trained once on bundled CIFAR-10 and cached). Both sides use the same
code path (``layerscope.optimize.prototypes``), Fourier parametrisation, standard transforms, logit
margin objective, 32 px, the same steps and the same ``--precision`` setting (default ``auto``: each run
times a few alternated steps in float32 and in bfloat16 autocast and keeps bfloat16 only if it is ≥ 1.2× faster, so the
batch of 10 may run in bfloat16 while batch-1 runs stay float32; ``float32`` forces both); the only
difference is batch 10 vs 10 × batch 1. Target ≥ 5×.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/optimize_prototypes.py --steps 256 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument(
        "--precision", default="auto", help="auto (bfloat16 autocast where native), float32, bfloat16"
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from layerscope.optimize import prototypes
    from layerscope.optimize._models import cifar_cnn

    subject = cifar_cnn()
    batched, seq, p_b, p_s = [], [], [], []
    prec_b: set[str] = set()
    prec_s: set[str] = set()
    for r in range(args.rounds):
        for who in ("b", "s") if r % 2 == 0 else ("s", "b"):
            t0 = time.perf_counter()
            if who == "b":
                res = prototypes(subject, list(range(10)), steps=args.steps, seed=r, precision=args.precision)
                batched.append(time.perf_counter() - t0)
                p_b.append(float(np.median(res.target_prob)))
                prec_b.add(res.settings["precision"])
            else:
                runs = [
                    prototypes(subject, [c], steps=args.steps, seed=r, precision=args.precision)
                    for c in range(10)
                ]
                seq.append(time.perf_counter() - t0)
                p_s.append(float(np.median([run.target_prob[0] for run in runs])))
                prec_s.update(run.settings["precision"] for run in runs)
        print(
            f"round {r}: batched {batched[-1]:.2f}s  sequential {seq[-1]:.2f}s"
            if seq and batched
            else f"round {r}"
        )
    a, b = statistics.median(batched), statistics.median(seq)
    print(
        f"{args.steps} steps, torch threads {torch.get_num_threads()}, "
        f"--precision {args.precision}: batched ran {'/'.join(sorted(prec_b))}, "
        f"sequential ran {'/'.join(sorted(prec_s))}"
    )
    print(f"median seconds  batched {a:.2f}  sequential {b:.2f}  speed-up {b / a:.1f}x (target >= 5x)")
    print(f"median own-class probability  batched {np.median(p_b):.3f}  sequential {np.median(p_s):.3f}")


if __name__ == "__main__":
    main()
