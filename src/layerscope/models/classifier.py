"""A cached sentiment classifier: a linear head on frozen MiniLM (mean-pooled last layer), MultiEmo labels.

``sentiment_classifier()`` returns a ``Subject`` whose forward gives class logits, so attribution, DeepView
and every other analysis that needs "a classifier" can use the embedded defaults with no download. The head
is trained once (a few seconds on a CPU once the encoder features are computed) and cached under
``cache_root()/models/``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._io import atomic_path, atomic_write_json, cache_root
from ..errors import ConfigError
from .adapter import Adapter
from .subject import Subject

#: Class order of the head (sorted class names of the MultiEmo ``sentiment`` label).
SENTIMENT_CLASSES = ("ambivalent", "negative", "neutral", "positive")


class MeanPoolClassifier(nn.Module):
    """A BERT-family encoder, masked mean pooling of its last layer, and a linear ``classifier`` head.

    Named like transformers' sequence classifiers (``bert`` + ``classifier``) so the BERT site table
    resolves ``embed``, ``blocks.{i}.*``, ``final`` and ``logits`` on it.
    """

    base_model_prefix = "bert"

    def __init__(self, encoder: nn.Module, n_classes: int) -> None:
        super().__init__()
        self.bert = encoder
        self.config = encoder.config
        config: Any = encoder.config
        self.classifier = nn.Linear(int(config.hidden_size), n_classes)

    def set_attn_implementation(self, impl: str) -> None:
        """Switch the encoder's attention kernel (``eager`` exposes attention patterns)."""
        bert: Any = self.bert
        bert.set_attn_implementation(impl)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> Any:
        from transformers.modeling_outputs import SequenceClassifierOutput

        bert: Any = self.bert
        out = bert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            inputs_embeds=inputs_embeds,
        )
        hidden = out.last_hidden_state  # batch, pos, d_model
        if attention_mask is None:
            pooled = hidden.mean(1)
        else:
            m = attention_mask.to(hidden.dtype).unsqueeze(-1)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
        return SequenceClassifierOutput(logits=self.classifier(pooled))


def _mean_pooled(subject: Subject, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
    """Masked mean of the encoder's last layer for each text (length-sorted batches)."""
    order = np.argsort([len(t) for t in texts])
    config: Any = subject.model.config
    out = np.zeros((len(texts), int(config.hidden_size)), dtype=np.float32)
    with torch.no_grad():
        for s in range(0, len(texts), batch_size):
            idx = order[s : s + batch_size]
            enc = subject.tokenize([texts[i] for i in idx], max_length=128)
            enc = {k: v.to(subject.device) for k, v in enc.items()}
            hidden = subject.model(**enc).last_hidden_state
            m = enc["attention_mask"].to(hidden.dtype).unsqueeze(-1)
            out[idx] = ((hidden * m).sum(1) / m.sum(1).clamp_min(1.0)).cpu().numpy()
    return out


def sentiment_classifier(
    *,
    n_train: int = 4000,
    seed: int = 0,
    C: float = 1.0,
    cache_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    log: Any = None,
) -> Subject:
    """MiniLM with a linear sentiment head (4 MultiEmo classes), trained once and cached.

    Args:
        n_train: training sentences (a seeded random sample of the MultiEmo corpus).
        seed: sampling seed.
        C: inverse L2 strength of the logistic-regression head (scikit-learn's ``C``).
        cache_dir: where the head is cached (default ``cache_root()/models``).
        device: where to put the model.
        log: optional ``log(str)`` for progress messages.

    Returns:
        A ``Subject`` (family ``bert``) whose forward returns ``SequenceClassifierOutput(logits=[batch, 4])``;
        ``class_names`` are ``ambivalent, negative, neutral, positive``. ``subject.source`` names the cached
        head file; ``subject.revision`` records the training settings; held-out accuracy is in the JSON beside it.
    """
    from safetensors.torch import load_file, save_file

    from .zoo import load

    if n_train < 8:
        raise ConfigError(f"n_train must be at least 8 sentences, got {n_train}")
    if C <= 0:
        raise ConfigError(f"C must be positive, got {C}")
    encoder = load("minilm")
    key = hashlib.sha256(f"{encoder.revision}|{n_train}|{seed}|{C}".encode()).hexdigest()[:12]
    folder = Path(cache_dir) if cache_dir is not None else cache_root() / "models"
    weights = folder / f"minilm-sentiment-{key}.safetensors"
    meta_path = weights.with_suffix(".json")
    model = MeanPoolClassifier(encoder.model, len(SENTIMENT_CLASSES))
    if weights.is_file() and meta_path.is_file():
        state = load_file(str(weights))
        model.classifier.load_state_dict(state)
    else:
        state, meta = _train_head(encoder, n_train=n_train, seed=seed, C=C, log=log)
        model.classifier.load_state_dict(state)
        with atomic_path(weights) as tmp:
            save_file({k: v.contiguous() for k, v in state.items()}, str(tmp))
        atomic_write_json(meta_path, meta)
    model.eval().to(device)
    for p in model.parameters():
        p.requires_grad_(True)
    return Subject(
        model=model,
        adapter=Adapter.for_model(model),
        name="minilm-sentiment",
        tokenizer=encoder.tokenizer,
        revision=f"{encoder.revision}:head-{key}",
        source=str(weights),
        class_names=list(SENTIMENT_CLASSES),
    )


def classifier_metadata(subject: Subject) -> dict[str, Any]:
    """The training record (accuracy, sizes) saved beside a cached head, or ``{}``."""
    path = Path(subject.source).with_suffix(".json")
    return json.loads(path.read_text()) if path.is_file() else {}


def _train_head(
    encoder: Subject, *, n_train: int, seed: int, C: float, log: Any
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from sklearn.linear_model import LogisticRegression

    from ..data.corpus import multiemo

    n_test = max(200, n_train // 5)
    data = multiemo(limit=n_train + n_test, seed=seed)
    texts = list(data.texts)
    labels = np.asarray(data.labels["sentiment"])
    cls = {c: i for i, c in enumerate(SENTIMENT_CLASSES)}
    y = np.array([cls[str(v)] for v in labels])
    if log:
        log(f"training the MiniLM sentiment head on {n_train} MultiEmo sentences (cached afterwards)")
    feats = _mean_pooled(encoder, texts)
    clf = LogisticRegression(C=C, max_iter=2000)
    clf.fit(feats[:n_train], y[:n_train])
    acc = float(clf.score(feats[n_train:], y[n_train:]))
    state = {
        "weight": torch.tensor(clf.coef_, dtype=torch.float32),
        "bias": torch.tensor(clf.intercept_, dtype=torch.float32),
    }
    meta = {
        "classes": list(SENTIMENT_CLASSES),
        "n_train": n_train,
        "n_test": len(texts) - n_train,
        "heldout_accuracy": acc,
        "majority_baseline": float(np.bincount(y[n_train:]).max() / len(y[n_train:])),
        "seed": seed,
        "C": C,
        "encoder_revision": encoder.revision,
    }
    if log:
        log(f"sentiment head: held-out accuracy {acc:.3f} on {meta['n_test']} sentences")
    return state, meta
