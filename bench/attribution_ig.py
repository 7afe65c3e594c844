"""Integrated Gradients on the MiniLM sentiment classifier: layerscope vs Captum, same data, one run.

* (a) speed and equality: N MultiEmo sentences (default 64), n_steps=50, Gauss–Legendre, [PAD] baseline with
  [CLS]/[SEP] kept, target = the predicted class. Captum ``LayerIntegratedGradients`` on the word embeddings
  with each ``internal_batch_size`` in ``--captum-ibs`` (the best is reported); layerscope
  ``IntegratedGradients(site="embed")`` with its default token budget. Max |difference| of the attributions.
* (b) adaptive steps: ``n_steps="auto"`` (Simpson panels refined where the exact local error is largest, until
  Σ|local error| ≤ 1 % of |F(x) − F(x′)|) vs fixed n=50 on the same inputs: model evaluations per sentence as
  a distribution, and the per-token accuracy of both against a 256-node Gauss–Legendre reference.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/attribution_ig.py                 # full (slow on 2 CPU cores)
    HF_HUB_OFFLINE=1 .venv/bin/python bench/attribution_ig.py --n 16 --captum-ibs 50,200 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--captum-ibs", default="50,100,200,400")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--skip-adaptive", action="store_true")
    ap.add_argument("--skip-speed", action="store_true", help="only the adaptive-vs-fixed part")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from captum.attr import LayerIntegratedGradients

    from layerscope.attribution import IntegratedGradients
    from layerscope.data.corpus import multiemo
    from layerscope.models.classifier import sentiment_classifier

    s = sentiment_classifier()
    texts = list(multiemo(limit=args.n, seed=123).texts)
    enc = s.tokenize(texts)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    with torch.no_grad():
        target = s.forward(dict(enc)).logits.argmax(-1)
    special = torch.tensor(
        [s.tokenizer.get_special_tokens_mask(x, already_has_special_tokens=True) for x in ids.tolist()]
    ).bool()
    ref = torch.where(special | (mask == 0), ids, torch.full_like(ids, s.tokenizer.pad_token_id))

    def f(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return s.model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).logits

    lig = LayerIntegratedGradients(f, s.model.bert.embeddings.word_embeddings)
    ig = IntegratedGradients(s, n_steps=args.steps)
    lengths = mask.sum(1)
    print(
        f"{args.n} sentences, {int(lengths.min())}-{int(lengths.max())} tokens (mean {float(lengths.float().mean()):.1f}), "
        f"n_steps={args.steps}, torch threads {torch.get_num_threads()}"
    )
    out: dict[str, object] = {"n": args.n, "n_steps": args.steps, "threads": torch.get_num_threads()}
    if not args.skip_speed:
        times: dict[str, list[float]] = {}
        ours = theirs = None
        ibs_list = [int(v) for v in args.captum_ibs.split(",") if v]
        for rnd in range(args.rounds):
            t = time.perf_counter()
            r = ig.attribute(texts, target=target.tolist(), baseline="pad", keep_raw=True)
            times.setdefault("layerscope", []).append(time.perf_counter() - t)
            ours = torch.tensor(r.raw)
            for ibs in ibs_list:
                t = time.perf_counter()
                a = lig.attribute(
                    ids,
                    baselines=ref,
                    target=target,
                    additional_forward_args=(mask,),
                    n_steps=args.steps,
                    method="gausslegendre",
                    internal_batch_size=ibs,
                )
                times.setdefault(f"captum ibs={ibs}", []).append(time.perf_counter() - t)
                theirs = a.detach()
            print(f"round {rnd + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in times.items()))
        assert ours is not None and theirs is not None
        med = {k: statistics.median(v) for k, v in times.items()}
        best = min((k for k in med if k.startswith("captum")), key=med.__getitem__)
        diff = float((ours - theirs).abs().max())
        scale = float(theirs.abs().max())
        print("\nmedian seconds:")
        for k, v in med.items():
            print(f"  {k:20s} {v:8.2f}")
        ratio = med["layerscope"] / med[best]
        print(f"layerscope / best Captum ({best}): {ratio:.2f}x time (target <= 1.0)")
        print(
            f"max |attribution difference| {diff:.2e} (max |attribution| {scale:.2f}); max |delta| {np.abs(r.delta).max():.2e}"
        )
        out |= {
            "n": args.n,
            "n_steps": args.steps,
            "median_s": med,
            "ratio_vs_best_captum": ratio,
            "best_captum": best,
            "max_abs_diff": diff,
            "threads": torch.get_num_threads(),
        }
    if not args.skip_adaptive:
        t = time.perf_counter()
        ra = IntegratedGradients(s, n_steps="auto", tol=0.01).attribute(
            texts, target=target.tolist(), baseline="pad"
        )
        ta = time.perf_counter() - t
        fixed = args.steps + 2
        ev = ra.evaluations
        rel = np.abs(ra.delta) / np.maximum(np.abs(ra.f_input - ra.f_baseline), 1e-12)
        q = np.percentile(ev, [0, 25, 50, 75, 100])
        print(
            f"\nadaptive (tol 1 %): evaluations per sentence min/q1/median/q3/max = {q.astype(int).tolist()} "
            f"vs fixed {fixed}; mean {ev.mean():.1f} -> {fixed / ev.mean():.2f}x fewer; "
            f"nodes used {dict(zip(*(v.tolist() for v in np.unique(ra.steps, return_counts=True)), strict=True))}; "
            f"{(rel <= 0.01).mean():.0%} within tolerance; {ta:.1f}s"
        )
        ref = IntegratedGradients(s, n_steps=256).attribute(texts, target=target.tolist(), baseline="pad")
        fx = IntegratedGradients(s, n_steps=args.steps).attribute(
            texts, target=target.tolist(), baseline="pad"
        )

        def token_err(r: object) -> np.ndarray:  # max |score − reference| / max |reference| per sentence
            scale = np.nanmax(np.abs(ref.scores), axis=1)
            return np.nanmax(np.abs(r.scores - ref.scores), axis=1) / scale  # type: ignore[attr-defined]

        ea, ef = token_err(ra), token_err(fx)
        print(
            f"per-token error vs n=256 (max |Δscore| / max |score|): adaptive median {np.median(ea):.4f}, "
            f"90th pct {np.percentile(ea, 90):.4f}, max {ea.max():.4f}; fixed n={args.steps} max {ef.max():.5f}"
        )
        out["adaptive"] = {
            "token_error_adaptive": {"median": float(np.median(ea)), "p90": float(np.percentile(ea, 90))},
            "token_error_adaptive_max": float(ea.max()),
            "token_error_fixed_max": float(ef.max()),
            "evaluations_quantiles": q.tolist(),
            "mean": float(ev.mean()),
            "fixed": fixed,
            "fewer_x": float(fixed / ev.mean()),
            "seconds": ta,
        }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "attribution_ig.json").write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
