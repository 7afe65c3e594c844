"""``layerscope attribute`` / ``layerscope attention`` on a tiny BERT classifier saved to a folder."""

from __future__ import annotations

import pytest

from layerscope.attribution import AttributionResult
from layerscope.testing import tiny_bert


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    s = tiny_bert(classifier=True)
    folder = tmp_path_factory.mktemp("tinybert")
    s.model.save_pretrained(folder)
    s.tokenizer.save_pretrained(folder)
    return folder


def test_attribute_prints_word_scores_and_saves(run_cli, tiny_folder, tmp_path):
    code, out, err = run_cli(
        "attribute",
        str(tiny_folder),
        "the cat sat on the mat",
        "--steps",
        "4",
        "--target",
        "1",
        "--out",
        str(tmp_path / "r"),
    )
    assert code == 0, err
    assert "mat" in out and "integrated-gradients" in out
    r = AttributionResult.load(tmp_path / "r")
    assert r.words[0] == ["the", "cat", "sat", "on", "the", "mat"] and r.steps[0] == 4


def test_attention_command(run_cli, tiny_folder, tmp_path):
    code, out, err = run_cli(
        "attention", str(tiny_folder), "hello world", "--report", str(tmp_path / "a.html")
    )
    assert code == 0, err
    assert "rollout" in out and (tmp_path / "a.html").is_file()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--method", "shapley"], "unknown method"),
        (["--target", "7"], "out of range"),
        (["--steps", "many"], "--steps must be an integer"),
        (["--baseline", "purple"], "unknown baseline"),
    ],
)
def test_attribute_bad_input_exits_2(run_cli, tiny_folder, args, needle):
    code, _, err = run_cli("attribute", str(tiny_folder), "the cat", *args)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and needle in lines[0], err
