"""``layerscope deepview``: bad input exits 2 with one line; a run on a small .npz writes result + report."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from layerscope.deepview import DeepViewResult


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--lambdas", "0.5,2"], "--lambdas"),
        (["--lambdas", "a,b"], "--lambdas"),
        (["--case", "bogus"], "--case must be one of"),
        (["--n", "3"], "--n must be at least 10"),
        (["--embeddings", "/definitely/not/here.npz"], "does not exist"),
    ],
)
def test_bad_input_exits_2(run_cli, args, needle):
    code, _, err = run_cli("deepview", *args)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and needle in lines[0] and "Traceback" not in err


def test_npz_missing_arrays(run_cli, tmp_path):
    np.savez(tmp_path / "e.npz", x=np.zeros((3, 2)))
    code, _, err = run_cli("deepview", "--embeddings", str(tmp_path / "e.npz"))
    assert code == 2 and "'embeddings' and 'labels'" in err


def test_npz_too_few_points(run_cli, tmp_path):
    x, y = make_blobs(20, n_features=4, centers=2, random_state=0)
    np.savez(tmp_path / "e.npz", embeddings=x, labels=y)
    code, _, err = run_cli("deepview", "--embeddings", str(tmp_path / "e.npz"), "--neighbors", "30")
    assert code == 2 and "n_neighbors" in err


def test_npz_run_writes_result_and_report(run_cli, tmp_path):
    x, y = make_blobs(120, n_features=5, centers=3, random_state=1)
    texts = np.array([f"item <{i}>" for i in range(120)])
    np.savez(tmp_path / "e.npz", embeddings=x, labels=np.array(["a", "b", "c"])[y], texts=texts)
    code, _out, err = run_cli(
        "deepview",
        "--embeddings",
        str(tmp_path / "e.npz"),
        "--lambdas",
        "0.5,1",
        "--neighbors",
        "8",
        "--resolution",
        "16",
        "--steps",
        "3",
        "--metric",
        "euclidean",
        "--threads",
        "1",
        "--save",
        str(tmp_path / "res"),
        "--out",
        str(tmp_path / "r.html"),
    )
    assert code == 0, err
    res = DeepViewResult.load(tmp_path / "res")
    assert res.class_names == ["a", "b", "c"] and res.lambdas == (0.5, 1.0) and res.texts[3] == "item <3>"
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "item <3>" not in html and "DeepView" in html  # data strings escaped


def test_help(run_cli):
    code, out, _ = run_cli("deepview", "--help")
    assert code == 0 and "--lambdas" in out
