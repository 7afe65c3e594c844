"""Attacks on text models: embedding-space PGD and a greedy gradient-ranked word-substitution attack.

Both work for sequence classifiers (``logits [batch, n_classes]``) and causal LMs (the next-token logits
at the last real position; labels are token ids).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..result import Result
from .objectives import check_not_probabilities

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go


@dataclasses.dataclass(frozen=True)
class TextAttackResult(Result):
    """A text attack: before/after predictions and (for substitutions and snapped embeddings) the new text.

    Attributes:
        texts, adversarial_texts: inputs and attacked texts (for embedding PGD: the perturbed embeddings
            snapped to their nearest vocabulary tokens — usually *not* readable, which is the point of
            the substitution attack).
        success: prediction moved off the label (or onto the target) — with the continuous perturbation for
            embedding PGD, with the actual new text for word substitution.
        n_changed: tokens changed per text (substitution) / tokens perturbed (embedding PGD).
    """

    method: str
    texts: list[str]
    adversarial_texts: list[str]
    labels: list[int]
    targets: list[int]
    pred_before: list[int]
    pred_after: list[int]
    success: list[bool]
    n_changed: list[int]
    eps: float
    steps: int
    model: str
    class_names: list[str]

    title: ClassVar[str] = "Text adversarial examples"

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.success)) if self.success else 0.0

    def _name(self, c: int) -> str:
        return self.class_names[c] if 0 <= c < len(self.class_names) else str(c)

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(
            {
                "text": self.texts,
                "adversarial_text": self.adversarial_texts,
                "label": [self._name(c) for c in self.labels],
                "pred_before": [self._name(c) for c in self.pred_before],
                "pred_after": [self._name(c) for c in self.pred_after],
                "success": self.success,
                "n_changed": self.n_changed,
            }
        )

    def figure(self) -> go.Figure:
        import plotly.graph_objects as go

        from ..report.figures import apply_style

        fig = go.Figure(go.Histogram(x=self.n_changed))
        fig.update_layout(title={"text": f"{self.method}: success {self.success_rate:.0%}"})
        fig.update_xaxes(title_text="tokens changed")
        return apply_style(fig, height=300)

    def summary(self) -> str:
        return (
            f"{self.method} on {len(self.texts)} text(s) of {self.model}: success {self.success_rate:.0%}, "
            f"median {float(np.median(self.n_changed)) if self.n_changed else 0:.0f} token(s) changed."
        )


def _text_subject(model: Any) -> Any:
    if getattr(model, "tokenizer", None) is None or not hasattr(model, "model"):
        raise ConfigError(
            "text attacks need a layerscope Subject with a tokenizer (e.g. layerscope.load(...))"
        )
    if not hasattr(model.model, "get_input_embeddings"):
        raise ConfigError(f"{model.name} has no input embedding layer (get_input_embeddings)")
    return model


def _class_logits(out: Any, attention_mask: torch.Tensor) -> torch.Tensor:
    logits = getattr(out, "logits", out)
    if isinstance(logits, tuple | list):
        logits = logits[0]
    if logits.ndim == 3:  # causal LM: next-token logits at the last real position
        pos = torch.arange(attention_mask.shape[1], device=logits.device)
        last = (attention_mask * pos).argmax(1)
        logits = logits[torch.arange(len(logits), device=logits.device), last]
    if logits.ndim != 2:
        raise ConfigError(f"cannot read class logits from a model output of shape {tuple(logits.shape)}")
    return logits.float()


def _run(subject: Any, embeds: torch.Tensor, enc: dict[str, torch.Tensor]) -> torch.Tensor:
    kw = {"inputs_embeds": embeds, "attention_mask": enc["attention_mask"]}
    if "token_type_ids" in enc:
        kw["token_type_ids"] = enc["token_type_ids"]
    return _class_logits(subject.model(**kw), enc["attention_mask"])


def _encode(subject: Any, texts: Sequence[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    if isinstance(texts, str) or not texts or not all(isinstance(t, str) and t for t in texts):
        raise ConfigError("texts must be a non-empty list of non-empty strings")
    enc = subject.tokenize(list(texts), offsets=True)
    dev = subject.device
    special = enc.get("special_tokens_mask")
    batch = {k: v.to(dev) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    editable = batch["attention_mask"].bool()
    if special is not None:
        editable &= ~special.to(dev).bool()
    return batch, editable


def _labels(values: Any, n: int, name: str, n_out: int) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(values)).long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(n).clone()
    if len(t) != n:
        raise ConfigError(f"{n} texts but {len(t)} {name}")
    if bool(((t < 0) | (t >= n_out)).any()):
        raise ConfigError(f"{name} must be class/token indices in 0..{n_out - 1}")
    return t


def pgd_embeddings(
    model: Any,
    texts: Sequence[str],
    labels: Any,
    *,
    eps: float = 1.0,
    alpha: float | None = None,
    steps: int = 20,
    targeted: bool = False,
    targets: Any = None,
    relative: bool = True,
    seed: int = 0,
) -> TextAttackResult:
    """PGD on the input embeddings of the real (non-special, non-padding) tokens, per-token L2 ball.

    Args:
        model: a text ``Subject`` (sequence classifier or causal LM).
        labels: true classes (or next-token ids for a causal LM).
        eps: per-token L2 radius; with ``relative=True`` in units of the mean embedding norm of the vocabulary.
        alpha: step size (default ``2.5 · eps / steps``).
        targeted, targets: push towards ``targets`` instead of away from ``labels``.
    """
    subject = _text_subject(model)
    if not isinstance(eps, int | float) or eps <= 0:
        raise ConfigError(f"eps must be > 0, got {eps!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps must be an integer >= 1, got {steps!r}")
    enc, editable = _encode(subject, texts)
    table = subject.model.get_input_embeddings().weight.detach()  # vocab, d
    scale = float(table.norm(dim=1).mean()) if relative else 1.0
    e = float(eps) * scale
    a = (float(alpha) * scale) if alpha is not None else 2.5 * e / steps
    module = subject.model
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            base = subject.model.get_input_embeddings()(enc["input_ids"]).detach()  # batch, pos, d
            clean = _run(subject, base, enc)
        check_not_probabilities(clean)
        n_out = clean.shape[1]
        y = _labels(labels, len(base), "labels", n_out).to(base.device)
        t = (
            _labels(targets, len(base), "targets", n_out).to(base.device)
            if targeted
            else torch.full_like(y, -1)
        )
        if targeted and targets is None:
            raise ConfigError("a targeted attack needs targets")
        goal = t if targeted else y
        sign = -1.0 if targeted else 1.0
        m = editable.unsqueeze(-1).to(base.dtype)
        delta = torch.zeros_like(base)
        for _ in range(steps):
            delta.requires_grad_(True)
            loss = F.cross_entropy(_run(subject, base + delta * m, enc), goal, reduction="sum")
            (g,) = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                g = g * m
                delta = delta + sign * a * g / g.norm(dim=-1, keepdim=True).clamp_min(1e-12)
                norms = delta.norm(dim=-1, keepdim=True).clamp_min(1e-12)
                delta = delta * torch.clamp(e / norms, max=1.0)
        with torch.no_grad():
            adv = base + delta * m
            after = _run(subject, adv, enc).argmax(1)
            # nearest vocabulary token (cosine) of every perturbed embedding, to show what it "reads as"
            near = (F.normalize(adv, dim=-1) @ F.normalize(table, dim=-1).T).argmax(-1)
            ids = torch.where(editable, near, enc["input_ids"])
    finally:
        module.train(was_training)
    tok = subject.tokenizer
    before = clean.argmax(1)
    success = (after == t) if targeted else (after != y)
    changed = ((ids != enc["input_ids"]) & editable).sum(1)
    return TextAttackResult(
        method="embedding PGD",
        texts=list(texts),
        adversarial_texts=tok.batch_decode(ids, skip_special_tokens=True),
        labels=y.tolist(),
        targets=t.tolist(),
        pred_before=before.tolist(),
        pred_after=after.tolist(),
        success=[bool(s) for s in success.tolist()],
        n_changed=changed.tolist(),
        eps=float(eps),
        steps=steps,
        model=subject.name,
        class_names=_class_names(subject, n_out),
    )


def _class_names(subject: Any, n_out: int) -> list[str]:
    cfg = getattr(subject.model, "config", None)
    id2label = getattr(cfg, "id2label", None)
    if isinstance(id2label, dict) and len(id2label) == n_out:
        return [str(id2label[i]) for i in range(n_out)]
    return []


def _word_vocab(tokenizer: Any) -> tuple[torch.Tensor, list[str]]:
    """Ids of vocabulary tokens that are whole alphabetic words (readable substitutes)."""
    toks = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = set(getattr(tokenizer, "all_special_tokens", []))
    keep = []
    for i, tk in enumerate(toks):
        if tk is None or tk in special:
            continue
        word = tk[1:] if tk[:1] in ("Ġ", "▁") else tk
        if tk.startswith("##") or not word.isalpha() or len(word) < 2:
            continue
        keep.append(i)
    return torch.tensor(keep, dtype=torch.long), toks


def word_substitution(
    model: Any,
    texts: Sequence[str],
    labels: Any,
    *,
    max_subs: int = 3,
    n_candidates: int = 32,
    targeted: bool = False,
    targets: Any = None,
) -> TextAttackResult:
    """Greedy word substitution: each round, rank (position, word) swaps by the first-order loss change
    ``(e_new - e_old) · ∇``, evaluate the best ``n_candidates`` in one batch, keep the best real one.

    Only whole-word tokens are replaced, and only by whole alphabetic vocabulary words, so the text stays
    readable. Texts are attacked one after another (each round's candidates share one batch).
    """
    subject = _text_subject(model)
    if not isinstance(max_subs, int) or max_subs < 1:
        raise ConfigError(f"max_subs must be an integer >= 1, got {max_subs!r}")
    vocab_ids, _toks = _word_vocab(subject.tokenizer)
    if len(vocab_ids) == 0:
        raise ConfigError("the tokenizer has no whole-word tokens to substitute")
    enc_all, _ = _encode(subject, texts)
    emb = subject.model.get_input_embeddings()
    table = emb.weight.detach()
    word_set = set(vocab_ids.tolist())
    vocab_ids = vocab_ids.to(table.device)
    module = subject.model
    was_training = module.training
    module.eval()
    out_texts, before, after, success, changed, ys, ts = [], [], [], [], [], [], []
    try:
        with torch.no_grad():
            clean = _run(subject, emb(enc_all["input_ids"]), enc_all)
        check_not_probabilities(clean)
        n_out = clean.shape[1]
        y_all = _labels(labels, len(texts), "labels", n_out)
        if targeted and targets is None:
            raise ConfigError("a targeted attack needs targets")
        t_all = _labels(targets, len(texts), "targets", n_out) if targeted else torch.full_like(y_all, -1)
        for k, text in enumerate(texts):
            enc, editable = _encode(subject, [text])
            ids = enc["input_ids"].clone()  # 1, pos
            goal = int(t_all[k] if targeted else y_all[k])
            sign = -1.0 if targeted else 1.0  # we maximise sign * CE(goal)
            allowed = editable[0] & torch.tensor([int(i) in word_set for i in ids[0]], device=ids.device)
            n_sub = 0
            pred0 = int(clean[k].argmax())
            pred = pred0
            for _ in range(max_subs):
                if (pred == goal) if targeted else (pred != goal):
                    break
                e = emb(ids).detach().requires_grad_(True)
                loss = sign * F.cross_entropy(_run(subject, e, enc), torch.tensor([goal], device=ids.device))
                (g,) = torch.autograd.grad(loss, e)
                with torch.no_grad():
                    gain = g[0] @ table[vocab_ids].T - (g[0] * e[0]).sum(-1, keepdim=True)  # pos, n_vocab
                    gain[~allowed] = -float("inf")
                    top = gain.flatten().topk(min(n_candidates, int(torch.isfinite(gain).sum()))).indices
                    if len(top) == 0:
                        break
                    pos = top // gain.shape[1]
                    new = vocab_ids[top % gain.shape[1]]
                    cand = ids.repeat(len(top), 1)
                    cand[torch.arange(len(top)), pos] = new
                    cenc = {kk: v.expand(len(top), -1) for kk, v in enc.items()}
                    logits = _run(subject, emb(cand), cenc)
                    closs = sign * F.cross_entropy(
                        logits, torch.full((len(top),), goal, device=ids.device), reduction="none"
                    )
                    best = int(closs.argmax())
                    if float(closs[best]) <= float(loss):
                        break
                    ids = cand[best : best + 1]
                    allowed[pos[best]] = False
                    n_sub += 1
                    pred = int(logits[best].argmax())
            out_texts.append(subject.tokenizer.decode(ids[0], skip_special_tokens=True))
            before.append(pred0)
            after.append(pred)
            success.append((pred == goal) if targeted else (pred != goal))
            changed.append(n_sub)
            ys.append(int(y_all[k]))
            ts.append(int(t_all[k]))
    finally:
        module.train(was_training)
    return TextAttackResult(
        method="word substitution",
        texts=list(texts),
        adversarial_texts=out_texts,
        labels=ys,
        targets=ts,
        pred_before=before,
        pred_after=after,
        success=[bool(s) for s in success],
        n_changed=changed,
        eps=0.0,
        steps=max_subs,
        model=subject.name,
        class_names=_class_names(subject, n_out),
    )
