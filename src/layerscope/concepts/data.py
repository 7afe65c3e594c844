"""Concept-annotated datasets: the CEM paper's XOR / Trig / Dot benchmarks, user arrays and files, and a
dataset derived from sentence embeddings with corpus-derived concepts.

Every dataset is a :class:`ConceptDataset`: features ``x [n, d]``, concepts ``c [n, k]`` in ``[0, 1]``,
task labels ``y [n]`` (class ids ``0..n_classes-1``) and a fixed train/val/test split.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, DataError

if TYPE_CHECKING:
    from ..models.subject import Subject

__all__ = [
    "SENTENCE_CONCEPTS",
    "SYNTHETIC",
    "ConceptDataset",
    "bayes_ceiling",
    "dot",
    "from_arrays",
    "from_file",
    "from_sentences",
    "load_dataset",
    "monte_carlo_ceiling",
    "sentence_concepts",
    "trig",
    "xor",
]

#: Train / validation / test fractions used by the CEM paper (3,000 samples → 2,100 / 300 / 600).
SPLIT = (0.7, 0.1, 0.2)


@dataclasses.dataclass(frozen=True)
class ConceptDataset:
    """Features, concept annotations and task labels with a fixed split.

    Attributes:
        name: short name (``xor``, ``trig``, ``dot``, a file stem, ...).
        x: ``[n, d]`` float32 features.
        c: ``[n, k]`` float32 concepts in ``[0, 1]`` (0/1 for hard annotations).
        y: ``[n]`` int64 class ids ``0..n_classes-1``.
        concept_names, class_names: labels for reports.
        train, val, test: row indices of the three splits (disjoint).
    """

    name: str
    x: np.ndarray
    c: np.ndarray
    y: np.ndarray
    concept_names: tuple[str, ...]
    class_names: tuple[str, ...]
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    @property
    def n_concepts(self) -> int:
        return int(self.c.shape[1])

    @property
    def n_features(self) -> int:
        return int(self.x.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def binary_concepts(self) -> bool:
        """Whether every concept value is exactly 0 or 1 (needed by a boolean bottleneck)."""
        return bool(np.isin(self.c, (0.0, 1.0)).all())

    def split(self, part: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x, c, y)`` of ``"train"``, ``"val"`` or ``"test"``."""
        if part not in ("train", "val", "test"):
            raise ConfigError(f"split must be 'train', 'val' or 'test', got {part!r}")
        idx = getattr(self, part)
        return self.x[idx], self.c[idx], self.y[idx]

    def ceiling(self) -> float:
        """Best test accuracy reachable from the true concepts alone, estimated on this dataset's rows."""
        return bayes_ceiling(self.c, self.y)


def from_arrays(
    x: Any,
    c: Any,
    y: Any,
    *,
    name: str = "data",
    concept_names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    split: tuple[float, float, float] = SPLIT,
    seed: int = 0,
    splits: tuple[Any, Any, Any] | None = None,
) -> ConceptDataset:
    """Validate user arrays and make a :class:`ConceptDataset`.

    Args:
        x: ``[n, d]`` features. c: ``[n, k]`` concepts in ``[0, 1]``. y: ``[n]`` task labels (any
            hashable values; mapped to class ids in sorted order).
        split: train/val/test fractions (random, seeded) unless ``splits`` gives the row indices.

    Raises:
        DataError: mismatched row counts, NaN/inf values, concepts outside ``[0, 1]``, fewer than two classes.
    """
    xa = np.asarray(x)
    ca = np.asarray(c)
    ya_raw = np.asarray(y)
    if xa.ndim == 1:
        xa = xa[:, None]
    if ca.ndim == 1:
        ca = ca[:, None]
    if xa.ndim != 2 or ca.ndim != 2 or ya_raw.ndim != 1:
        raise DataError(
            f"expected x [n, d], c [n, k] and y [n]; got shapes {xa.shape}, {ca.shape}, {ya_raw.shape}"
        )
    n = xa.shape[0]
    if ca.shape[0] != n or ya_raw.shape[0] != n:
        raise DataError(
            f"x has {n} rows but the concept matrix has {ca.shape[0]} and the labels {ya_raw.shape[0]}; "
            "give one concept row and one label per example"
        )
    if n < 10:
        raise DataError(f"need at least 10 examples to split into train/val/test, got {n}")
    if ca.shape[1] < 1:
        raise DataError("the concept matrix has no columns; give at least one concept")
    try:
        xa = xa.astype(np.float32)
        ca = ca.astype(np.float32)
    except (TypeError, ValueError) as e:
        raise DataError(f"features and concepts must be numeric: {e}") from None
    for label, arr in (("features", xa), ("concepts", ca)):
        bad = ~np.isfinite(arr)
        if bad.any():
            r, col = np.argwhere(bad)[0]
            raise DataError(
                f"{label} contain {int(bad.sum())} NaN/inf values (first at row {r}, column {col}); "
                "drop or impute those rows first"
            )
    if ya_raw.dtype.kind == "f" and not np.isfinite(ya_raw).all():
        raise DataError("task labels contain NaN/inf; drop those rows first")
    if (ca < 0).any() or (ca > 1).any():
        raise DataError(
            f"concepts must lie in [0, 1] (0/1 for absent/present); found values in "
            f"[{float(ca.min())}, {float(ca.max())}]"
        )
    classes, yi = np.unique(ya_raw, return_inverse=True)
    if len(classes) < 2:
        raise DataError(
            f"the task has a single class ({classes[0]!r} for all {n} examples); a classifier needs at "
            "least two classes"
        )
    k = ca.shape[1]
    cn = tuple(concept_names) if concept_names is not None else tuple(f"c{i}" for i in range(k))
    if len(cn) != k:
        raise DataError(f"{len(cn)} concept names for {k} concept columns")
    if class_names is not None:
        cls = tuple(str(s) for s in class_names)
        if len(cls) != len(classes):
            raise DataError(f"{len(cls)} class names for {len(classes)} classes")
    else:
        cls = tuple(_label(v) for v in classes)
    if splits is not None:
        tr, va, te = (np.asarray(s, dtype=np.int64) for s in splits)
    else:
        tr, va, te = _random_split(n, split, seed)
    for part in (tr, va, te):
        if part.size == 0:
            raise DataError("a split is empty; use more examples or other split fractions")
        if part.min() < 0 or part.max() >= n:
            raise DataError(f"split indices must lie in [0, {n}); got {int(part.min())}..{int(part.max())}")
    return ConceptDataset(
        name=name,
        x=np.ascontiguousarray(xa),
        c=np.ascontiguousarray(ca),
        y=yi.astype(np.int64),
        concept_names=cn,
        class_names=cls,
        train=tr,
        val=va,
        test=te,
    )


def _label(v: Any) -> str:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v)


def _random_split(n: int, fractions: tuple[float, float, float], seed: int) -> tuple[np.ndarray, ...]:
    if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ConfigError(f"split fractions must be three positive numbers summing to 1, got {fractions}")
    perm = np.random.default_rng(seed).permutation(n)
    n_tr = round(fractions[0] * n)
    n_va = round(fractions[1] * n)
    return np.sort(perm[:n_tr]), np.sort(perm[n_tr : n_tr + n_va]), np.sort(perm[n_tr + n_va :])


# -- the CEM paper's synthetic benchmarks ------------------------------------------------------------------


def _xor_sample(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    x = rng.uniform(0.0, 1.0, (n, 2))
    c = x > 0.5
    y = np.logical_xor(c[:, 0], c[:, 1])
    return x, c, y


def _trig_sample(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    h = rng.normal(0.0, 2.0, (n, 3))
    a, b, cc = h[:, 0], h[:, 1], h[:, 2]
    x = np.stack(
        [np.sin(a) + a, np.cos(a) + a, np.sin(b) + b, np.cos(b) + b, np.sin(cc) + cc, np.cos(cc) + cc],
        axis=1,
    )
    x = np.concatenate([x, (a**2 + b**2 + cc**2)[:, None]], axis=1)
    c = h > 0
    y = h.sum(axis=1) > 1
    return x, c, y


def _dot_sample(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    v1 = rng.normal(0.0, 2.0, (n, 2))
    v3 = rng.normal(0.0, 2.0, (n, 2))
    x = np.concatenate([v1 + v3, v1 - v3], axis=1)
    c = np.stack([v1.sum(axis=1) > 0, -v3.sum(axis=1) > 0], axis=1)  # v1·(1,1) > 0, v3·(−1,−1) > 0
    y = (v1 * v3).sum(axis=1) > 0
    return x, c, y


_SAMPLERS = {"xor": _xor_sample, "trig": _trig_sample, "dot": _dot_sample}
_CONCEPT_NAMES = {
    "xor": ("x1>0.5", "x2>0.5"),
    "trig": ("a>0", "b>0", "c>0"),
    "dot": ("v1·(1,1)>0", "v3·(-1,-1)>0"),
}
#: Best accuracy from the true concepts alone (Monte-Carlo, 4M samples; see ``bayes_ceiling``).
CEILINGS = {"xor": 1.0, "trig": 0.813, "dot": 0.750}
SYNTHETIC = tuple(_SAMPLERS)


def _synthetic(name: str, n: int, seed: int) -> ConceptDataset:
    if n < 30:
        raise ConfigError(f"n must be >= 30 for a 70/10/20 split, got {n}")
    rng = np.random.default_rng(seed)
    x, c, y = _SAMPLERS[name](rng, n)
    n_tr = round(SPLIT[0] * n)
    n_va = round(SPLIT[1] * n)
    idx = np.arange(n)
    # like the reference code, the three splits are independent draws from the same distribution
    return from_arrays(
        x,
        c.astype(np.float32),
        y.astype(np.int64),
        name=name,
        concept_names=_CONCEPT_NAMES[name],
        class_names=("0", "1"),
        splits=(idx[:n_tr], idx[n_tr : n_tr + n_va], idx[n_tr + n_va :]),
    )


def xor(n: int = 3000, *, seed: int = 42) -> ConceptDataset:
    """XOR: ``x ~ U(0,1)²``, ``c_j = [x_j > 0.5]``, ``y = c₁ XOR c₂`` (split 70/10/20)."""
    return _synthetic("xor", n, seed)


def trig(n: int = 3000, *, seed: int = 42) -> ConceptDataset:
    """Trig: ``h = (a, b, c) ~ N(0, 2²)³``; 7 features ``sin/cos(h_i) + h_i`` and ``|h|²``; concepts
    ``h_i > 0``; ``y = [a + b + c > 1]``."""
    return _synthetic("trig", n, seed)


def dot(n: int = 3000, *, seed: int = 42) -> ConceptDataset:
    """Dot: ``v1, v3 ~ N(0, 2²·I₂)``; features ``[v1 + v3, v1 − v3]``; concepts ``v1·(1,1) > 0``,
    ``v3·(−1,−1) > 0``; ``y = [v1·v3 > 0]``."""
    return _synthetic("dot", n, seed)


def bayes_ceiling(c: Any, y: Any) -> float:
    """Accuracy of the best classifier that sees only the (hard) concepts: Σ_cells max_class count / n."""
    ca = np.asarray(c)
    ya = np.asarray(y)
    if ca.ndim != 2 or ya.ndim != 1 or ca.shape[0] != ya.shape[0]:
        raise DataError(f"expected c [n, k] and y [n], got {ca.shape} and {ya.shape}")
    hard = (ca > 0.5).astype(np.int64)
    if hard.shape[1] <= 62:  # one integer key per concept cell: a 1-D unique is much faster than rows
        _, cell = np.unique(hard @ (1 << np.arange(hard.shape[1], dtype=np.int64)), return_inverse=True)
    else:
        _, cell = np.unique(hard, axis=0, return_inverse=True)
    _, cls = np.unique(ya, return_inverse=True)
    counts = np.zeros((int(cell.max()) + 1, int(cls.max()) + 1), dtype=np.int64)
    np.add.at(counts, (cell.ravel(), cls.ravel()), 1)
    return float(counts.max(axis=1).sum() / len(ya))


def monte_carlo_ceiling(name: str, *, n: int = 2_000_000, seed: int = 0) -> float:
    """Monte-Carlo estimate of a synthetic benchmark's concept-only accuracy ceiling."""
    if name not in _SAMPLERS:
        raise ConfigError(f"unknown synthetic dataset {name!r}; choose one of {', '.join(SYNTHETIC)}")
    _, c, y = _SAMPLERS[name](np.random.default_rng(seed), n)
    return bayes_ceiling(c, y)


# -- user files ------------------------------------------------------------------------------------------


def from_file(
    path: str | Path,
    *,
    concept_columns: Sequence[str] | None = None,
    label_column: str = "y",
    concept_prefix: str = "c_",
    seed: int = 0,
) -> ConceptDataset:
    """Read a CSV (header row) or NumPy ``.npz`` file.

    CSV: the label column (``label_column``), concept columns (``concept_columns`` or every column whose
    name starts with ``concept_prefix``) and every other column as a numeric feature. NPZ: arrays ``x``,
    ``c`` and ``y`` (optional ``concept_names``).
    """
    p = Path(path)
    if not p.is_file():
        raise DataError("file not found; give a .csv or .npz file", path=p)
    if p.suffix.lower() == ".npz":
        with np.load(p, allow_pickle=False) as z:
            missing = [k for k in ("x", "c", "y") if k not in z.files]
            if missing:
                raise DataError(f"the .npz file lacks arrays {missing}; save x, c and y", path=p)
            names = tuple(str(s) for s in z["concept_names"]) if "concept_names" in z.files else None
            try:
                return from_arrays(z["x"], z["c"], z["y"], name=p.stem, concept_names=names, seed=seed)
            except DataError as e:
                raise DataError(str(e), path=p) from None
    if p.suffix.lower() not in (".csv", ".tsv"):
        raise DataError("unsupported file type; use .csv/.tsv (header row) or .npz (x, c, y)", path=p)
    import pandas as pd

    try:
        frame = pd.read_csv(p, sep="\t" if p.suffix.lower() == ".tsv" else ",")
    except Exception as e:  # pandas raises many types for malformed files
        raise DataError(f"could not parse the file: {e}", path=p) from None
    if label_column not in frame.columns:
        raise DataError(
            f"no label column {label_column!r}; columns are {list(frame.columns)} (use --label-column)",
            path=p,
        )
    cols = (
        list(concept_columns)
        if concept_columns
        else [c for c in frame.columns if c.startswith(concept_prefix)]
    )
    unknown = [c for c in cols if c not in frame.columns]
    if unknown:
        raise DataError(f"concept columns {unknown} are not in the file", path=p)
    if not cols:
        raise DataError(
            f"no concept columns (none named {concept_prefix}*); name them or pass concept_columns", path=p
        )
    feats = [c for c in frame.columns if c not in cols and c != label_column]
    if not feats:
        raise DataError("no feature columns left after removing the label and concept columns", path=p)
    non_numeric = [c for c in feats + cols if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        raise DataError(f"columns {non_numeric} are not numeric", path=p)
    labels = frame[label_column].to_numpy()
    if pd.isna(labels).any():
        raise DataError("the label column has empty values", path=p)
    try:
        return from_arrays(
            frame[feats].to_numpy(),
            frame[cols].to_numpy(),
            labels,
            name=p.stem,
            concept_names=cols,
            seed=seed,
        )
    except DataError as e:
        raise DataError(str(e), path=p) from None


def load_dataset(spec: str, *, n: int = 3000, seed: int = 42) -> ConceptDataset:
    """``xor`` / ``trig`` / ``dot`` or a path to a .csv/.npz file."""
    key = spec.lower()
    if key in _SAMPLERS:
        return _synthetic(key, n, seed)
    p = Path(spec)
    if p.suffix.lower() in (".csv", ".tsv", ".npz") or p.exists():
        return from_file(p, seed=seed)
    raise ConfigError(f"unknown dataset {spec!r}; use xor, trig, dot or a path to a .csv/.npz file")


# -- concepts derived from text ---------------------------------------------------------------------------

_NEGATION = re.compile(
    r"\b(not|no|never|nothing|nobody|none|nor|neither|cannot|without)\b|n't\b", re.IGNORECASE
)
_DIGIT = re.compile(r"\d")
_PAST = re.compile(
    r"\b(was|were|had|did|went|came|got|made|said|took|saw|gave|found|told|felt|left|thought|bought|"
    r"\w{2,}ed)\b",
    re.IGNORECASE,
)
_EXCLAIM = re.compile(r"!")
SENTENCE_CONCEPTS = ("negation", "has_digit", "past_tense", "exclamation")


def sentence_concepts(texts: Sequence[str]) -> np.ndarray:
    """Surface concepts of each sentence: negation word, a digit, a past-tense verb form, an exclamation.

    Heuristic silver labels (regular expressions), shape ``[n, 4]`` in the order of ``SENTENCE_CONCEPTS``.
    ``past_tense`` matches common irregular past forms and words ending in ``-ed``.
    """
    rows = [
        (bool(_NEGATION.search(t)), bool(_DIGIT.search(t)), bool(_PAST.search(t)), bool(_EXCLAIM.search(t)))
        for t in texts
    ]
    return np.asarray(rows, dtype=np.float32).reshape(len(texts), len(SENTENCE_CONCEPTS))


def from_sentences(
    subject: Subject,
    texts: Sequence[str],
    labels: Sequence[Any],
    *,
    name: str = "sentences",
    batch_size: int = 64,
    max_length: int = 128,
    seed: int = 0,
) -> ConceptDataset:
    """Concept-annotated data from a text encoder: mean-pooled final-layer sentence embeddings as
    features, :func:`sentence_concepts` as concepts and ``labels`` as the task."""
    import torch

    from ..capture import capture

    if len(texts) != len(labels):
        raise DataError(f"{len(texts)} texts but {len(labels)} labels")
    if subject.kind not in ("encoder", "causal_lm"):
        raise ConfigError(
            f"from_sentences needs a text model (encoder or causal LM), got a {subject.kind} model"
        )
    feats = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            batch = list(texts[i : i + batch_size])
            inputs = subject.tokenize(batch, max_length=max_length)
            with capture(subject, ["final"]) as tr:
                subject.forward(inputs)
            h = tr["final"].float()  # [batch, pos, d_model]
            mask = inputs["attention_mask"].to(h.dtype).unsqueeze(-1)
            feats.append(((h * mask).sum(1) / mask.sum(1).clamp_min(1)).cpu().numpy())
    x = np.concatenate(feats, axis=0) if feats else np.zeros((0, 1), np.float32)
    return from_arrays(
        x, sentence_concepts(texts), np.asarray(labels), name=name, concept_names=SENTENCE_CONCEPTS, seed=seed
    )
