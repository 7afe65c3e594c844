"""Unit tests for the self-contained HTML report (structure, escaping, atomic write, Results)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from plotly.offline import get_plotlyjs

from layerscope.errors import ConfigError, LayerscopeError, StoreError
from layerscope.report import (
    Report,
    build_report,
    escape_plotly_text,
    heatmap,
    line_per_layer,
    script_safe_json,
)
from layerscope.report import html as report_html
from layerscope.result import Result

XSS = "</script><script>alert(1)</script>"
XSS_RAW = "<script>alert(1)</script>"


@dataclasses.dataclass(frozen=True)
class LayerScores(Result):
    """A tiny Result: one score per layer."""

    title: ClassVar[str] = "Layer scores"
    scores: np.ndarray
    labels: tuple[str, ...] = ()

    def to_frame(self) -> pd.DataFrame:
        labels = self.labels or tuple(f"L{i}" for i in range(len(self.scores)))
        return pd.DataFrame({"layer": np.arange(len(self.scores)), "label": labels, "score": self.scores})

    def figure(self) -> go.Figure:
        frame = self.to_frame()
        return go.Figure(go.Bar(x=frame["label"], y=frame["score"], hovertext=list(frame["label"])))

    def summary(self) -> str:
        return f"Best layer: {int(np.argmax(self.scores))}."


@dataclasses.dataclass(frozen=True)
class TwoFigures(LayerScores):
    """A Result with two figures."""

    def figures(self) -> list[go.Figure]:
        return [self.figure(), heatmap(np.outer(self.scores, self.scores), title="outer")]


@dataclasses.dataclass(frozen=True)
class TableOnly(Result):
    """A Result with a frame but no figure."""

    values: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"v": self.values})


class _Tags(HTMLParser):
    """Collects start tags with attributes and the text of each <script> element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._in_script: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = dict(attrs)
            self.scripts.append((self._in_script, ""))

    def handle_data(self, data: str) -> None:
        if self._in_script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = None


def _parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    return parser


def _figure_specs(html: str) -> list[dict[str, Any]]:
    return [
        json.loads(text) for attrs, text in _parse(html).scripts if attrs.get("type") == "application/json"
    ]


@pytest.fixture
def scores() -> LayerScores:
    return LayerScores(scores=np.array([0.5, 0.7, 0.9, 0.6]))


# -- structure ---------------------------------------------------------------------------------------
def test_toc_lists_every_section_in_order(scores: LayerScores) -> None:
    report = (
        Report("Probing").add(scores).add_section("Notes", text="hello").add_section("Notes", text="again")
    )
    page = _parse(report.render())
    section_ids = [a["id"] for tag, a in page.tags if tag == "section"]
    toc_hrefs = [a["href"] for tag, a in page.tags if tag == "a" and (a.get("href") or "").startswith("#")]
    assert len(section_ids) == 3 and len(set(section_ids)) == 3
    assert toc_hrefs == [f"#{i}" for i in section_ids]
    assert report.section_titles == ["Layer scores", "Notes", "Notes"]
    assert len(report) == 3


def test_plotly_js_is_inlined_exactly_once(scores: LayerScores) -> None:
    report = Report("Two results").add(scores).add(TwoFigures(scores=np.array([0.1, 0.2])))
    html = report.render()
    js = get_plotlyjs()
    assert html.count(js[:400]) == 1
    assert html.count(js[-400:]) == 1
    assert len(_figure_specs(html)) == 3


def test_no_external_resources(scores: LayerScores) -> None:
    html = Report("Offline").add(scores).add_metadata({"site": "https://example.com"}).render()
    page = _parse(html)
    for tag, attrs in page.tags:
        for name in ("src", "href", "srcset", "data", "poster", "action"):
            value = (attrs.get(name) or "").strip().lower()
            assert not re.match(r"^(https?:|//|ftp:)", value), (
                f"<{tag} {name}={value!r}> loads from the network"
            )
        if tag == "link":
            pytest.fail(f"unexpected <link> tag {attrs}")
        if tag == "a":
            assert (attrs.get("href") or "#").startswith("#"), attrs
    style = html[html.index("<style>") : html.index("</style>")]
    assert "url(" not in style and "@import" not in style


def test_report_without_figures_does_not_inline_plotly() -> None:
    html = Report("Tables only").add(TableOnly(values=np.arange(3.0))).render()
    assert len(html) < 50_000
    assert not _figure_specs(html)
    assert "<tbody>" in html


# -- escaping ----------------------------------------------------------------------------------------
def test_titles_text_tables_and_metadata_are_escaped() -> None:
    frame = pd.DataFrame({XSS: [XSS, "<img src=x onerror=alert(2)>"]}, index=pd.Index([XSS, "b"], name=XSS))
    report = Report(XSS, subtitle=XSS)
    report.add_metadata({XSS: XSS, "nested": {"k": XSS}, "list": [XSS]})
    report.add_section(XSS, text=XSS, note=XSS, tables=[frame])
    html = report.render()
    assert XSS_RAW not in html
    assert "<img src=x" not in html
    assert "alert(1)" in html  # it is there, as text
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 12
    assert "onerror" not in {k for _, attrs in _parse(html).tags for k in attrs}


def test_figure_strings_cannot_break_out_of_the_script_tag() -> None:
    fig = go.Figure(
        go.Bar(
            x=[XSS, "a & b\u2028c"],
            y=[1, 2],
            hovertext=[XSS, "<b>x</b>"],
            text=np.array([XSS, "t"], dtype=object),
            name=XSS,
        )
    )
    fig.update_layout(title=XSS, xaxis_title=XSS, yaxis={"ticktext": [XSS], "tickvals": [1]})
    html = Report("fig").add_section("fig", figures=[fig]).render()
    assert XSS_RAW not in html and "alert(1)</script>" not in html
    assert "\u2028" not in html and "\u2029" not in html
    page = _parse(html)
    assert sum(1 for tag, _ in page.tags if tag == "script") == len(page.scripts) == 3
    (spec,) = _figure_specs(html)
    trace = spec["data"][0]
    shown = escape_plotly_text(XSS)
    assert trace["x"] == [shown, "a &amp; b\u2028c"]
    assert trace["hovertext"] == [shown, "&lt;b&gt;x&lt;/b&gt;"]
    assert trace["text"][0] == shown and trace["name"] == shown
    assert spec["layout"]["title"]["text"] == shown
    assert spec["layout"]["xaxis"]["title"]["text"] == shown
    assert spec["layout"]["yaxis"]["ticktext"] == [shown]


def test_figure_templates_and_styles_are_not_escaped() -> None:
    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4], hovertemplate="<b>%{x}</b><extra></extra>"))
    fig.update_layout(font={"family": "A&B"}, xaxis={"title": {"text": "x", "font": {"family": "A&B"}}})
    (spec,) = _figure_specs(Report("t").add_section("s", figures=[fig]).render())
    assert spec["data"][0]["hovertemplate"] == "<b>%{x}</b><extra></extra>"
    assert spec["layout"]["font"]["family"] == "A&B"
    assert spec["layout"]["xaxis"]["title"]["font"]["family"] == "A&B"


def test_script_safe_json_round_trips() -> None:
    value = {"s": "</script><!-- & \u2028 \u2029 >"}
    safe = script_safe_json(json.dumps(value, ensure_ascii=False))
    assert not set("<>&\u2028\u2029") & set(safe)
    assert json.loads(safe) == value


def test_trusted_html_is_inserted_verbatim() -> None:
    html = Report("t").add_section("s", html='<p class="ours">made by <em>layerscope</em></p>').render()
    assert '<p class="ours">made by <em>layerscope</em></p>' in html


# -- tables ------------------------------------------------------------------------------------------
def test_tables_are_capped_with_a_count_line() -> None:
    frame = pd.DataFrame({"i": np.arange(120), "x": np.linspace(0, 1, 120)})
    html = (
        Report("t", max_rows=50)
        .add_section("big", tables=[frame])
        .add_section("small", tables=[frame.head(1)])
    )
    text = html.render()
    assert "Showing 50 of 120 rows." in text
    assert "1 row." in text
    assert text.count('<td class="num">') == 50 * 2 + 1 * 2
    capped = Report("t").add_section("big", tables=[frame], max_rows=5).render()
    assert "Showing 5 of 120 rows." in capped


def test_cells_are_formatted() -> None:
    frame = pd.DataFrame({"f": [1 / 3, float("nan")], "s": ["x" * 1000, None], "b": [True, False]})
    html = Report("t").add_section("s", tables=[frame]).render()
    assert "0.3333" in html and "NaN" in html and "x" * 299 + "…" in html and "x" * 300 not in html


# -- results -----------------------------------------------------------------------------------------
def test_add_result_shows_title_summary_figures_and_table(scores: LayerScores) -> None:
    html = Report("r").add(scores, note="a note").render()
    assert "Layer scores" in html and "Best layer: 2." in html and "a note" in html
    assert "LayerScores" in html  # the kind tag
    (spec,) = _figure_specs(html)
    assert spec["data"][0]["type"] == "bar"
    assert "4 rows." in html
    two = Report("r").add(TwoFigures(scores=np.array([0.1, 0.2])), title="Custom").render()
    assert len(_figure_specs(two)) == 2 and "Custom" in two


def test_result_without_figure_gets_a_table_only() -> None:
    html = Report("r").add(TableOnly(values=np.arange(4.0))).render()
    assert not _figure_specs(html) and "4 rows." in html


def test_add_rejects_non_results_with_a_helpful_error() -> None:
    with pytest.raises(ConfigError, match="add_section"):
        Report("r").add(pd.DataFrame())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="DataFrame"):
        Report("r").add_section("s", tables=[[1, 2]])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="plotly Figure"):
        Report("r").add_section("s", figures=["not a figure"])  # type: ignore[list-item]
    with pytest.raises(LayerscopeError):
        Report("r", max_rows=0)


def test_metadata_values_are_formatted() -> None:
    when = dt.datetime(2025, 1, 2, 3, 4, 5)
    html = Report("r").add_metadata({"time": when, "versions": {"torch": "2.5"}, "n": 3}).render()
    assert "2025-01-02T03:04:05" in html and "torch=2.5" in html and '<th scope="row">n</th>' in html


def test_footer_has_the_version() -> None:
    from layerscope import __version__

    assert f"layerscope {__version__}" in Report("r").render()


# -- writing -----------------------------------------------------------------------------------------
def test_write_and_build_report(tmp_path: Path, scores: LayerScores) -> None:
    out = build_report([scores, TableOnly(values=np.arange(2.0))], tmp_path / "sub" / "r.html", title="Both")
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert text.count('<section class="card"') == 2
    assert [p.name for p in out.parent.iterdir()] == ["r.html"]


def test_failure_mid_write_leaves_existing_report_untouched(
    tmp_path: Path, scores: LayerScores, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "r.html"
    out.write_text("previous report", encoding="utf-8")

    class Exploding:
        def generate(self, **context: Any) -> Iterator[str]:
            yield "<!DOCTYPE html><html>" + "x" * 100_000
            raise RuntimeError("render failed")

    monkeypatch.setattr(report_html, "_template", lambda: Exploding())
    with pytest.raises(RuntimeError, match="render failed"):
        Report("r").add(scores).write(out)
    assert out.read_text(encoding="utf-8") == "previous report"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_write_to_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="directory"):
        Report("r").write(tmp_path)


# -- figure helpers ----------------------------------------------------------------------------------
def test_heatmap_helper() -> None:
    fig = heatmap(np.array([[-1.0, 2.0], [0.5, np.nan]]), x=["a", "b"], y=["r1", "r2"], title="h")
    trace = fig.data[0]
    assert trace.zmid == 0 and trace.zmax == 2 and trace.zmin == -2
    assert fig.layout.template.layout.colorway is not None
    assert heatmap(np.ones((2, 3))).data[0].zmid is None
    with pytest.raises(ConfigError, match="2-D"):
        heatmap(np.ones(3))
    with pytest.raises(ConfigError, match="x labels"):
        heatmap(np.ones((2, 3)), x=["a"])


def test_line_per_layer_helper() -> None:
    frame = pd.DataFrame({"layer": [1, 0, 1, 0], "task": ["t", "t", "c", "c"], "acc": [0.9, 0.5, 0.4, 0.3]})
    fig = line_per_layer(frame, y="acc", color="task", y_range=(0, 1))
    assert [t.name for t in fig.data] == ["t", "c"]
    assert list(fig.data[0].x) == [0, 1] and list(fig.data[0].y) == [0.5, 0.9]
    with pytest.raises(ConfigError, match="not in the frame"):
        line_per_layer(frame, y="nope")


def test_result_load_imports_the_module_of_a_result_type_not_yet_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    import pandas as pd

    from layerscope import result as result_module
    from layerscope.probes.result import ProbeSweepResult

    frame = pd.DataFrame({"task": ["t"], "layer": [0], "metric": ["accuracy"], "value": [0.5]})
    path = ProbeSweepResult(frame=frame, tasks=pd.DataFrame({"task": ["t"]})).save(tmp_path / "r")
    # a fresh process: neither the class nor its module is known yet
    monkeypatch.delitem(result_module._REGISTRY, "ProbeSweepResult")
    monkeypatch.delitem(sys.modules, "layerscope.probes.result")
    back = Result.load(path)
    assert type(back).__name__ == "ProbeSweepResult" and back.frame.equals(frame)
    # a module outside layerscope named in a (tampered) file is never imported
    meta = json.loads((path / "result.json").read_text())
    meta.update(type="Evil", module="os")
    (path / "result.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="'Evil', a result type not known"):
        Result.load(path)
