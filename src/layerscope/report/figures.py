"""Shared plotly figure helpers: one look (template, colours) for every Result's figures.

Result subclasses elsewhere build their figures with these so that reports look consistent. Nothing here
analyses anything: the helpers take numbers and labels and return ``plotly.graph_objects.Figure`` objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go

from ..errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COLORWAY",
    "DIVERGING",
    "SEQUENTIAL",
    "apply_style",
    "heatmap",
    "line_per_layer",
    "template",
]

#: Okabe–Ito colour-blind-safe qualitative palette (black dropped, it vanishes in dark mode).
COLORWAY: tuple[str, ...] = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#999999",
)
#: Colour scale for signed values centred on zero (attributions, weights, differences).
DIVERGING = "RdBu_r"
#: Colour scale for non-negative values (accuracies, activations, similarities).
SEQUENTIAL = "Viridis"

_FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif'
_GRID = "rgba(128,128,128,0.25)"


def template() -> go.layout.Template:
    """The layerscope plotly template: system font, colour-blind-safe colours, light grid, no clutter.

    Deliberately layout-only (no per-trace defaults) so that each figure's JSON stays small.
    """
    axis = {
        "gridcolor": _GRID,
        "zerolinecolor": _GRID,
        "linecolor": "rgba(128,128,128,0.6)",
        "ticks": "outside",
        "tickcolor": "rgba(128,128,128,0.6)",
        "automargin": True,
        "title": {"standoff": 8},
    }
    return go.layout.Template(
        layout={
            "font": {"family": _FONT, "size": 13, "color": "#1f2328"},
            "colorway": list(COLORWAY),
            "paper_bgcolor": "rgba(0,0,0,0)",
            "plot_bgcolor": "rgba(0,0,0,0)",
            "xaxis": axis,
            "yaxis": axis,
            "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
            "title": {"x": 0.0, "xanchor": "left", "font": {"size": 15}},
            "hoverlabel": {"font": {"family": _FONT}},
            "legend": {"bgcolor": "rgba(0,0,0,0)"},
        }
    )


def apply_style(fig: go.Figure, *, height: int | None = None) -> go.Figure:
    """Give ``fig`` the layerscope look (in place) and return it.

    Args:
        fig: any plotly figure.
        height: optional height in pixels; the width follows the report's container.
    """
    fig.update_layout(template=template())
    if height is not None:
        fig.update_layout(height=height)
    return fig


def heatmap(
    matrix: Any,
    *,
    x: Sequence[Any] | None = None,
    y: Sequence[Any] | None = None,
    title: str | None = None,
    x_title: str | None = None,
    y_title: str | None = None,
    colorbar_title: str | None = None,
    diverging: bool | None = None,
    zmin: float | None = None,
    zmax: float | None = None,
    height: int | None = None,
) -> go.Figure:
    """A styled heatmap of a 2-D array (rows are ``y``, columns are ``x``).

    Args:
        matrix: array-like of shape ``[len(y), len(x)]``; NaN cells are left blank.
        x, y: column and row labels (default: 0..n-1).
        title, x_title, y_title, colorbar_title: plain-text labels.
        diverging: use a zero-centred diverging scale; default: when the data has both signs.
        zmin, zmax: colour range (default: the data range, symmetric when diverging).
        height: figure height in pixels (default: grows with the number of rows, 260 to 900).

    Raises:
        ConfigError: when ``matrix`` is not 2-D or the labels do not match its shape.
    """
    z = np.asarray(matrix, dtype=np.float64)  # [n_rows, n_cols]
    if z.ndim != 2:
        raise ConfigError(f"heatmap needs a 2-D matrix, got shape {z.shape}; reshape or select a slice first")
    if x is not None and len(x) != z.shape[1]:
        raise ConfigError(f"heatmap: {len(x)} x labels for {z.shape[1]} columns; pass one label per column")
    if y is not None and len(y) != z.shape[0]:
        raise ConfigError(f"heatmap: {len(y)} y labels for {z.shape[0]} rows; pass one label per row")
    finite = z[np.isfinite(z)]
    if diverging is None:
        diverging = bool(finite.size and finite.min() < 0 < finite.max())
    trace: dict[str, Any] = {
        "z": z,
        "colorscale": DIVERGING if diverging else SEQUENTIAL,
        "colorbar": {"title": {"text": colorbar_title}} if colorbar_title else {},
        "hoverongaps": False,
    }
    if x is not None:
        trace["x"] = list(x)
    if y is not None:
        trace["y"] = list(y)
    if diverging:
        bound = float(np.abs(finite).max()) if finite.size else 1.0
        trace["zmid"] = 0.0
        trace["zmin"] = -bound if zmin is None else zmin
        trace["zmax"] = bound if zmax is None else zmax
    else:
        if zmin is not None:
            trace["zmin"] = zmin
        if zmax is not None:
            trace["zmax"] = zmax
    fig = go.Figure(go.Heatmap(**trace))
    fig.update_layout(title={"text": title} if title else None)
    fig.update_xaxes(title_text=x_title, type="category" if x is not None else None)
    fig.update_yaxes(title_text=y_title, type="category" if y is not None else None, autorange="reversed")
    return apply_style(fig, height=height or min(900, max(260, 120 + 26 * z.shape[0])))


def line_per_layer(
    df: pd.DataFrame,
    *,
    x: str = "layer",
    y: str = "value",
    color: str | None = None,
    error: str | None = None,
    title: str | None = None,
    y_title: str | None = None,
    y_range: tuple[float, float] | None = None,
) -> go.Figure:
    """One line per group over layers, e.g. probe accuracy per layer for the task and its control.

    Args:
        df: a tidy frame with columns ``x``, ``y`` and optionally ``color`` and ``error``.
        x: the column on the horizontal axis (usually the layer index).
        y: the column plotted.
        color: a column whose values name the lines (one line per value); None draws one line.
        error: a column of symmetric error-bar half-widths (e.g. a standard deviation).
        title, y_title: plain-text labels.
        y_range: fixed vertical range, e.g. ``(0, 1)`` for accuracies.

    Raises:
        ConfigError: when a named column is missing.
    """
    missing = [c for c in (x, y, color, error) if c is not None and c not in df.columns]
    if missing:
        raise ConfigError(f"line_per_layer: columns {missing} not in the frame (it has {list(df.columns)})")
    groups = [(None, df)] if color is None else list(df.groupby(color, sort=False))
    fig = go.Figure()
    numeric_x = df[x].dtype.kind in "iuf"
    for name, part in groups:
        if (
            numeric_x
        ):  # categorical x (site names) keeps the frame's order: "blocks.10" must follow "blocks.9"
            part = part.sort_values(x)
        fig.add_trace(
            go.Scatter(
                x=part[x].to_numpy(),
                y=part[y].to_numpy(),
                name=None if name is None else str(name),
                mode="lines+markers",
                error_y={"type": "data", "array": part[error].to_numpy(), "thickness": 1}
                if error is not None
                else None,
            )
        )
    fig.update_layout(title={"text": title} if title else None, showlegend=color is not None)
    few_ints = df[x].dtype.kind in "iu" and df[x].nunique() <= 16
    fig.update_xaxes(title_text=x, dtick=1 if few_ints else None)
    if not numeric_x:
        fig.update_xaxes(categoryorder="array", categoryarray=list(dict.fromkeys(df[x].tolist())))
    fig.update_yaxes(title_text=y_title or y, range=list(y_range) if y_range else None)
    return apply_style(fig)
