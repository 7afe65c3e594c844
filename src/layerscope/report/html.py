"""Self-contained HTML reports built from ``Result`` objects.

A report is one HTML file that opens offline: plotly.js is inlined once, each figure travels as JSON in a
``<script type="application/json">`` block and is drawn with ``Plotly.newPlot``; there is no CDN and no
external URL. Every string that came from data is escaped: HTML text by jinja2's autoescape, figure JSON by
``script_safe_json`` (``<``, ``>``, ``&``, ``/``, U+2028 and U+2029 become ``\\uXXXX`` escapes, so no data
string can close the script tag), and strings that plotly.js would read as its own pseudo-HTML (tick labels,
hover text, trace names, titles) by ``escape_plotly_text``, so ``<b>`` in a dataset sentence shows as ``<b>``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import functools
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import markupsafe
import numpy as np

from .._io import atomic_path
from ..errors import ConfigError
from ..result import Result

if TYPE_CHECKING:
    import os

    import pandas as pd
    import plotly.graph_objects as go

__all__ = ["Report", "build_report", "escape_plotly_text", "script_safe_json"]

DEFAULT_MAX_ROWS = 50
_MAX_CELL_CHARS = 300
_JSON_SWAPS = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("/", "\\u002f"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)
# Figure keys whose strings plotly.js shows through its pseudo-HTML renderer (``<b>``, ``<br>``, ``<a href>``,
# entities), plus keys that must stay equal to them (category lists, ids/parents). Their values come from
# data, so they are entity-escaped to display literally. ``hovertemplate``/``texttemplate`` are code, not
# data, and are left alone (the values they substitute are escaped where they come from).
_PLOTLY_TEXT_KEYS = frozenset(
    {
        "text",
        "hovertext",
        "name",
        "ticktext",
        "labels",
        "x",
        "y",
        "z",
        "customdata",
        "categoryarray",
        "values",
        "header",
        "cells",
        "title",
        "dimensions",
        "label",
        "parents",
        "ids",
        "tickvals",
    }
)
_SKIP_KEYS = frozenset({"template", "hovertemplate", "texttemplate", "meta", "uid"})


# -- escaping ------------------------------------------------------------------------------------------
def script_safe_json(json_text: str) -> str:
    """Make a JSON document safe to embed verbatim inside an HTML ``<script>`` element.

    ``<``, ``>``, ``&`` and ``/`` only ever occur inside JSON strings, where ``\\u003c`` etc. decode to the
    same characters, so the value is unchanged while ``</script>`` and ``<!--`` become impossible.
    U+2028/U+2029 are escaped too (they end a line in older JavaScript parsers).
    """
    for raw, escaped in _JSON_SWAPS:
        json_text = json_text.replace(raw, escaped)
    return json_text


def escape_plotly_text(text: str) -> str:
    """Escape ``&``, ``<`` and ``>`` as HTML entities so plotly.js shows ``text`` literally."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_figure_strings(node: Any, *, in_text: bool = False) -> Any:
    """Copy of a plotly JSON tree with the strings under ``_PLOTLY_TEXT_KEYS`` entity-escaped.

    Lists inherit their key's status; a dict's children are judged by their own keys, so
    ``title.text`` is escaped but ``title.font.family`` is not.
    """
    if isinstance(node, str):
        return escape_plotly_text(node) if in_text else node
    if isinstance(node, list | tuple):
        return [_escape_figure_strings(v, in_text=in_text) for v in node]
    if isinstance(node, np.ndarray):
        if node.dtype.kind in "OUS":
            return _escape_figure_strings(node.tolist(), in_text=in_text)
        return node
    if isinstance(node, dict):
        if "bdata" in node and "dtype" in node:  # a base64 typed array: numbers only
            return node
        return {
            key: value
            if key in _SKIP_KEYS
            else _escape_figure_strings(value, in_text=key in _PLOTLY_TEXT_KEYS)
            for key, value in node.items()
        }
    return node


def _figure_json(fig: go.Figure | Mapping[str, Any]) -> str:
    """Serialise a figure to script-safe JSON with its data strings escaped for plotly.js."""
    import plotly.graph_objects as go
    import plotly.io as pio

    if isinstance(fig, Mapping):
        fig = go.Figure(dict(fig))
    if not isinstance(fig, go.Figure):
        raise ConfigError(
            f"a report figure must be a plotly Figure or a figure dict, got {type(fig).__name__}"
        )
    spec = fig.to_plotly_json()
    spec = {
        "data": _escape_figure_strings(spec.get("data", [])),
        "layout": _escape_figure_strings(spec.get("layout", {})),
    }
    return script_safe_json(pio.json.to_json_plotly(spec))


@functools.lru_cache(maxsize=1)
def _plotly_js() -> str:
    """plotly.js source, made safe to inline (it cannot contain a closing script tag)."""
    from plotly.offline import get_plotlyjs

    return re.sub(r"</(script)", r"<\\/\1", get_plotlyjs(), flags=re.IGNORECASE)


# -- section model -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Figure:
    id: str
    json: markupsafe.Markup


@dataclasses.dataclass(frozen=True)
class _Table:
    columns: list[str]
    rows: list[list[str]]
    numeric: list[bool]
    shown: int
    total: int
    caption: str | None = None


@dataclasses.dataclass(frozen=True)
class _Section:
    id: str
    title: str
    kind: str | None
    paragraphs: list[str]
    note: str | None
    figures: list[_Figure]
    tables: list[_Table]
    html: markupsafe.Markup | None


def _paragraphs(text: str | None) -> list[str]:
    if not text:
        return []
    return [p.strip() for p in re.split(r"\n\s*\n", str(text)) if p.strip()]


def _cell(value: Any) -> str:
    """Format one table cell as plain text (escaped later by the template)."""
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        text = str(bool(value))
    elif isinstance(value, int | np.integer):
        text = str(int(value))
    elif isinstance(value, float | np.floating):
        f = float(value)
        text = "NaN" if math.isnan(f) else f"{f:.4g}"
    elif isinstance(value, np.ndarray):
        text = np.array2string(value, precision=4, threshold=20, separator=", ")
    else:
        text = str(value)
    if len(text) > _MAX_CELL_CHARS:
        text = text[: _MAX_CELL_CHARS - 1] + "…"
    return text


def _label(value: Any) -> str:
    if isinstance(value, tuple):
        return " / ".join(str(v) for v in value if str(v))
    return "" if value is None else str(value)


def _table(frame: pd.DataFrame, *, max_rows: int, caption: str | None = None) -> _Table:
    """Turn the first ``max_rows`` rows of a DataFrame into a plain-text table."""
    import pandas as pd

    if not isinstance(frame, pd.DataFrame):
        if isinstance(frame, pd.Series):
            frame = frame.to_frame()
        else:
            raise ConfigError(f"a report table must be a pandas DataFrame, got {type(frame).__name__}")
    total = len(frame)
    head = frame.head(max_rows)
    index = head.index
    default_index = isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1
    show_index = not default_index or any(n is not None for n in index.names)
    columns = [_label(c) for c in head.columns]
    numeric = [head[c].dtype.kind in "iufb" for c in head.columns] if head.columns.is_unique else []
    if not numeric:
        numeric = [False] * len(columns)
    rows = [[_cell(v) for v in row] for row in head.itertuples(index=False, name=None)]
    if show_index:
        columns = [_label(index.names if index.nlevels > 1 else index.name), *columns]
        numeric = [False, *numeric]
        rows = [[_label(i), *r] for i, r in zip(index, rows, strict=True)]
    return _Table(columns=columns, rows=rows, numeric=numeric, shown=len(rows), total=total, caption=caption)


def _metadata_value(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_metadata_value(v)}" for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(_metadata_value(v) for v in value)
    if isinstance(value, _dt.datetime):
        return value.isoformat(timespec="seconds")
    return _cell(value)


# -- the report ----------------------------------------------------------------------------------------
class Report:
    """A self-contained HTML report: a header, a metadata table, a table of contents and sections.

    Example::

        report = Report("Where is sentiment encoded?", subtitle="minilm on multiemo")
        report.add_metadata({"model": "minilm", "dataset": "multiemo"})
        report.add(probe_result, note="Control task: shuffled labels.")
        report.write("reports/sentiment.html")
    """

    def __init__(self, title: str, *, subtitle: str | None = None, max_rows: int = DEFAULT_MAX_ROWS) -> None:
        """Start an empty report.

        Args:
            title: the page title (plain text; escaped).
            subtitle: an optional line under the title (plain text; escaped).
            max_rows: default cap on rows shown per table; the page says "showing N of M rows".
        """
        if max_rows < 1:
            raise ConfigError(f"max_rows must be at least 1, got {max_rows}")
        self.title = str(title)
        self.subtitle = None if subtitle is None else str(subtitle)
        self.max_rows = max_rows
        self._sections: list[_Section] = []
        self._metadata: dict[str, str] = {}
        self._n_figures = 0

    def __len__(self) -> int:
        """Number of sections."""
        return len(self._sections)

    @property
    def section_titles(self) -> list[str]:
        """Titles of the sections, in order (as in the table of contents)."""
        return [s.title for s in self._sections]

    def add(
        self,
        result: Result,
        *,
        title: str | None = None,
        note: str | None = None,
        max_rows: int | None = None,
    ) -> Report:
        """Add a section showing a Result: its title, summary, every figure and a table of its frame.

        Args:
            result: any ``layerscope.Result``; a missing ``figure``/``to_frame`` is skipped.
            title: section title (default: ``result.title``).
            note: an optional remark shown under the summary (plain text; escaped).
            max_rows: cap on table rows (default: the report's ``max_rows``).

        Returns:
            The report, so calls can be chained.
        """
        if not isinstance(result, Result):
            raise ConfigError(
                f"Report.add takes a layerscope Result, got {type(result).__name__}; "
                "use Report.add_section for figures and tables built by hand"
            )
        try:
            figures: Sequence[Any] = result.figures()
        except NotImplementedError:
            figures = ()
        tables: list[pd.DataFrame] = []
        with contextlib.suppress(NotImplementedError):
            tables.append(result.to_frame())
        return self._append(
            title=title or result.title,
            kind=type(result).__name__,
            text=result.summary(),
            note=note,
            figures=figures,
            tables=tables,
            html=None,
            max_rows=max_rows,
        )

    def add_section(
        self,
        title: str,
        *,
        text: str | None = None,
        figures: Iterable[go.Figure | Mapping[str, Any]] = (),
        tables: Iterable[pd.DataFrame] = (),
        html: str | None = None,
        note: str | None = None,
        max_rows: int | None = None,
    ) -> Report:
        """Add a section built by layerscope code.

        Args:
            title: section title (plain text; escaped).
            text: plain-text body; blank lines separate paragraphs (escaped).
            figures: plotly figures (or figure dicts), drawn in order.
            tables: pandas DataFrames, each capped at ``max_rows`` rows.
            html: TRUSTED markup produced by layerscope code, inserted as is. Never pass data strings here.
            note: an optional highlighted remark (plain text; escaped).
            max_rows: cap on table rows (default: the report's ``max_rows``).

        Returns:
            The report, so calls can be chained.
        """
        return self._append(
            title=title,
            kind=None,
            text=text,
            note=note,
            figures=list(figures),
            tables=list(tables),
            html=html,
            max_rows=max_rows,
        )

    def add_metadata(self, metadata: Mapping[str, Any]) -> Report:
        """Add key/value pairs (model, dataset, versions, time, ...) to the metadata table; later keys win."""
        if not isinstance(metadata, Mapping):
            raise ConfigError(f"add_metadata takes a dict, got {type(metadata).__name__}")
        for key, value in metadata.items():
            self._metadata[str(key)] = _metadata_value(value)
        return self

    def _append(
        self,
        *,
        title: str,
        kind: str | None,
        text: str | None,
        note: str | None,
        figures: Sequence[Any],
        tables: Sequence[pd.DataFrame],
        html: str | None,
        max_rows: int | None,
    ) -> Report:
        cap = self.max_rows if max_rows is None else max_rows
        if cap < 1:
            raise ConfigError(f"max_rows must be at least 1, got {cap}")
        n = len(self._sections) + 1
        slug = re.sub(r"[^a-z0-9]+", "-", str(title).lower()).strip("-")[:40].strip("-")
        rendered: list[_Figure] = []
        for fig in figures:
            self._n_figures += 1
            rendered.append(_Figure(id=f"fig-{self._n_figures}", json=markupsafe.Markup(_figure_json(fig))))
        self._sections.append(
            _Section(
                id=f"s{n}-{slug}" if slug else f"s{n}",
                title=str(title),
                kind=kind,
                paragraphs=_paragraphs(text),
                note=None if note is None else str(note),
                figures=rendered,
                tables=[_table(t, max_rows=cap) for t in tables],
                html=None if html is None else markupsafe.Markup(html),
            )
        )
        return self

    # -- output ------------------------------------------------------------------------------------
    def _context(self) -> dict[str, Any]:
        from .. import __version__

        return {
            "title": self.title,
            "subtitle": self.subtitle,
            "metadata": list(self._metadata.items()),
            "sections": self._sections,
            "plotly_js": markupsafe.Markup(_plotly_js()) if self._n_figures else None,
            "version": __version__,
            "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        }

    def _chunks(self) -> Iterator[str]:
        return _template().generate(**self._context())

    def render(self) -> str:
        """The report as one HTML string."""
        return "".join(self._chunks())

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the report to ``path`` atomically (a temp file beside it, renamed when complete).

        A failure while rendering or writing leaves any existing file at ``path`` untouched.

        Returns:
            The path written.
        """
        target = Path(path)
        if target.is_dir():
            raise ConfigError(f"{target} is a directory; give a file path such as {target / 'report.html'}")
        with atomic_path(target) as tmp, tmp.open("w", encoding="utf-8", newline="\n") as fh:
            for chunk in self._chunks():
                fh.write(chunk)
        return target


@functools.lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("layerscope.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html")


def build_report(
    results: Iterable[Result],
    path: str | os.PathLike[str],
    *,
    title: str,
    subtitle: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write a report with one section per Result to ``path`` (atomically) and return the path."""
    report = Report(title, subtitle=subtitle)
    if metadata:
        report.add_metadata(metadata)
    for result in results:
        report.add(result)
    return report.write(path)
