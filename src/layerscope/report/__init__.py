"""Reports: shared plotly figure helpers and self-contained HTML reports built from ``Result`` objects."""

from __future__ import annotations

from .figures import COLORWAY, apply_style, heatmap, line_per_layer
from .html import Report, build_report, escape_plotly_text, script_safe_json

__all__ = [
    "COLORWAY",
    "Report",
    "apply_style",
    "build_report",
    "escape_plotly_text",
    "heatmap",
    "line_per_layer",
    "script_safe_json",
]
