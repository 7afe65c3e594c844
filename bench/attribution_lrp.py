"""LRP: layerscope vs Captum on a small CNN, vs our IG (n=50) on MiniLM, and conservation on the embedded models.

* (a) small CNN (Conv-ReLU-MaxPool ×3, AdaptiveAvgPool, Linear; random weights, the layers Captum's LRP supports)
  on N CIFAR-10 test images (default 64, 32×32): ε-rule and γ-rule (γ = 0.25, bias-free convs so that the two
  libraries' γ-rules coincide), layerscope ``LRP(site="input")`` vs Captum ``LRP``. Median seconds over rounds,
  the ratio, and the max |difference| relative to max |attribution|.
* (b) MiniLM sentiment classifier, N MultiEmo sentences (default 16), predicted class: ``LRP()`` (AttnLRP
  rules, one forward + one backward) vs ``IntegratedGradients(n_steps=50)``.
* (c) conservation Σ relevance / target logit, median (and quartiles) over 16 inputs per model and rule:
  MiniLM sentiment (sites ``embed`` and ``blocks.0.resid_pre``), SmolLM2 next token (its top-1 prediction),
  EfficientNet-Lite0 on CIFAR-10 images (top-1 ImageNet class).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/attribution_lrp.py                    # all parts, 1 thread
    HF_HUB_OFFLINE=1 .venv/bin/python bench/attribution_lrp.py --skip-conservation --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


class SmallCNN(nn.Module):
    """Captum-compatible CNN: every layer a module used once, flatten done functionally."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.c1, self.r1, self.p1 = nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2)
        self.c2, self.r2, self.p2 = nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2)
        self.c3, self.r3, self.p3 = (
            nn.Conv2d(64, 64, 3, padding=1, bias=False),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.fc = nn.Linear(64, 10)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.p1(self.r1(self.c1(x)))
        h = self.p2(self.r2(self.c2(h)))
        return self.fc(self.p3(self.r3(self.c3(h))).flatten(1))


def timed(fn: Callable[[], Any], rounds: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(rounds):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def part_cnn(n: int, rounds: int) -> dict[str, Any]:
    import copy

    from captum.attr import LRP as CaptumLRP
    from captum.attr._utils.lrp_rules import GammaRule

    from layerscope.attribution.lrp import LRP
    from layerscope.data import cifar10_test
    from layerscope.models.adapter import Adapter
    from layerscope.models.subject import ImageSpec, Subject

    images, _, _ = cifar10_test(limit=n)
    x = torch.tensor(images).permute(0, 3, 1, 2).float() / 255.0  # [0, 1]: both γ-rules coincide
    model = SmallCNN()
    s = Subject(model=model, adapter=Adapter.for_model(model), name="small-cnn", image=ImageSpec(size=32))
    with torch.no_grad():
        target = model(x).argmax(-1)
    out: dict[str, Any] = {}
    for rule in ("epsilon", "gamma"):
        theirs = copy.deepcopy(model)
        ours = LRP(s, rule=rule, batch_size=n)
        t_ours, r = timed(lambda ours=ours: ours.attribute(x, target=target.tolist(), keep_raw=True), rounds)

        def run_captum(theirs: nn.Module = theirs, rule: str = rule) -> torch.Tensor:
            if rule == "gamma":  # Captum removes the rule attributes after each call
                for c in (theirs.c1, theirs.c2, theirs.c3):
                    c.rule = GammaRule()  # type: ignore[assignment]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return CaptumLRP(theirs).attribute(x.clone(), target=target).detach()

        t_cap, a = timed(run_captum, rounds)
        diff = float(np.abs(r.raw - a.numpy()).max() / np.abs(a.numpy()).max())
        print(
            f"(a) small CNN, {n} CIFAR-10 images, {rule}: layerscope {t_ours * 1e3:.0f} ms, Captum "
            f"{t_cap * 1e3:.0f} ms -> {t_ours / t_cap:.2f}x time; max |diff| / max |attr| {diff:.1e}"
        )
        out[rule] = {"layerscope_s": t_ours, "captum_s": t_cap, "ratio": t_ours / t_cap, "max_rel_diff": diff}
    return out


def part_minilm(n: int, rounds: int) -> dict[str, Any]:
    from layerscope.attribution import IntegratedGradients
    from layerscope.attribution.lrp import LRP
    from layerscope.data.corpus import multiemo
    from layerscope.models.classifier import sentiment_classifier

    s = sentiment_classifier()
    texts = list(multiemo(limit=n, seed=123).texts)
    with torch.no_grad():
        target = s.forward(dict(s.tokenize(texts))).logits.argmax(-1).tolist()
    t_lrp, _ = timed(lambda: LRP(s).attribute(texts, target=target), rounds)
    t_ig, _ = timed(lambda: IntegratedGradients(s, n_steps=50).attribute(texts, target=target), rounds)
    print(
        f"(b) MiniLM sentiment, {n} sentences: LRP {t_lrp:.2f} s, IG n=50 {t_ig:.2f} s -> LRP takes "
        f"{t_lrp / t_ig:.3f}x the time of IG ({t_ig / t_lrp:.0f}x faster)"
    )
    return {"lrp_s": t_lrp, "ig50_s": t_ig, "ratio": t_lrp / t_ig}


def _quartiles(c: np.ndarray) -> dict[str, float]:
    q1, med, q3 = np.percentile(c, [25, 50, 75])
    return {"median": float(med), "q1": float(q1), "q3": float(q3)}


def part_conservation(n: int) -> dict[str, Any]:
    from layerscope import load
    from layerscope.attribution._inputs import prepare_text
    from layerscope.attribution.lrp import LRP, conservation
    from layerscope.data import cifar10_test
    from layerscope.data.corpus import multiemo
    from layerscope.models.classifier import sentiment_classifier

    rows: dict[str, Any] = {}

    def show(name: str, c: np.ndarray) -> None:
        rows[name] = _quartiles(c)
        q = rows[name]
        print(f"  {name:52s} median {q['median']:7.3f}   (q1 {q['q1']:7.3f}, q3 {q['q3']:7.3f})")

    print(f"(c) conservation: sum of relevance / target logit over {n} inputs")
    texts = list(multiemo(limit=n, seed=1).texts)
    clf = sentiment_classifier()
    with torch.no_grad():
        target = clf.forward(dict(clf.tokenize(texts))).logits.argmax(-1).tolist()
    for site in ("embed", "blocks.0.resid_pre"):
        for att in ("attnlrp", "cp"):
            r = LRP(clf, site=site, attention=att).attribute(texts, target=target)
            show(f"minilm-sentiment  site={site} attention={att}", conservation(r))
    lm = load("smollm2")
    prompts = [t[:60] for t in texts]
    prep = prepare_text(lm, prompts)
    with torch.no_grad():
        logits = lm.forward(prep.inputs).logits
    nxt = [int(logits[i, int(prep.last[i])].argmax()) for i in range(n)]
    for att in ("attnlrp", "cp"):
        r = LRP(lm, attention=att).attribute(prompts, target=nxt)
        show(f"smollm2 next token  site=embed attention={att}", conservation(r))
    eff = load("effnet-lite0")
    images, _, _ = cifar10_test(limit=n)
    x = eff.image.preprocess(images) if eff.image is not None else torch.tensor(images)
    with torch.no_grad():
        pred = eff.model(x).argmax(-1).tolist()
    for rule, first in (("epsilon", None), ("gamma", None), ("zplus", None), ("gamma", "zplus")):
        r = LRP(eff, rule=rule, first_layer=first).attribute(x, target=pred)
        label = f"effnet-lite0  rule={rule}" + (f" first_layer={first}" if first else "")
        show(label, conservation(r))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-images", type=int, default=64)
    ap.add_argument("--n-texts", type=int, default=16)
    ap.add_argument("--n-conservation", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-cnn", action="store_true")
    ap.add_argument("--skip-minilm", action="store_true")
    ap.add_argument("--skip-conservation", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}, {args.rounds} rounds (median)")
    out: dict[str, Any] = {"threads": torch.get_num_threads(), "rounds": args.rounds}
    if not args.skip_cnn:
        out["cnn_vs_captum"] = part_cnn(args.n_images, args.rounds)
    if not args.skip_minilm:
        out["minilm_vs_ig50"] = part_minilm(args.n_texts, args.rounds)
    if not args.skip_conservation:
        out["conservation"] = part_conservation(args.n_conservation)
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
