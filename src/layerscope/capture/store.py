"""``ActivationStore``: activations per site as Zarr arrays ``[n_items, d]`` plus item metadata and a manifest.

Layout of a store folder (a Zarr v3 group, readable by zarr/xarray/dask without layerscope):

- ``acts/<site>``: ``[n_items, d]`` fp16 (default), fp32, or int8 with ``scale/<site>`` (per-row absmax / 127)
- ``meta/example_id|position|token_id|word_id``: ``[n_items]`` item metadata
- ``checksums/<site>``: CRC32 of every committed row chunk
- group attributes: the manifest (model id + revision, sites, pooling, dataset fingerprint, library version)
- ``progress.json``: rows committed so far (written atomically after each chunk); ``examples.jsonl``: the texts
- ``tokenizer/``: the model's tokenizer, so readers can decode token ids without the model
"""

from __future__ import annotations

import json
import shutil
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_json, atomic_write_text
from ..errors import StoreError

META_FIELDS = ("example_id", "position", "token_id", "word_id")
DTYPES = {"float16": np.float16, "float32": np.float32, "int8": np.int8}


def _key(site: str) -> str:
    return site.replace(":", "=").replace("/", "|")


class ActivationStore:
    """Read/write access to one store folder."""

    def __init__(self, path: Path, group: Any) -> None:
        self.path = path
        self._group = group

    # -- creation / opening ------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        dims: Mapping[str, int],
        meta: Mapping[str, np.ndarray],
        manifest: dict[str, Any],
        dtype: str = "float16",
        chunk_rows: int = 1024,
        texts: list[str] | None = None,
        overwrite: bool = False,
    ) -> ActivationStore:
        """Create an empty store for ``n_items`` rows (from ``meta``) and the given site widths."""
        import zarr

        if dtype not in DTYPES:
            raise StoreError(f"unknown store dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        p = Path(path)
        if p.exists():
            if not overwrite:
                raise StoreError(
                    f"{p} already exists; pass overwrite=True (CLI: --overwrite) or another path"
                )
            shutil.rmtree(p)
        n = len(next(iter(meta.values())))
        tmp = p.with_name(f".{p.name}.creating")
        shutil.rmtree(tmp, ignore_errors=True)
        root = zarr.open_group(str(tmp), mode="w")
        n_chunks = max(1, -(-n // chunk_rows))
        for site, d in dims.items():
            root.create_array(
                f"acts/{_key(site)}",
                shape=(n, d),
                chunks=(chunk_rows, d),
                dtype=DTYPES[dtype],
                compressors=None,
                fill_value=0,
            )
            root.create_array(
                f"checksums/{_key(site)}",
                shape=(n_chunks,),
                chunks=(n_chunks,),
                dtype=np.uint32,
                fill_value=0,
            )
            if dtype == "int8":
                root.create_array(
                    f"scale/{_key(site)}", shape=(n,), chunks=(chunk_rows,), dtype=np.float32, fill_value=0
                )
        for field in META_FIELDS:
            arr = np.asarray(meta[field])
            a = root.create_array(
                f"meta/{field}", shape=arr.shape, chunks=(max(1, min(n, 1 << 18)),), dtype=arr.dtype
            )
            a[:] = arr
        full = {
            **manifest,
            "dtype": dtype,
            "chunk_rows": chunk_rows,
            "n_items": n,
            "dims": dict(dims),
            "format": "layerscope-activation-store/1",
        }
        root.attrs.update(full)
        if texts is not None:
            atomic_write_text(tmp / "examples.jsonl", "".join(json.dumps({"text": t}) + "\n" for t in texts))
        atomic_write_json(tmp / "progress.json", {"rows_committed": 0, "complete": False})
        tmp.rename(p)
        return cls.open(p)

    @classmethod
    def open(cls, path: str | Path) -> ActivationStore:
        """Open an existing store (read-only use needs no model)."""
        import zarr

        p = Path(path)
        if not (p / "zarr.json").is_file() or not (p / "progress.json").is_file():
            raise StoreError(f"{p} is not a layerscope activation store (missing zarr.json/progress.json)")
        try:
            group = zarr.open_group(str(p), mode="r+")
        except Exception as e:  # pragma: no cover - corrupt metadata
            raise StoreError(f"cannot open store {p}: {e}") from e
        return cls(p, group)

    @classmethod
    def reusable(
        cls,
        path: Path,
        manifest: dict[str, Any],
        keys: tuple[str, ...],
        *,
        dtype: str,
        resume: bool,
        overwrite: bool | str,
    ) -> ActivationStore | None:
        """The existing store at ``path`` if it was made from the same inputs, else None (create a new one).

        ``overwrite=True`` always recreates; ``"mismatched"`` recreates only a store made from other inputs
        (caches layerscope manages); otherwise an existing store with other inputs raises ``StoreError``.
        """
        if not path.exists() or overwrite is True:
            return None
        if not resume:
            raise StoreError(f"{path} already exists; pass overwrite=True (CLI: --overwrite) or resume=True")
        st = cls.open(path)
        old = st.manifest
        diff = [k for k in keys if old.get(k) != manifest.get(k)] + (
            ["dtype"] if old.get("dtype") != dtype else []
        )
        if not diff:
            return st
        if overwrite != "mismatched":
            raise StoreError(
                f"{path} was made with a different {', '.join(diff)}; use another path or overwrite=True"
            )
        return None

    # -- properties --------------------------------------------------------------------------------
    @property
    def manifest(self) -> dict[str, Any]:
        """The store's manifest (model, sites, pooling, dataset fingerprint, dtype, n_items …)."""
        return dict(self._group.attrs)

    @property
    def sites(self) -> list[str]:
        """Stored site names, in extraction order."""
        return list(self.manifest["sites"])

    @property
    def n_items(self) -> int:
        """Number of stored rows (items)."""
        return int(self.manifest["n_items"])

    @property
    def chunk_rows(self) -> int:
        """Rows per committed chunk."""
        return int(self.manifest["chunk_rows"])

    @property
    def progress(self) -> dict[str, Any]:
        """``{"rows_committed": int, "complete": bool}``."""
        return json.loads((self.path / "progress.json").read_text())

    @property
    def complete(self) -> bool:
        """True once every row was written and committed."""
        return bool(self.progress.get("complete"))

    def __repr__(self) -> str:
        m = self.manifest
        return (
            f"ActivationStore({str(self.path)!r}, model={m.get('model', {}).get('name')!r}, "
            f"sites={len(self.sites)}, n_items={self.n_items}, pooling={m.get('pooling')!r}, complete={self.complete})"
        )

    # -- reading -----------------------------------------------------------------------------------
    def _array(self, prefix: str, site: str) -> Any:
        if site not in self.sites:
            raise StoreError(f"site {site!r} is not in this store; stored sites: {', '.join(self.sites)}")
        return self._group[f"{prefix}/{_key(site)}"]

    def read(self, site: str, rows: Any = None, *, dtype: Any = np.float32) -> np.ndarray:
        """Activations of ``site`` (``[n, d]``), all rows or a slice / index array, as ``dtype``."""
        self._require_complete(rows)
        arr = self._array("acts", site)
        sel = slice(None) if rows is None else rows
        if isinstance(sel, np.ndarray | list):
            out = arr.oindex[np.asarray(sel), :]
        else:
            out = arr[sel]
        if self.manifest["dtype"] == "int8":
            scale = self._array("scale", site)
            s = scale.oindex[np.asarray(sel)] if isinstance(sel, np.ndarray | list) else scale[sel]
            return (out.astype(np.float32) * s[:, None]).astype(dtype)
        return np.asarray(out).astype(dtype, copy=False)

    def iter_rows(
        self, site: str, *, block: int | None = None, dtype: Any = np.float32
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Stream ``(start_row, block)`` pairs of a site (memory-flat reading of large stores)."""
        step = block or self.chunk_rows * 8
        for start in range(0, self.n_items, step):
            yield start, self.read(site, slice(start, min(start + step, self.n_items)), dtype=dtype)

    def meta(self, field: str) -> np.ndarray:
        """An item metadata column: ``example_id``, ``position``, ``token_id`` or ``word_id``."""
        if field not in META_FIELDS:
            raise StoreError(f"unknown metadata field {field!r}; choose one of {', '.join(META_FIELDS)}")
        return np.asarray(self._group[f"meta/{field}"][:])

    def metadata(self) -> Any:
        """All item metadata as a pandas DataFrame (one row per stored item)."""
        import pandas as pd

        return pd.DataFrame({f: self.meta(f) for f in META_FIELDS})

    def texts(self) -> list[str]:
        """The dataset's texts (one per example)."""
        f = self.path / "examples.jsonl"
        if not f.is_file():
            return []
        return [json.loads(line)["text"] for line in f.read_text(encoding="utf-8").splitlines() if line]

    def tokenizer(self) -> Any:
        """The model's tokenizer saved with the store (for decoding token ids), or None."""
        d = self.path / "tokenizer"
        if not d.is_dir():
            return None
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(d))

    def _require_complete(self, rows: Any) -> None:
        if not self.complete and rows is None:
            done = self.progress["rows_committed"]
            raise StoreError(
                f"store {self.path} is incomplete ({done}/{self.n_items} rows); run the same extract again to "
                "resume it, or read a committed row range"
            )

    # -- writing (used by extract) -----------------------------------------------------------------
    def write_chunk(self, chunk: int, arrays: Mapping[str, np.ndarray]) -> None:
        """Write row chunk ``chunk`` of every site (rows ``chunk*R`` …) and its checksums; then commit it."""
        R = self.chunk_rows
        start = chunk * R
        for site, block in arrays.items():
            stop = start + len(block)
            if self.manifest["dtype"] == "int8":
                scale = np.abs(block).max(axis=1).astype(np.float32) / 127.0
                scale[scale == 0] = 1.0
                q = np.clip(np.rint(block / scale[:, None]), -127, 127).astype(np.int8)
                self._array("scale", site)[start:stop] = scale
                data = q
            else:
                data = block.astype(DTYPES[self.manifest["dtype"]], copy=False)
            self._array("acts", site)[start:stop] = data
            self._array("checksums", site)[chunk] = zlib.crc32(np.ascontiguousarray(data).tobytes())
        self._commit(min(start + R, self.n_items))

    def _commit(self, rows: int) -> None:
        atomic_write_json(
            self.path / "progress.json", {"rows_committed": rows, "complete": rows >= self.n_items}
        )

    def mark_complete(self) -> None:
        """Mark an (empty or fully written) store complete."""
        self._commit(self.n_items)

    def verify(self) -> None:
        """Re-read every committed chunk and compare its CRC32; raises ``StoreError`` naming a bad chunk."""
        R = self.chunk_rows
        done = self.progress["rows_committed"]
        for site in self.sites:
            acts = self._array("acts", site)
            sums = self._array("checksums", site)[:]
            for c in range(-(-done // R)):
                data = np.ascontiguousarray(acts[c * R : min((c + 1) * R, done)])
                if zlib.crc32(data.tobytes()) != int(sums[c]):
                    raise StoreError(
                        f"store {self.path}: chunk {c} of {site!r} fails its checksum; re-extract with --overwrite"
                    )
