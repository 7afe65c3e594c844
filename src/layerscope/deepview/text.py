"""DeepView for BERT-family sentence classifiers (Roberts et al. 2024) on the embedded MiniLM + MultiEmo.

The embedding a map is built on is the sentence vector the classifier head reads (the mean of the final
block's residual stream over real tokens); the "model" is the head. Three cases, as in the paper:

* ``"frozen"``: frozen MiniLM sentence vectors + a trained MLP head;
* ``"finetuned"``: MiniLM fine-tuned end to end with a linear head (a short CPU fine-tune, cached);
* ``"multitask"``: one MiniLM fine-tuned with two heads (sentiment + sentence-length bucket), viewed per head.

Everything trained is cached under ``cache_dir`` (default ``cache_root()/deepview``) as safetensors.
Adversarial points come from embedding-space PGD on the head (:func:`pgd_embeddings`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._io import atomic_path, cache_root
from ..errors import ConfigError
from ._core import DEFAULT_LAMBDAS, deepview, prob_fn_from_module
from .result import DeepViewResult

CASES = ("frozen", "finetuned", "multitask")
SENTIMENT = ["negative", "neutral", "positive", "ambivalent"]
LENGTH_BUCKETS = ["short (<12 words)", "medium (12-24)", "long (>24)"]


def length_bucket(texts: Sequence[str]) -> np.ndarray:
    """A corpus-derived second task: sentence length in words, 3 buckets (<12, 12-24, >24)."""
    n = np.array([len(t.split()) for t in texts])
    return np.digitize(n, [12, 25]).astype(np.int64)


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))


def _load_tensors(path: Path) -> dict[str, torch.Tensor] | None:
    from safetensors.torch import load_file

    return load_file(str(path)) if path.is_file() else None


# -- data ----------------------------------------------------------------------------------------------------
def split_corpus(
    n_view: int, n_train: int, *, seed: int = 0
) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """MultiEmo sentences: ``n_view`` to map and ``n_train`` disjoint ones (by text) to train on."""
    from ..data.corpus import multiemo

    ds = multiemo(limit=min(57_000, int((n_view + n_train) * 1.05) + 50), seed=seed)
    lookup = {n: i for i, n in enumerate(SENTIMENT)}
    seen: set[str] = set()
    texts, labels = [], []
    for t, lab in zip(ds.texts, ds.labels["sentiment"], strict=True):
        if t in seen:
            continue
        seen.add(t)
        texts.append(t)
        labels.append(lookup[lab])
    if len(texts) < n_view + n_train:
        raise ConfigError(
            f"MultiEmo has {len(texts)} distinct sentences here; ask for fewer than {n_view + n_train}"
        )
    y = np.asarray(labels, dtype=np.int64)
    return texts[:n_view], y[:n_view], texts[n_view : n_view + n_train], y[n_view : n_view + n_train]


# -- encoders ------------------------------------------------------------------------------------------------
def _mean_pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp_min(1.0)


def sentence_embeddings(
    subject: Any, texts: Sequence[str], *, batch_size: int = 64, max_length: int = 128
) -> np.ndarray:
    """Mean over real tokens of the final block's residual stream (read with ``capture``), ``[N, d_model]``."""
    from ..capture import capture

    site = f"blocks.{subject.n_layers - 1}.resid_post"
    out = []
    order = np.argsort([len(t) for t in texts])  # length-sorted batches: less padding
    subject.model.eval()
    for s in range(0, len(texts), batch_size):
        idx = order[s : s + batch_size]
        enc = subject.tokenize([texts[i] for i in idx], max_length=max_length)
        enc = {k: v.to(subject.device) for k, v in enc.items()}
        with torch.inference_mode(), capture(subject, [site]) as tr:
            subject.forward(enc)
        out.append(_mean_pool(tr[site].float(), enc["attention_mask"]).cpu().numpy())
    emb = np.empty((len(texts), out[0].shape[1]), dtype=np.float32)
    emb[order] = np.concatenate(out)
    return emb


def _encode_grad(subject: Any, texts: Sequence[str], max_length: int) -> torch.Tensor:
    enc = subject.tokenize(list(texts), max_length=max_length)
    enc = {k: v.to(subject.device) for k, v in enc.items()}
    h = subject.forward(enc).last_hidden_state
    return _mean_pool(h, enc["attention_mask"])


# -- heads ---------------------------------------------------------------------------------------------------
def make_head(d: int, n_classes: int, *, hidden: int = 128, seed: int = 0) -> nn.Module:
    """MLP head: Linear(d, hidden) → GELU → Linear(hidden, n_classes) (hidden = 0: logistic regression)."""
    torch.manual_seed(seed)
    if hidden <= 0:
        return nn.Linear(d, n_classes)
    return nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, n_classes))


def train_head(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    hidden: int = 128,
    epochs: int = 60,
    lr: float = 3e-3,
    weight_decay: float = 1e-3,
    seed: int = 0,
) -> nn.Module:
    """Full-batch Adam on cross-entropy (class-balanced weights); deterministic for a seed."""
    head = make_head(x.shape[1], n_classes, hidden=hidden, seed=seed)
    xt, yt = torch.from_numpy(np.asarray(x, np.float32)), torch.from_numpy(np.asarray(y, np.int64))
    counts = torch.bincount(yt, minlength=n_classes).float().clamp_min(1)
    loss_fn = nn.CrossEntropyLoss(weight=counts.sum() / (n_classes * counts))
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    bs = 256
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for s in range(0, len(xt), bs):
            b = perm[s : s + bs]
            opt.zero_grad()
            loss_fn(head(xt[b]), yt[b]).backward()
            opt.step()
    return head.eval()


class _MultiHead(nn.Module):
    def __init__(self, d: int, sizes: Sequence[int]) -> None:
        super().__init__()
        self.heads = nn.ModuleList([nn.Linear(d, k) for k in sizes])


def fine_tune(
    subject: Any,
    texts: Sequence[str],
    targets: Sequence[np.ndarray],
    sizes: Sequence[int],
    *,
    epochs: int = 2,
    batch_size: int = 32,
    lr: float = 5e-5,
    head_lr: float = 2e-3,
    max_length: int = 48,
    seed: int = 0,
    log: Callable[[str], Any] | None = None,
) -> list[nn.Module]:
    """Fine-tune ``subject.model`` in place with one linear head per target (summed cross-entropies)."""
    torch.manual_seed(seed)
    d = int(subject.model.config.hidden_size)
    mh = _MultiHead(d, sizes)
    opt = torch.optim.AdamW(
        [{"params": subject.model.parameters(), "lr": lr}, {"params": mh.parameters(), "lr": head_lr}],
        weight_decay=0.01,
    )
    ys = [torch.from_numpy(np.asarray(t, np.int64)) for t in targets]
    g = torch.Generator().manual_seed(seed)
    steps = epochs * ((len(texts) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * max(0.0, 1 - s / steps))
    subject.model.train()
    step = 0
    for ep in range(epochs):
        perm = torch.randperm(len(texts), generator=g).tolist()
        for s in range(0, len(texts), batch_size):
            b = perm[s : s + batch_size]
            z = _encode_grad(subject, [texts[i] for i in b], max_length)
            loss = torch.stack(
                [nn.functional.cross_entropy(h(z), y[b]) for h, y in zip(mh.heads, ys, strict=True)]
            ).sum()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(subject.model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            if log and step % 20 == 0:
                log(f"fine-tune epoch {ep + 1}, step {step}/{steps}: loss {float(loss.detach()):.3f}")
    subject.model.eval()
    return [h.eval() for h in mh.heads]


# -- adversarial points ----------------------------------------------------------------------------------------
def pgd_embeddings(
    head: nn.Module, x: np.ndarray, y: np.ndarray, *, eps: float = 0.5, steps: int = 30, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Untargeted L2 PGD in embedding space on ``head``: perturbations of norm ≤ ``eps``·‖x‖ that raise the loss.

    Returns:
        ``(x_adv, flipped)``: perturbed embeddings and whether each one's prediction left ``y``.
    """
    torch.manual_seed(seed)
    xt = torch.from_numpy(np.asarray(x, np.float32))
    yt = torch.from_numpy(np.asarray(y, np.int64))
    radius = eps * xt.norm(dim=1, keepdim=True)
    delta = torch.zeros_like(xt, requires_grad=True)
    alpha = 2.5 * radius / steps
    for _ in range(steps):
        loss = nn.functional.cross_entropy(head(xt + delta), yt)
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            delta += alpha * grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
            scale = (radius / delta.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp(max=1.0)
            delta *= scale
    with torch.no_grad():
        xa = xt + delta
        flipped = head(xa).argmax(1) != yt
    return xa.numpy(), flipped.numpy()


# -- the three cases ------------------------------------------------------------------------------------------
def _load_minilm() -> Any:
    from ..models import load

    return load("minilm")


def case_models(
    case: str,
    *,
    n_view: int = 500,
    n_train: int = 3000,
    n_finetune: int = 1500,
    seed: int = 0,
    cache_dir: Path | None = None,
    log: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """Embeddings of the viewed sentences and the head(s) of one case (trained once, then cached).

    Returns:
        ``texts``, ``labels`` (sentiment), ``embeddings`` ``[n_view, 384]`` and ``heads``: task name →
        ``(head module, class names, true labels)``.
    """
    if case not in CASES:
        raise ConfigError(f"case must be one of {CASES}, got {case!r}")
    say = log or (lambda _m: None)
    cache = Path(cache_dir) if cache_dir is not None else cache_root() / "deepview"
    cache.mkdir(parents=True, exist_ok=True)
    n_fit = n_train if case == "frozen" else n_finetune
    texts, y, tr_texts, tr_y = split_corpus(n_view, n_fit, seed=seed)
    key = _key(case, n_view, n_fit, seed, texts[:3], tr_texts[:3], 2)
    path = cache / f"{case}-{key}.safetensors"
    sizes = [len(SENTIMENT)] + ([len(LENGTH_BUCKETS)] if case == "multitask" else [])
    cached = _load_tensors(path)
    heads: list[nn.Module]
    if cached is not None:
        say(f"deepview {case}: cached models {path.name}")
        emb = cached["view_embeddings"].numpy()
        d = emb.shape[1]
        if case == "frozen":
            heads = [make_head(d, sizes[0])]
        else:
            heads = [nn.Linear(d, k) for k in sizes]
        for hi, h in enumerate(heads):
            h.load_state_dict(
                {k.split("/", 1)[1]: v for k, v in cached.items() if k.startswith(f"head{hi}/")}
            )
            h.eval()
    else:
        subject = _load_minilm()
        if case == "frozen":
            say(f"deepview frozen: encoding {len(tr_texts)} training sentences")
            tr_emb = sentence_embeddings(subject, tr_texts)
            heads = [train_head(tr_emb, tr_y, sizes[0], seed=seed)]
        else:
            targets = [tr_y] + ([length_bucket(tr_texts)] if case == "multitask" else [])
            say(f"deepview {case}: fine-tuning MiniLM on {len(tr_texts)} sentences (CPU, cached afterwards)")
            heads = fine_tune(subject, tr_texts, targets, sizes, epochs=2, max_length=48, seed=seed, log=say)
        emb = sentence_embeddings(subject, texts)
        tensors = {"view_embeddings": torch.from_numpy(emb)}
        for hi, h in enumerate(heads):
            tensors.update({f"head{hi}/{k}": v for k, v in h.state_dict().items()})
        _save_tensors(path, tensors)
    out = {"sentiment": (heads[0], SENTIMENT, y)}
    if case == "multitask":
        out["length"] = (heads[1], LENGTH_BUCKETS, length_bucket(texts))
    return {"texts": texts, "labels": y, "embeddings": emb, "heads": out}


def text_deepview(
    case: str = "frozen",
    *,
    task: str = "sentiment",
    n_view: int = 500,
    n_train: int = 3000,
    lambdas: float | Sequence[float] = DEFAULT_LAMBDAS,
    n_steps: int = 10,
    n_adversarial: int = 0,
    adv_eps: float = 0.3,
    metric: str = "cosine",
    resolution: int = 100,
    seed: int = 0,
    cache_dir: Path | None = None,
    log: Callable[[str], Any] | None = None,
    **kwargs: Any,
) -> DeepViewResult:
    """DeepView of a MiniLM sentence classifier on MultiEmo (Roberts et al.'s setting: cosine, n = 10).

    Args:
        case: ``"frozen"``, ``"finetuned"`` or ``"multitask"``.
        task: the head to view (``"sentiment"``; ``"length"`` for the multitask model).
        n_view: sentences on the map.
        n_train: sentences the frozen case's head is trained on (disjoint from the mapped ones).
        lambdas: λ presets.
        n_steps: interpolation points per pair.
        n_adversarial: add this many PGD-perturbed copies of correctly classified sentences (diamonds).
        adv_eps: PGD radius relative to each embedding's norm.
        metric: structural distance.
        resolution: background grid size.
        seed: corpus sample, training and UMAP seed.
        cache_dir: where trained heads/fine-tuned models are cached.
        log: progress callback.
        **kwargs: passed to :func:`deepview` (``n_neighbors``, ``candidates`` …).
    """
    m = case_models(case, n_view=n_view, n_train=n_train, seed=seed, cache_dir=cache_dir, log=log)
    if task not in m["heads"]:
        raise ConfigError(f"case {case!r} has heads {sorted(m['heads'])}, not {task!r}")
    head, names, y = m["heads"][task]
    emb, texts = m["embeddings"], list(m["texts"])
    kinds = ["data"] * len(texts)
    labels = np.asarray(y)
    if n_adversarial:
        with torch.no_grad():
            pred = head(torch.from_numpy(emb)).argmax(1).numpy()
        ok = np.nonzero(pred == labels)[0][:n_adversarial]
        x_adv, flipped = pgd_embeddings(head, emb[ok], labels[ok], eps=adv_eps, seed=seed)
        emb = np.concatenate([emb, x_adv])
        texts += [
            f"[PGD ε={adv_eps:g}·‖x‖{', flipped' if f else ''}] {texts[i]}"
            for i, f in zip(ok, flipped, strict=True)
        ]
        labels = np.concatenate([labels, labels[ok]])
        kinds += ["adversarial"] * len(ok)
    return deepview(
        emb,
        prob_fn_from_module(head),
        labels=labels,
        class_names=names,
        texts=texts,
        point_kind=kinds,
        lambdas=lambdas,
        metric=metric,
        n_steps=n_steps,
        resolution=resolution,
        seed=seed,
        name=f"MiniLM {case}, {task} head, {n_view} MultiEmo sentences",
        log_fn=log,
        **kwargs,
    )
