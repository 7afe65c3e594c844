"""Reports opened in headless Chromium: figures draw, nothing errs, nothing leaves the machine, no XSS."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from layerscope.report import Report, heatmap, line_per_layer
from layerscope.result import Result

pytestmark = pytest.mark.browser

XSS = "</script><script>alert(1)</script>"
IMG_XSS = "<img src=x onerror=alert(2)>"

Opener = Callable[..., Any]  # conftest.open_report: path -> OpenedPage


@dataclasses.dataclass(frozen=True)
class ProbeCurve(Result):
    """A tiny Result: accuracy per layer for a task and its control."""

    title: ClassVar[str] = "Probe accuracy per layer"
    task: np.ndarray
    control: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        n = len(self.task)
        return pd.DataFrame(
            {
                "layer": np.tile(np.arange(n), 2),
                "task": ["sentiment"] * n + ["control"] * n,
                "accuracy": np.concatenate([self.task, self.control]),
            }
        )

    def figure(self) -> go.Figure:
        return line_per_layer(self.to_frame(), y="accuracy", color="task", title="Accuracy", y_range=(0, 1))

    def figures(self) -> list[go.Figure]:
        sel = (self.task - self.control)[None, :]
        return [self.figure(), heatmap(sel, x=[f"L{i}" for i in range(sel.shape[1])], y=["selectivity"])]

    def summary(self) -> str:
        return f"Sentiment is most decodable at layer {int(np.argmax(self.task))}."


def _probe_report(path: Path, *, n_sections: int = 1) -> Path:
    rng = np.random.default_rng(0)
    report = Report("Where is sentiment encoded?", subtitle="minilm · multiemo (test split)")
    report.add_metadata({"model": "minilm", "dataset": "multiemo", "layerscope": "0.1.0"})
    for i in range(n_sections):
        task = np.clip(np.linspace(0.4, 0.9, 7) + rng.normal(0, 0.03, 7), 0, 1)
        control = np.clip(np.full(7, 0.3) + rng.normal(0, 0.03, 7), 0, 1)
        report.add(
            ProbeCurve(task=task, control=control), title=f"Probe {i + 1}", note="Control: shuffled labels."
        )
    report.add_section("Attention", figures=[heatmap(rng.random((5, 5)), x=list("abcde"), y=list("vwxyz"))])
    return report.write(path)


def test_every_figure_renders_without_errors_or_network(tmp_path: Path, open_report: Opener) -> None:
    opened = open_report(_probe_report(tmp_path / "report.html"))
    page = opened.page
    figures = page.locator("div.figure")
    assert figures.count() == 3
    for i in range(figures.count()):
        assert figures.nth(i).locator(".main-svg").count() >= 1, f"figure {i} did not render"
    assert page.locator("div.figure-error").count() == 0
    assert page.locator("nav.toc a").count() == 2
    assert "Showing" not in page.locator("p.rows").first.inner_text()
    opened.assert_clean()
    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)


def test_dark_mode_renders_cleanly(tmp_path: Path, open_report: Opener) -> None:
    opened = open_report(_probe_report(tmp_path / "report.html"), color_scheme="dark")
    background = opened.page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(13, 17, 23)"
    opened.assert_clean()
    opened.page.screenshot(path=str(tmp_path / "dark.png"), full_page=True)


def test_hostile_strings_show_as_text_and_never_run(tmp_path: Path, open_report: Opener) -> None:
    labels = [XSS, IMG_XSS, "a & b < c > d"]
    fig = go.Figure(go.Bar(x=labels, y=[1, 2, 3], hovertext=[XSS, IMG_XSS, "<b>x</b>"], name=XSS))
    fig.update_layout(title=XSS, xaxis_title=IMG_XSS, showlegend=True)
    report = Report(XSS, subtitle=IMG_XSS).add_metadata({"dataset": XSS})
    report.add_section(XSS, text=XSS, note=IMG_XSS, figures=[fig], tables=[pd.DataFrame({XSS: labels})])
    opened = open_report(report.write(tmp_path / "xss.html"))
    page = opened.page

    assert page.locator("h1").inner_text() == XSS
    assert page.locator("nav.toc a").first.inner_text() == XSS
    assert page.locator("section h2 .title").inner_text() == XSS
    assert page.locator("table thead th").first.inner_text() == XSS
    assert page.locator("section table tbody td").all_inner_texts()[:2] == [XSS, IMG_XSS]
    assert page.locator(".meta td").inner_text() == XSS
    assert page.locator("img").count() == 0
    assert page.locator("script:not([type])").count() == 2  # plotly.js and the report's own script

    assert page.locator("#fig-1 .xtick text").all_text_contents() == labels
    assert page.locator("#fig-1 .gtitle").text_content() == XSS
    assert page.locator("#fig-1 .xtitle").text_content() == IMG_XSS
    assert page.locator("#fig-1 .legendtext").text_content() == XSS
    page.evaluate("Plotly.Fx.hover('fig-1', [{curveNumber: 0, pointNumber: 0}])")
    page.wait_for_selector("#fig-1 .hoverlayer .hovertext")
    assert XSS in page.locator("#fig-1 .hoverlayer .hovertext").text_content()

    page.wait_for_timeout(200)  # give any injected script a chance to fire
    opened.assert_clean()
    page.screenshot(path=str(tmp_path / "xss.png"), full_page=True)


def test_toc_link_scrolls_to_its_section(tmp_path: Path, open_report: Opener) -> None:
    opened = open_report(_probe_report(tmp_path / "long.html", n_sections=5), height=700)
    page = opened.page
    assert page.evaluate("window.scrollY") == 0
    link = page.locator("nav.toc a").nth(4)
    target = link.get_attribute("href")
    assert target is not None and target.startswith("#")
    link.click()
    page.wait_for_function("window.scrollY > 0")
    top = page.evaluate(f"document.getElementById({target[1:]!r}).getBoundingClientRect().top")
    assert 0 <= top <= 40
    assert page.evaluate("location.hash") == target
    assert page.locator("nav.toc").bounding_box() is not None  # sticky: still on screen
    assert page.locator("nav.toc").bounding_box()["y"] >= 0  # type: ignore[index]
    opened.assert_clean()


def test_image_grid_renders(tmp_path: Path, open_report: Opener) -> None:
    """Image tiles (feature visualisations, prototypes, masks) draw: PNG sources, no canvas errors."""
    from layerscope.optimize._figures import image_grid

    rng = np.random.default_rng(0)
    fig = image_grid(rng.uniform(size=(3, 16, 16, 3)), ["a", "b", "c"], title="tiles")
    rep = Report("images")
    rep.add_section("Tiles", figures=[fig])
    path = rep.write(tmp_path / "images.html")
    opened = open_report(path)
    tiles = opened.page.locator("div.figure image")
    assert tiles.count() == 3
    for i in range(3):
        href = tiles.nth(i).get_attribute("href") or ""
        assert href.startswith("data:image/png;base64,")
    opened.assert_clean()


def test_token_heatmap_and_decision_map_render(tmp_path: Path, open_report: Opener) -> None:
    """Attribution token heat maps (labelled rows, NaN padding) and image-backed maps draw without errors."""
    from layerscope.attribution.result import AttributionResult

    scores = np.array([[0.5, -0.2, 0.1], [0.1, np.nan, np.nan]])
    res = AttributionResult(
        method="integrated-gradients", site="embed", model="m", baseline="pad", texts=["a b c", "d"],
        example=np.array([0, 1]), target=["pos", "neg"], tokens=[["a", "b", "c"], ["d"]], scores=scores,
        words=[["a", "b", "c"], ["d"]], word_scores=scores, delta=np.zeros(2), steps=np.zeros(2, int),
        f_input=np.zeros(2), f_baseline=np.zeros(2), evaluations=np.zeros(2, int),
    )  # fmt: skip
    rep = Report("tokens")
    rep.add(res)
    opened = open_report(rep.write(tmp_path / "tokens.html"))
    assert opened.page.locator("div.figure .main-svg").count() >= 1  # drawn, not a zero-size canvas
    opened.assert_clean()


def test_click_lists_the_nearest_points(tmp_path: Path, open_report: Opener) -> None:
    """A figure with ``meta.layerscope_click = "nearest"`` (DeepView maps) lists the examples nearest a click."""
    xs = np.linspace(0, 1, 6)
    fig = go.Figure(
        [
            go.Image(
                z=np.zeros((20, 20, 3), dtype=np.uint8).tolist(),
                x0=0,
                dx=0.05,
                y0=0,
                dy=0.05,
                hoverinfo="none",
            ),
            go.Scatter(
                x=xs,
                y=xs,
                mode="markers",
                customdata=[[f"text {i}", XSS] for i in range(6)],
                hoverinfo="none",
            ),
        ]
    )
    fig.update_layout(meta={"layerscope_click": "nearest"}, clickmode="event", width=500, height=500)
    rep = Report("click")
    rep.add_section("Map", figures=[fig])
    opened = open_report(rep.write(tmp_path / "click.html"))
    page = opened.page
    panel = page.locator(".click-panel")
    assert "Click the map" in panel.inner_text()
    box = page.locator("div.figure .nsewdrag").first.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2  # the centre: (0.5, 0.5)
    page.mouse.move(x - 2, y - 2)
    page.mouse.move(x, y)  # plotly takes a click's points from the hover under the mouse
    page.wait_for_timeout(200)
    page.mouse.click(x, y)
    page.wait_for_timeout(300)
    items = panel.locator("li")
    assert items.count() == 5
    assert items.first.inner_text().split(" · ")[0] in ("text 2", "text 3")  # (0.4, 0.4) and (0.6, 0.6)
    assert XSS in items.first.inner_text()  # shown as text, never run
    opened.assert_clean()
