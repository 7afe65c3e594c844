"""Causal checks: ablate a sparse probe's neurons inside the forward pass (zero / mean / resample).

Measures (1) the accuracy of a probe at a downstream site, fitted on clean activations, when the neurons are
ablated, and (2) for causal LMs, the change in next-token loss at feature-positive vs negative tokens
(the loss of predicting token ``t+1`` from position ``t``, grouped by the feature at ``t``, where the
ablated neurons fire).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..capture import capture, intervene
from ._common import NeuronError, as_binary
from ._fit import binary_metrics, fit_binary, scores_of
from .features import decode_tokens, token_features
from .result import AblationResult
from .sparse import split_items

MODES: tuple[str, ...] = ("zero", "mean", "resample")


def _default_probe_site(site: str) -> str:
    m = re.match(r"blocks\.(\d+)\.", site)
    return f"blocks.{m.group(1)}.resid_post" if m else "final"


def ablation_check(
    subject: Any,
    texts: Sequence[str],
    feature: str | Callable[[list[str | None]], np.ndarray],
    *,
    site: str,
    neurons: Sequence[int],
    modes: Sequence[str] = MODES,
    probe_site: str | None = None,
    max_length: int = 64,
    batch_size: int = 16,
    seed: int = 0,
    C: float = 1.0,
) -> AblationResult:
    """Ablate ``neurons`` of ``site`` and measure probe accuracy and next-token loss changes.

    Args:
        subject: a loaded text model (``layerscope.load``).
        texts: input texts.
        feature: a token feature name (:data:`~layerscope.neurons.features.TOKEN_FEATURES`) or a function
            from decoded tokens (``None`` for special tokens) to 0/1 labels.
        site: the site whose neurons are ablated (``blocks.<i>.mlp.post``).
        neurons: neuron indices (e.g. a sparse probe's top-k).
        modes: ``zero``, ``mean`` (dataset mean per neuron) and/or ``resample`` (the neuron values of a random
            other token).
        probe_site: where the downstream probe reads (default: the same block's ``resid_post``).
        max_length: tokens per text.
        batch_size: texts per forward pass.
        seed: split and resampling seed.
        C: inverse L2 strength of the downstream probe.
    """
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise NeuronError(f"unknown ablation mode(s) {bad}; choose from {', '.join(MODES)}")
    texts = list(texts)
    if not texts:
        raise NeuronError("ablation_check needs at least one text")
    nidx = torch.as_tensor(list(neurons), dtype=torch.long)
    if nidx.numel() == 0:
        raise NeuronError("give at least one neuron to ablate")
    probe_site = probe_site or _default_probe_site(site)
    causal = getattr(subject.adapter, "kind", None) == "causal_lm"
    batches = []
    for s in range(0, len(texts), batch_size):
        enc = subject.tokenize(texts[s : s + batch_size], max_length=max_length)
        batches.append(
            {k: v.to(subject.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        )

    def run(edit: Callable[..., Any] | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows of (site acts, probe-site acts, next-token loss) over valid tokens of every batch."""
        acts, reads, losses = [], [], []
        for bt in batches:
            with torch.no_grad():
                ctx = intervene(subject, {site: edit}) if edit is not None else None
                try:
                    if ctx is not None:
                        ctx.__enter__()
                    with capture(subject, [site, probe_site], stop=False) as tr:
                        out = subject.forward(bt)
                finally:
                    if ctx is not None:
                        ctx.__exit__(None, None, None)
            mask = bt["attention_mask"].bool()
            a = tr[site]
            if a.ndim != 3:
                raise NeuronError(
                    f"site {site!r} has shape {tuple(a.shape)}; ablation needs [batch, pos, neurons]"
                )
            acts.append(a[mask].float().cpu())
            reads.append(tr[probe_site][mask].float().cpu())
            if causal:
                logits = out.logits.float()
                ids = bt["input_ids"]
                nll = torch.nn.functional.cross_entropy(
                    logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none"
                ).view(ids.shape[0], -1)
                nll = torch.cat(
                    [nll, torch.full_like(nll[:, :1], float("nan"))], 1
                )  # last position: no target
                nxt = torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], 1)
                nll = torch.where(nxt, nll, torch.full_like(nll, float("nan")))
                losses.append(nll[mask].cpu())
        loss = torch.cat(losses) if losses else torch.empty(0)
        return torch.cat(acts), torch.cat(reads), loss

    clean_acts, clean_reads, clean_loss = run(None)
    d = clean_acts.shape[1]
    if int(nidx.max()) >= d or int(nidx.min()) < 0:
        raise NeuronError(f"neuron indices must lie in 0..{d - 1} for {site!r}")
    ids_all = torch.cat([bt["input_ids"][bt["attention_mask"].bool()].cpu() for bt in batches])
    tokens = decode_tokens(subject.tokenizer, ids_all.numpy())
    if callable(feature):
        lab = np.asarray(feature(tokens)).astype(np.int64)
        fname = getattr(feature, "__name__", "feature")
    else:
        lab = token_features(tokens, features=[feature], prefixes=(), suffixes=())[feature]
        fname = feature
    keep = lab >= 0
    y = as_binary(lab[keep], int(keep.sum()), what=f"feature {fname!r}")
    mean = clean_acts.mean(0)
    pool = clean_acts[:, nidx]
    gen = torch.Generator().manual_seed(seed)

    def make_edit(mode: str) -> Callable[..., torch.Tensor]:
        def edit(t: torch.Tensor, *, site: Any) -> torch.Tensor:
            t = t.clone()
            if mode == "zero":
                t[..., nidx] = 0
            elif mode == "mean":
                t[..., nidx] = mean[nidx].to(t.dtype)
            else:
                flat = t.reshape(-1, t.shape[-1])
                pick = torch.randint(0, pool.shape[0], (flat.shape[0],), generator=gen)
                flat[:, nidx] = pool[pick].to(t.dtype)
                t = flat.view_as(t)
            return t

        return edit

    test = split_items(int(keep.sum()), test_size=0.3, seed=seed)
    R = clean_reads[torch.from_numpy(keep)][None]  # [1, n, d_model]
    tr_i, te_i = torch.from_numpy(np.flatnonzero(~test)), torch.from_numpy(np.flatnonzero(test))
    mu, sd = R[:, tr_i].mean(1, keepdim=True), R[:, tr_i].std(1, keepdim=True).clamp_min(1e-6)
    all_idx = torch.arange(R.shape[2])[None]
    w, b = fit_binary((R[:, tr_i] - mu) / sd, y[tr_i], torch.zeros(1, dtype=torch.long), all_idx, C=C)
    ypos = torch.from_numpy(lab == 1)
    yneg = torch.from_numpy(lab == 0)
    rows = []
    for mode in ("clean", *modes):
        if mode == "clean":
            reads, loss = clean_reads, clean_loss
        else:
            _, reads, loss = run(make_edit(mode))
        Rm = (reads[torch.from_numpy(keep)][None][:, te_i] - mu) / sd
        met = binary_metrics(scores_of(Rm, torch.zeros(1, dtype=torch.long), all_idx, w, b), y[te_i])
        row: dict[str, Any] = {
            "mode": mode,
            "probe_accuracy": float(met["accuracy"][0]),
            "probe_f1": float(met["f1"][0]),
        }
        if causal:
            row["loss_pos"] = float(np.nanmean(loss[ypos].numpy())) if bool(ypos.any()) else float("nan")
            row["loss_neg"] = float(np.nanmean(loss[yneg].numpy())) if bool(yneg.any()) else float("nan")
        rows.append(row)
    frame = pd.DataFrame(rows)
    if causal:
        frame["delta_loss_pos"] = frame.loss_pos - frame.loss_pos.iloc[0]
        frame["delta_loss_neg"] = frame.loss_neg - frame.loss_neg.iloc[0]
    return AblationResult(
        frame=frame, site=site, neurons=[int(i) for i in nidx], probe_site=probe_site, feature=fname
    )
