"""CLI bad input: one line on stderr, exit code 2, no traceback (fast cases that load no real model)."""

import pytest


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["frobnicate"], "No such command"),
        (["extract", "minilm", "multiemo", "--store", "x", "--limit", "0"], "--limit must be >= 1"),
        (["extract", "minilm", "multiemo"], "Missing option '--store'"),
        (["sites", "/definitely/not/a/model"], "no model folder"),
        (["report", "/definitely/not/a/result"], "not a saved layerscope result"),
        (["summary", "/definitely/not/a/store"], "not a layerscope activation store"),
    ],
)
def test_bad_input_exits_2_with_one_line(run_cli, tmp_path, args, needle):
    code, _, err = run_cli(*args)
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]
    assert "Traceback" not in err


def test_help_works(run_cli):
    for sub in ([], ["extract"], ["demo"], ["sites"], ["report"], ["summary"], ["fetch"]):
        code, out, _ = run_cli(*sub, "--help")
        assert code == 0 and "Usage" in out
