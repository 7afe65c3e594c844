"""Prompt-inversion speed: layerscope's batched restarts vs PEZ's algorithm one restart at a time, one run.

Both optimise ``--length`` prompt tokens for a ``--target`` continuation (default " little girl", 2 tokens)
on SmolLM2-135M from the SAME random vocabulary initialisations (``--restarts`` of them), ``--steps`` steps,
the same absolute learning rate and the same allowed tokens (no special tokens, no target tokens):

* ``layerscope``: ``invert(..., project=True, lam=0)`` — all restarts in one batch through the shared
  optimisation loop; nearest tokens by one matmul against the normalised embedding matrix cached once; the
  forward pass stops after the final norm and the LM head runs only at the target positions; Adam.
* ``pez-ref``: a faithful rewrite of PEZ's reference loop (Wen et al. 2023, ``optimize_prompt_loop`` +
  ``nn_project``): one restart at a time; every step re-normalises the whole vocabulary matrix and the queries,
  takes the top-1 dot-score hit, forwards the projected embeddings through the full model (logits at every
  position), computes the cross-entropy of the target, copies the gradient of the projected embeddings onto
  the continuous ones and steps AdamW (weight decay 0.1, PEZ's default); the best projected prompt is kept.

Printed: wall seconds and the speed ratio; the distributions (quartiles) of the final hard-prompt probability
of both, with a Mann-Whitney U test; the best hard-prompt probability vs. the best of the R random prompts.
The issue's full size is ``--restarts 32 --steps 200``; the default (8 × 30) finishes in a few minutes on a
loaded 2-core CPU. ``--threads`` (default 1) sets torch's thread count (2 threads on a loaded 2-vCPU machine
are many times slower than 1 for these small matmuls).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/inversion_speed.py
    HF_HUB_OFFLINE=1 .venv/bin/python bench/inversion_speed.py --restarts 32 --steps 200   # the issue's size
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F


def pez_reference(
    model: torch.nn.Module,
    init_ids: torch.Tensor,
    target: list[int],
    allowed: torch.Tensor,
    *,
    steps: int,
    lr: float,
    weight_decay: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """PEZ, one restart at a time. Returns best hard prompt ids ``[R, L]`` and their log p(target) ``[R]``."""
    emb = model.get_input_embeddings()
    tgt = torch.tensor([target])
    tgt_embeds = emb(tgt[:, :-1]).detach()
    length = init_ids.shape[1]
    mask = torch.zeros(emb.weight.shape[0]).masked_fill(~allowed, float("-inf"))
    best_ids, best_lp = [], []
    for r in range(init_ids.shape[0]):  # one restart at a time, as the reference script runs
        prompt = emb(init_ids[r : r + 1]).detach().clone().requires_grad_(True)
        opt = torch.optim.AdamW([prompt], lr=lr, weight_decay=weight_decay)
        keep_lp, keep_ids = -math.inf, init_ids[r]
        for _ in range(steps):
            with torch.no_grad():  # nn_project: queries and the WHOLE vocabulary re-normalised every step
                q = F.normalize(prompt.reshape(-1, prompt.shape[-1]), dim=1)
                vocab = F.normalize(emb.weight, dim=1)
                hits = (q @ vocab.T + mask).topk(1, dim=1).indices.reshape(1, length)
                projected = emb(hits)
            tmp = projected.detach().clone().requires_grad_(True)
            logits = model(inputs_embeds=torch.cat([tmp, tgt_embeds], 1)).logits  # every position
            loss = F.cross_entropy(logits[0, length - 1 :], tgt[0], reduction="sum")
            (prompt.grad,) = torch.autograd.grad(loss, [tmp])
            opt.step()
            opt.zero_grad()
            lp = -float(loss.detach())
            if lp > keep_lp:  # the loss is the projected (hard) prompt's
                keep_lp, keep_ids = lp, hits[0].clone()
        best_ids.append(keep_ids)
        best_lp.append(keep_lp)
    ids = torch.stack(best_ids)
    with torch.no_grad():  # exact re-evaluation of the kept prompts on token ids
        seq = torch.cat([ids, tgt[:, :-1].expand(len(ids), -1)], 1)
        lp = torch.log_softmax(model(input_ids=seq).logits[:, length - 1 :].float(), -1)
        exact = lp.gather(-1, tgt.expand(len(ids), -1).unsqueeze(-1)).squeeze(-1).sum(1)
    return ids.numpy(), exact.numpy()


def quartiles(p: np.ndarray) -> str:
    q = np.quantile(p, [0.0, 0.25, 0.5, 0.75, 1.0])
    return "  ".join(f"{v:.2e}" for v in q)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--restarts", type=int, default=8)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--length", type=int, default=5)
    ap.add_argument("--target", default=" little girl")
    ap.add_argument("--lr", type=float, default=0.1, help="absolute Adam(W) learning rate (PEZ: 0.1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    import layerscope
    from layerscope.inversion import allowed_tokens, invert

    subject = layerscope.load("smollm2")
    model = subject.model
    model.requires_grad_(False)
    target = subject.tokenizer(args.target, add_special_tokens=False)["input_ids"]
    weight = model.get_input_embeddings().weight
    rms = float(weight.float().pow(2).mean().sqrt())
    print(
        f"SmolLM2-135M, target {args.target!r} = {len(target)} tokens {target}, R={args.restarts} restarts × "
        f"{args.steps} steps, {args.length} prompt tokens, lr {args.lr} (= {args.lr / rms:.2f} embedding RMS), "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {platform.processor() or platform.machine()}"
    )

    t0 = time.perf_counter()
    ours = invert(
        subject,
        args.target,
        restarts=args.restarts,
        steps=args.steps,
        length=args.length,
        project=True,
        lam=0.0,
        lr=args.lr / rms,
        seed=args.seed,
    )
    t_ours = time.perf_counter() - t0
    # the same random starts (invert draws them from the seed) and the same allowed tokens
    allowed = allowed_tokens(subject.tokenizer, weight.shape[0], [target])[0]
    gen = torch.Generator().manual_seed(args.seed)
    init = torch.multinomial(
        allowed.float()[None].repeat(args.restarts, 1), args.length, replacement=True, generator=gen
    )
    t0 = time.perf_counter()
    ref_ids, ref_lp = pez_reference(model, init, target, allowed, steps=args.steps, lr=args.lr)
    t_ref = time.perf_counter() - t0

    p_ours, p_ref, p_rand = ours.hard_prob[0], np.exp(ref_lp), ours.random_prob[0]
    print(f"\n{'':12s} {'wall s':>8s} {'steps/s':>8s}   final hard-prompt p: min  q25  median  q75  max")
    print(f"{'layerscope':12s} {t_ours:8.1f} {args.steps / t_ours:8.2f}   {quartiles(p_ours)}")
    print(
        f"{'pez-ref':12s} {t_ref:8.1f} {args.steps / t_ref:8.2f}   {quartiles(p_ref)}   (restart-steps/s {args.steps * args.restarts / t_ref:.2f})"
    )
    print(f"{'random':12s} {'':8s} {'':8s}   {quartiles(p_rand)}")
    print(f"\nspeed ratio pez-ref / layerscope: {t_ref / t_ours:.1f}x")
    try:
        from scipy.stats import mannwhitneyu

        u = mannwhitneyu(np.log(p_ours), np.log(p_ref))
        print(f"Mann-Whitney U on log p (same distribution?): U={u.statistic:.0f}, p-value={u.pvalue:.3f}")
    except ImportError:
        pass
    k = int(np.argmax(p_ours))
    j = int(np.argmax(ref_lp))
    print(f"best hard prompt  layerscope: {ours.prompt_texts[0][k]!r} p={p_ours[k]:.3e}")
    print(f"best hard prompt  pez-ref:    {subject.tokenizer.decode(ref_ids[j].tolist())!r} p={p_ref[j]:.3e}")
    print(
        f"best of {args.restarts} random prompts: p={p_rand.max():.3e}  "
        f"(best hard / best random: {p_ours.max() / p_rand.max():.0f}x)"
    )
    same = float(
        np.mean(
            [set(a) == set(b) for a, b in zip(ours.prompt_ids[0].tolist(), ref_ids.tolist(), strict=True)]
        )
    )
    print(f"restarts ending on the same token set in both: {same:.0%}")


if __name__ == "__main__":
    main()
