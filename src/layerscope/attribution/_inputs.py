"""Input preparation for attribution: tokenisation with truncation warnings, words, targets, row objectives."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..capture.hooks import pick
from ..errors import ConfigError, DataError
from ..models.subject import Subject
from ._head import token_logprob


class AttributionWarning(UserWarning):
    """Something about the input was changed to make attribution possible (truncation, eval mode)."""


@dataclasses.dataclass(frozen=True)
class Continuation:
    """A multi-token target for a causal LM: the text (or token ids) that follows the prompt.

    Attributed in one teacher-forced pass: prompt + continuation is run once per integration step and every
    continuation token's log-probability gets its own gradient (rows batched, no per-token loop).
    """

    text: str | None = None
    ids: tuple[int, ...] | None = None


@dataclasses.dataclass
class Prepared:
    """A tokenised batch (or image batch) plus what attribution needs to label its scores."""

    inputs: dict[str, torch.Tensor]  # batch, pos (text) | {"x": batch, 3, H, W}
    texts: list[str]
    tokens: list[list[str]]
    word_ids: list[list[int | None]]
    offsets: list[list[tuple[int, int]]]
    special: torch.Tensor | None  # batch, pos bool: [CLS]/[SEP]/BOS kept fixed by token baselines
    attributed: torch.Tensor | None  # batch, pos bool: positions that get scores (prompt, not continuation)
    first: torch.Tensor | None  # batch: first real column
    last: torch.Tensor | None  # batch: last real column (inclusive)

    @property
    def is_text(self) -> bool:
        return "x" not in self.inputs

    @property
    def n(self) -> int:
        v = next(iter(self.inputs.values()))
        return int(v.shape[0])


def max_length_of(subject: Subject) -> int:
    """The longest input the model accepts (position embeddings), capped by the tokenizer's limit."""
    cfg = getattr(subject.model, "config", None)
    n = int(getattr(cfg, "max_position_embeddings", 0) or 0)
    tok_max = int(getattr(subject.tokenizer, "model_max_length", 0) or 0)
    if tok_max and tok_max < 1_000_000:
        n = min(n, tok_max) if n else tok_max
    return n or 512


def prepare_text(
    subject: Subject, texts: str | Sequence[str], *, continuation: Continuation | None = None
) -> Prepared:
    """Tokenise ``texts``; warn (naming the cut) and truncate what exceeds the model's maximum length."""
    if subject.tokenizer is None:
        raise ConfigError(f"{subject.name} takes images; pass an image tensor [N, 3, H, W], not text")
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise DataError("no texts to attribute; pass at least one non-empty string")
    for i, t in enumerate(texts):
        if not isinstance(t, str) or not t.strip():
            raise DataError(f"text {i} is empty; attribution needs at least one token of input")
    tok = subject.tokenizer
    cont_ids: list[int] = []
    if continuation is not None:
        if subject.kind != "causal_lm":
            raise ConfigError("a Continuation target needs a causal LM; use a class index for encoders")
        if continuation.ids is not None:
            cont_ids = [int(i) for i in continuation.ids]
        elif continuation.text:
            cont_ids = list(tok(continuation.text, add_special_tokens=False)["input_ids"])
        if not cont_ids:
            raise DataError("the continuation is empty; give text or at least one token id")
    limit = max_length_of(subject) - len(cont_ids)
    if limit < 1:
        raise DataError(f"the continuation ({len(cont_ids)} tokens) is longer than the model's maximum input")
    full = tok(texts, add_special_tokens=True, return_offsets_mapping=True, truncation=False)
    rows_ids: list[list[int]] = []
    rows_off: list[list[tuple[int, int]]] = []
    rows_words: list[list[int | None]] = []
    rows_special: list[list[bool]] = []
    for i, t in enumerate(texts):
        ids = list(full["input_ids"][i])
        offs = [tuple(o) for o in full["offset_mapping"][i]]
        words = full.word_ids(i) if hasattr(full, "word_ids") else [None] * len(ids)
        special = tok.get_special_tokens_mask(ids, already_has_special_tokens=True)
        if len(ids) > limit:
            # keep the special tokens at the end ([SEP]) and cut real tokens before them
            tail = 0
            while tail < len(ids) and special[len(ids) - 1 - tail]:
                tail += 1
            keep = list(range(limit - tail)) + list(range(len(ids) - tail, len(ids)))
            cut = [j for j in range(len(ids)) if j not in set(keep)]
            starts = [offs[j][0] for j in cut if offs[j][1] > offs[j][0]]
            cut_text = t[min(starts) :] if starts else ""
            shown = cut_text if len(cut_text) <= 60 else cut_text[:57] + "..."
            warnings.warn(
                f"text {i} has {len(ids)} tokens, more than the model's maximum {limit}; truncated, "
                f"dropping {len(cut)} tokens from character {min(starts) if starts else len(t)}: {shown!r}",
                AttributionWarning,
                stacklevel=3,
            )
            ids = [ids[j] for j in keep]
            offs = [offs[j] for j in keep]
            words = [words[j] for j in keep]
            special = [special[j] for j in keep]
        rows_ids.append(ids + cont_ids)
        rows_off.append(offs + [(0, 0)] * len(cont_ids))
        rows_words.append(list(words) + [None] * len(cont_ids))
        rows_special.append([bool(s) for s in special] + [False] * len(cont_ids))
    n_prompt = [len(r) - len(cont_ids) for r in rows_ids]
    width = max(len(r) for r in rows_ids)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    left = getattr(tok, "padding_side", "right") == "left"
    ids_t = torch.full((len(texts), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(texts), width), dtype=torch.long)
    special_t = torch.zeros((len(texts), width), dtype=torch.bool)
    attributed = torch.zeros((len(texts), width), dtype=torch.bool)
    first = torch.zeros(len(texts), dtype=torch.long)
    last = torch.zeros(len(texts), dtype=torch.long)
    for i, r in enumerate(rows_ids):
        s = width - len(r) if left else 0
        ids_t[i, s : s + len(r)] = torch.tensor(r)
        mask[i, s : s + len(r)] = 1
        special_t[i, s : s + len(r)] = torch.tensor(rows_special[i])
        attributed[i, s : s + n_prompt[i]] = True
        first[i], last[i] = s, s + len(r) - 1
    inputs = {"input_ids": ids_t, "attention_mask": mask}
    if subject.adapter.family == "bert":
        inputs["token_type_ids"] = torch.zeros_like(ids_t)
    tokens = [tok.convert_ids_to_tokens(r) for r in rows_ids]
    return Prepared(
        inputs={k: v.to(subject.device) for k, v in inputs.items()},
        texts=texts,
        tokens=tokens,
        word_ids=rows_words,
        offsets=rows_off,
        special=special_t.to(subject.device),
        attributed=attributed.to(subject.device),
        first=first,
        last=last,
    )


def prepare_images(subject: Subject, images: Any) -> Prepared:
    """Model-ready image batch: a float tensor ``[N, 3, H, W]`` (already normalised) or uint8 ``[N, H, W, 3]``."""
    if isinstance(images, torch.Tensor) and images.dtype.is_floating_point and images.ndim >= 2:
        x = images  # already in the model's input space (normalised images, feature vectors)
    elif subject.image is not None:
        x = subject.image.preprocess(images)
    else:
        raise DataError("images must be a float tensor [N, C, H, W] in the model's input space")
    if x.shape[0] == 0:
        raise DataError("no images to attribute; pass at least one")
    return Prepared(
        inputs={"x": x.to(subject.device).float()},
        texts=[],
        tokens=[],
        word_ids=[],
        offsets=[],
        special=None,
        attributed=None,
        first=None,
        last=None,
    )


def prepare(subject: Subject, inputs: Any, *, continuation: Continuation | None = None) -> Prepared:
    """Text (str / list of str) or images (tensor / array)."""
    if isinstance(inputs, Prepared):
        return inputs
    if isinstance(inputs, str) or (
        isinstance(inputs, Sequence)
        and not isinstance(inputs, torch.Tensor)
        and inputs
        and isinstance(inputs[0], str)
    ):
        return prepare_text(subject, inputs, continuation=continuation)
    if isinstance(inputs, Sequence) and not isinstance(inputs, torch.Tensor) and len(inputs) == 0:
        raise DataError("no inputs to attribute; pass at least one text or image")
    if subject.tokenizer is not None and subject.image is None:
        raise DataError(f"{subject.name} takes text; pass a string or a list of strings")
    return prepare_images(subject, inputs)


# -- targets -----------------------------------------------------------------------------------------
@dataclasses.dataclass
class Pairs:
    """One attribution problem per (example, target) pair: what to differentiate and where to read it."""

    sample: torch.Tensor  # S: example row
    token: torch.Tensor  # S: class index / token id (-1 for callables)
    position: torch.Tensor  # S: column of the logits to read (causal LMs), -1 for pooled outputs
    labels: list[str]
    kind: str  # "logit" | "logprob" | "prob" | "callable"
    fn: Callable[[Any], torch.Tensor] | None = None


def _n_outputs(subject: Subject, logits: torch.Tensor) -> int:
    return int(logits.shape[-1])


def make_pairs(
    subject: Subject,
    prep: Prepared,
    target: Any,
    *,
    n_outputs: int,
    output: str = "logit",
    continuation: Continuation | None = None,
) -> Pairs:
    """Expand a target spec (int, list of ints per example, Continuation, callable) into pairs."""
    n = prep.n
    dev = torch.device("cpu")
    lm = prep.is_text and subject.kind == "causal_lm"
    last = prep.last if prep.last is not None else torch.full((n,), -1)
    if output not in ("logit", "logprob", "prob"):
        raise ConfigError(f"output must be 'logit', 'logprob' or 'prob', got {output!r}")
    if continuation is not None:
        assert prep.attributed is not None
        n_cont = int((~prep.attributed[0].cpu() & (prep.inputs["attention_mask"][0].cpu() > 0)).sum())
        ids = prep.inputs["input_ids"].cpu()
        samples, toks, poss, labels = [], [], [], []
        tok: Any = subject.tokenizer
        for b in range(n):
            end = int(last[b])
            for t in range(n_cont):
                col = end - n_cont + 1 + t
                samples.append(b)
                toks.append(int(ids[b, col]))
                poss.append(col - 1)
                labels.append(f"{t}:{tok.convert_ids_to_tokens(int(ids[b, col]))}")
        return Pairs(torch.tensor(samples), torch.tensor(toks), torch.tensor(poss), labels, "logprob")
    if callable(target):
        return Pairs(
            torch.arange(n), torch.full((n,), -1), torch.full((n,), -1), ["objective"] * n, "callable", target
        )
    if target is None:
        raise ConfigError(
            "pass target=: a class index, a token id, one per example, a Continuation or a callable"
        )
    if isinstance(target, torch.Tensor):
        target = target.tolist()
    per = [target] * n if isinstance(target, int) else list(target)
    if len(per) != n:
        raise ConfigError(f"{len(per)} targets for {n} inputs; give one target or one per input")
    for t in per:
        if not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < n_outputs:
            what = "token ids" if lm else "classes"
            raise ConfigError(
                f"target {t!r} is out of range: the model has {n_outputs} {what} (valid: 0..{n_outputs - 1})"
            )
    names = subject.class_names
    labels = [names[t] if names and t < len(names) else str(t) for t in per]
    tok = subject.tokenizer
    if lm and tok is not None:
        labels = [tok.convert_ids_to_tokens(t) for t in per]
    pos = last.clone() if lm else torch.full((n,), -1)
    return Pairs(torch.arange(n), torch.tensor(per, device=dev), pos, labels, output)


def objective_values(
    out: Any,
    pairs: Pairs,
    pair_idx: torch.Tensor,
    col0: int,
    *,
    head: torch.Tensor | None = None,
    row: torch.Tensor | None = None,
    grad: bool = True,
) -> torch.Tensor:
    """The scalar objective of each row (``pair_idx`` names its pair); ``col0`` is the chunk's first column.

    ``head``: the output head's weight ``[vocab, d]`` when ``out`` holds final hidden states instead of logits
    (the head is applied at the target positions only, see :mod:`layerscope.attribution._head`).
    ``row``: the output row of each entry of ``pair_idx`` (default: entry i reads row i), so several targets
    of one row are evaluated in one batched head product. ``grad=False``: values only (no derivative will
    be taken), which halves the head work.
    """
    if pairs.kind == "callable":
        assert pairs.fn is not None
        v = pairs.fn(out)
        if not isinstance(v, torch.Tensor) or v.ndim != 1 or v.shape[0] != len(pair_idx):
            raise ConfigError("a callable target must return one scalar per row: a 1-D tensor [batch]")
        return v
    logits = pick(out, 0)
    dev = logits.device
    tok = pairs.token.to(dev)[pair_idx]
    rows = torch.arange(len(pair_idx), device=dev)
    if logits.ndim == 3:
        pos = pairs.position.to(dev)[pair_idx] - col0
        logits = logits[rows if row is None else row.to(dev), pos]  # rows, d_vocab (or d with ``head``)
    elif row is not None:
        logits = logits[row.to(dev)]
    if head is not None:
        if pairs.kind == "logit":
            return (logits * head[tok]).sum(-1)
        lp = token_logprob(logits, head, tok, grad=grad)
        return lp if pairs.kind == "logprob" else lp.exp()
    if pairs.kind == "logprob":
        logits = torch.log_softmax(logits, -1)
    elif pairs.kind == "prob":
        logits = torch.softmax(logits, -1)
    return logits[rows, tok]
