"""Extraction throughput: ``layerscope.extract`` vs a plain forward pass over the SAME batches.

MiniLM, a seeded sample of MultiEmo sentences, sites ``blocks.*.resid_post`` (all 6 blocks).

Contenders (each timed end to end, tokenisation and batching INCLUDED in all of them):

* ``plain``: ``iter_batches`` (the exact padded, length-bucketed batches extract runs) + ``model(**batch)``
  under ``torch.inference_mode()``, no hooks, outputs dropped;
* ``extract_mean``: ``extract(...)`` to a fresh temporary store, ``sentence_mean`` pooling, fp16;
* ``extract_token``: the same with ``token`` pooling (one row per token).

Rounds are interleaved (the order alternates every round) and medians are reported with the ratio
``extract / plain`` in sentences per second (target in the issue: >= 0.9). ``plain_fwd`` (forward only, batches
built beforehand) is printed for reference: it shows what tokenisation/batching costs.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/extract_throughput.py            # 4,000 sentences, 3 rounds
    HF_HUB_OFFLINE=1 .venv/bin/python bench/extract_throughput.py --quick    # smoke run
    HF_HUB_OFFLINE=1 .venv/bin/python bench/extract_throughput.py --profile  # + where extract spends its time
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import layerscope
from layerscope.capture.extract import extract, iter_batches
from layerscope.data.corpus import multiemo

SITES = "blocks.*.resid_post"
RESULTS = Path(__file__).resolve().parent / "results"


class Timer:
    """Wall and process CPU time (all threads, so extract's writer thread counts) of a block."""

    def __enter__(self) -> Timer:
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.w0, time.process_time() - self.c0


def run_plain(subject: Any, ds: Any, batch_tokens: int | None, window: int) -> Timer:
    with Timer() as t, torch.inference_mode():
        for _, batches in iter_batches(subject, ds, batch_tokens=batch_tokens, window=window):
            for b in batches:
                subject.model(input_ids=b.input_ids, attention_mask=b.attention_mask)
    return t


def run_plain_fwd(subject: Any, batches: list[Any]) -> Timer:
    with Timer() as t, torch.inference_mode():
        for b in batches:
            subject.model(input_ids=b.input_ids, attention_mask=b.attention_mask)
    return t


def run_extract(
    subject: Any, ds: Any, pooling: str, tmp: Path, batch_tokens: int | None, window: int
) -> Timer:
    store = tmp / f"store-{pooling}"
    shutil.rmtree(store, ignore_errors=True)
    with Timer() as t:
        extract(
            subject,
            ds,
            SITES,
            store=store,
            pooling=pooling,
            dtype="float16",
            batch_tokens=batch_tokens,
            window=window,
            progress=False,
        )
    shutil.rmtree(store, ignore_errors=True)
    return t


def profile_extract(
    subject: Any, ds: Any, pooling: str, tmp: Path, batch_tokens: int | None, window: int, top: int
) -> str:
    """cProfile one extract run; return the top functions by cumulative and by own time."""
    prof = cProfile.Profile()
    prof.enable()
    run_extract(subject, ds, pooling, tmp, batch_tokens, window)
    prof.disable()
    buf = io.StringIO()
    st = pstats.Stats(prof, stream=buf).strip_dirs()
    st.sort_stats("cumulative").print_stats(top)
    st.sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def machine() -> dict[str, Any]:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "?",
    )
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "loadavg_start": os.getloadavg(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4000, help="sentences (seeded MultiEmo sample)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (order alternates)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-tokens", type=int, default=None, help="token budget per batch (extract default)")
    ap.add_argument("--window", type=int, default=256, help="examples per window (extract default 256)")
    ap.add_argument("--no-token", action="store_true", help="skip the token-pooling contender")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--profile", action="store_true", help="also cProfile one extract run")
    ap.add_argument("--quick", action="store_true", help="smoke run: 400 sentences, 1 round")
    ap.add_argument("--json", type=Path, default=RESULTS / "extract_throughput.json")
    args = ap.parse_args()
    if args.quick:
        args.n, args.rounds = 400, 1
    if args.threads:
        torch.set_num_threads(args.threads)

    subject = layerscope.load("minilm")
    ds = multiemo(limit=args.n, seed=args.seed)
    batches = [
        b
        for _, bs in iter_batches(subject, ds, batch_tokens=args.batch_tokens, window=args.window)
        for b in bs
    ]
    real = sum(int(b.attention_mask.sum()) for b in batches)
    padded = sum(b.input_ids.numel() for b in batches)
    info = machine()
    print(f"machine: {info}")
    print(
        f"data: {len(ds)} sentences, {len(batches)} batches, {real} tokens ({padded} padded, "
        f"{padded / real:.2f}x), sites {SITES}"
    )

    tmp = Path(tempfile.mkdtemp(prefix="ls-bench-"))
    contenders = {
        "plain": lambda: run_plain(subject, ds, args.batch_tokens, args.window),
        "plain_fwd": lambda: run_plain_fwd(subject, batches),
        "extract_mean": lambda: run_extract(
            subject, ds, "sentence_mean", tmp, args.batch_tokens, args.window
        ),
    }
    if not args.no_token:
        contenders["extract_token"] = lambda: run_extract(
            subject, ds, "token", tmp, args.batch_tokens, args.window
        )
    run_plain_fwd(subject, batches[:2])  # warm-up (allocator, kernels)
    wall: dict[str, list[float]] = {k: [] for k in contenders}
    cpu: dict[str, list[float]] = {k: [] for k in contenders}
    try:
        for r in range(args.rounds):
            order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
            for name in order:
                t = contenders[name]()
                wall[name].append(t.wall)
                cpu[name].append(t.cpu)
                print(
                    f"  round {r + 1}/{args.rounds} {name:<14} {t.wall:7.2f} s wall {t.cpu:7.2f} s cpu  "
                    f"{len(ds) / t.wall:7.1f} sent/s",
                    flush=True,
                )
        prof = None
        if args.profile:
            prof = profile_extract(subject, ds, "sentence_mean", tmp, args.batch_tokens, args.window, 30)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    rate = {k: len(ds) / v for k, v in med.items()}
    # per-round ratio of neighbours in time: robust to drifts in machine load between rounds
    paired = {k: statistics.median(p / x for p, x in zip(wall["plain"], wall[k], strict=True)) for k in wall}
    print(
        f"\n{'contender':<14} {'wall s':>8} {'cpu s':>8} {'sent/s':>8} {'ratio':>7} {'paired':>7} {'cpu ratio':>9}"
    )
    for k in contenders:
        print(
            f"{k:<14} {med[k]:8.2f} {med_cpu[k]:8.2f} {rate[k]:8.1f} {rate[k] / rate['plain']:7.3f} "
            f"{paired[k]:7.3f} {med_cpu['plain'] / med_cpu[k]:9.3f}"
        )
    print("ratio = throughput / plain throughput (medians); paired = median of per-round ratios;")
    print("cpu ratio = plain CPU seconds / contender CPU seconds (less sensitive to other load)")
    print(f"\nextract_mean / plain: {rate['extract_mean'] / rate['plain']:.3f} (target >= 0.9)")
    print(f"tokenisation+batching share of plain (wall): {1 - med['plain_fwd'] / med['plain']:.1%}")
    info["loadavg_end"] = os.getloadavg()
    out = {
        "machine": info,
        "n": len(ds),
        "rounds": args.rounds,
        "tokens": real,
        "padded_tokens": padded,
        "batches": len(batches),
        "wall_s": wall,
        "cpu_s": cpu,
        "median_wall_s": med,
        "median_cpu_s": med_cpu,
        "sent_per_s": rate,
        "ratio_vs_plain": {k: rate[k] / rate["plain"] for k in rate},
        "paired_ratio_vs_plain": paired,
        "cpu_ratio_vs_plain": {k: med_cpu["plain"] / med_cpu[k] for k in med_cpu},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}")
    if prof:
        print("\n== cProfile of one extract (sentence_mean) ==\n" + prof)


if __name__ == "__main__":
    main()
