"""Neuron pages: top/bottom-activating dataset examples (from the store), class histograms, promoted tokens."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from ._common import NeuronError
from .features import decode_tokens
from .result import NeuronResult, SparseProbeResult


def _contexts(store: Any, tok: Any, rows: np.ndarray, width: int) -> list[str]:
    """Each row's token marked ``⟦…⟧`` inside ±``width`` characters of its text (re-tokenised, no model)."""
    texts = store.texts()
    ex = store.meta("example_id")[rows]
    pos = store.meta("position")[rows]
    max_len = int(store.manifest.get("max_length") or 512)
    out = []
    enc_cache: dict[int, Any] = {}
    for e, p in zip(ex.tolist(), pos.tolist(), strict=True):
        if not texts or tok is None or not getattr(tok, "is_fast", False):
            out.append("")
            continue
        text = texts[e]
        if e not in enc_cache:
            enc_cache[e] = tok(text, truncation=True, max_length=max_len, return_offsets_mapping=True)
        offs = enc_cache[e]["offset_mapping"]
        if p >= len(offs):
            out.append(text[: 2 * width])
            continue
        a, b = offs[p]
        left = ("…" if a > width else "") + text[max(0, a - width) : a]
        right = text[b : b + width] + ("…" if b + width < len(text) else "")
        out.append(f"{left}⟦{text[a:b]}⟧{right}")
    return out


def promoted_tokens(subject: Any, site: str, neuron: int, *, n: int = 10) -> pd.DataFrame:
    """The tokens a neuron's output weights promote/suppress through the unembedding (causal LMs).

    The neuron's row of the layer's output projection (``W_out[:, neuron]``), scaled by the final norm's
    weight when there is one, times the unembedding: the direct logit effect of a unit activation.
    """
    if getattr(subject.adapter, "kind", None) != "causal_lm":
        return pd.DataFrame(columns=["direction", "token", "logit"])
    r = subject.adapter.resolve(site)
    mod = r.module
    if r.hook.io != "input" or not hasattr(mod, "weight"):
        raise NeuronError(f"site {site!r} is not the input of an output projection; use blocks.<i>.mlp.post")
    W = mod.weight.detach().float()
    conv1d = type(mod).__name__ == "Conv1D"  # GPT-2 stores [d_in, d_out]; nn.Linear [d_out, d_in]
    d_mlp = W.shape[0] if conv1d else W.shape[1]
    if not 0 <= neuron < d_mlp:
        raise NeuronError(f"neuron {neuron} is out of range for {site!r} ({d_mlp} neurons)")
    vec = W[neuron] if conv1d else W[:, neuron]  # [d_model]
    final = subject.adapter.resolve("final").module
    if hasattr(final, "weight") and final.weight is not None and final.weight.shape == vec.shape:
        vec = vec * final.weight.detach().float()
    head = subject.model.get_output_embeddings()
    logits = head.weight.detach().float() @ vec  # [d_vocab]
    tok = subject.tokenizer
    rows = []
    for direction, idx in (("promotes", logits.topk(n).indices), ("suppresses", (-logits).topk(n).indices)):
        for i in idx.tolist():
            rows.append({"direction": direction, "token": tok.decode([i]), "logit": float(logits[i])})
    return pd.DataFrame(rows)


def neuron_page(
    store: Any,
    site: str,
    neuron: int,
    *,
    labels: Any = None,
    subject: Any = None,
    result: SparseProbeResult | None = None,
    n_examples: int = 10,
    n_bins: int = 30,
    context: int = 40,
) -> NeuronResult:
    """Everything about one neuron of one site, read from a store (no forward pass).

    Args:
        store: an ``ActivationStore`` (token pooling gives token-level examples).
        site: a stored site with a neuron axis, e.g. ``"blocks.5.mlp.post"``.
        neuron: the neuron index.
        labels: optional 0/1 (or class) labels per row for the per-class histogram.
        subject: the model, for the tokens the neuron promotes (causal LMs); optional.
        result: a :class:`SparseProbeResult` whose rankings list this neuron's rank per feature.
        n_examples: top and bottom examples shown.
        n_bins: histogram bins.
        context: characters of context either side of the highlighted token.
    """
    if site not in store.sites:
        raise NeuronError(f"site {site!r} is not in the store; it holds {', '.join(store.sites[:8])} …")
    d = int(store.manifest["dims"][site])
    if not 0 <= int(neuron) < d:
        raise NeuronError(f"neuron {neuron} is out of range: {site!r} has {d} neurons (0..{d - 1})")
    neuron = int(neuron)
    acts = np.concatenate([blk[:, neuron] for _, blk in store.iter_rows(site)]).astype(np.float64)
    if acts.size == 0:
        raise NeuronError("the store has no rows")
    tok = store.tokenizer() or (subject.tokenizer if subject is not None else None)
    order = np.argsort(acts, kind="stable")
    top, bottom = order[::-1][:n_examples], order[:n_examples]

    def examples(rows: np.ndarray) -> pd.DataFrame:
        toks = decode_tokens(tok, store.meta("token_id")[rows]) if tok is not None else [""] * len(rows)
        frame = pd.DataFrame(
            {
                "activation": acts[rows],
                "example_id": store.meta("example_id")[rows],
                "position": store.meta("position")[rows],
                "token": [t if t is not None else "<special>" for t in toks],
                "context": _contexts(store, tok, rows, context),
            }
        )
        if labels is not None:
            frame["label"] = np.asarray(labels)[rows]
        return frame

    edges = np.histogram_bin_edges(acts, bins=n_bins)
    hist_rows = []
    if labels is not None:
        lab = np.asarray(labels)
        if lab.shape != acts.shape:
            raise NeuronError(
                f"labels must have one value per stored row ({acts.size}), got shape {lab.shape}"
            )
        groups = [(str(v), acts[lab == v]) for v in np.unique(lab) if v is not None and v != -1]
    else:
        groups = [("all", acts)]
    for name, a in groups:
        counts, _ = np.histogram(a, bins=edges)
        for i, c in enumerate(counts):
            hist_rows.append(
                {"label": name, "bin_left": edges[i], "bin_right": edges[i + 1], "count": int(c)}
            )
    promoted = (
        promoted_tokens(subject, site, neuron)
        if subject is not None
        else pd.DataFrame(columns=["direction", "token", "logit"])
    )
    if result is not None:
        rk = result.rankings
        ranks = rk[(rk.site == site) & (rk.neuron == neuron)][["feature", "ranking", "rank", "score"]]
        ranks = ranks.reset_index(drop=True)
    else:
        ranks = pd.DataFrame(columns=["feature", "ranking", "rank", "score"])
    stats = {
        "mean": float(acts.mean()),
        "std": float(acts.std()),
        "max": float(acts.max()),
        "min": float(acts.min()),
        "frac_active": float((acts > 0).mean()),
    }
    with torch.no_grad():
        return NeuronResult(
            site=site,
            neuron=neuron,
            top_examples=examples(top),
            bottom_examples=examples(bottom),
            histogram=pd.DataFrame(hist_rows),
            promoted_tokens=promoted,
            rankings=ranks,
            stats=stats,
        )
