"""Session-scoped real models (loaded once; their packages and caches live under ~/.cache/layerscope)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def minilm():
    from layerscope import load

    return load("minilm")


@pytest.fixture(scope="session")
def smollm2():
    from layerscope import load

    return load("smollm2")


@pytest.fixture(scope="session")
def effnet():
    from layerscope import load

    return load("effnet-lite0")
