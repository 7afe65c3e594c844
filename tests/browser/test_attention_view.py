"""The interactive attention view at the issue's size (512 tokens, 30 layers) in headless Chromium."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from layerscope.attribution.attention_view import attention_view_html
from layerscope.report import Report

pytestmark = pytest.mark.browser


def _patterns(layers: int, heads: int, pos: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(layers, heads, pos, pos)).astype(np.float32) * 3
    logits += np.triu(np.full((pos, pos), -np.inf, dtype=np.float32), 1)  # causal
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_attention_view_512_tokens_30_layers(tmp_path: Path, open_report) -> None:
    P, L, H = 512, 30, 9  # SmolLM2-135M: 30 layers x 9 heads
    tokens = [f"tok{i}" for i in range(P - 1)] + ["</script><b>x</b>"]
    rep = Report("attention")
    rep.add_section("Attention view", html=attention_view_html(tokens, _patterns(L, H, P), title="view"))
    path = rep.write(tmp_path / "attention.html")
    size_mb = path.stat().st_size / 2**20
    t0 = time.perf_counter()
    opened = open_report(path)
    page = opened.page
    page.wait_for_selector("canvas.ls-head")
    elapsed = time.perf_counter() - t0
    print(f"attention view: {size_mb:.1f} MB, opened and drawn in {elapsed:.2f} s")  # recorded, not asserted
    assert size_mb < 15
    assert page.locator("select.ls-layer option").count() == L
    width = page.evaluate("document.querySelector('canvas.ls-head').width")
    assert width > 0
    page.select_option("select.ls-layer", index=L - 1)  # another layer decodes lazily, no error
    page.locator("canvas.ls-head").hover(position={"x": 20, "y": 40})
    page.locator("button.ls-model").click()  # model view (layer x head grid)
    page.wait_for_timeout(300)
    assert page.locator(".ls-grid canvas").count() >= 1
    assert "<b>x</b>" not in page.locator(".ls-attn").inner_html()  # token text is data, not markup
    opened.assert_clean()
