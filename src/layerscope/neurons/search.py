"""Small-k subset search scored in closed form: exact best subsets for k ≤ 3, then greedy + swaps.

A subset ``S`` of neurons is scored by the Fisher criterion of its linear discriminant,
``J(S) = δ_Sᵀ (Σ_S + εI)⁻¹ δ_S`` (``δ`` the class-mean difference, ``Σ`` the pooled within-class
covariance), the squared Mahalanobis distance between the classes that the best linear probe on ``S``
achieves under shared Gaussian classes. Each candidate subset costs one ``k×k`` solve, and every candidate
subset of every layer goes through one batched ``torch.linalg.solve`` — no solver, no Python loop over
subsets. This replaces Gurnee et al.'s mixed-integer program (L0-constrained hinge, commercial solver).
"""

from __future__ import annotations

import torch

from ._common import NeuronError, Tensor

_F64 = torch.float64
_BATCH = 2**21  # subsets per batched solve


def class_moments(X: Tensor, y: Tensor, cand: Tensor) -> tuple[Tensor, Tensor]:
    """Mean difference ``δ [L, m]`` and pooled within-class covariance ``[L, m, m]`` of candidate neurons."""
    Xc = torch.gather(X, 2, cand[:, None, :].expand(-1, X.shape[1], -1)).to(_F64)  # [L, n, m]
    pos = y.bool()
    mu1 = Xc[:, pos].mean(1)
    mu0 = Xc[:, ~pos].mean(1)
    R = Xc - torch.where(pos[None, :, None], mu1[:, None], mu0[:, None])
    cov = R.mT @ R / max(1, X.shape[1] - 2)
    return mu1 - mu0, cov


def fisher(delta: Tensor, cov: Tensor, subsets: Tensor, *, ridge: float = 1e-6) -> Tensor:
    """Fisher criterion ``J`` of subsets ``[L, C, k]`` (indices into the ``m`` candidates) → ``[L, C]``.

    Subsets with a repeated index score ``-inf``.
    """
    L, C, k = subsets.shape
    m = cov.shape[-1]
    out = torch.empty(L, C, dtype=_F64)
    eps = ridge * torch.diagonal(cov, dim1=1, dim2=2).mean(1).clamp_min(1e-12)  # [L]
    eye = torch.eye(k, dtype=_F64)
    flat_cov = cov.reshape(L, m * m)
    step = max(1, _BATCH // max(1, L * k * k))
    for s in range(0, C, step):
        sub = subsets[:, s : s + step]  # [L, c, k]
        c = sub.shape[1]
        pair = (sub[..., :, None] * m + sub[..., None, :]).reshape(L, -1)
        S = flat_cov.gather(1, pair).view(L, c, k, k) + eps[:, None, None, None] * eye
        dl = delta.gather(1, sub.reshape(L, -1)).view(L, c, k)
        sol = torch.linalg.solve(S, dl[..., None])[..., 0]
        J = (dl * sol).sum(-1)
        if k > 1:
            srt = sub.sort(-1).values
            dup = (srt[..., 1:] == srt[..., :-1]).any(-1)
            J = torch.where(dup, torch.full_like(J, -torch.inf), J)
        out[:, s : s + step] = J
    return out


def small_k_search(
    X: Tensor,
    y: Tensor,
    ks: list[int],
    *,
    candidates: Tensor,
    exact_k: int = 3,
    max_swaps: int = 20,
) -> dict[int, Tensor]:
    """Best subsets per k (``[L, k]`` neuron indices) for every ``k`` in ``ks``.

    Args:
        X: training activations ``[L, n, d]``; y: 0/1 labels ``[n]``.
        ks: subset sizes (each at most the number of candidates).
        candidates: ``[L, m]`` neuron indices to search (e.g. the top ``m`` by mean difference).
        exact_k: enumerate every subset of the candidates up to this size.
        max_swaps: swap rounds per k after each greedy addition.

    Returns:
        ``{k: [L, k]}``; for ``k ≤ exact_k`` the exact maximiser of :func:`fisher` over the candidates, above
        it the greedy-forward + best-swap local optimum grown from the exact ``exact_k`` subset.
    """
    L, m = candidates.shape
    if ks and max(ks) > m:
        raise NeuronError(
            f"small-k search: k = {max(ks)} exceeds the {m} candidate neurons; raise n_candidates"
        )
    delta, cov = class_moments(X, y, candidates)
    out: dict[int, Tensor] = {}
    best_exact: Tensor | None = None
    top = max(ks) if ks else 0
    for k in range(1, min(exact_k, top) + 1):
        combos = torch.combinations(torch.arange(m), k) if k > 1 else torch.arange(m)[:, None]
        subs = combos[None].expand(L, -1, -1)
        J = fisher(delta, cov, subs)
        best_exact = subs[torch.arange(L), J.argmax(1)]  # [L, k]
        out[k] = best_exact
    cur = best_exact
    ar = torch.arange(m)
    for k in range(exact_k + 1, top + 1):
        assert cur is not None
        # greedy forward: every candidate appended
        add = torch.cat([cur[:, None, :].expand(L, m, -1), ar[None, :, None].expand(L, m, 1)], -1)
        J = fisher(delta, cov, add)
        best = J.argmax(1)
        cur = add[torch.arange(L), best]
        cur_J = J[torch.arange(L), best]
        for _ in range(max_swaps):  # best single swap (position i ← candidate j) per layer, until none helps
            sw = cur[:, None, None, :].expand(L, k, m, k).clone()
            pos = torch.arange(k)
            sw[:, pos[:, None], ar[None, :], pos[:, None]] = ar[None, None, :].expand(L, k, m)
            Js = fisher(delta, cov, sw.reshape(L, k * m, k))
            bj = Js.argmax(1)
            better = Js[torch.arange(L), bj] > cur_J * (1 + 1e-9) + 1e-12
            if not bool(better.any()):
                break
            cand = sw.reshape(L, k * m, k)[torch.arange(L), bj]
            cur = torch.where(better[:, None], cand, cur)
            cur_J = torch.where(better, Js[torch.arange(L), bj], cur_J)
        out[k] = cur
    return {k: candidates.gather(1, out[k]) for k in ks}
