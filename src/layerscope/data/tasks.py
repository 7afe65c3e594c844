"""Probing tasks: a dataset, one label per example (sentence level) or per word (word level), and splits.

A :class:`ProbingTask` is what the probing engine sweeps over: the model reads ``task.dataset.texts``, the
activation store records ``example_id``/``word_id`` per row, and :meth:`ProbingTask.targets` turns those
into class indices. Each task can make its own control task (Hewitt & Liang 2019) with
:meth:`ProbingTask.control`.

Rare classes: every class needs at least two training examples (a probe cannot learn, and stratified
model selection cannot work, from one). :class:`ProbingTask` *raises* when that is violated;
:func:`task_from_file`, :meth:`ProbingTask.control` and :meth:`ProbingTask.subsample` instead merge such
classes into ``"other"`` with :func:`merge_rare_classes` (and leave out what is still too rare).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..errors import ConfigError, DataError
from .control import control_labels_sentence, control_labels_word
from .dataset import TextDataset
from .readers import read_conllu, read_dataset
from .splits import SPLIT_NAMES, TRAIN, split_examples

if TYPE_CHECKING:
    import pandas as pd

Level = Literal["sentence", "word"]
LEVELS = ("sentence", "word")
OTHER = "other"
MIN_TRAIN = 2


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class ProbingTask:
    """A probing task: what to predict from which texts, with a leakage-safe split.

    Attributes:
        name: the task name (``"upos"``, ``"tense"``, ``"tense/control"``, ...).
        level: ``"sentence"`` (one label per example) or ``"word"`` (one label per word of
            ``dataset.words``).
        dataset: the inputs; its ``texts`` are what the model reads, word-level tasks use its ``words``.
        labels: sentence level: one class name per example; word level: per example a list with one class
            name per word, ``None`` for a word that is not labelled (left out of training and scoring).
            Non-``None`` labels are converted to ``str``.
        classes: the sorted class names (computed from ``labels`` when not given).
        split: per example 0 = train, 1 = val, 2 = test (when not given: :func:`split_examples` with seed 0,
            grouping identical texts, stratified by label at sentence level).
        description: one paragraph: what the task measures, how it was built, which cues are controlled.
    """

    name: str
    level: Level
    dataset: TextDataset
    labels: list[Any]
    classes: list[str] | None = None
    split: np.ndarray | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"a probing task needs a non-empty name, got {self.name!r}")
        if self.level not in LEVELS:
            raise ConfigError(f"task {self.name!r}: level must be 'sentence' or 'word', got {self.level!r}")
        if not isinstance(self.dataset, TextDataset):
            raise DataError(
                f"task {self.name!r}: dataset must be a TextDataset, got {type(self.dataset).__name__}"
            )
        labels = _clean_labels(self.name, self.level, self.dataset, self.labels)
        used = sorted({c for c in _flat(labels, self.level) if c is not None})
        if self.classes is not None and sorted(str(c) for c in self.classes) != used:
            raise DataError(
                f"task {self.name!r}: classes {sorted(self.classes)} differ from the labels used {used}; "
                "leave classes=None to derive them from the labels"
            )
        if len(used) < 2:
            raise DataError(
                f"task {self.name!r} has {len(used)} class(es) {used}; a probing task needs at least 2"
            )
        n = len(self.dataset)
        if self.split is None:
            strat = labels if self.level == "sentence" else None
            split = split_examples(n, groups=self.dataset.texts, seed=0, stratify=strat)
        else:
            split = np.asarray(self.split)
            if split.shape != (n,) or not np.issubdtype(split.dtype, np.integer):
                raise DataError(
                    f"task {self.name!r}: split must be an integer array of shape ({n},), got "
                    f"{split.dtype} {split.shape}"
                )
            if np.any((split < 0) | (split > 2)):
                raise DataError(f"task {self.name!r}: split values must be 0 (train), 1 (val) or 2 (test)")
        split = split.astype(np.int8, copy=True)
        split.setflags(write=False)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "classes", used)
        object.__setattr__(self, "split", split)
        counts = _split_counts(labels, split, self.level)
        for s, name in enumerate(SPLIT_NAMES):
            if sum(counts[s].values()) == 0:
                raise DataError(
                    f"task {self.name!r}: the {name} split has no labelled example; give a split with "
                    "examples in train (0), val (1) and test (2)"
                )
        rare = [c for c in used if counts[TRAIN][c] < MIN_TRAIN]
        if rare:
            shown = ", ".join(f"{c!r} ({counts[TRAIN][c]})" for c in rare[:10])
            raise DataError(
                f"task {self.name!r}: class(es) with fewer than {MIN_TRAIN} training examples: {shown}"
                f"{' …' if len(rare) > 10 else ''}; merge them with merge_rare_classes() or add examples"
            )

    # -- derived ------------------------------------------------------------------------------------
    @property
    def n_examples(self) -> int:
        """Number of examples (texts)."""
        return len(self.dataset)

    @functools.cached_property
    def _index(self) -> tuple[np.ndarray, np.ndarray]:
        """(offsets, flat class indices): per example its first row; per item its class (-1: none)."""
        lookup = {c: k for k, c in enumerate(self.classes or [])}
        if self.level == "sentence":
            flat = np.array([lookup[c] for c in self.labels], dtype=np.int64)
            return np.arange(len(flat) + 1, dtype=np.int64), flat
        sizes = np.array([len(ls) for ls in self.labels], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        flat = np.array([-1 if c is None else lookup[c] for ls in self.labels for c in ls], dtype=np.int64)
        return offsets, flat

    def targets(self, example_id: np.ndarray, word_id: np.ndarray | None = None) -> np.ndarray:
        """Class index (into ``classes``) for activation-store rows; -1 for rows without a label.

        Args:
            example_id: per row, the example index (the store's ``example_id`` metadata).
            word_id: per row, the word index (the store's ``word_id``; -1 for non-word rows). Ignored for
                sentence-level tasks.

        Returns:
            ``int64`` array with the shape of ``example_id``.
        """
        ex = np.asarray(example_id)
        if ex.size and not np.issubdtype(ex.dtype, np.integer):
            raise DataError(f"task {self.name!r}: example_id must be integers, got {ex.dtype}")
        ex = ex.astype(np.int64)
        n = self.n_examples
        if ex.size and (ex.min() < 0 or ex.max() >= n):
            raise DataError(
                f"task {self.name!r}: example_id out of range [0, {n}) (min {ex.min()}, max {ex.max()}); "
                "was the store extracted from this task's dataset?"
            )
        offsets, flat = self._index
        if self.level == "sentence":
            return flat[ex]
        if word_id is None:
            raise ConfigError(f"task {self.name!r} is word-level; pass word_id (the store's word_id)")
        wid = np.asarray(word_id)
        if wid.shape != ex.shape:
            raise DataError(f"task {self.name!r}: word_id has shape {wid.shape}, example_id {ex.shape}")
        wid = wid.astype(np.int64)
        n_words = offsets[ex + 1] - offsets[ex]
        if np.any(wid >= n_words):
            bad = int(np.flatnonzero(wid >= n_words)[0])
            raise DataError(
                f"task {self.name!r}: row {bad} has word_id {wid[bad]} but example {ex[bad]} has "
                f"{n_words[bad]} words; was the store extracted from this task's dataset?"
            )
        out = np.full(ex.shape, -1, dtype=np.int64)
        ok = wid >= 0
        out[ok] = flat[offsets[ex[ok]] + wid[ok]]
        return out

    def control(self, seed: int = 0) -> ProbingTask:
        """The control task: same dataset and split, random labels with this task's label distribution.

        Word level: one random label per lower-cased word type; sentence level: one per text (see
        :mod:`layerscope.data.control`). Control classes with fewer than two training examples are merged
        into ``"other"``.
        """
        if self.level == "word":
            ctl: list[Any] = control_labels_word(self.dataset.words, self.labels, seed=seed)
        else:
            ctl = control_labels_sentence(self.dataset.texts, self.labels, seed=seed)
        assert self.split is not None
        ctl, keep = merge_rare_classes(ctl, self.split, level=self.level)
        desc = (
            f"Control task for {self.name!r} (Hewitt & Liang 2019, seed {seed}): the same inputs and split, "
            + (
                "every lower-cased word type mapped to one random label"
                if self.level == "word"
                else "every text mapped to one random label by a stable hash of the text"
            )
            + ", drawn from the real task's empirical label distribution. A probe scoring well here "
            "memorises; selectivity = task accuracy - control accuracy."
        )
        return self._replace(f"{self.name}/control", ctl, keep, desc)

    def label_distribution(self) -> pd.DataFrame:
        """Class counts and shares per split: columns ``split``, ``class``, ``count``, ``share``.

        Rows for ``train``, ``val``, ``test`` and ``all``; every class appears in every split (count 0 when
        absent). Word-level counts are labelled words.
        """
        import pandas as pd

        assert self.split is not None
        counts = _split_counts(self.labels, self.split, self.level)
        total: Counter[str] = Counter()
        for cnt in counts:
            total.update(cnt)
        rows = []
        for name, cnt in [*zip(SPLIT_NAMES, counts, strict=True), ("all", total)]:
            n = sum(cnt.values())
            for c in self.classes or []:
                rows.append({"split": name, "class": c, "count": cnt[c], "share": cnt[c] / n if n else 0.0})
        return pd.DataFrame(rows, columns=["split", "class", "count", "share"])

    def subsample(self, max_examples: int, seed: int = 0) -> ProbingTask:
        """At most ``max_examples`` examples, drawn per split (and per class at sentence level) in proportion.

        Split assignments are kept, so the result stays leakage-safe. Classes left with fewer than two
        training examples are merged into ``"other"``.
        """
        if isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 3:
            raise ConfigError(f"max_examples must be an integer >= 3, got {max_examples!r}")
        if max_examples >= self.n_examples:
            return self
        assert self.split is not None
        strata = [
            (int(s), lab if self.level == "sentence" else "")
            for s, lab in zip(self.split, self.labels, strict=True)
        ]
        idx = _proportional_sample(strata, max_examples, np.random.default_rng(seed))
        sub_labels = [self.labels[i] for i in idx]
        labels, keep = merge_rare_classes(sub_labels, self.split[idx], level=self.level)
        return self._replace(self.name, labels, keep, self.description, indices=idx)

    def _replace(
        self,
        name: str,
        labels: list[Any],
        keep: list[int],
        description: str,
        *,
        indices: list[int] | None = None,
    ) -> ProbingTask:
        """A new task over ``indices`` (default: all) of this dataset, keeping positions ``keep`` of them."""
        base = list(range(self.n_examples)) if indices is None else indices
        chosen = [base[k] for k in keep]
        assert self.split is not None
        ds = (
            self.dataset
            if len(chosen) == self.n_examples and indices is None
            else self.dataset.subset(chosen)
        )
        return ProbingTask(
            name=name,
            level=self.level,
            dataset=ds,
            labels=[labels[k] for k in keep],
            split=self.split[chosen],
            description=description,
        )

    def __repr__(self) -> str:
        return (
            f"ProbingTask(name={self.name!r}, level={self.level!r}, n_examples={self.n_examples}, "
            f"classes={len(self.classes or [])})"
        )


# -- helpers -----------------------------------------------------------------------------------------------
def merge_rare_classes(
    labels: Sequence[Any],
    split: np.ndarray,
    *,
    level: Level,
    min_train: int = MIN_TRAIN,
    other: str = OTHER,
) -> tuple[list[Any], list[int]]:
    """Merge classes with fewer than ``min_train`` training examples into ``other``.

    If ``other`` itself is still below ``min_train`` in train, its items are left out: word-level labels
    become ``None``, sentence-level examples are dropped.

    Returns:
        ``(labels, keep)``: the new labels (for all examples) and the positions of the examples to keep
        (all of them at word level).
    """
    split = np.asarray(split)
    train: Counter[Any] = Counter()
    for lab, s in zip(labels, split, strict=True):
        if s == TRAIN:
            train.update([lab] if level == "sentence" else [c for c in lab if c is not None])
    all_classes = {c for c in _flat(list(labels), level) if c is not None}
    rare = {c for c in all_classes if train[c] < min_train}
    if not rare:
        return list(labels), list(range(len(labels)))
    n_other = sum(train[c] for c in rare) + (train[other] if other not in rare else 0)
    target: str | None = other if n_other >= min_train else None

    def fix(c: Any) -> Any:
        return target if c in rare or (target is None and c == other) else c

    if level == "word":
        return [[None if c is None else fix(c) for c in ls] for ls in labels], list(range(len(labels)))
    new = [fix(c) for c in labels]
    return new, [i for i, c in enumerate(new) if c is not None]


def _clean_labels(name: str, level: str, ds: TextDataset, labels: Sequence[Any]) -> list[Any]:
    if len(labels) != len(ds):
        raise DataError(f"task {name!r}: {len(labels)} labels for {len(ds)} examples; give one per example")
    out: list[Any] = []
    for i, lab in enumerate(labels):
        if level == "sentence":
            if lab is None or isinstance(lab, list | tuple):
                raise DataError(
                    f"task {name!r}: example {i} has label {lab!r}; a sentence-level task needs one class "
                    "name per example (drop unlabelled examples)"
                )
            out.append(str(lab))
        else:
            if not isinstance(lab, list | tuple):
                raise DataError(
                    f"task {name!r}: example {i} has a {type(lab).__name__} label; a word-level task needs "
                    "one list per example with a label (or None) per word"
                )
            n_words = len(ds.words[i])
            if len(lab) != n_words:
                raise DataError(
                    f"task {name!r}: example {i} ({ds.ids[i]}) has {len(lab)} labels for {n_words} words"
                )
            out.append([None if c is None else str(c) for c in lab])
    return out


def _flat(labels: list[Any], level: str) -> list[Any]:
    return list(labels) if level == "sentence" else [c for ls in labels for c in ls]


def _split_counts(labels: list[Any], split: np.ndarray, level: str) -> list[Counter[str]]:
    counts: list[Counter[str]] = [Counter(), Counter(), Counter()]
    for lab, s in zip(labels, split, strict=True):
        counts[int(s)].update([lab] if level == "sentence" else [c for c in lab if c is not None])
    return counts


def _proportional_sample(strata: list[tuple[int, str]], k: int, rng: np.random.Generator) -> list[int]:
    """``k`` indices, allocated to strata in proportion to their sizes (largest remainder), sorted."""
    groups: dict[tuple[int, str], list[int]] = {}
    for i, s in enumerate(strata):
        groups.setdefault(s, []).append(i)
    keys = sorted(groups)
    sizes = np.array([len(groups[s]) for s in keys], dtype=np.float64)
    quota = sizes * k / sizes.sum()
    alloc = np.floor(quota).astype(int)
    for j in np.argsort(-(quota - alloc), kind="stable")[: k - int(alloc.sum())]:
        alloc[j] += 1
    out: list[int] = []
    for s, a in zip(keys, alloc, strict=True):
        out.extend(int(i) for i in rng.choice(groups[s], size=int(a), replace=False))
    return sorted(out)


# -- user tasks from files ---------------------------------------------------------------------------------
_CONLLU_ALIASES = {"dep": "deprel", "morph": "feats", "pos": "upos"}


def task_from_file(
    path: str | os.PathLike[str],
    *,
    level: Level = "sentence",
    label_column: str = "label",
    text_column: str = "text",
    name: str | None = None,
    seed: int = 0,
) -> ProbingTask:
    """A probing task from a file.

    * Sentence level: CSV/TSV/JSONL with a text column and a label column (``text,label``).
    * Word level: CoNLL-U (labels from ``upos``, ``xpos``, ``deprel``/``dep`` or ``feats``), or JSONL whose
      label column holds one list per line with a label (or ``null``) per word, with the words in a
      ``words`` key (else the whitespace-split text).

    The split groups identical texts (sentence level: stratified by label), drawn with ``seed``. Classes
    with fewer than two training examples are merged into ``"other"`` (see :func:`merge_rare_classes`).
    """
    p = Path(path)
    if level not in LEVELS:
        raise ConfigError(f"level must be 'sentence' or 'word', got {level!r}")
    ext = p.suffix.lower()
    if level == "word":
        if ext in (".conllu", ".conll"):
            column = _CONLLU_ALIASES.get(label_column, label_column)
            if column == "head":
                raise ConfigError("'head' holds word indices, not class labels; use 'deprel' or 'upos'")
            if label_column == "label":
                raise ConfigError("pass label_column= one of 'upos', 'xpos', 'deprel', 'feats' for CoNLL-U")
            ds = read_conllu(p, label_columns=[column])
            raw = [[None if c in ("_", None) else c for c in ls] for ls in ds.labels[column]]
        elif ext == ".jsonl":
            ds = _read_word_jsonl(p, text_column, label_column)
            raw = ds.labels[label_column]
        else:
            raise DataError(
                f"word-level tasks are read from .conllu or .jsonl files, not {ext or 'no extension'!r}",
                path=p,
            )
        for i, ls in enumerate(raw):
            if not isinstance(ls, list):
                raise DataError(f"example {i}: word-level label {label_column!r} must be a list", path=p)
    else:
        if ext in (".conllu", ".conll", ".txt"):
            raise DataError(
                f"sentence-level tasks are read from .csv/.tsv/.jsonl files with {text_column!r} and "
                f"{label_column!r} columns; for CoNLL-U word labels pass level='word'",
                path=p,
            )
        ds = read_dataset(p, text_column=text_column, label_columns=[label_column])
        raw = ds.labels[label_column]
        for i, lab in enumerate(raw):
            if lab is None or isinstance(lab, list | dict):
                raise DataError(f"example {i} has label {lab!r}; give one class name per text", path=p)
    strat = [str(c) for c in raw] if level == "sentence" else None
    split = split_examples(len(ds), groups=ds.texts, seed=seed, stratify=strat)
    labels, keep = merge_rare_classes(
        [str(c) for c in raw]
        if level == "sentence"
        else [[None if c is None else str(c) for c in ls] for ls in raw],
        split,
        level=level,
    )
    if len(keep) < len(ds):
        ds, split = ds.subset(keep), split[keep]
        labels = [labels[k] for k in keep]
    return ProbingTask(
        name=name or f"{p.stem}:{label_column}",
        level=level,
        dataset=ds,
        labels=labels,
        split=split,
        description=(
            f"User task from {p.name}: {level}-level labels from column {label_column!r}; split grouped by "
            f"text (seed {seed}); classes with fewer than {MIN_TRAIN} training examples merged into "
            f"{OTHER!r}."
        ),
    )


def _read_word_jsonl(path: Path, text_column: str, label_column: str) -> TextDataset:
    import json

    try:
        with path.open(encoding="utf-8") as f:
            first: Any = next((json.loads(line) for line in f if line.strip()), {})
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read the first JSON line ({e})", path=path) from None
    words_column = "words" if isinstance(first, dict) and "words" in first else None
    return read_dataset(
        path, text_column=text_column, label_columns=[label_column], words_column=words_column
    )


# -- built-in tasks ----------------------------------------------------------------------------------------
def list_builtin_tasks() -> list[str]:
    """Names of the built-in probing tasks (word level first, then sentence level)."""
    from ._senteval import BUILTIN_TASKS

    return list(BUILTIN_TASKS)


def builtin_tasks(
    names: Sequence[str] | None = None,
    *,
    n_sentences: int = 4000,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, ProbingTask]:
    """Build built-in probing tasks over the embedded MultiEmo corpus and its spaCy silver parses.

    See ``docs/probing-tasks.md`` and each task's ``description``. Word-level tasks share one dataset (the
    first ``n_sentences`` sentences of a fixed shuffle of the de-duplicated corpus), so one extraction
    serves all of them; sentence-level tasks select their own balanced sentences, reading further into the
    same fixed shuffle when needed, and hold at most ``n_sentences`` examples. Parses are cached per chunk
    by :func:`~layerscope.data.silver_labels`; ``seed`` drives sampling and splits, not the corpus order.

    Args:
        names: task names (default: all of :func:`list_builtin_tasks`).
        n_sentences: sentences per word-level task, and the maximum number of examples per sentence task.
        seed: random seed for sampling, bigram swaps and splits.
        progress: show progress bars on stderr.

    Returns:
        ``{name: ProbingTask}`` in the order of ``names``.
    """
    from ._senteval import build_builtin_tasks

    return build_builtin_tasks(names, n_sentences=n_sentences, seed=seed, progress=progress)
