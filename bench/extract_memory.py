"""Extraction memory: peak RSS of ``extract`` for N = 4,000 vs N = 40,000 MultiEmo sentences.

MiniLM, sites ``blocks.*.resid_post``, ``sentence_mean`` pooling, fp16 (as bench/extract_throughput.py).
Each N runs in a FRESH subprocess, which reports:

* ``rss_model``: resident memory right after ``layerscope.load("minilm")`` (the baseline);
* ``rss_data``: after loading the N sentences (the dataset itself grows with N);
* ``peak``: ``getrusage(RUSAGE_SELF).ru_maxrss`` at the end of the child (whole life: load + extract);
* ``peak_extract``: the high-water mark of the extraction alone (VmHWM reset through
  ``/proc/self/clear_refs`` right before ``extract``), and ``delta`` = ``peak_extract - rss_data``.

The peer here is layerscope itself at 10x less data: memory should stay flat in N (streaming windows,
chunked writer), so the target is ``peak(40k) / peak(4k) < 1.2``.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/extract_memory.py           # 4,000 vs 40,000 (about 10 min)
    HF_HUB_OFFLINE=1 .venv/bin/python bench/extract_memory.py --quick   # 400 vs 4,000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SITES = "blocks.*.resid_post"
RESULTS = Path(__file__).resolve().parent / "results"


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def _reset_peak() -> bool:
    """Reset this process's RSS high-water mark (Linux >= 4.0); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child(n: int, pooling: str, seed: int, store: Path) -> dict[str, Any]:
    import layerscope
    from layerscope.capture.extract import extract
    from layerscope.data.corpus import multiemo

    subject = layerscope.load("minilm")
    rss_model = _status_kib("VmRSS")
    ds = multiemo(limit=n, seed=seed)
    rss_data = _status_kib("VmRSS")
    peak_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reset = _reset_peak()
    t0 = time.perf_counter()
    st = extract(subject, ds, SITES, store=store, pooling=pooling, dtype="float16", progress=False)
    wall = time.perf_counter() - t0
    peak_extract = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "n": len(ds),
        "items": st.n_items,
        "pooling": pooling,
        "wall_s": wall,
        "rss_model_mib": rss_model / 1024,
        "rss_data_mib": rss_data / 1024,
        "peak_mib": max(peak_load, peak_extract) / 1024,
        "peak_extract_mib": (peak_extract if reset else -1) / 1024,
        "delta_mib": (peak_extract - rss_data) / 1024 if reset else float("nan"),
        "hwm_reset": reset,
    }


def run_child(n: int, pooling: str, seed: int, python: str, mmap_threshold: int | None) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="ls-mem-"))
    try:
        cmd = [python, __file__, "--child", str(n), "--pooling", pooling, "--seed", str(seed)]
        cmd += ["--store", str(tmp / "store")]
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        if mmap_threshold:  # a fixed threshold also turns off glibc's dynamic mmap threshold
            env["MALLOC_MMAP_THRESHOLD_"] = str(mmap_threshold)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"child N={n} failed:\n{proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--sizes", type=int, nargs="+", default=[4000, 40000], help="dataset sizes (first = reference)"
    )
    ap.add_argument("--pooling", default="sentence_mean")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=1, help="runs per size (RSS varies little; median taken)")
    ap.add_argument(
        "--malloc-mmap-threshold",
        type=int,
        default=None,
        help="run the children with MALLOC_MMAP_THRESHOLD_=BYTES (glibc; e.g. 131072) to test heap growth",
    )
    ap.add_argument("--quick", action="store_true", help="smoke run: 400 vs 4,000 sentences")
    ap.add_argument("--json", type=Path, default=RESULTS / "extract_memory.json")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--store", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.pooling, args.seed, args.store)))
        return
    if args.quick:
        args.sizes = [400, 4000]

    import torch

    print(f"machine: nproc={os.cpu_count()} torch={torch.__version__} threads={torch.get_num_threads()}")
    print(f"sites {SITES}, pooling {args.pooling}, fp16; each run in a fresh subprocess")
    if args.malloc_mmap_threshold:
        print(f"children run with MALLOC_MMAP_THRESHOLD_={args.malloc_mmap_threshold}")
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in args.sizes}
    for r in range(args.rounds):
        for n in args.sizes if r % 2 == 0 else reversed(args.sizes):
            res = run_child(n, args.pooling, args.seed, sys.executable, args.malloc_mmap_threshold)
            runs[n].append(res)
            print(
                f"  N={n:>6}: model {res['rss_model_mib']:7.0f} MiB, +data {res['rss_data_mib']:7.0f}, "
                f"peak {res['peak_mib']:7.0f} (extract {res['peak_extract_mib']:7.0f}, "
                f"delta {res['delta_mib']:6.0f}), {res['wall_s']:6.1f} s",
                flush=True,
            )

    def med(n: int, key: str) -> float:
        vals = sorted(x[key] for x in runs[n])
        return vals[len(vals) // 2]

    ref = args.sizes[0]
    cols = ("rss_model_mib", "rss_data_mib", "peak_mib", "peak_extract_mib", "delta_mib")
    print(f"\n{'N':>7} " + " ".join(f"{c.removesuffix('_mib'):>13}" for c in cols) + "  (MiB, medians)")
    for n in args.sizes:
        print(f"{n:>7} " + " ".join(f"{med(n, c):13.0f}" for c in cols))
    for n in args.sizes[1:]:
        ratio = med(n, "peak_mib") / med(ref, "peak_mib")
        dratio = med(n, "delta_mib") / max(med(ref, "delta_mib"), 1e-9)
        print(f"\npeak RSS ratio N={n} / N={ref}: {ratio:.3f} (target < 1.2)")
        print(f"extraction delta ratio N={n} / N={ref}: {dratio:.3f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    meta = {"sites": SITES, "pooling": args.pooling, "malloc_mmap_threshold": args.malloc_mmap_threshold}
    args.json.write_text(json.dumps({**meta, "runs": runs}, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
