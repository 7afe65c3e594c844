"""``extract``: stream a text dataset through a model and store pooled activations, resumably.

The dataset is cut into fixed windows of examples. Inside a window, examples are sorted by length and
packed into batches under a token budget (length bucketing); pooled rows are put back in dataset order
and handed to a background writer, which commits whole row chunks (data, checksums, then progress).
A killed run restarts at the first uncommitted chunk's window; windows are deterministic, so the
result equals an uninterrupted run.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..data.dataset import TextDataset, as_text_dataset
from ..errors import ConfigError
from ..sites import Site
from .pooling import (
    BatchPooler,
    ExamplePlan,
    align_tokens_to_words,
    check_pooling,
    plan_example,
    word_token_ranges,
)
from .store import ActivationStore
from .trace import SiteOptions, capture

_MANIFEST_KEYS = ("model", "sites", "pooling", "dataset", "max_length", "window", "batch_tokens")


@dataclasses.dataclass(frozen=True)
class Batch:
    """One padded batch: dataset indices of its examples and model inputs."""

    indices: np.ndarray
    plans: list[ExamplePlan]
    input_ids: torch.Tensor  # batch, pos
    attention_mask: torch.Tensor  # batch, pos


def default_max_length(subject: Any) -> int:
    """The longest input the model takes, capped at 512 tokens."""
    cfg = getattr(subject.model, "config", None)
    limits = [
        512,
        getattr(cfg, "max_position_embeddings", None),
        getattr(subject.tokenizer, "model_max_length", None),
    ]
    return int(min(v for v in limits if isinstance(v, int) and v > 0))


def default_batch_tokens(subject: Any) -> int:
    """A token budget per batch: 2048 on CPU; from free memory on CUDA (back-off on OOM handles the rest).

    On CPU small batches cost nothing in throughput and pad far less: 2048 tokens with 1024-example windows
    pad 1.11 tokens per real token against 2.14 for 8192/256, a 2.1x faster forward (bench/extract_throughput.py).
    """
    dev = subject.device
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        cfg = subject.model.config
        per_token = (
            4 * 16 * getattr(cfg, "hidden_size", 1024) * max(1, getattr(cfg, "num_hidden_layers", 12)) // 4
        )
        return int(max(2048, min(1 << 17, free // 3 // max(per_token, 1))))
    return 2048


def _tokenize(subject: Any, texts: Sequence[str], max_length: int, *, offsets: bool = True) -> dict[str, Any]:
    tok = subject.tokenizer
    if tok is None:
        raise ConfigError(f"{subject.name} has no tokenizer; extract() takes text models")
    if offsets and not getattr(tok, "is_fast", False):
        raise ConfigError(f"{subject.name}'s tokenizer is a slow tokenizer; word alignment needs a fast one")
    return tok(
        list(texts),
        truncation=True,
        max_length=max_length,
        return_offsets_mapping=offsets,
        return_special_tokens_mask=offsets,
    )


def _plans(
    subject: Any, data: TextDataset, idx: range, pooling: str, max_length: int
) -> tuple[list[list[int]], list[ExamplePlan]]:
    # sentence pooling needs no word alignment: skip offsets (the tokenizer and the per-token loop)
    words = pooling == "token" or pooling.startswith("word_")
    enc = _tokenize(subject, [data.texts[i] for i in idx], max_length, offsets=words)
    ids, plans = [], []
    for k, i in enumerate(idx):
        n_tok = len(enc["input_ids"][k])
        if words:
            args = (
                data.texts[i],
                enc["offset_mapping"][k],
                enc["special_tokens_mask"][k],
                data.word_spans[i],
            )
            t2w = align_tokens_to_words(*args)
            ranges = word_token_ranges(*args) if pooling.startswith("word_") else None
        else:
            t2w, ranges = np.full(n_tok, -1, np.int32), None
        ids.append(enc["input_ids"][k])
        plans.append(plan_example(pooling, t2w, len(data.words[i]), n_tok, ranges))
    return ids, plans


def _pack(order: np.ndarray, lengths: np.ndarray, budget: int, max_batch: int = 256) -> list[np.ndarray]:
    batches: list[np.ndarray] = []
    cur: list[int] = []
    longest = 0
    for i in order:
        L = int(lengths[i])
        if cur and (max(longest, L) * (len(cur) + 1) > budget or len(cur) >= max_batch):
            batches.append(np.asarray(cur))
            cur, longest = [], 0
        cur.append(int(i))
        longest = max(longest, L)
    if cur:
        batches.append(np.asarray(cur))
    return batches


def iter_batches(
    subject: Any,
    data: TextDataset,
    *,
    pooling: str = "sentence_mean",
    max_length: int | None = None,
    batch_tokens: int | None = None,
    window: int = 1024,
    start_window: int = 0,
) -> Iterator[tuple[int, list[Batch]]]:
    """Yield ``(window_index, batches)``: length-bucketed, padded batches of each window of examples."""
    max_length = max_length or default_max_length(subject)
    budget = batch_tokens or default_batch_tokens(subject)
    pad_id = subject.tokenizer.pad_token_id if subject.tokenizer.pad_token_id is not None else 0
    dev = subject.device
    n = len(data)
    for w in range(start_window, -(-n // window)):
        idx = range(w * window, min((w + 1) * window, n))
        ids, plans = _plans(subject, data, idx, pooling, max_length)
        lengths = np.asarray([len(x) for x in ids])
        batches = []
        for b in _pack(np.argsort(lengths, kind="stable"), lengths, budget):
            T = int(lengths[b].max())
            input_ids = torch.full((len(b), T), pad_id, dtype=torch.long)  # batch, pos
            mask = torch.zeros((len(b), T), dtype=torch.long)  # batch, pos
            for r, j in enumerate(b):
                input_ids[r, : lengths[j]] = torch.as_tensor(ids[j])
                mask[r, : lengths[j]] = 1
            batches.append(Batch(np.asarray(idx)[b], [plans[j] for j in b], input_ids.to(dev), mask.to(dev)))
        yield w, batches


def _site_dims(subject: Any, sites: list[Site]) -> dict[str, int]:
    inputs = subject.example_inputs()
    names = [s.name for s in sites]
    with torch.inference_mode(), capture(subject, names, stop=True) as tr:
        subject.forward(inputs)
    dims = {}
    for s in names:
        shape = tuple(tr[s].shape)
        if len(shape) == 4 or s.endswith("attn.pattern"):
            raise ConfigError(
                f"site {s!r} has shape {shape}; extraction stores [batch, pos, d] sites — read attention "
                "patterns with capture()"
            )
        dims[s] = int(shape[-1])
    return dims


def _chunk_rows(dims: dict[str, int], dtype: str) -> int:
    itemsize = {"float16": 2, "float32": 4, "int8": 1}[dtype]
    rows = (1 << 20) // (max(dims.values()) * itemsize)
    return int(max(256, 1 << int(np.floor(np.log2(max(rows, 1))))))


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError | MemoryError) or "out of memory" in str(e).lower()


def _run_batch(subject: Any, batch: Batch, sites: list[str], pooling: str) -> dict[str, torch.Tensor]:
    pooler = BatchPooler.build(pooling, batch.plans, batch.attention_mask.bool())
    opts = {s: SiteOptions(fn=pooler, dtype=torch.float32) for s in sites}
    with torch.inference_mode(), capture(subject, opts, stop=True) as tr:
        subject.forward({"input_ids": batch.input_ids, "attention_mask": batch.attention_mask})
    # one device->host copy per batch (not one synchronising copy per site inside the forward)
    widths = [tr[s].shape[-1] for s in sites]
    host = torch.cat([tr[s] for s in sites], dim=1).cpu() if len(sites) > 1 else tr[sites[0]].cpu()
    return dict(zip(sites, torch.split(host, widths, dim=1), strict=True))


def _run_with_backoff(
    subject: Any, batch: Batch, sites: list[str], pooling: str
) -> list[tuple[Batch, dict[str, torch.Tensor]]]:
    try:
        return [(batch, _run_batch(subject, batch, sites, pooling))]
    except Exception as e:
        if not _is_oom(e):
            raise
        if len(batch.indices) == 1:
            raise ConfigError("one example does not fit in memory; lower max_length") from e
        if subject.device.type == "cuda":
            torch.cuda.empty_cache()
        h = len(batch.indices) // 2
        halves = [
            Batch(batch.indices[s], batch.plans[s], batch.input_ids[s], batch.attention_mask[s])
            for s in (slice(0, h), slice(h, None))
        ]
        return [r for half in halves for r in _run_with_backoff(subject, half, sites, pooling)]


class _Writer:
    """Buffers window rows and commits whole chunks in order (runs on a background thread)."""

    def __init__(self, store: ActivationStore, sites: list[str]) -> None:
        self.store = store
        self.sites = sites
        self.R = store.chunk_rows
        self.committed = store.progress["rows_committed"]
        self.buf: dict[str, list[np.ndarray]] = {s: [] for s in sites}
        self.buffered = 0

    def add(self, start_row: int, arrays: dict[str, np.ndarray]) -> None:
        n = len(next(iter(arrays.values())))
        have = self.committed + self.buffered
        skip = have - start_row
        if skip >= n:
            return
        for s in self.sites:
            self.buf[s].append(arrays[s][max(skip, 0) :])
        self.buffered += n - max(skip, 0)
        while self.buffered >= self.R:
            self._flush(self.R)

    def finish(self) -> None:
        if self.buffered:
            self._flush(self.buffered)
        self.store.mark_complete()

    def _flush(self, rows: int) -> None:
        block = {}
        for s in self.sites:
            cat = np.concatenate(self.buf[s]) if len(self.buf[s]) > 1 else self.buf[s][0]
            block[s], rest = cat[:rows], cat[rows:]
            self.buf[s] = [rest] if len(rest) else []
        self.store.write_chunk(self.committed // self.R, block)
        self.committed += rows
        self.buffered -= rows


def extract(
    subject: Any,
    data: Any,
    sites: Any,
    *,
    store: str | Path,
    pooling: str = "sentence_mean",
    dtype: str = "float16",
    max_length: int | None = None,
    batch_tokens: int | None = None,
    window: int = 1024,
    resume: bool = True,
    overwrite: bool | str = False,
    progress: bool = True,
    text_column: str = "text",
    chunk_rows: int | None = None,
) -> ActivationStore:
    """Stream ``data`` through ``subject`` and write pooled activations of ``sites`` to a store.

    Args:
        subject: a text ``Subject`` (``layerscope.load(...)``).
        data: list of strings, ``TextDataset``, or a .csv/.jsonl/.conllu path.
        sites: site names/patterns (``"blocks.*.resid_post"``).
        store: folder of the ``ActivationStore`` to write (resumed if it exists with the same inputs).
        pooling: ``token``, ``word_first|last|mean``, ``sentence_mean|first|last|max`` or ``last_token``.
        dtype: ``float16`` (default), ``float32`` or ``int8`` (per-row absmax scale).
        max_length: truncate inputs to this many tokens (default: the model's limit, at most 512).
        batch_tokens: token budget per batch (default: 8192 on CPU; from free memory on GPU); halved on OOM.
        window: examples per deterministic window (the unit of bucketing and of resumption).
        resume: continue an existing incomplete store made from the same inputs.
        overwrite: replace an existing store; ``"mismatched"`` replaces it only when it was made from other
            inputs (for caches that layerscope manages itself, e.g. the demo's and the probing sweep's).
        progress: show a progress bar.
        chunk_rows: rows per committed chunk (default: about 1 MiB per chunk of the widest site).
    Returns:
        The completed ``ActivationStore``.
    """
    pooling = check_pooling(pooling)
    _return_freed_memory_to_os()
    ds = as_text_dataset(data, text_column=text_column)
    if window < 1:
        raise ConfigError(f"window must be >= 1, got {window}")
    site_list = subject.adapter.expand(sites)
    if not site_list:
        raise ConfigError("no sites to extract; pass e.g. 'blocks.*.resid_post'")
    for s in site_list:
        subject.adapter.resolve(s)
    names = [s.name for s in site_list]
    max_length = max_length or default_max_length(subject)
    budget = batch_tokens or default_batch_tokens(subject)
    manifest = {
        "model": subject.manifest(),
        "sites": names,
        "pooling": pooling,
        "dataset": {"name": ds.name, "fingerprint": ds.fingerprint(), "n_examples": len(ds)},
        "max_length": max_length,
        "window": window,
        "batch_tokens": budget,
        "library": {"layerscope": __version__, "torch": torch.__version__},
    }
    if chunk_rows is not None and chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be >= 1, got {chunk_rows}")
    st = _open_or_create(
        subject,
        ds,
        site_list,
        manifest,
        Path(store),
        dtype,
        pooling,
        max_length,
        resume,
        overwrite,
        chunk_rows,
    )
    if st.complete:
        return st
    rows_per_example = np.bincount(st.meta("example_id"), minlength=len(ds))
    row_start = np.concatenate([[0], np.cumsum(rows_per_example)])
    committed = st.progress["rows_committed"]
    first_example = int(np.searchsorted(row_start[1:], committed, side="right"))
    start_window = first_example // window
    writer = _Writer(st, names)
    writer.committed = committed
    with _progress_bar(progress, len(ds), start_window * window) as advance, cf.ThreadPoolExecutor(1) as pool:
        pending: cf.Future[None] | None = None
        for w, batches in iter_batches(
            subject,
            ds,
            pooling=pooling,
            max_length=max_length,
            batch_tokens=budget,
            window=window,
            start_window=start_window,
        ):
            lo, hi = w * window, min((w + 1) * window, len(ds))
            base = row_start[lo]
            out = {s: np.empty((row_start[hi] - base, st.manifest["dims"][s]), np.float32) for s in names}
            for batch in batches:
                for b, res in _run_with_backoff(subject, batch, names, pooling):
                    # rows of the batch's items in the window, in batch order (one scatter per site)
                    counts = np.asarray([len(p.positions) for p in b.plans])
                    first = row_start[b.indices] - base
                    tgt = np.repeat(first - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
                    for s in names:
                        out[s][tgt] = res[s].numpy()
                    advance(len(b.indices))
            if pending is not None:
                pending.result()
            pending = pool.submit(writer.add, int(base), out)
        if pending is not None:
            pending.result()
        writer.finish()
    return st


def _return_freed_memory_to_os() -> None:
    """Let glibc hand large freed blocks back to the OS (mmap threshold 128 KiB).

    glibc's adaptive threshold otherwise keeps batch-sized buffers in the heap and peak RSS grows with the
    dataset (1.68x from 4k to 40k sentences; 1.19x with this setting — bench/extract_memory.py).
    """
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6").mallopt(-3, 131072)  # M_MMAP_THRESHOLD


def _open_or_create(
    subject: Any,
    ds: TextDataset,
    sites: list[Site],
    manifest: dict[str, Any],
    path: Path,
    dtype: str,
    pooling: str,
    max_length: int,
    resume: bool,
    overwrite: bool | str,
    chunk_rows: int | None,
) -> ActivationStore:
    st_old = ActivationStore.reusable(
        path, manifest, _MANIFEST_KEYS, dtype=dtype, resume=resume, overwrite=overwrite
    )
    if st_old is not None:
        return st_old
    meta = _metadata(subject, ds, pooling, max_length, manifest["window"])
    dims = _site_dims(subject, sites)
    st = ActivationStore.create(
        path,
        dims=dims,
        meta=meta,
        manifest=manifest,
        dtype=dtype,
        chunk_rows=chunk_rows or _chunk_rows(dims, dtype),
        texts=ds.texts,
        overwrite=True,  # reaching here means: no reusable store at path
    )
    with contextlib.suppress(Exception):  # the tokenizer copy is a convenience for readers
        subject.tokenizer.save_pretrained(str(st.path / "tokenizer"))
    if st.n_items == 0:
        st.mark_complete()
    return st


def _metadata(
    subject: Any, ds: TextDataset, pooling: str, max_length: int, window: int
) -> dict[str, np.ndarray]:
    cols: dict[str, list[np.ndarray]] = {"example_id": [], "position": [], "token_id": [], "word_id": []}
    dropped = 0
    for w in range(-(-len(ds) // window)):
        idx = range(w * window, min((w + 1) * window, len(ds)))
        ids, plans = _plans(subject, ds, idx, pooling, max_length)
        for i, toks, p in zip(idx, ids, plans, strict=True):
            k = len(p.positions)
            cols["example_id"].append(np.full(k, i, np.int64))
            cols["position"].append(p.positions)
            tid = np.asarray(toks, np.int32)
            cols["token_id"].append(
                np.where(p.positions >= 0, tid[np.clip(p.positions, 0, None)], -1).astype(np.int32)
            )
            cols["word_id"].append(p.word_ids)
            dropped += p.dropped_words
    out = {k: np.concatenate(v) if v else np.zeros(0, np.int32) for k, v in cols.items()}
    out["example_id"] = out["example_id"].astype(np.int64)
    return out


@contextlib.contextmanager
def _progress_bar(enabled: bool, total: int, done: int) -> Iterator[Any]:
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[bold]extract"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} ex/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ) as bar:
        task = bar.add_task("extract", total=total, completed=done, rate="-")

        def advance(n: int) -> None:
            bar.advance(task, n)
            speed = bar.tasks[0].speed
            bar.update(task, rate=f"{speed:,.0f}" if speed else "-")

        yield advance
