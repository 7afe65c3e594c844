"""DeepView core: distances, inverse map, Q_kNN, maps on toy problems, bad inputs, result round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from sklearn.datasets import make_blobs, make_moons
from sklearn.metrics import pairwise_distances
from sklearn.model_selection import LeaveOneOut, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier

from layerscope.deepview import (
    DeepViewResult,
    EmbeddingError,
    InverseMap,
    ProbabilityError,
    SingleClassError,
    TooFewPointsError,
    deepview,
    distance_matrix,
    js_divergence,
    prob_fn_from_module,
    q_knn,
)
from layerscope.deepview._distance import path_distances
from layerscope.errors import ConfigError, LayerscopeError

FAST = {"n_neighbors": 8, "resolution": 24, "n_steps": 4}


def _train_head(
    x: np.ndarray, y: np.ndarray, n_classes: int, *, seed: int = 0, steps: int = 300
) -> torch.nn.Module:
    torch.manual_seed(seed)
    head = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], 32), torch.nn.Tanh(), torch.nn.Linear(32, n_classes)
    )
    opt = torch.optim.Adam(head.parameters(), lr=2e-2)
    xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(head(xt), yt).backward()
        opt.step()
    return head.eval()


@pytest.fixture(scope="module")
def blobs():
    x, y = make_blobs(150, n_features=6, centers=3, cluster_std=1.0, random_state=0)
    x = x.astype(np.float32)
    return x, y, prob_fn_from_module(_train_head(x, y, 3))


@pytest.fixture(scope="module")
def blob_result(blobs):
    x, y, f = blobs
    return deepview(x, f, labels=y, lambdas=(0.0, 0.65, 1.0), texts=[f"p{i}" for i in range(len(x))], **FAST)


def _step_fn(x: np.ndarray) -> np.ndarray:
    """A hard classifier on the first coordinate: class 1 iff x0 > 0."""
    p1 = (x[:, 0] > 0).astype(np.float64)
    return np.stack([1 - p1, p1], axis=1)


# -- distances ----------------------------------------------------------------------------------------------
def test_js_matches_scipy():
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(4), 50), rng.dirichlet(np.ones(4), 50)
    p[0] = [1, 0, 0, 0]
    ours = np.sqrt(js_divergence(p, q))
    ref = np.array([jensenshannon(a, b) for a, b in zip(p, q, strict=True)])
    np.testing.assert_allclose(ours, ref, atol=1e-7)


def test_discriminative_zero_in_constant_region_and_grows_across_boundary():
    x = np.array([[-3.0, 0], [-1.0, 1], [1.0, 0], [3.0, 2]], dtype=np.float32)
    p = _step_fn(x)
    i, j = np.array([0, 2, 0, 1]), np.array([1, 3, 2, 3])
    d = path_distances(x, p, _step_fn, i, j, n_steps=5)
    assert d[0] == 0 and d[1] == 0  # same side: the prediction never changes
    np.testing.assert_allclose(d[2:], np.sqrt(np.log(2)), rtol=1e-6)  # one hard crossing: sqrt(JS max)
    # a smooth classifier: more boundary in between, larger distance
    soft = prob_fn_from_module(torch.nn.Linear(2, 2), outputs="logits")
    xs = np.array([[0, 0], [0.5, 0], [2, 0]], dtype=np.float32)
    ds = path_distances(xs, soft(xs), soft, np.array([0, 0]), np.array([1, 2]), n_steps=8)
    assert ds[1] >= ds[0]


def test_distance_matrix_symmetric_zero_diagonal(blobs):
    x, _, f = blobs
    d = distance_matrix(x[:60], f, lam=0.5, n_steps=4).toarray()
    np.testing.assert_allclose(d, d.T, atol=1e-12)
    assert np.all(np.diag(d) == 0)
    off = d[~np.eye(len(d), dtype=bool)]
    assert off.min() > 0 and off.max() <= 1.0 + 1e-9


def test_lambda_one_is_the_structural_metric(blobs):
    x, _, f = blobs
    for metric in ("euclidean", "cosine"):
        d = distance_matrix(x[:50], f, lam=1.0, metric=metric).toarray()
        ref = pairwise_distances(x[:50].astype(np.float64), metric=metric)
        ref = ref / ref.max()
        np.fill_diagonal(ref, 0)
        np.testing.assert_allclose(d, np.maximum(ref, 1e-9) * (1 - np.eye(50)), atol=1e-5)


def test_candidates_subset_of_all_pairs(blobs):
    x, _, f = blobs
    full = distance_matrix(x[:80], f, lam=0.3, candidates="all").toarray()
    part = distance_matrix(x[:80], f, lam=0.3, candidates=20)
    assert part.nnz < 80 * 80
    rows, cols = part.nonzero()
    # structural part is normalised by the global max in both; discriminative max may differ, so compare λ=1
    part1 = distance_matrix(x[:80], f, lam=1.0, candidates=20).toarray()
    full1 = distance_matrix(x[:80], f, lam=1.0, candidates="all").toarray()
    np.testing.assert_allclose(part1[rows, cols], full1[rows, cols], atol=1e-6)
    assert full.shape == part.shape


# -- inverse map, Q_kNN ----------------------------------------------------------------------------------------
def test_inverse_map_reproduces_training_points(blob_result, blobs):
    x, _, _ = blobs
    coords = blob_result.coords[blob_result.index(0.65)]
    inv = InverseMap().fit(coords, x)
    rec = inv(coords)
    rel = np.linalg.norm(rec - x) / np.linalg.norm(x - x.mean(0))
    assert rel < 0.35, rel
    # the nearest-neighbour average alone (no solve) is clearly worse: the solve does something
    plain = InverseMap(ridge=1e6).fit(coords, x)(coords)
    assert rel < np.linalg.norm(plain - x) / np.linalg.norm(x - x.mean(0))


def test_q_knn_matches_sklearn_leave_one_out():
    rng = np.random.default_rng(1)
    c = rng.normal(size=(60, 2))
    y = (c[:, 0] + 0.5 * rng.normal(size=60) > 0).astype(int)
    ref = cross_val_predict(KNeighborsClassifier(5), c, y, cv=LeaveOneOut())
    assert q_knn(c, y, k=5) == pytest.approx(np.mean(ref != y))


def test_q_knn_low_on_separable_problem(blob_result):
    assert np.all(blob_result.q_knn <= 0.02)
    assert blob_result.q_knn_true.max() <= 0.05


def test_moons_map_agrees_with_decision_function():
    x, y = make_moons(200, noise=0.08, random_state=0)
    x = x.astype(np.float32)
    f = prob_fn_from_module(_train_head(x, y, 2, steps=400))
    r = deepview(x, f, labels=y, lambdas=0.65, n_neighbors=10, resolution=40, n_steps=5)
    # each grid cell near the data should show the class the classifier gives the nearest real point
    x0, x1, y0, y1 = r.grid_extent[0]
    gx, gy = np.meshgrid(np.linspace(x0, x1, 40), np.linspace(y0, y1, 40))
    cells = np.stack([gx.ravel(), gy.ravel()], 1)
    d = np.linalg.norm(cells[:, None] - r.coords[0][None], axis=2)
    near = d.min(1) <= 0.05 * max(x1 - x0, y1 - y0)
    agree = r.grid_classes[0].ravel()[near] == r.pred[d.argmin(1)][near]
    assert near.sum() > 100 and agree.mean() >= 0.95, agree.mean()
    assert r.q_knn[0] < 0.05


# -- results --------------------------------------------------------------------------------------------------
def test_result_shapes_frame_figure_and_round_trip(blob_result, tmp_path):
    r = blob_result
    n = len(r.probs)
    assert r.coords.shape == (3, n, 2) and r.grid_classes.shape == (3, 24, 24)
    assert np.all((r.grid_entropy >= 0) & (r.grid_entropy <= 1 + 1e-6))
    assert list(r.to_frame()["lambda"]) == [0.0, 0.65, 1.0]
    fig = r.figure()
    assert len(fig.layout.updatemenus[0].buttons) == 3
    assert fig.layout.meta == {"layerscope_click": "nearest"}  # the report's click-to-examples panel
    maps = [t for t in fig.data if t.type == "image"]
    # PNG data URIs: plotly.js cannot draw image traces whose ``z`` arrives as a typed array (blank map)
    assert len(maps) == 3 and all(t.z is None and t.source.startswith("data:image/png;base64,") for t in maps)
    assert len(r.figures()) == 2 and "Q_kNN" in r.summary()
    back = DeepViewResult.load(r.save(tmp_path / "dv"))
    np.testing.assert_array_equal(back.coords, r.coords)
    np.testing.assert_array_equal(back.grid_classes, r.grid_classes)
    assert back.texts == r.texts and back.lambdas == r.lambdas and back.class_names == r.class_names
    assert r.nearest_examples(tuple(r.coords[0, 5]), lam=0.0, k=1) == [5]
    assert set(r.points_frame(0.65).columns) >= {"text", "true", "pred", "confidence"}


def test_adversarial_kind_and_misclassified_marked(blobs):
    x, y, f = blobs
    yy = y.copy()
    yy[:3] = (yy[:3] + 1) % 3  # three wrong labels -> "misclassified" markers
    kinds = ["data"] * 140 + ["adversarial"] * 10
    r = deepview(x, f, labels=yy, point_kind=kinds, lambdas=0.65, **FAST)
    names = [t.name for t in r.figure().data]
    assert "misclassified" in names and any(n.startswith("perturbed") for n in names)


# -- bad input --------------------------------------------------------------------------------------------------
def test_fewer_points_than_neighbours(blobs):
    x, _, f = blobs
    with pytest.raises(TooFewPointsError, match="n_neighbors"):
        deepview(x[:20], f, n_neighbors=30)


def test_logits_detected(blobs):
    x, _, _ = blobs
    head = _train_head(x, np.arange(len(x)) % 3, 3, steps=5)
    raw = prob_fn_from_module(head, outputs="probs")  # returns logits: wrong on purpose
    with pytest.raises(ProbabilityError, match="logits"):
        deepview(x, raw, **FAST)


def test_rows_not_summing_to_one(blobs):
    x, _, f = blobs
    with pytest.raises(ProbabilityError, match="sum to 1"):
        deepview(x, lambda z: 0.5 * f(z), **FAST)


def test_nan_embeddings(blobs):
    x, _, f = blobs
    bad = x.copy()
    bad[7, 2] = np.nan
    with pytest.raises(EmbeddingError, match="NaN"):
        deepview(bad, f, **FAST)
    with pytest.raises(EmbeddingError, match="2-D"):
        deepview(x[0], f, **FAST)


def test_single_class(blobs):
    x, y, f = blobs
    with pytest.raises(SingleClassError, match="no decision boundary"):
        deepview(x[y == 0], f, **FAST)


def test_bad_options(blobs):
    x, y, f = blobs
    for kwargs in (
        {"lambdas": 1.5},
        {"metric": "manhattan"},
        {"n_steps": -1},
        {"candidates": 3},
        {"labels": y[:5]},
        {"class_names": ["a"]},
    ):
        with pytest.raises(LayerscopeError):
            deepview(x, f, **{**FAST, **kwargs})
    with pytest.raises(ConfigError):
        InverseMap()(np.zeros((1, 2)))
