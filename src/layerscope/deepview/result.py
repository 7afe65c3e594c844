"""``DeepViewResult``: 2-D maps (one per λ preset) of a classifier with its data, saveable and plottable."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..result import Result

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go


def _wrap(text: str, width: int = 70, lines: int = 3) -> list[str]:
    words, out, cur = text.split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            out.append(cur)
            cur = w
            if len(out) == lines:
                break
        else:
            cur = f"{cur} {w}" if cur else w
    if len(out) < lines and cur:
        out.append(cur)
    if len(out) == lines and sum(len(o) for o in out) < len(text) - lines:
        out[-1] = out[-1][: width - 1] + "…"
    return out + [""] * (lines - len(out))


def _hex_rgb(color: str) -> np.ndarray:
    c = color.lstrip("#")
    return np.array([int(c[k : k + 2], 16) for k in (0, 2, 4)], dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class DeepViewResult(Result):
    """DeepView maps of one classifier over one set of points.

    Attributes:
        name: what was mapped (shown in titles).
        lambdas: the λ presets, one map each (1 = structural distance only).
        coords: ``[L, N, 2]`` 2-D coordinates of every point per λ.
        grid_classes: ``[L, R, R]`` predicted class of each inverse-mapped grid cell (row = y, column = x).
        grid_entropy: ``[L, R, R]`` normalised entropy (0 = certain, 1 = uniform) of each grid cell.
        grid_extent: ``[L, 4]`` ``x_min, x_max, y_min, y_max`` of each grid.
        q_knn: ``[L]`` leave-one-out k-NN error of each map against the predicted labels (lower = better).
        q_knn_true: ``[L]`` the same against the true labels (NaN without labels).
        probs: ``[N, C]`` class probabilities of the points.
        labels: ``[N]`` true labels (indices into ``class_names``; -1 = unknown).
        class_names: the C class names.
        texts: one string per point (empty list when none were given).
        point_kind: per point, ``"data"`` or a tag such as ``"adversarial"``.
        params: the settings used.
        timings: seconds per stage.
    """

    title: ClassVar[str] = "DeepView map"

    name: str
    lambdas: tuple[float, ...]
    coords: np.ndarray
    grid_classes: np.ndarray
    grid_entropy: np.ndarray
    grid_extent: np.ndarray
    q_knn: np.ndarray
    q_knn_true: np.ndarray
    probs: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    texts: list[str]
    point_kind: list[str]
    params: dict[str, Any]
    timings: dict[str, float]

    # -- derived ----------------------------------------------------------------------------------------
    @property
    def pred(self) -> np.ndarray:
        """Predicted class per point."""
        return self.probs.argmax(1)

    @property
    def confidence(self) -> np.ndarray:
        """Probability of the predicted class per point."""
        return self.probs.max(1)

    def index(self, lam: float) -> int:
        """Position of the λ preset closest to ``lam``."""
        return int(np.argmin(np.abs(np.asarray(self.lambdas) - lam)))

    def nearest_examples(
        self, point: tuple[float, float], *, lam: float | None = None, k: int = 5
    ) -> list[int]:
        """Indices of the k points nearest to a 2-D location on the map of preset ``lam`` (default: first)."""
        li = 0 if lam is None else self.index(lam)
        d = np.linalg.norm(self.coords[li] - np.asarray(point, dtype=np.float64)[None], axis=1)
        return [int(v) for v in np.argsort(d)[:k]]

    # -- Result API ---------------------------------------------------------------------------------------
    def to_frame(self) -> pd.DataFrame:
        """One row per λ preset: Q_kNN (vs predictions and vs true labels) and the share of confident grid."""
        import pandas as pd

        rows = []
        for li, lam in enumerate(self.lambdas):
            rows.append(
                {
                    "lambda": lam,
                    "q_knn_pred": float(self.q_knn[li]),
                    "q_knn_true": float(self.q_knn_true[li]),
                    "grid_classes_shown": len(np.unique(self.grid_classes[li])),
                    "grid_mean_entropy": float(self.grid_entropy[li].mean()),
                }
            )
        return pd.DataFrame(rows)

    def points_frame(self, lam: float | None = None) -> pd.DataFrame:
        """One row per point for one λ preset: coordinates, text, true/predicted label, confidence, kind."""
        import pandas as pd

        li = 0 if lam is None else self.index(lam)
        names = np.asarray([*self.class_names, "?"])
        return pd.DataFrame(
            {
                "x": self.coords[li, :, 0],
                "y": self.coords[li, :, 1],
                "text": self.texts if self.texts else [""] * len(self.probs),
                "true": names[self.labels],
                "pred": names[self.pred],
                "confidence": self.confidence,
                "kind": self.point_kind,
            }
        )

    def summary(self) -> str:
        n = int(sum(k == "data" for k in self.point_kind))
        best = int(np.nanargmin(self.q_knn))
        parts = ", ".join(f"λ={lam:g}: {q:.3f}" for lam, q in zip(self.lambdas, self.q_knn, strict=True))
        acc = ""
        data = np.array([k == "data" for k in self.point_kind]) & (self.labels >= 0)
        if data.any():
            acc = f" The classifier is right on {np.mean(self.pred[data] == self.labels[data]):.1%} of the labelled points."
        extra = len(self.point_kind) - n
        adv = f" {extra} perturbed points are drawn as diamonds." if extra else ""
        return (
            f"DeepView maps of {n} points ({len(self.class_names)} classes{', ' + self.name if self.name else ''}). "
            f"Q_kNN (leave-one-out {self.params.get('q_k', 5)}-NN error of the map against the predictions; "
            f"lower = classes better separated): {parts}; best at λ={self.lambdas[best]:g}.{acc}{adv}"
        )

    def background_rgb(self, li: int) -> np.ndarray:
        """``[R, R, 3]`` uint8 background: class colour, pale where the classifier is uncertain."""
        from ..report.figures import COLORWAY

        palette = np.stack([_hex_rgb(COLORWAY[c % len(COLORWAY)]) for c in range(len(self.class_names))])
        col = palette[self.grid_classes[li]]
        strength = (0.2 + 0.6 * (1.0 - np.clip(self.grid_entropy[li], 0, 1)))[..., None]
        return np.clip(255.0 + strength * (col - 255.0), 0, 255).astype(np.uint8)

    def figure(self) -> go.Figure:
        """Interactive map: background = predicted class (pale = uncertain), points coloured by prediction,
        misclassified points ringed in black, perturbed points as diamonds; buttons switch the λ preset."""
        import plotly.graph_objects as go

        from ..report.figures import COLORWAY, apply_style
        from ..report.images import png_data_uri

        fig = go.Figure()
        names = np.asarray([*self.class_names, "?"])
        n = len(self.probs)
        texts = self.texts if self.texts else [""] * n
        wrapped = np.array([_wrap(t) for t in texts], dtype=object)
        custom = np.column_stack(
            [wrapped, names[self.labels], names[self.pred], np.round(self.confidence, 3), np.arange(n)]
        )
        hover = (
            "%{customdata[0]}<br>%{customdata[1]}<br>%{customdata[2]}<br>"
            "true: %{customdata[3]} · predicted: %{customdata[4]} (p = %{customdata[5]})"
            "<br>point %{customdata[6]}<extra></extra>"
        )
        kinds = np.asarray(self.point_kind)
        wrong = (self.labels >= 0) & (self.labels != self.pred)
        groups: list[list[int]] = []
        first = self.index(0.65)  # open on the papers' default preset (or the closest one)
        for li, lam in enumerate(self.lambdas):
            visible = li == first
            idx = [len(fig.data)]
            x0, x1, y0, y1 = self.grid_extent[li]
            r = self.grid_classes.shape[-1]
            fig.add_trace(
                go.Image(
                    # a PNG data URI, not ``z``: plotly.js cannot draw typed-array ``z`` image traces (blank
                    # map, "createImageData" error in the browser)
                    source=png_data_uri(self.background_rgb(li)),
                    x0=x0,
                    dx=(x1 - x0) / (r - 1),
                    y0=y0,
                    dy=(y1 - y0) / (r - 1),
                    hoverinfo="none",  # no tooltip, but clicks still reach the report's handler
                    visible=visible,
                    name=f"decision map λ={lam:g}",
                )
            )
            xy = self.coords[li]
            for c, cname in enumerate(self.class_names):
                m = (self.pred == c) & (kinds == "data")
                if not m.any():
                    continue
                idx.append(len(fig.data))
                fig.add_trace(
                    go.Scatter(
                        x=xy[m, 0],
                        y=xy[m, 1],
                        mode="markers",
                        name=f"pred {cname}",
                        marker={
                            "color": COLORWAY[c % len(COLORWAY)],
                            "size": 6,
                            "line": {"width": 0.5, "color": "white"},
                        },
                        customdata=custom[m],
                        hovertemplate=hover,
                        visible=visible,
                        legendgroup=cname,
                        showlegend=li == first,
                    )
                )
            m = wrong & (kinds == "data")
            if m.any():
                idx.append(len(fig.data))
                fig.add_trace(
                    go.Scatter(
                        x=xy[m, 0],
                        y=xy[m, 1],
                        mode="markers",
                        name="misclassified",
                        marker={
                            "symbol": "circle-open",
                            "color": "black",
                            "size": 10,
                            "line": {"width": 1},
                        },
                        customdata=custom[m],
                        hovertemplate=hover,
                        visible=visible,
                        showlegend=li == first,
                    )
                )
            m = kinds != "data"
            if m.any():
                idx.append(len(fig.data))
                cols = [COLORWAY[int(p) % len(COLORWAY)] for p in self.pred[m]]
                fig.add_trace(
                    go.Scatter(
                        x=xy[m, 0],
                        y=xy[m, 1],
                        mode="markers",
                        name="perturbed (" + ", ".join(sorted(set(kinds[m]))) + ")",
                        marker={
                            "symbol": "diamond",
                            "color": cols,
                            "size": 9,
                            "line": {"width": 1.2, "color": "black"},
                        },
                        customdata=custom[m],
                        hovertemplate=hover,
                        visible=visible,
                        showlegend=li == first,
                    )
                )
            groups.append(idx)
        n_traces = len(fig.data)

        def title(li: int) -> str:
            return (
                f"DeepView{': ' + self.name if self.name else ''} — λ = {self.lambdas[li]:g}, "
                f"Q_kNN = {self.q_knn[li]:.3f}"
            )

        buttons = []
        for li, lam in enumerate(self.lambdas):
            vis = [False] * n_traces
            for t in groups[li]:
                vis[t] = True
            buttons.append(
                {
                    "label": f"λ = {lam:g}",
                    "method": "update",
                    "args": [{"visible": vis}, {"title.text": title(li)}],
                }
            )
        # the report lists the nearest real examples of a clicked point of the map (see report.html)
        fig.update_layout(meta={"layerscope_click": "nearest"}, clickmode="event")
        fig.update_layout(
            title={"text": title(first), "y": 0.98, "yref": "container", "yanchor": "top"},
            updatemenus=[
                {
                    "type": "buttons",
                    "direction": "right",
                    "buttons": buttons,
                    "x": 0.0,
                    "y": 1.03,
                    "xanchor": "left",
                    "yanchor": "bottom",
                    "showactive": True,
                    "active": first,
                }
            ]
            if len(buttons) > 1
            else [],
            xaxis={"showticklabels": False, "title": None, "showgrid": False, "zeroline": False},
            yaxis={
                "showticklabels": False,
                "title": None,
                "showgrid": False,
                "zeroline": False,
                "autorange": True,
                "scaleanchor": "x",
            },
            legend={"orientation": "v"},
            margin={"t": 110},
        )
        return apply_style(fig, height=620)

    def q_figure(self) -> go.Figure:
        """Q_kNN per λ preset (against predictions and, where known, true labels)."""
        import plotly.graph_objects as go

        from ..report.figures import apply_style

        fig = go.Figure()
        fig.add_trace(
            go.Scatter(x=list(self.lambdas), y=self.q_knn, mode="lines+markers", name="vs predicted")
        )
        if np.isfinite(self.q_knn_true).any():
            fig.add_trace(
                go.Scatter(x=list(self.lambdas), y=self.q_knn_true, mode="lines+markers", name="vs true")
            )
        fig.update_layout(
            title={"text": "Q_kNN per λ (lower = classes better separated)"},
            xaxis={"title": "λ (1 = structural distance only)"},
            yaxis={"title": "Q_kNN"},
        )
        return apply_style(fig, height=320)

    def figures(self) -> list[go.Figure]:
        return [self.figure(), self.q_figure()] if len(self.lambdas) > 1 else [self.figure()]
