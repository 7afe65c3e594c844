"""Input validation shared by the probe solvers, estimators and the layer-wise entry point."""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from layerscope.errors import DataError

Tensor = torch.Tensor


class ProbeDataError(DataError, ValueError):
    """Probe input that cannot be fitted (shapes, labels, non-finite values, empty splits).

    Also a ``ValueError``, so scikit-learn's tooling (``GridSearchCV``, estimator checks) treats it as one.
    """


def as_float_tensor(x: Any) -> Tensor:
    """A floating-point torch tensor view/copy of a numpy array or tensor (float16 → float32)."""
    t = x.detach() if isinstance(x, Tensor) else _tensor(x)
    if t.dtype in (torch.float16, torch.bfloat16):
        return t.float()
    if not torch.is_floating_point(t):
        if torch.is_complex(t):
            raise ProbeDataError("activations must be real numbers, got complex values")
        return t.to(torch.float64)
    return t


def _tensor(x: Any) -> Tensor:
    """A tensor sharing memory with ``x`` where possible (read-only arrays too: they are never written)."""
    if isinstance(x, Tensor):
        return x
    arr = np.asarray(x)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.as_tensor(arr)


def as_layers(X: Any) -> Tensor:
    """``X`` as a ``[L, n, d]`` tensor; a 2-D ``[n, d]`` input becomes ``L = 1``."""
    t = _tensor(X)
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3:
        raise ProbeDataError(
            f"X must be [n_layers, n_samples, d] (or [n_samples, d] for one layer), got shape {tuple(t.shape)}"
        )
    return t


def to_numpy(x: Any) -> Any:
    """A torch tensor as a numpy array (anything else is returned unchanged)."""
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy()
    return x


#: Below this many multiply-adds per operation, torch work runs on one thread (see :func:`threads_for`).
SMALL_WORK = 2**24
_PINNED = threading.Event()  # set while :func:`pinned_threads` runs: thread counts are then left alone


def set_threads(n: int) -> None:
    """``torch.set_num_threads(n)``, unless :func:`pinned_threads` holds the count (concurrent fits)."""
    if not _PINNED.is_set():
        torch.set_num_threads(n)


@contextlib.contextmanager
def pinned_threads(n: int) -> Iterator[None]:
    """Fix torch's thread count at ``n`` for the block; the probes' own per-op adjustments are skipped.

    The count is process-wide, so fits that run side by side in Python threads (the sweep runs the shared MLP
    probes beside the linear ones) must not change it under each other.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    _PINNED.set()
    try:
        yield
    finally:
        _PINNED.clear()
        torch.set_num_threads(before)


@contextlib.contextmanager
def threads_for(work: float) -> Iterator[None]:
    """Run the block on one torch thread when ``work`` (multiply-adds per op) is small, else unchanged.

    An OpenMP fork/join per small op costs more than the op itself, and far more on a busy machine.
    """
    before = torch.get_num_threads()
    set_threads(1 if work < SMALL_WORK else before)
    try:
        yield
    finally:
        set_threads(before)
