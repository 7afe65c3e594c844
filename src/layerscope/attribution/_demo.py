"""The attribution part of ``layerscope demo``: MiniLM sentiment and SmolLM2, small sizes (≈ 30 s on a CPU)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

DEMO_TEXTS = [
    "The room was clean and the staff were wonderful.",
    "Terrible service, the food was cold and nobody cared.",
    "The hotel is near the station, breakfast is served from seven.",
    "Great location, but the bathroom was dirty.",
]
DEMO_PROMPT = "The best thing about a holiday by the sea is"


def demo_section(report: Any, *, cache_dir: Path, log: Any = print) -> None:
    """Add attribution sections (IG + other methods, baseline sensitivity, LLM continuation, attention)."""
    import torch

    from ..models import load
    from ..models.classifier import classifier_metadata, sentiment_classifier
    from . import (
        LRP,
        Continuation,
        InputXGradient,
        IntegratedGradients,
        Saliency,
        TokenBaseline,
        attention,
        baseline_sensitivity,
    )

    t0 = time.perf_counter()
    clf = sentiment_classifier(log=log)
    acc = classifier_metadata(clf).get("heldout_accuracy")
    enc = clf.tokenize(DEMO_TEXTS)
    with torch.no_grad():
        pred = clf.forward(dict(enc)).logits.argmax(-1).tolist()
    ig = IntegratedGradients(clf, n_steps="auto", tol=0.01)
    r_ig = ig.attribute(DEMO_TEXTS, target=pred, baseline="pad")
    note = (
        f"MiniLM (frozen) + a linear sentiment head trained on MultiEmo (held-out accuracy {acc:.3f}); "
        if acc is not None
        else ""
    ) + "target = the predicted class; adaptive Gauss–Legendre steps until |delta| ≤ 1 % of |F(x) − F(x′)|."
    report.add(r_ig, title="Integrated Gradients: MiniLM sentiment", note=note)
    for method in (Saliency(clf), InputXGradient(clf)):
        report.add(method.attribute(DEMO_TEXTS, target=pred), title=f"{method.method}: MiniLM sentiment")
    report.add(
        LRP(clf).attribute(DEMO_TEXTS, target=pred),
        title="LRP (AttnLRP rules): MiniLM sentiment",
        note="One forward + one modified backward pass; relevance at the token embeddings. The position and "
        "token-type embeddings added after that site, biases and AttnLRP's softmax rule absorb part of the "
        "logit, so Σ relevance is below F(x) (see docs/lrp.md for the measured conservation).",
    )
    log(f"attribution: IG + gradient methods on MiniLM sentiment ({time.perf_counter() - t0:.1f}s)")
    sens = baseline_sensitivity(
        IntegratedGradients(clf, n_steps=16),
        DEMO_TEXTS,
        target=pred,
        baselines=["pad", "mask", "unk", "zero"],
        k=3,
    )
    report.add(sens, note="The same sentences and targets attributed under four baselines (IG, 16 steps).")
    att = attention(clf, DEMO_TEXTS[3])
    report.add(att, note="Rollout and flow into [CLS] (head-mean attention + residual).")
    report.add_section(
        "Attention view: MiniLM",
        text="Head view: hover a token on the left to see where it attends (one colour per head; tick heads "
        "to show). Model view: every layer × head, drawn when scrolled into view; click one to open it.",
        html=att.view_html(),
    )
    log(f"attribution: baseline sensitivity + attention ({time.perf_counter() - t0:.1f}s)")
    lm = load("smollm2")
    tok: Any = lm.tokenizer
    model: Any = lm.model
    ids = tok(DEMO_PROMPT, return_tensors="pt")
    with torch.no_grad():
        gen = model.generate(**ids, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    cont = tuple(gen[0, ids["input_ids"].shape[1] :].tolist())
    r_lm = IntegratedGradients(lm, n_steps=8).attribute(
        DEMO_PROMPT, target=Continuation(ids=cont), baseline=TokenBaseline(int(tok.pad_token_id))
    )
    report.add(
        r_lm,
        title="Integrated Gradients: SmolLM2 continuation",
        note=f"Greedy continuation {tok.decode(cont)!r}: each row attributes one continuation token's "
        "log-probability to the prompt (one teacher-forced batch, 8 Gauss–Legendre steps).",
    )
    log(f"attribution: SmolLM2 continuation ({time.perf_counter() - t0:.1f}s)")
    image_section(report, log=log)
    log(f"attribution: effnet-lite0 photo overlays ({time.perf_counter() - t0:.1f}s)")


def image_section(report: Any, *, log: Any = print, n_steps: int = 32) -> None:
    """effnet-lite0 on three bundled photos: IG, SmoothGrad and patch occlusion overlaid, side by side."""
    import pandas as pd
    import torch

    from ..models import load
    from ..optimize._models import image_spec
    from . import FeatureAblation, IntegratedGradients, SmoothGrad
    from .images import overlay_figure, sample_photos

    subject = load("effnet-lite0")
    photos, names = sample_photos()
    photos, names = photos[:3], names[:3]
    with torch.no_grad():
        logits = subject.forward({"x": image_spec(subject).preprocess(photos)})
    pred = logits.argmax(-1).tolist()
    results = {
        "IG (blur baseline)": IntegratedGradients(subject, n_steps=n_steps).attribute(
            photos, target=pred, baseline="blur"
        ),
        "SmoothGrad": SmoothGrad(subject).attribute(photos, target=pred),
        "occlusion 56 px": FeatureAblation(subject, window=56, stride=56).attribute(photos, target=pred),
    }
    report.add_section(
        "Image attribution: effnet-lite0 on bundled photos",
        text="Each row is a photo bundled with scikit-image / scikit-learn, attributed to the class "
        "EfficientNet-Lite0 predicts for it. Columns: Integrated Gradients from a blurred copy "
        f"({n_steps} Gauss–Legendre steps; the table's delta column is the completeness gap — ReLU6 paths are "
        "rough, and 16 steps leave up to 20 %), SmoothGrad (mean gradient over noisy copies) and 56-px patch "
        "occlusion (drop of the logit when a grey patch covers the pixel). Red: evidence for the class, "
        "blue: against; maps are smoothed by 1.5 px for display.",
        figures=[overlay_figure(results, names=names)],
        tables=[pd.concat([r.to_frame().assign(method=m) for m, r in results.items()], ignore_index=True)],
    )
