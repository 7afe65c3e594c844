"""CLI end to end on the embedded MiniLM: extract -> summary -> report, and bad input with a real model."""

import pytest

pytestmark = pytest.mark.integration


def test_extract_summary_report(run_cli, tmp_path):
    data = tmp_path / "d.csv"
    data.write_text(
        "text,label\nA fine day.,pos\nA terrible film.,neg\nNot bad at all.,pos\n", encoding="utf-8"
    )
    code, out, err = run_cli(
        "extract",
        "minilm",
        str(data),
        "--store",
        str(tmp_path / "st"),
        "-s",
        "blocks.0.resid_post",
        "-s",
        "blocks.-1.resid_post",
    )
    assert code == 0, err
    assert "wrote 3 items x 2 sites" in out
    code, out, err = run_cli(
        "summary",
        str(tmp_path / "st"),
        "--save",
        str(tmp_path / "res"),
        "--report",
        str(tmp_path / "a.html"),
    )
    assert code == 0, err
    assert (tmp_path / "a.html").is_file()
    code, out, err = run_cli("report", str(tmp_path / "res"), "-o", str(tmp_path / "b.html"))
    assert code == 0 and (tmp_path / "b.html").stat().st_size > 100_000
    code, out, _ = run_cli("sites", "minilm", "--match", "blocks.0.*")
    assert code == 0 and "blocks.0.mlp.post" in out and "blocks.1.mlp.post" not in out


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["-s", "blocks.9.resid_post"], "out of range"),
        (["--pooling", "avg"], "unknown pooling"),
        (["-s", "blocks.0.attn.pattern"], "capture()"),
    ],
)
def test_extract_bad_input_with_real_model(run_cli, tmp_path, extra, needle):
    data = tmp_path / "d.csv"
    data.write_text("text\nhello there\n", encoding="utf-8")
    code, _, err = run_cli("extract", "minilm", str(data), "--store", str(tmp_path / "s"), *extra)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and needle in lines[0], err


def test_extract_bad_files(run_cli, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("", encoding="utf-8")
    code, _, err = run_cli("extract", "minilm", str(empty), "--store", str(tmp_path / "s"))
    assert code == 2 and "empty.csv" in err
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("sentence\nhi\n", encoding="utf-8")
    code, _, err = run_cli("extract", "minilm", str(nocol), "--store", str(tmp_path / "s"))
    assert code == 2 and "sentence" in err
    code, _, err = run_cli("extract", "minilm", str(tmp_path / "missing.csv"), "--store", "x")
    assert code == 2 and "no dataset" in err
