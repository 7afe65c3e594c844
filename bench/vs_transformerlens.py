"""Pooled residual-stream capture on SmolLM2: layerscope vs TransformerLens vs plain Hugging Face.

Four ``resid_post`` sites (blocks 6, 13, 20, 27 of 30), mean-pooled over the real tokens, for a seeded sample
of MultiEmo sentences. The parent builds the padded, length-bucketed batches once (``iter_batches``) and
every contender runs exactly those batches, each in its OWN subprocess (for its peak RSS), rounds interleaved:

* ``layerscope``: ``capture(subject, {site: SiteOptions(fn=mean)}, stop=True)`` (the forward is cut after
  block 27);
* ``ls_extract``: ``extract(...)`` of the same sites to a temporary store (sentence_mean, fp16), whole
  pipeline including its own tokenisation;
* ``tl``: TransformerLens 4.x ``TransformerBridge.boot_transformers(folder, hf_model=..., tokenizer=...)``,
  ``run_with_cache(names_filter=..., stop_at_layer=28)`` (its best case; the bridge forces eager attention);
* ``hf``: ``AutoModelForCausalLM`` with ``output_hidden_states=True`` (all 30 blocks + logits), manual pooling.

Model load is not timed. Outputs are checked against ``hf`` (max abs difference). The peers run in the bench
venv made by ``bash bench/setup_bench_env.sh`` (TransformerLens pulls torchvision, so it never enters .venv).

    bash bench/setup_bench_env.sh
    HF_HUB_OFFLINE=1 bench/.venv-bench/bin/python bench/vs_transformerlens.py
    HF_HUB_OFFLINE=1 bench/.venv-bench/bin/python bench/vs_transformerlens.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
BENCH_PY = HERE / ".venv-bench" / "bin" / "python"
CONTENDERS = ("layerscope", "ls_extract", "tl", "hf")


def rss_kib(field: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[batch, pos, d] -> [batch, d], mean over positions where mask is 1."""
    w = mask.to(x.dtype)
    return torch.einsum("bp,bpd->bd", w, x) / w.sum(1, keepdim=True).clamp_min(1)


# -- contenders (run inside a worker subprocess) ----------------------------------------------------------
def load_contender(name: str, folder: str, layers: list[int]) -> Any:
    """Load what the contender needs; return ``run(batches) -> {layer: [n, d] array}``."""
    if name in ("layerscope", "ls_extract"):
        import layerscope

        subject = layerscope.load("smollm2")
        if name == "ls_extract":
            return subject
        # (not ``from layerscope import capture``: once a layerscope.capture submodule is imported that
        # name is the subpackage, not the context manager)
        from layerscope.capture import SiteOptions, capture

        sites = [f"blocks.{i}.resid_post" for i in layers]

        def run_ls(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[int, list[torch.Tensor]]:
            out: dict[int, list[torch.Tensor]] = {i: [] for i in layers}
            for ids, mask in batches:
                opts = {s: SiteOptions(fn=lambda x, m=mask: masked_mean(x, m)) for s in sites}
                with torch.inference_mode(), capture(subject, opts, stop=True) as tr:
                    subject.forward({"input_ids": ids, "attention_mask": mask})
                for i, s in zip(layers, sites, strict=True):
                    out[i].append(tr[s])
            return out

        return run_ls
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    if name == "hf":

        def run_hf(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[int, list[torch.Tensor]]:
            out: dict[int, list[torch.Tensor]] = {i: [] for i in layers}
            with torch.inference_mode():
                for ids, mask in batches:
                    hs = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
                    for i in layers:  # hidden_states[0] is the embedding output
                        out[i].append(masked_mean(hs[i + 1], mask))
            return out

        return run_hf
    from transformer_lens.model_bridge import TransformerBridge

    tok = AutoTokenizer.from_pretrained(folder)
    bridge = TransformerBridge.boot_transformers(folder, hf_model=model, tokenizer=tok, device="cpu")
    names = [f"blocks.{i}.hook_resid_post" for i in layers]

    def run_tl(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[int, list[torch.Tensor]]:
        out: dict[int, list[torch.Tensor]] = {i: [] for i in layers}
        with torch.inference_mode():
            for ids, mask in batches:
                _, cache = bridge.run_with_cache(
                    ids, attention_mask=mask, names_filter=names, stop_at_layer=max(layers) + 1
                )
                for i, n in zip(layers, names, strict=True):
                    out[i].append(masked_mean(cache[n], mask))
        return out

    return run_tl


def worker(args: argparse.Namespace) -> dict[str, Any]:
    layers = [int(x) for x in args.layers.split(",")]
    z = np.load(args.batches)
    batches = [(torch.from_numpy(z[f"ids{k}"]), torch.from_numpy(z[f"mask{k}"])) for k in range(int(z["n"]))]
    t0 = time.perf_counter()
    runner = load_contender(args.worker, args.folder, layers)
    load_s = time.perf_counter() - t0
    rss_model = rss_kib()
    peak_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if args.worker == "ls_extract":
        from layerscope.capture.extract import extract
        from layerscope.data.corpus import multiemo

        ds = multiemo(limit=args.n, seed=args.seed)
        sites = [f"blocks.{i}.resid_post" for i in layers]
        store = Path(tempfile.mkdtemp(prefix="ls-vs-tl-")) / "store"
        kw = {"batch_tokens": args.batch_tokens, "pooling": "sentence_mean", "progress": False}
        extract(runner, multiemo(limit=8, seed=args.seed), sites, store=store.with_name("warm"), **kw)
        Path("/proc/self/clear_refs").write_text("5")
        t0 = time.perf_counter()
        st = extract(runner, ds, sites, store=store, **kw)
        wall = time.perf_counter() - t0
        pooled = {i: st.read(s) for i, s in zip(layers, sites, strict=True)}  # dataset order already
        order = z["order"]
    else:
        runner(batches[:1])  # warm-up, untimed
        Path("/proc/self/clear_refs").write_text("5")  # peak of the timed pass only
        t0 = time.perf_counter()
        res = runner(batches)
        wall = time.perf_counter() - t0
        order = z["order"]
        pooled = {i: torch.cat(v).float().numpy() for i, v in res.items()}
        pooled = {i: v[np.argsort(order)] for i, v in pooled.items()}  # back to dataset order
    peak_run = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    np.savez(args.out, **{f"l{i}": v for i, v in pooled.items()})
    return {
        "wall_s": wall,
        "load_s": load_s,
        "rss_model_mib": rss_model / 1024,
        "peak_run_mib": peak_run / 1024,
        "peak_mib": max(peak_load, peak_run) / 1024,
        "n_rows": len(order),
    }


# -- parent ----------------------------------------------------------------------------------------------
def make_batches(args: argparse.Namespace, path: Path) -> tuple[str, dict[str, Any]]:
    import layerscope
    from layerscope.capture.extract import iter_batches
    from layerscope.data.corpus import multiemo
    from layerscope.models.zoo import smollm2_folder

    subject = layerscope.load("smollm2")  # converts the GGUF once into the cache folder
    ds = multiemo(limit=args.n, seed=args.seed)
    batches = [b for _, bs in iter_batches(subject, ds, batch_tokens=args.batch_tokens) for b in bs]
    arrays: dict[str, Any] = {"n": np.asarray(len(batches))}
    for k, b in enumerate(batches):
        arrays[f"ids{k}"], arrays[f"mask{k}"] = b.input_ids.numpy(), b.attention_mask.numpy()
    arrays["order"] = np.concatenate([b.indices for b in batches])
    np.savez(path, **arrays)
    real = sum(int(b.attention_mask.sum()) for b in batches)
    padded = sum(b.input_ids.numel() for b in batches)
    return str(smollm2_folder()), {"batches": len(batches), "tokens": real, "padded": padded}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="sentences (seeded MultiEmo sample)")
    ap.add_argument("--layers", default="6,13,20,27", help="blocks whose resid_post is captured")
    ap.add_argument("--batch-tokens", type=int, default=2048, help="padded tokens per batch")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (order alternates)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--contenders", default=",".join(CONTENDERS))
    ap.add_argument("--python", default=str(BENCH_PY) if BENCH_PY.exists() else sys.executable)
    ap.add_argument("--quick", action="store_true", help="smoke run: 32 sentences, 1 round")
    ap.add_argument("--json", type=Path, default=RESULTS / "vs_transformerlens.json")
    for hidden in ("--worker", "--batches", "--folder", "--out"):
        ap.add_argument(hidden, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if args.quick:
        args.n, args.rounds = 32, 1
    names = args.contenders.split(",")
    RESULTS.mkdir(parents=True, exist_ok=True)
    batch_file = RESULTS / "vs_tl_batches.npz"
    folder, shape = make_batches(args, batch_file)
    print(
        f"python {args.python}; torch {torch.__version__}, {torch.get_num_threads()} threads, nproc {os.cpu_count()}"
    )
    print(f"{args.n} sentences, {shape}, layers {args.layers}, folder {folder}")
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in names}
    errors: dict[str, str] = {}
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            if name in errors:
                continue
            out = RESULTS / f"vs_tl_{name}.npz"
            cmd = [args.python, __file__, "--worker", name, "--batches", str(batch_file), "--folder", folder]
            cmd += ["--out", str(out), "--layers", args.layers, "--n", str(args.n), "--seed", str(args.seed)]
            cmd += ["--batch-tokens", str(args.batch_tokens)]
            p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            if p.returncode != 0:
                errors[name] = (p.stderr or p.stdout).strip()[-2500:]
                print(f"  {name}: FAILED\n{errors[name]}", flush=True)
                continue
            res = json.loads(p.stdout.strip().splitlines()[-1])
            runs[name].append(res)
            print(
                f"  round {r + 1} {name:<11} {res['wall_s']:7.2f} s, rss after load {res['rss_model_mib']:6.0f} MiB, "
                f"peak {res['peak_mib']:6.0f} MiB (timed pass {res['peak_run_mib']:6.0f})",
                flush=True,
            )
    ok = [k for k in names if runs[k]]
    med = {k: {m: statistics.median(x[m] for x in runs[k]) for m in runs[k][0]} for k in ok}
    ref = "layerscope" if "layerscope" in ok else ok[0]
    diffs: dict[str, float] = {}
    if "hf" in ok:
        h = np.load(RESULTS / "vs_tl_hf.npz")
        for k in ok:
            z = np.load(RESULTS / f"vs_tl_{k}.npz")
            diffs[k] = float(max(np.abs(z[f] - h[f]).max() / np.abs(h[f]).max() for f in h.files))
    print(
        f"\n{'contender':<11} {'time s':>8} {'peak MiB':>9} {'run peak':>9} {'time/ls':>8} {'peak/ls':>8} {'rel. diff':>10}"
    )
    for k in ok:
        m = med[k]
        print(
            f"{k:<11} {m['wall_s']:8.2f} {m['peak_mib']:9.0f} {m['peak_run_mib']:9.0f} "
            f"{m['wall_s'] / med[ref]['wall_s']:8.2f} {m['peak_mib'] / med[ref]['peak_mib']:8.2f} "
            f"{diffs.get(k, float('nan')):10.1e}"
        )
    print(
        f"(medians of {args.rounds} rounds; ratios are contender / {ref}, > 1 means {ref} is faster / smaller)"
    )
    for k, e in errors.items():
        print(f"\n{k} could not run; last error line: {e.splitlines()[-1] if e else '?'}")
    args.json.write_text(
        json.dumps({"shape": shape, "median": med, "runs": runs, "diffs": diffs, "errors": errors}, indent=1)
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    try:
        main()
    except Exception:
        traceback.print_exc()
        raise SystemExit(1) from None
