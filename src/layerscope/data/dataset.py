"""``TextDataset``: texts, optional words with character spans, and labels — the input of extraction."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError

_WORD = re.compile(r"\S+")


@dataclasses.dataclass(frozen=True)
class TextDataset:
    """A text dataset.

    Attributes:
        texts: one string per example.
        words: per example, its words (CoNLL-U/spaCy tokens, or whitespace-split text).
        word_spans: per example, the ``(start, end)`` character span of each word in ``texts``.
        labels: name -> per-example labels (sentence level: one value per example; word level: one list
            per example, as long as its words).
        ids: one id per example (defaults to ``"0"``, ``"1"``, …).
        name: a short name shown in manifests and reports.
    """

    texts: list[str]
    words: list[list[str]]
    word_spans: list[list[tuple[int, int]]]
    labels: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    ids: list[str] = dataclasses.field(default_factory=list)
    name: str = "dataset"

    def __post_init__(self) -> None:
        n = len(self.texts)
        if n == 0:
            raise DataError(f"dataset {self.name!r} is empty; give at least one text")
        if len(self.words) != n or len(self.word_spans) != n:
            raise DataError(f"dataset {self.name!r}: words/word_spans must have one entry per text ({n})")
        if not self.ids:
            object.__setattr__(self, "ids", [str(i) for i in range(n)])
        elif len(self.ids) != n:
            raise DataError(f"dataset {self.name!r}: {len(self.ids)} ids for {n} texts")
        for key, values in self.labels.items():
            if len(values) != n:
                raise DataError(
                    f"dataset {self.name!r}: label {key!r} has {len(values)} values for {n} texts; "
                    "give one label per text (or one list per text for word-level labels)"
                )

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def from_texts(
        cls,
        texts: Sequence[str],
        *,
        labels: Mapping[str, Sequence[Any]] | None = None,
        ids: Sequence[str] | None = None,
        name: str = "texts",
    ) -> TextDataset:
        """Build from raw strings; words are the whitespace-separated pieces of each text."""
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise DataError(f"dataset {name!r}: item {i} is a {type(t).__name__}, not a string")
        spans = [[(m.start(), m.end()) for m in _WORD.finditer(t)] for t in texts]
        words = [[t[a:b] for a, b in sp] for t, sp in zip(texts, spans, strict=True)]
        return cls(
            texts=texts,
            words=words,
            word_spans=spans,
            labels={k: list(v) for k, v in (labels or {}).items()},
            ids=[str(i) for i in ids] if ids is not None else [],
            name=name,
        )

    @classmethod
    def from_words(
        cls,
        words: Sequence[Sequence[str]],
        *,
        labels: Mapping[str, Sequence[Any]] | None = None,
        ids: Sequence[str] | None = None,
        name: str = "words",
    ) -> TextDataset:
        """Build from pre-split words (e.g. CoNLL-U); the text is the words joined by single spaces."""
        texts: list[str] = []
        spans: list[list[tuple[int, int]]] = []
        clean: list[list[str]] = []
        for i, ws in enumerate(words):
            pos = 0
            sp: list[tuple[int, int]] = []
            parts: list[str] = []
            for j, w in enumerate(ws):
                if not isinstance(w, str) or not w or any(c.isspace() for c in w):
                    raise DataError(
                        f"dataset {name!r}: example {i}, word {j} ({w!r}) must be a non-empty string "
                        "without whitespace"
                    )
                sp.append((pos, pos + len(w)))
                parts.append(w)
                pos += len(w) + 1
            texts.append(" ".join(parts))
            spans.append(sp)
            clean.append(parts)
        return cls(
            texts=texts,
            words=clean,
            word_spans=spans,
            labels={k: list(v) for k, v in (labels or {}).items()},
            ids=[str(i) for i in ids] if ids is not None else [],
            name=name,
        )

    # -- views -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int], *, name: str | None = None) -> TextDataset:
        """The examples at ``indices`` (in that order)."""
        idx = list(indices)
        return TextDataset(
            texts=[self.texts[i] for i in idx],
            words=[self.words[i] for i in idx],
            word_spans=[self.word_spans[i] for i in idx],
            labels={k: [v[i] for i in idx] for k, v in self.labels.items()},
            ids=[self.ids[i] for i in idx],
            name=name or self.name,
        )

    def head(self, n: int) -> TextDataset:
        """The first ``n`` examples."""
        return self.subset(range(min(n, len(self))))

    def fingerprint(self) -> str:
        """A SHA-256 of the texts and word spans (labels excluded): identifies the inputs of a store."""
        h = hashlib.sha256()
        for t, sp in zip(self.texts, self.word_spans, strict=True):
            h.update(t.encode("utf-8"))
            h.update(b"\x00")
            h.update(json.dumps(sp).encode())
            h.update(b"\x01")
        return h.hexdigest()


def as_text_dataset(data: Any, *, text_column: str = "text", name: str | None = None) -> TextDataset:
    """Coerce a list of strings, a ``TextDataset`` or a file path (CSV/JSONL/CoNLL-U) to a ``TextDataset``."""
    if isinstance(data, TextDataset):
        return data
    if isinstance(data, Path) or (isinstance(data, str) and _looks_like_path(data)):
        from .readers import read_dataset

        return read_dataset(Path(data), text_column=text_column)
    if isinstance(data, str):
        raise DataError("got one string; pass a list of strings (or a path to a .csv/.jsonl/.conllu file)")
    if isinstance(data, Sequence):
        return TextDataset.from_texts(list(data), name=name or "texts")
    raise DataError(
        f"cannot use a {type(data).__name__} as a text dataset; pass a list of strings, a TextDataset, "
        "or a path to a .csv/.jsonl/.conllu file"
    )


def _looks_like_path(s: str) -> bool:
    return (
        s.lower().endswith((".csv", ".tsv", ".jsonl", ".json", ".conllu", ".conll", ".txt"))
        or Path(s).exists()
    )
