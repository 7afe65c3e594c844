"""Shared pieces of the neurons package: its error type, input coercion and the k list of Gurnee et al."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import DataError

Tensor = torch.Tensor

#: The k list of Gurnee et al. (2023).
GURNEE_KS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 32, 64, 128, 256)


class NeuronError(DataError, ValueError):
    """Input that sparse probing or neuron localisation cannot use (labels, k, sites, shapes)."""


def as_acts(X: Any, *, name: str = "X") -> Tensor:
    """Activations as a float32 ``[L, n, d]`` tensor (a 2-D ``[n, d]`` input becomes ``L = 1``)."""
    t = X.detach() if isinstance(X, Tensor) else torch.as_tensor(np.asarray(X))
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3:
        raise NeuronError(
            f"{name} must be [n_layers, n_samples, n_neurons] or [n_samples, n_neurons], got shape "
            f"{tuple(t.shape)}; a site without a neuron axis (e.g. an attention pattern) cannot be probed "
            "neuron by neuron"
        )
    if not torch.is_floating_point(t):
        t = t.to(torch.float32)
    t = t.to(torch.float32)
    if t.shape[1] == 0 or t.shape[2] == 0:
        raise NeuronError(f"{name} is empty (shape {tuple(t.shape)})")
    if not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):  # one cheap pass first
        raise NeuronError(f"{name} holds NaN or infinite activations; clean or re-extract them")
    return t


def as_binary(y: Any, n: int, *, what: str = "this method") -> Tensor:
    """Labels as a 0/1 int64 tensor ``[n]``; raises for non-binary labels or an empty class."""
    yt = torch.as_tensor(np.asarray(y) if not isinstance(y, Tensor) else y)
    if yt.ndim != 1 or yt.shape[0] != n:
        raise NeuronError(
            f"labels must be a 1-D array of {n} values (one per row), got shape {tuple(yt.shape)}"
        )
    if yt.dtype == torch.bool:
        yt = yt.long()
    if torch.is_floating_point(yt):
        if not bool((yt == yt.round()).all()):
            raise NeuronError(f"{what} needs integer 0/1 labels, got non-integer floats")
        yt = yt.long()
    vals = set(torch.unique(yt).tolist())
    if not vals <= {0, 1}:
        shown = sorted(vals)[:8]
        raise NeuronError(
            f"{what} is binary-only and needs 0/1 labels, got values {shown}; binarise the task first "
            "(one-vs-rest: layerscope.neurons.binarize) or use sparse_probe(..., multiclass='ovr')"
        )
    yt = yt.long()
    n_pos = int(yt.sum())
    if n_pos == 0:
        raise NeuronError(
            "the positive class is empty (no label is 1); pick a feature that occurs in the data"
        )
    if n_pos == n:
        raise NeuronError("the negative class is empty (every label is 1); a probe needs both classes")
    return yt


def check_ks(ks: Any, d: int) -> list[int]:
    """Sorted unique positive ks, each at most ``d`` (the number of neurons)."""
    try:
        out = sorted({int(k) for k in ks})
    except (TypeError, ValueError) as e:
        raise NeuronError(f"ks must be positive integers, got {ks!r}") from e
    if not out or out[0] < 1:
        raise NeuronError(f"ks must be positive integers, got {ks!r}")
    if out[-1] > d:
        raise NeuronError(
            f"k = {out[-1]} is larger than the number of neurons ({d}); pass ks up to {d} "
            f"(e.g. ks=[k for k in GURNEE_KS if k <= {d}])"
        )
    return out
