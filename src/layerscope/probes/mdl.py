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
) -> OnlineCode:
    """Online codelength of labels ``y`` given ``X`` for every layer.

    Args:
        X: ``[L, n, d]`` training items of every layer (float).
        y: ``[n]`` class indices in ``[0, n_classes)``.
        n_classes: K, the size of the uniform code.
        l2: L2 strength of the logistic probes (a float or one per layer ``[L]``), as in ``fit_logistic``.
        seed: order of the items.
        max_iter: L-BFGS iterations per block; each block's probe starts from the previous block's solution.
    """
    from .solvers import fit_logistic, predict_logits

    if X.ndim != 3:
        raise ConfigError(f"online_code needs X of shape [layers, n, d], got {tuple(X.shape)}")
    L, n, _ = X.shape
    if n < 2 or len(y) != n:
        raise ConfigError(
            f"online_code needs >= 2 items with one label each (got {n} items, {len(y)} labels)"
        )
    if n_classes < 2:
        raise ConfigError("online_code needs at least 2 classes")
    order = torch.as_tensor(np.random.default_rng(seed).permutation(n))
    Xo, yo = X[:, order].float(), y[order].long()
    ends = block_ends(n, fractions)
    log2k = math.log2(n_classes)
    bits = np.zeros((L, len(ends)))
    bits[:, 0] = ends[0] * log2k
    init = None
    for i in range(1, len(ends)):
        lo, hi = int(ends[i - 1]), int(ends[i])
        train = Xo[:, :lo]
        mu = train.mean(1, keepdim=True)
        sd = train.std(1, keepdim=True, unbiased=False).clamp_min(1e-6) if lo > 1 else torch.ones_like(mu)
        W, b = fit_logistic(
            (train - mu) / sd, yo[:lo], l2=l2, n_classes=n_classes, max_iter=max_iter, init=init
        )
        init = (W, b)  # warm start: the next prefix only adds data
        logits = predict_logits((Xo[:, lo:hi] - mu) / sd, W, b)  # L, block, K
        logp = torch.log_softmax(logits.double(), dim=-1)
        nll = -logp.gather(-1, yo[lo:hi].view(1, -1, 1).expand(L, -1, 1)).squeeze(-1)  # L, block (nats)
        bits[:, i] = (nll.sum(1) / math.log(2)).cpu().numpy()
    total = bits.sum(1)
    uniform = n * log2k
    return OnlineCode(
        codelength_bits=total,
        uniform_bits=uniform,
        compression=uniform / total,
        block_sizes=np.diff(np.concatenate([[0], ends])),
        block_bits=bits,
    )
