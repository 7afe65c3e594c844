"""The demo report end to end (small sizes) opened in headless Chromium: every plot renders, no errors."""

from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_demo_report_renders(tmp_path: Path, open_report) -> None:
    from layerscope.demo import run_demo

    path = run_demo(
        tmp_path / "demo.html",
        sentences=120,
        lm_sentences=24,
        images=40,
        probe_sentences=0,
        capabilities=(),
        log=lambda *_: None,
    )
    html = path.read_text(encoding="utf-8")
    assert "<script src=" not in html and '<link rel="stylesheet" href=' not in html  # nothing external
    opened = open_report(path)
    page = opened.page
    figures = page.locator("div.figure")
    assert figures.count() == 9  # 3 models x (separability, effective rank, CKA)
    for i in range(figures.count()):
        assert figures.nth(i).locator(".main-svg").count() >= 1, f"figure {i} did not render"
    assert page.locator("nav.toc a").count() == 6
    assert "MiniLM" in page.locator("nav.toc").inner_text()
    opened.assert_clean()
