"""``extract_images``: stream images through a vision model and store pooled activations, resumably."""

from __future__ import annotations

import concurrent.futures as cf
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..errors import ConfigError, DataError
from .extract import _chunk_rows, _progress_bar, _Writer
from .store import ActivationStore
from .trace import SiteOptions, capture

IMAGE_POOLINGS = ("spatial_mean", "spatial_max", "flatten")


def _pool(pooling: str) -> Any:
    def fn(x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            return x
        if x.ndim != 4:
            raise ConfigError(f"cannot pool an image activation of shape {tuple(x.shape)}")
        if pooling == "spatial_mean":
            return x.mean((2, 3))
        if pooling == "spatial_max":
            return x.amax((2, 3))
        return x.flatten(1)

    return fn


def extract_images(
    subject: Any,
    images: Any,
    sites: Any,
    *,
    store: str | Path,
    pooling: str = "spatial_mean",
    dtype: str = "float16",
    batch_size: int = 32,
    window: int = 256,
    resume: bool = True,
    overwrite: bool | str = False,
    progress: bool = True,
    dataset_name: str = "images",
) -> ActivationStore:
    """Store activations of ``sites`` for uint8 ``[N, H, W, 3]`` images (one row per image).

    Args:
        subject: a vision ``Subject`` (e.g. ``load("effnet-lite0")``); images are resized/normalised by its spec.
        images: uint8 array ``[N, H, W, 3]``.
        sites: site names/patterns (``"blocks.*.out"``, ``"pooled"``).
        pooling: ``spatial_mean`` (default), ``spatial_max`` or ``flatten`` for feature maps.
        batch_size: images per forward pass; window: images per deterministic window (unit of resumption).
    """
    if subject.image is None:
        raise ConfigError(f"{subject.name} is not an image model; use extract() for text")
    if pooling not in IMAGE_POOLINGS:
        raise ConfigError(f"unknown image pooling {pooling!r}; choose one of {', '.join(IMAGE_POOLINGS)}")
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8 or len(arr) == 0:
        raise DataError(f"images must be a non-empty uint8 array [N, H, W, 3], got {arr.dtype} {arr.shape}")
    if batch_size < 1 or window < 1:
        raise ConfigError("batch_size and window must be >= 1")
    names = [s.name for s in subject.adapter.expand(sites)]
    for s in names:
        subject.adapter.resolve(s)
    fn = _pool(pooling)
    h = __import__("hashlib").sha256(arr.tobytes()).hexdigest()
    manifest = {
        "model": subject.manifest(),
        "sites": names,
        "pooling": pooling,
        "dataset": {"name": dataset_name, "fingerprint": h, "n_examples": len(arr)},
        "window": window,
        "batch_size": batch_size,
        "preprocess": {
            "size": subject.image.size,
            "mean": list(subject.image.mean),
            "std": list(subject.image.std),
        },
        "library": {"layerscope": __version__, "torch": torch.__version__},
    }
    path = Path(store)
    keys = ("model", "sites", "pooling", "dataset", "window", "batch_size", "preprocess")
    st = ActivationStore.reusable(path, manifest, keys, dtype=dtype, resume=resume, overwrite=overwrite)
    if st is None:
        x0 = subject.image.preprocess(arr[:1]).to(subject.device)
        with torch.inference_mode(), capture(subject, {s: SiteOptions(fn=fn) for s in names}) as tr:
            subject.forward({"x": x0})
        dims = {s: int(tr[s].shape[-1]) for s in names}
        n = len(arr)
        meta: dict[str, np.ndarray] = {
            "example_id": np.arange(n, dtype=np.int64),
            "position": np.full(n, -1, np.int32),
            "token_id": np.full(n, -1, np.int32),
            "word_id": np.full(n, -1, np.int32),
        }
        st = ActivationStore.create(
            path,
            dims=dims,
            meta=meta,
            manifest=manifest,
            dtype=dtype,
            chunk_rows=_chunk_rows(dims, dtype),
            overwrite=True,  # reaching here means: no reusable store at path
        )
    if st.complete:
        return st
    committed = st.progress["rows_committed"]
    writer = _Writer(st, names)
    start_window = committed // window
    with (
        _progress_bar(progress, len(arr), start_window * window) as advance,
        cf.ThreadPoolExecutor(1) as pool,
    ):
        pending: cf.Future[None] | None = None
        for w in range(start_window, -(-len(arr) // window)):
            lo, hi = w * window, min((w + 1) * window, len(arr))
            out = {s: np.empty((hi - lo, st.manifest["dims"][s]), np.float32) for s in names}
            for b in range(lo, hi, batch_size):
                e = min(b + batch_size, hi)
                x = subject.image.preprocess(arr[b:e]).to(subject.device)  # batch, 3, size, size
                opts = {s: SiteOptions(fn=fn, dtype=torch.float32, to_cpu=True) for s in names}
                with torch.inference_mode(), capture(subject, opts) as tr:
                    subject.forward({"x": x})
                for s in names:
                    out[s][b - lo : e - lo] = tr[s].numpy()
                advance(e - b)
            if pending is not None:
                pending.result()
            pending = pool.submit(writer.add, lo, out)
        if pending is not None:
            pending.result()
        writer.finish()
    return st
