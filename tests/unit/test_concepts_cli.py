"""``layerscope concepts`` from the command line."""

from __future__ import annotations

import numpy as np
import pytest

from layerscope.concepts import ConceptModelResult

pytestmark = pytest.mark.usefixtures("one_thread")


def test_concepts_cli_runs_and_saves(run_cli, tmp_path):
    code, out, err = run_cli(
        "concepts",
        "--dataset",
        "xor",
        "--model",
        "cbm-joint-bool",
        "--model",
        "dnn",
        "--seeds",
        "2",
        "--max-epochs",
        "3",
        "--no-cas",
        "--save",
        str(tmp_path / "res"),
        "--out",
        str(tmp_path / "r.html"),
    )
    assert code == 0, err
    assert "cbm-joint-bool" in out and "±" in out
    res = ConceptModelResult.load(tmp_path / "res")
    assert set(res.metrics.model) == {"cbm-joint-bool", "dnn"} and set(res.metrics.seed) == {0, 1}
    assert (tmp_path / "r.html").stat().st_size > 1000


def test_concepts_cli_user_file(run_cli, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3))
    c = (x[:, :2] > 0).astype(int)
    y = c[:, 0] | c[:, 1]
    path = tmp_path / "mine.npz"
    np.savez(path, x=x, c=c, y=y)
    code, out, err = run_cli(
        "concepts", "--dataset", str(path), "--model", "cem", "--seeds", "1", "--max-epochs", "2", "--no-cas"
    )
    assert code == 0, err
    assert "mine" in out


def test_concepts_cli_bad_input(run_cli, tmp_path):
    code, _, err = run_cli("concepts", "--dataset", "xor", "--model", "resnet")
    assert code == 2 and "unknown --model" in err
    code, _, err = run_cli("concepts", "--dataset", "nope", "--seeds", "1")
    assert code == 2 and "nope" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("f1,c_a,y\n" + "".join(f"{i},0.5,{i % 2}\n" for i in range(40)))
    code, _, err = run_cli(
        "concepts", "--dataset", str(bad), "--model", "cbm-joint-bool", "--max-epochs", "1"
    )
    assert code == 2 and "boolean bottleneck needs 0/1" in err
    nan = tmp_path / "nan.csv"
    nan.write_text("f1,c_a,y\n" + "".join(f"{'nan' if i == 3 else i},1,{i % 2}\n" for i in range(40)))
    code, _, err = run_cli("concepts", "--dataset", str(nan), "--max-epochs", "1")
    assert code == 2 and "NaN" in err and "nan.csv" in err
    code, _, err = run_cli("concepts", "--seeds", "0")
    assert code == 2 and "--seeds" in err
