"""Read text datasets from CSV/TSV, JSON lines, plain text and CoNLL-U files into a ``TextDataset``.

Every malformed input raises :class:`~layerscope.errors.DataError` naming the file and, where it applies,
the 1-based line, and saying how to fix it.

Conventions:
    * A column (or JSON key) named ``id`` gives the example ids (they must be unique); it is never a label.
    * ``label_columns=None`` makes every other column a sentence-level label. CSV/TSV labels are converted to
      ``int`` (or ``float``) when every value of the column parses as one, and stay strings otherwise.
    * CoNLL-U ``head`` labels are 0-based indices of the head word within the sentence, ``-1`` for the root
      (the file's 1-based HEAD minus one), the same convention as :func:`layerscope.data.silver_labels`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError
from .dataset import TextDataset

SUPPORTED_EXTENSIONS = (".csv", ".tsv", ".jsonl", ".txt", ".conllu", ".conll")
CONLLU_LABELS = ("upos", "xpos", "head", "deprel", "feats")

_WORD = re.compile(r"\S+")
_ID_COLUMN = "id"


def read_dataset(
    path: str | os.PathLike[str],
    *,
    text_column: str = "text",
    label_columns: Sequence[str] | None = None,
    words_column: str | None = None,
    encoding: str = "utf-8",
) -> TextDataset:
    """Read a dataset file, choosing the format from its extension.

    Args:
        path: a ``.csv``, ``.tsv``, ``.jsonl``, ``.txt`` (one text per non-blank line) or ``.conllu``/``.conll``
            file.
        text_column: the column/key holding the text (ignored for ``.txt`` and CoNLL-U).
        label_columns: the columns that become labels; ``None`` means every column except the text, words
            and ``id`` columns (for CoNLL-U: ``upos``, ``xpos``, ``head``, ``deprel``, ``feats``).
        words_column: optional column/key holding the pre-split words of each example (a JSON list of
            strings, or a whitespace-separated string). The words are located in order in the text; without
            a text column the text is the words joined by single spaces.
        encoding: the file's text encoding (a UTF-8 byte-order mark is ignored).

    Returns:
        A ``TextDataset`` named after the file's stem.
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise DataError(
            f"unsupported file extension {ext or '(none)'!r}; supported: {', '.join(SUPPORTED_EXTENSIONS)} "
            "(convert a JSON array to JSON lines, one object per line, as .jsonl)",
            path=p,
        )
    if ext in (".conllu", ".conll"):
        return read_conllu(p, label_columns=label_columns, encoding=encoding)
    text = _read_text(p, encoding)
    if ext == ".txt":
        return _from_lines(p, text)
    if ext == ".jsonl":
        header, rows = _jsonl_rows(p, text)
    else:
        header, rows = _csv_rows(p, text, delimiter="\t" if ext == ".tsv" else ",")
    return _build(
        p,
        header,
        rows,
        text_column=text_column,
        label_columns=label_columns,
        words_column=words_column,
        typed=ext != ".jsonl",
    )


def read_conllu(
    path: str | os.PathLike[str],
    *,
    label_columns: Sequence[str] | None = None,
    encoding: str = "utf-8",
) -> TextDataset:
    """Read a CoNLL-U file: one example per sentence, words from FORM, word-level syntax labels.

    Comment lines, multiword-token lines (``1-2``) and empty nodes (``1.1``) are skipped, so the words are
    the syntactic words (``don't`` -> ``do``, ``n't``) and the text is those words joined by single spaces.
    ``# sent_id = ...`` comments give the ids.

    Args:
        path: the ``.conllu`` file.
        label_columns: a subset of ``upos``, ``xpos``, ``head``, ``deprel``, ``feats`` (``None``: all of
            those not left empty as ``_`` throughout the file).
        encoding: the file's text encoding.

    Returns:
        A ``TextDataset`` whose labels are per-sentence lists: ``upos``/``xpos``/``deprel``/``feats``
        strings and ``head`` ints (0-based index of the head word, ``-1`` for the root, ``None`` for ``_``).
    """
    p = Path(path)
    wanted = _conllu_wanted(p, label_columns)
    text = _read_text(p, encoding)
    sentences: list[list[str]] = []
    columns: dict[str, list[list[Any]]] = {k: [] for k in CONLLU_LABELS}
    ids: list[str] = []
    cur: list[tuple[int, list[str]]] = []  # (line number, 10 fields) of each word
    sent_id: str | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            if cur:
                _conllu_sentence(p, cur, sentences, columns)
                ids.append(sent_id if sent_id is not None else str(len(ids)))
            cur, sent_id = [], None
            continue
        if line.startswith("#"):
            m = re.match(r"#\s*sent_id\s*=\s*(.*\S)", line)
            if m and not cur:
                sent_id = m.group(1)
            continue
        fields = line.split("\t")
        if len(fields) != 10:
            raise DataError(
                f"a CoNLL-U word line needs 10 tab-separated columns, found {len(fields)}; "
                "check for spaces used instead of tabs",
                path=p,
                line=lineno,
            )
        if "-" in fields[0]:  # multiword token (1-2): its words follow on their own lines
            lo, _, hi = fields[0].partition("-")
            _int(p, lineno, lo, "ID")
            _int(p, lineno, hi, "ID")
            continue
        if "." in fields[0]:  # empty node (enhanced dependencies only)
            continue
        cur.append((lineno, fields))
    if cur:
        _conllu_sentence(p, cur, sentences, columns)
        ids.append(sent_id if sent_id is not None else str(len(ids)))
    if not sentences:
        raise DataError("no sentences found (a CoNLL-U file has one tab-separated line per word)", path=p)
    labels: dict[str, list[Any]] = {}
    for key in wanted:
        values = columns[key]
        empty = None if key == "head" else "_"
        if label_columns is None and all(v == empty for sent in values for v in sent):
            continue
        labels[key] = values
    return TextDataset.from_words(sentences, labels=labels, ids=_unique_ids(p, ids), name=p.stem)


# -- text ------------------------------------------------------------------------------------------------
def _read_text(path: Path, encoding: str) -> str:
    if not path.exists():
        raise DataError("file not found; check the path", path=path)
    if path.is_dir():
        raise DataError("is a directory; pass a .csv/.tsv/.jsonl/.txt/.conllu file", path=path)
    raw = path.read_bytes()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            f"cannot decode byte {raw[e.start : e.start + 1]!r} as {encoding} ({e.reason}); re-save the file "
            f"as UTF-8 or pass the right encoding=",
            path=path,
            line=line,
        ) from None
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r}", path=path) from None
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise DataError("file is empty", path=path)
    return text


def _from_lines(path: Path, text: str) -> TextDataset:
    texts = [line.strip() for line in text.splitlines() if line.strip()]
    return TextDataset.from_texts(texts, name=path.stem)


# -- rows (CSV/TSV, JSONL) -------------------------------------------------------------------------------
Row = tuple[int, dict[str, Any]]  # (1-based line where the record starts, column -> value)


def _csv_rows(path: Path, text: str, *, delimiter: str) -> tuple[list[str], list[Row]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    rows: list[Row] = []
    start = 1
    try:
        for fields in reader:
            line, start = start, reader.line_num + 1
            if not fields or all(not f.strip() for f in fields):
                continue
            if header is None:
                header = [f.strip() for f in fields]
                dup = sorted({h for h in header if header.count(h) > 1})
                if dup:
                    raise DataError(f"duplicate column name(s) {dup} in the header", path=path, line=line)
                continue
            if len(fields) != len(header):
                raise DataError(
                    f"row has {len(fields)} fields but the header has {len(header)} "
                    f"({', '.join(header)}); quote cells that contain {delimiter!r}",
                    path=path,
                    line=line,
                )
            rows.append((line, dict(zip(header, fields, strict=True))))
    except csv.Error as e:
        raise DataError(
            f"malformed {'TSV' if delimiter == chr(9) else 'CSV'}: {e}", path=path, line=start
        ) from None
    if header is None or not rows:
        raise DataError("no data rows (only a header, or nothing)", path=path)
    return header, rows


def _jsonl_rows(path: Path, text: str) -> tuple[list[str], list[Row]]:
    header: dict[str, None] = {}
    rows: list[Row] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(
                f"malformed JSON ({e.msg} at column {e.colno}); each line must be one JSON object",
                path=path,
                line=lineno,
            ) from None
        if not isinstance(obj, dict):
            raise DataError(
                f'expected a JSON object like {{"text": ...}}, got a {type(obj).__name__}',
                path=path,
                line=lineno,
            )
        header.update(dict.fromkeys(obj))
        rows.append((lineno, obj))
    if not rows:
        raise DataError("no rows", path=path)
    return list(header), rows


def _build(
    path: Path,
    header: list[str],
    rows: list[Row],
    *,
    text_column: str,
    label_columns: Sequence[str] | None,
    words_column: str | None,
    typed: bool,
) -> TextDataset:
    cols = ", ".join(repr(h) for h in header)
    if words_column is not None and words_column not in header:
        raise DataError(f"no words column {words_column!r}; the columns are {cols}", path=path)
    has_text = text_column in header
    if not has_text and words_column is None:
        raise DataError(
            f"no text column {text_column!r}; the columns are {cols}; pass text_column=", path=path
        )
    special = {text_column, _ID_COLUMN} | ({words_column} if words_column else set())
    if label_columns is None:
        label_keys = [h for h in header if h not in special]
    else:
        label_keys = list(label_columns)
        missing = [k for k in label_keys if k not in header]
        if missing:
            raise DataError(f"no label column(s) {missing}; the columns are {cols}", path=path)

    texts: list[str] = []
    words: list[list[str]] = []
    spans: list[list[tuple[int, int]]] = []
    for line, row in rows:
        ws = _words(path, line, row.get(words_column)) if words_column is not None else None
        if has_text:
            t = row.get(text_column)
            if t is None and ws is None:
                keys = ", ".join(repr(k) for k in row)
                raise DataError(f"no {text_column!r} key in this row (keys: {keys})", path=path, line=line)
            if t is not None and not isinstance(t, str):
                raise DataError(
                    f"text {text_column!r} is a {type(t).__name__}, not a string", path=path, line=line
                )
            if t is not None and not t.strip():
                raise DataError(f"blank text in column {text_column!r}; remove the row", path=path, line=line)
        else:
            t = None
        if ws is None:
            assert t is not None
            sp = [(m.start(), m.end()) for m in _WORD.finditer(t)]
            ws = [t[a:b] for a, b in sp]
        elif t is None:
            t = " ".join(ws)
            sp, pos = [], 0
            for w in ws:
                sp.append((pos, pos + len(w)))
                pos += len(w) + 1
        else:
            sp = _locate(path, line, t, ws)
        texts.append(t)
        words.append(ws)
        spans.append(sp)

    labels: dict[str, list[Any]] = {}
    for key in label_keys:
        values = [row.get(key) for _, row in rows]
        if typed:
            values = [v if v is None or v.strip() else None for v in values]
        if label_columns is not None:
            for (line, _), v in zip(rows, values, strict=True):
                if v is None:
                    raise DataError(f"empty value in label column {key!r}", path=path, line=line)
        for (line, _), v, ws in zip(rows, values, words, strict=True):
            if isinstance(v, list) and len(v) != len(ws):
                raise DataError(
                    f"word-level label {key!r} has {len(v)} values for {len(ws)} words", path=path, line=line
                )
        labels[key] = _convert(values) if typed else values
    ids = None
    if _ID_COLUMN in header:
        raw_ids = [row.get(_ID_COLUMN) for _, row in rows]
        for (line, _), v in zip(rows, raw_ids, strict=True):
            if v is None or (isinstance(v, str) and not v.strip()):
                raise DataError(f"missing {_ID_COLUMN!r} value; give every row an id", path=path, line=line)
        ids = _unique_ids(path, [str(v) for v in raw_ids], [line for line, _ in rows])
    return TextDataset(
        texts=texts, words=words, word_spans=spans, labels=labels, ids=ids or [], name=path.stem
    )


def _words(path: Path, line: int, value: Any) -> list[str]:
    if isinstance(value, str):
        ws = value.split()
    elif isinstance(value, list) and all(isinstance(w, str) for w in value):
        ws = list(value)
    else:
        raise DataError(
            f"words must be a list of strings or a whitespace-separated string, got {type(value).__name__}",
            path=path,
            line=line,
        )
    if not ws:
        raise DataError("empty list of words", path=path, line=line)
    for w in ws:
        if not w or any(c.isspace() for c in w):
            raise DataError(f"word {w!r} is empty or contains whitespace", path=path, line=line)
    return ws


def _locate(path: Path, line: int, text: str, words: list[str]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    pos = 0
    for w in words:
        i = text.find(w, pos)
        if i < 0:
            raise DataError(
                f"word {w!r} does not occur in the text after character {pos}; words must appear in the text "
                "in order",
                path=path,
                line=line,
            )
        spans.append((i, i + len(w)))
        pos = i + len(w)
    return spans


def _convert(values: list[Any]) -> list[Any]:
    present = [v for v in values if v is not None]
    for kind in (int, float):
        try:
            converted = {v: kind(v) for v in set(present)}
        except ValueError:
            continue
        return [None if v is None else converted[v] for v in values]
    return values


def _unique_ids(path: Path, ids: list[str], lines: list[int] | None = None) -> list[str]:
    seen: dict[str, int] = {}
    for i, v in enumerate(ids):
        if v in seen:
            raise DataError(
                f"duplicate id {v!r} (first used by example {seen[v]}); ids must be unique",
                path=path,
                line=lines[i] if lines else None,
            )
        seen[v] = i
    return ids


# -- CoNLL-U ---------------------------------------------------------------------------------------------
def _conllu_wanted(path: Path, label_columns: Sequence[str] | None) -> list[str]:
    if label_columns is None:
        return list(CONLLU_LABELS)
    bad = [k for k in label_columns if k not in CONLLU_LABELS]
    if bad:
        raise DataError(f"unknown CoNLL-U label(s) {bad}; available: {', '.join(CONLLU_LABELS)}", path=path)
    return list(label_columns)


def _int(path: Path, line: int, value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DataError(f"{what} {value!r} is not an integer", path=path, line=line) from None


def _conllu_sentence(
    path: Path,
    words: list[tuple[int, list[str]]],
    sentences: list[list[str]],
    columns: dict[str, list[list[Any]]],
) -> None:
    n = len(words)
    forms: list[str] = []
    heads: list[int | None] = []
    for k, (line, f) in enumerate(words, start=1):
        wid = _int(path, line, f[0], "ID")
        if wid != k:
            raise DataError(f"word ID {wid} out of order; expected {k}", path=path, line=line)
        form = f[1]
        if not form or any(c.isspace() for c in form):
            raise DataError(f"FORM {form!r} is empty or contains whitespace", path=path, line=line)
        forms.append(form)
        if f[6] == "_":
            heads.append(None)
        else:
            h = _int(path, line, f[6], "HEAD")
            if not 0 <= h <= n:
                raise DataError(f"HEAD {h} is outside the sentence (0..{n})", path=path, line=line)
            heads.append(h - 1)
    sentences.append(forms)
    columns["upos"].append([f[3] for _, f in words])
    columns["xpos"].append([f[4] for _, f in words])
    columns["head"].append(heads)
    columns["deprel"].append([f[7] for _, f in words])
    columns["feats"].append([f[5] for _, f in words])
