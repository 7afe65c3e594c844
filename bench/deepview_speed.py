"""DeepView speed: layerscope's vectorised DeepView vs a faithful rewrite of the reference algorithm, one run.

Data: N = 500 MultiEmo sentences as frozen MiniLM sentence vectors (mean of the final block, 384-d) and the
MLP sentiment head of ``layerscope.deepview.text`` case ``frozen`` (both cached after the first run).
Settings as in Roberts et al. 2024: cosine structural distance, n = 10 interpolation points, λ = 0.65,
UMAP n_neighbors 30 / min_dist 0.1, 100 × 100 grid, Q_kNN with k = 5.

``reference`` (our rewrite, written from the paper's description of the algorithm, not from its code):

* all N(N-1) ordered pairs, one row at a time: for point i, the n + 2 points of every segment i → j
  (both endpoints included, so every endpoint is re-evaluated for every pair) go through the head;
* dense N × N distance matrix, normalised by its maxima, UMAP with a dense precomputed matrix;
* inverse map: dense weights w_ij = 1 / (1 + a·d_ij²) (a = 500 / mean range of the 2-D map, row-normalised)
  over ALL training points, sources initialised to the embeddings and fitted with 2,000 Adam steps on
  ||W S − X||²;
* the grid mapped back and classified, Q_kNN.

``layerscope``: ``layerscope.deepview.deepview`` (endpoints once, K = 3 × n_neighbors candidates, batched path
points, sparse UMAP input, kNN inverse map by one sparse solve). UMAP's numba JIT is warmed up before timing.
Also times N = 5,000 (layerscope only; the reference would need ~100× the work). No timing assertions.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/deepview_speed.py            # N=500 side by side + N=5,000
    HF_HUB_OFFLINE=1 .venv/bin/python bench/deepview_speed.py --no-large # N=500 only
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

from layerscope._io import cache_root
from layerscope.deepview import deepview, prob_fn_from_module, q_knn
from layerscope.deepview._distance import js_divergence
from layerscope.deepview.text import case_models, sentence_embeddings, split_corpus


def reference_deepview(
    x: np.ndarray, head: torch.nn.Module, *, lam: float, n_steps: int, resolution: int, seed: int
) -> tuple[float, dict[str, float]]:
    """Faithful rewrite of the reference algorithm; returns (Q_kNN, seconds per stage)."""
    import umap

    times: dict[str, float] = {}
    t0 = time.perf_counter()
    n, d = x.shape
    xt = torch.from_numpy(x)
    t = torch.linspace(0, 1, n_steps + 2)[None, :, None]  # endpoints included
    disc = np.zeros((n, n))
    with torch.inference_mode():
        for i in range(n):  # one row of pairs per batch, every endpoint evaluated again
            others = torch.cat([xt[:i], xt[i + 1 :]])
            path = xt[i][None, None, :] + t * (others[:, None, :] - xt[i][None, None, :])
            p = torch.softmax(head(path.reshape(-1, d)), -1).reshape(n - 1, n_steps + 2, -1).double().numpy()
            row = np.sqrt(js_divergence(p[:, :-1], p[:, 1:])).sum(1)
            disc[i, np.arange(n) != i] = row
    disc = 0.5 * (disc + disc.T)
    xu = x / np.linalg.norm(x, axis=1, keepdims=True)
    struct = np.clip(1 - xu @ xu.T, 0, 2)
    np.fill_diagonal(struct, 0)
    dist = lam * struct / struct.max() + (1 - lam) * disc / disc.max()
    times["distances"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coords = umap.UMAP(
            metric="precomputed", n_neighbors=30, min_dist=0.1, random_state=seed, n_jobs=1
        ).fit_transform(dist)
    times["umap"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    c = torch.from_numpy(coords.astype(np.float64))
    a = 500.0 / float((c.max(0).values - c.min(0).values).mean())

    def weights(y: torch.Tensor) -> torch.Tensor:
        w = 1.0 / (1.0 + a * torch.cdist(y, c) ** 2)
        return w / w.sum(1, keepdim=True)

    w_train = weights(c).float()
    sources = xt.clone().requires_grad_(True)
    opt = torch.optim.Adam([sources], lr=1e-3)
    for _ in range(2000):
        opt.zero_grad()
        loss = ((w_train @ sources - xt) ** 2).mean()
        loss.backward()
        opt.step()
    times["inverse map"] = time.perf_counter() - t2
    t3 = time.perf_counter()
    lo, hi = coords.min(0), coords.max(0)
    span = hi - lo
    gx, gy = np.meshgrid(
        *(np.linspace(lo[k] - 0.05 * span[k], hi[k] + 0.05 * span[k], resolution) for k in (0, 1))
    )
    grid = torch.from_numpy(np.stack([gx.ravel(), gy.ravel()], 1)).double()
    with torch.inference_mode():
        gp = torch.softmax(head(weights(grid).float() @ sources.detach()), -1).numpy()
        pred = head(xt).argmax(1).numpy()
    _ = gp.argmax(1)
    times["grid"] = time.perf_counter() - t3
    times["total"] = time.perf_counter() - t0
    return q_knn(coords, pred, k=5), times


def _warm_umap() -> None:
    import scipy.sparse as sp
    import umap

    rng = np.random.default_rng(0)
    d = np.abs(rng.normal(size=(60, 60)))
    d = d + d.T
    np.fill_diagonal(d, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for m in (d, sp.csr_matrix(d)):
            umap.UMAP(metric="precomputed", n_neighbors=10, random_state=0, n_jobs=1).fit_transform(m)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=1, help="timed rounds per contender (median reported)")
    ap.add_argument("--lam", type=float, default=0.65)
    ap.add_argument("--no-large", action="store_true", help="skip the N = 5,000 run")
    ap.add_argument("--only-large", action="store_true", help="only the N = 5,000 run")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    m = case_models("frozen")
    x, (head, _, _) = m["embeddings"], m["heads"]["sentiment"]
    f = prob_fn_from_module(head)
    print(
        f"N = {len(x)}, d = {x.shape[1]}, n = 10, λ = {args.lam}, torch threads {torch.get_num_threads()}",
        flush=True,
    )
    _warm_umap()
    if not args.only_large:
        compare(x, head, f, args.repeats, args.lam)
    if not args.no_large:
        large(f, args.lam)


def compare(
    x: np.ndarray, head: torch.nn.Module, f: Callable[[np.ndarray], np.ndarray], repeats: int, lam: float
) -> None:
    """N = 500 side by side (layerscope first in even rounds)."""
    ref_t, ref_q, ls_t, ls_q = [], [], [], []
    for r in range(repeats):
        for who in ("ls", "ref") if r % 2 == 0 else ("ref", "ls"):
            if who == "ref":
                q, times = reference_deepview(x, head, lam=lam, n_steps=10, resolution=100, seed=0)
                ref_t.append(times["total"])
                ref_q.append(q)
                print(
                    f"  reference: {times['total']:.1f}s  Q_kNN {q:.3f}  "
                    + ", ".join(f"{k} {v:.1f}s" for k, v in times.items() if k != "total"),
                    flush=True,
                )
            else:
                t0 = time.perf_counter()
                res = deepview(x, f, lambdas=lam, metric="cosine", n_steps=10, seed=0)
                ls_t.append(time.perf_counter() - t0)
                ls_q.append(float(res.q_knn[0]))
                print(f"  layerscope: {ls_t[-1]:.1f}s  Q_kNN {ls_q[-1]:.3f}  {res.timings}", flush=True)
    rt, lt = statistics.median(ref_t), statistics.median(ls_t)
    print(
        f"N=500 median: reference {rt:.1f}s, layerscope {lt:.1f}s, ratio {rt / lt:.1f}x (target >= 10x); "
        f"Q_kNN reference {statistics.median(ref_q):.3f}, layerscope {statistics.median(ls_q):.3f}, "
        f"|diff| {abs(statistics.median(ref_q) - statistics.median(ls_q)):.3f} (target <= 0.02)"
    )


def large(f: Callable[[np.ndarray], np.ndarray], lam: float) -> None:
    """N = 5,000 MultiEmo sentences, layerscope only."""
    path = cache_root() / "deepview" / "bench-frozen-5000.npy"
    if path.is_file():
        big = np.load(path)
    else:
        from layerscope.models import load

        texts, _, _, _ = split_corpus(5000, 0, seed=1)
        t0 = time.perf_counter()
        big = sentence_embeddings(load("minilm"), texts)
        print(f"encoded 5,000 sentences in {time.perf_counter() - t0:.0f}s (cached at {path})", flush=True)
        np.save(path, big)
    t0 = time.perf_counter()
    res = deepview(big, f, lambdas=lam, metric="cosine", n_steps=10, seed=0)
    print(
        f"N=5,000: layerscope {time.perf_counter() - t0:.1f}s (target < 300s), Q_kNN {res.q_knn[0]:.3f}, "
        f"{res.params['n_pairs']} pairs; {res.timings}"
    )


if __name__ == "__main__":
    main()
