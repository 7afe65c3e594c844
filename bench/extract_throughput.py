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


def run_plain(subject: Any, ds: Any, batch_tokens: int | None, window: int) -> float:
    t0 = time.perf_counter()
    with torch.inference_mode():
        for _, batches in iter_batches(subject, ds, batch_tokens=batch_tokens, window=window):
            for b in batches:
                subject.model(input_ids=b.input_ids, attention_mask=b.attention_mask)
    return time.perf_counter() - t0


def run_plain_fwd(subject: Any, batches: list[Any]) -> float:
    t0 = time.perf_counter()
    with torch.inference_mode():
        for b in batches:
            subject.model(input_ids=b.input_ids, attention_mask=b.attention_mask)
    return time.perf_counter() - t0


def run_extract(
    subject: Any, ds: Any, pooling: str, tmp: Path, batch_tokens: int | None, window: int
) -> float:
    store = tmp / f"store-{pooling}"
    shutil.rmtree(store, ignore_errors=True)
    t0 = time.perf_counter()
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
    dt = time.perf_counter() - t0
    shutil.rmtree(store, ignore_errors=True)
    return dt


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
    times: dict[str, list[float]] = {k: [] for k in contenders}
    try:
        for r in range(args.rounds):
            order = list(contenders) if r % 2 == 0 else list(reversed(contenders))
            for name in order:
                dt = contenders[name]()
                times[name].append(dt)
                print(
                    f"  round {r + 1}/{args.rounds} {name:<14} {dt:7.2f} s  {len(ds) / dt:7.1f} sent/s",
                    flush=True,
                )
        prof = None
        if args.profile:
            prof = profile_extract(subject, ds, "sentence_mean", tmp, args.batch_tokens, args.window, 30)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: len(ds) / v for k, v in med.items()}
    print(f"\n{'contender':<14} {'median s':>9} {'sent/s':>9} {'vs plain':>9}")
    for k in contenders:
        print(f"{k:<14} {med[k]:9.2f} {rate[k]:9.1f} {rate[k] / rate['plain']:9.3f}")
    print(
        f"\nratio extract_mean/plain (sentences/s): {rate['extract_mean'] / rate['plain']:.3f}  (target >= 0.9)"
    )
    if "extract_token" in rate:
        print(f"ratio extract_token/plain (sentences/s): {rate['extract_token'] / rate['plain']:.3f}")
    print(f"tokenisation+batching share of plain: {1 - med['plain_fwd'] / med['plain']:.1%}")
    info["loadavg_end"] = os.getloadavg()
    out = {
        "machine": info,
        "n": len(ds),
        "rounds": args.rounds,
        "tokens": real,
        "padded_tokens": padded,
        "batches": len(batches),
        "times_s": times,
        "median_s": med,
        "sent_per_s": rate,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}")
    if prof:
        print("\n== cProfile of one extract (sentence_mean) ==\n" + prof)


if __name__ == "__main__":
    main()
