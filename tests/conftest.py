"""Shared test setup: offline hub, a per-session cache for real models, deterministic torch."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


import sys  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """Run ``layerscope ARGS...`` in-process; returns ``(exit_code, stdout, stderr)``."""
    from layerscope import cli

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["layerscope", *args])
        code = 0
        try:
            cli.main()
        except SystemExit as e:
            code = e.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models train faster on one torch thread (two only add OpenMP synchronisation, and spin against
    other processes on a shared 2-core machine). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
