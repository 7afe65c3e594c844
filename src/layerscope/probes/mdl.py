"""Minimum description length probing (Voita & Titov 2020): the online code, batched over layers.

The training items are put in a fixed random order and cut at 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.25, 12.5, 25,
50 and 100 % of their number. The first block is sent with the uniform code (t₁·log₂K bits); every later
block costs the cross-entropy (in bits) of a probe trained on everything before it. The codelength is the
sum; compression is the uniform codelength N·log₂K divided by it. One probe fit per block serves every
layer at once (layers are the batch dimension).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import ConfigError

FRACTIONS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.0625, 0.125, 0.25, 0.5, 1.0)


@dataclasses.dataclass(frozen=True)
class OnlineCode:
    """Online codelength per layer.

    Attributes:
        codelength_bits: ``[L]`` total online codelength.
        uniform_bits: N·log₂K, the codelength without a model.
        compression: ``[L]`` uniform / online codelength.
        block_sizes: number of items in each transmitted block (the first is the uniform block).
        block_bits: ``[L, n_blocks]`` bits spent on each block.
    """

    codelength_bits: np.ndarray
    uniform_bits: float
    compression: np.ndarray
    block_sizes: np.ndarray
    block_bits: np.ndarray


def block_ends(n: int, fractions: tuple[float, ...] = FRACTIONS) -> np.ndarray:
    """Cumulative item counts at the block boundaries (strictly increasing, last = n)."""
    ends = np.unique(np.clip(np.round(np.asarray(fractions) * n).astype(int), 1, n))
    if ends[-1] != n:
        ends = np.append(ends, n)
    return ends


def online_code(
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    n_classes: int,
    l2: float | torch.Tensor = 1.0,
    seed: int = 0,
    fractions: tuple[float, ...] = FRACTIONS,
    max_iter: int = 50,
    precision: str = "auto",
) -> OnlineCode:
    """Online codelength of labels ``y`` given ``X`` for every layer.

    Args:
        X: ``[L, n, d]`` training items of every layer (float).
        y: ``[n]`` class indices in ``[0, n_classes)``.
        n_classes: K, the size of the uniform code.
        l2: L2 strength of the logistic probes (a float or one per layer ``[L]``), as in ``fit_logistic``.
        seed: order of the items.
        max_iter: L-BFGS iterations per block; each block's probe starts from the previous block's solution.
        precision: matmul precision of the block fits, as in :func:`online_codes`.
    """
    return online_codes(
        X, [y], n_classes=[n_classes], l2=l2, seed=seed, fractions=fractions, max_iter=max_iter,
        precision=precision,
    )[0]  # fmt: skip


def online_codes(
    X: torch.Tensor,
    ys: Sequence[torch.Tensor],
    *,
    n_classes: Sequence[int],
    l2: float | torch.Tensor = 1.0,
    seed: int = 0,
    fractions: tuple[float, ...] = FRACTIONS,
    max_iter: int = 50,
    precision: str = "auto",
) -> list[OnlineCode]:
    """:func:`online_code` of several labelings of the same items at once (e.g. a task and its control task).

    Every labeling gets the same item order, blocks, standardisation and per-layer ``l2``; their probes are
    fitted in ONE L-BFGS per block (``_fit_logistic`` with one label set per column: each evaluation reads
    ``X`` once for all of them), each restricted to its own ``n_classes[s]`` classes.

    Args:
        X: ``[L, n, d]``; ys: ``S`` label vectors ``[n]``; n_classes: ``S`` class counts; the rest as in
            :func:`online_code`.
        precision: matmul precision of the block fits (see :func:`~layerscope.probes.fit_logistic`);
            ``"auto"`` uses bfloat16 products where the CPU has bfloat16 units. The block codelengths are
            always evaluated in float32.

    Returns:
        One :class:`OnlineCode` per labeling, in order.
    """
    from ._logistic import _fit_logistic, _mm_dtype, auto_min_work
    from .solvers import predict_logits

    if X.ndim != 3:
        raise ConfigError(f"online_code needs X of shape [layers, n, d], got {tuple(X.shape)}")
    L, n, _ = X.shape
    sizes = [int(k) for k in n_classes]
    if not ys or len(sizes) != len(ys):
        raise ConfigError(f"online_codes needs one n_classes per label vector ({len(ys)} vs {len(sizes)})")
    if n < 2 or any(len(y) != n for y in ys):
        raise ConfigError(
            f"online_code needs >= 2 items with one label each (got {n} items, {[len(y) for y in ys]} labels)"
        )
    if min(sizes) < 2:
        raise ConfigError("online_code needs at least 2 classes")
    S, K = len(sizes), max(sizes)
    mm = _mm_dtype(precision)
    order = torch.as_tensor(np.random.default_rng(seed).permutation(n))
    Xo = X[:, order].float()
    yo = torch.stack([torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y) for y in ys])
    yo = yo.long()[:, order]  # [S, n]
    lam = torch.as_tensor(l2, dtype=torch.float64).reshape(-1, 1).expand(L, S)  # [L, S]
    ends = block_ends(n, fractions)
    log2k = np.log2(sizes)  # [S]
    bits = np.zeros((S, L, len(ends)))
    bits[:, :, 0] = ends[0] * log2k[:, None]
    init = None
    for i in range(1, len(ends)):
        lo, hi = int(ends[i - 1]), int(ends[i])
        train = Xo[:, :lo]
        mu = train.mean(1, keepdim=True)
        sd = train.std(1, keepdim=True, unbiased=False).clamp_min(1e-6) if lo > 1 else torch.ones_like(mu)
        W, b, _ = _fit_logistic(
            (train - mu) / sd, None, l2=lam, n_classes=K, max_iter=max_iter, init=init, tol=1e-6,
            label_sets=yo[:, :lo], set_classes=sizes, mm_dtype=mm, mm_min_work=auto_min_work(precision),
        )  # fmt: skip
        init = (W, b)  # warm start: the next prefix only adds data
        logits = predict_logits((Xo[:, lo:hi] - mu) / sd, W, b)  # [L, S, block, K]
        for s, k in enumerate(sizes):
            logp = torch.log_softmax(logits[:, s, :, :k].double(), dim=-1)  # [L, block, K_s]
            target = yo[s, lo:hi].view(1, -1, 1).expand(L, -1, 1)
            nll = -logp.gather(-1, target).squeeze(-1)  # [L, block] (nats)
            bits[s, :, i] = (nll.sum(1) / math.log(2)).cpu().numpy()
    out = []
    for s in range(S):
        total = bits[s].sum(1)
        uniform = n * float(log2k[s])
        out.append(
            OnlineCode(
                codelength_bits=total,
                uniform_bits=uniform,
                compression=uniform / total,
                block_sizes=np.diff(np.concatenate([[0], ends])),
                block_bits=bits[s],
            )
        )
    return out
