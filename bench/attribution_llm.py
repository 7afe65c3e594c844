"""Multi-token attribution of a SmolLM2 continuation: layerscope vs Captum ``LLMGradientAttribution``, one run.

A prompt and its greedy 20-token continuation; Integrated Gradients on the token embeddings (``n_steps``
Gauss–Legendre nodes, the EOS/pad token as baseline with BOS kept), attributing the log-probability of every
continuation token to the prompt tokens. Captum loops over the continuation tokens (one IG run per token,
prompt + previous tokens as input); layerscope runs prompt + continuation teacher-forced and batches all
(token, step) rows through the model in chunks. Prints medians, the ratio and the max |score difference|.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/attribution_llm.py --steps 10 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"
PROMPT = "The three most important things to remember when you travel abroad are"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--batch-tokens", type=int, default=8192)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--prompt", default=PROMPT, help="the prompt (its length sets the forward-mode tangents)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from captum.attr import LayerIntegratedGradients, LLMGradientAttribution, TextTokenInput

    from layerscope import load
    from layerscope.attribution import Continuation, IntegratedGradients, TokenBaseline
    from layerscope.attribution._inputs import prepare_text
    from layerscope.attribution.baselines import token_baseline_ids

    s = load("smollm2")
    tok = s.tokenizer
    enc = tok(args.prompt, return_tensors="pt")
    with torch.no_grad():
        gen = s.model.generate(
            **enc, max_new_tokens=args.tokens, do_sample=False, pad_token_id=tok.pad_token_id
        )
    cont = tuple(gen[0, enc["input_ids"].shape[1] :].tolist())
    pad = int(tok.pad_token_id)
    prep = prepare_text(s, [args.prompt])
    if int(token_baseline_ids(s, prep, pad).ne(pad).sum()):
        print("note: the prompt has special tokens that layerscope keeps and Captum replaces")
    print(
        f"prompt {prep.inputs['input_ids'].shape[1]} tokens, continuation {len(cont)} tokens: {tok.decode(cont)!r}"
    )
    print(f"n_steps={args.steps}, torch threads {torch.get_num_threads()}")

    ig = IntegratedGradients(s, n_steps=args.steps, batch_tokens=args.batch_tokens)
    llm = LLMGradientAttribution(LayerIntegratedGradients(s.model, s.model.get_input_embeddings()), tok)
    # Captum attributes an indicator tensor of ones; any other value means "use TextTokenInput's baseline id"
    inp = TextTokenInput(args.prompt, tok, baselines=pad)
    times: dict[str, list[float]] = {}
    ours = theirs = None
    # warm-up, both sides (first backward / first forward-mode pass / allocator growth), not timed
    IntegratedGradients(s, n_steps=2, batch_tokens=args.batch_tokens).attribute(
        args.prompt, target=Continuation(ids=cont), baseline=TokenBaseline(pad)
    )
    llm.attribute(inp, target=torch.tensor(cont[:2]), n_steps=2, baselines=0)
    for rnd in range(args.rounds):
        for who in ("layerscope", "captum") if rnd % 2 == 0 else ("captum", "layerscope"):
            t = time.perf_counter()
            if who == "layerscope":
                r = ig.attribute(args.prompt, target=Continuation(ids=cont), baseline=TokenBaseline(pad))
                ours = torch.tensor(r.scores)
            else:
                out = llm.attribute(inp, target=torch.tensor(cont), n_steps=args.steps, baselines=0)
                theirs = out.token_attr.detach()
            times.setdefault(who, []).append(time.perf_counter() - t)
        print(
            f"round {rnd + 1}: layerscope {times['layerscope'][-1]:.1f}s, captum {times['captum'][-1]:.1f}s"
        )
    assert ours is not None and theirs is not None
    med = {k: statistics.median(v) for k, v in times.items()}
    diff = float((ours - theirs).abs().max())
    speedup = med["captum"] / med["layerscope"]
    print(f"\nmedian seconds: layerscope {med['layerscope']:.2f}, captum {med['captum']:.2f}")
    print(f"speed-up vs Captum LLMGradientAttribution: {speedup:.2f}x (target >= 5)")
    print(f"max |score difference| {diff:.2e} (max |score| {float(theirs.abs().max()):.3f})")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "attribution_llm.json").write_text(
        json.dumps(
            {
                "median_s": med,
                "speedup": speedup,
                "max_abs_diff": diff,
                "n_steps": args.steps,
                "continuation_tokens": len(cont),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
