"""``ProbeSweepResult``: every (model × task × layer × probe family) number of a probing sweep, with CIs."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from ..result import Result

METRICS = (
    "accuracy",
    "control_accuracy",
    "selectivity",
    "compression",
    "control_compression",
    "codelength_bits",
)


@dataclasses.dataclass(frozen=True)
class ProbeSweepResult(Result):
    """Layer-wise probing results.

    Attributes:
        frame: tidy rows ``model, variant, task, level, family, layer, site, metric, value, ci_low, ci_high``
            (``variant`` is ``trained`` or ``random_init``; ``layer`` is the site's index in sweep order,
            0 = the embedding layer).
        tasks: one row per (model, task): ``level, n_train, n_val, n_test, n_classes, majority_accuracy``.
    """

    frame: pd.DataFrame
    tasks: pd.DataFrame

    title = "Probing: where is each property encoded?"

    @classmethod
    def concat(cls, results: list[ProbeSweepResult]) -> ProbeSweepResult:
        """One result from several (e.g. two models on the same tasks)."""
        return cls(
            frame=pd.concat([r.frame for r in results], ignore_index=True),
            tasks=pd.concat([r.tasks for r in results], ignore_index=True),
        )

    def to_frame(self) -> pd.DataFrame:
        return self.frame

    def table(self, metric: str = "accuracy", *, variant: str = "trained") -> pd.DataFrame:
        """A wide table: one row per (model, task, family), one column per layer."""
        f = self.frame[(self.frame.metric == metric) & (self.frame.variant == variant)]
        return f.pivot_table(index=["model", "task", "family"], columns="layer", values="value").round(4)

    def expected_layer(self, *, metric: str = "accuracy") -> pd.DataFrame:
        """Tenney et al.'s center of gravity per (model, task, family): Σ ℓ·Δ_ℓ / Σ Δ_ℓ.

        Tenney's probes are cumulative (a scalar mix of layers 0…ℓ), so their layer-to-layer gains Δ_ℓ are
        non-negative. Our probes read one layer each; a cumulative probe can always do at least as well as the
        best single layer so far, so Δ_ℓ here are the gains of the running maximum of the per-layer scores
        (raw differences can sum to ~0 and send the ratio anywhere). 0 when no later layer beats layer 0.
        """
        rows = []
        f = self.frame[(self.frame.metric == metric) & (self.frame.variant == "trained")]
        for (model, task, family), g in f.groupby(["model", "task", "family"], sort=False):
            v = g.sort_values("layer")["value"].to_numpy()
            layers = g.sort_values("layer")["layer"].to_numpy()
            gains = np.diff(np.maximum.accumulate(v)) if len(v) else np.zeros(0)
            total = gains.sum()
            if len(v) == 0 or not np.isfinite(v).all():
                ev = float("nan")
            elif total > 1e-12:
                ev = float((layers[1:] * gains).sum() / total)
            else:
                ev = float(layers[0])
            rows.append(
                {
                    "model": model,
                    "task": task,
                    "family": family,
                    "expected_layer": ev,
                    "best_layer": int(layers[int(np.argmax(v))]),
                    "best_value": float(v.max()),
                }
            )
        return pd.DataFrame(rows)

    def summary(self) -> str:
        el = self.expected_layer()
        if el.empty:
            return ""
        parts = []
        for model, g in el.groupby("model", sort=False):
            g = g[g.family == g.family.iloc[0]].sort_values("expected_layer")
            order = ", ".join(f"{t} ({e:.1f})" for t, e in zip(g.task, g.expected_layer, strict=True))
            parts.append(
                f"{model}, {g.family.iloc[0]} probes — expected layer per task, low to high: {order}."
            )
        sel = self.frame[(self.frame.metric == "selectivity") & (self.frame.variant == "trained")]
        if not sel.empty:
            mean_sel = sel.groupby("family")["value"].mean()
            parts.append("Mean selectivity: " + ", ".join(f"{k} {v:.3f}" for k, v in mean_sel.items()) + ".")
        return " ".join(parts)

    # -- figures -----------------------------------------------------------------------------------
    def figure(self) -> Any:
        return self.curves("accuracy")

    def figures(self) -> list[Any]:
        figs = [self.curves("accuracy")]
        if (self.frame.metric == "selectivity").any():
            figs.append(self.curves("selectivity"))
        if (self.frame.metric == "compression").any():
            figs.append(self.curves("compression"))
        figs += [self.heatmap(), self.expected_layer_figure()]
        return figs

    def curves(self, metric: str) -> Any:
        """Metric vs layer per task (a panel each), one line per model × family with a CI band."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        from ..report.figures import COLORWAY, apply_style

        f = self.frame[self.frame.metric == metric]
        tasks = list(dict.fromkeys(f.task))
        cols = min(3, max(1, len(tasks)))
        rows = -(-len(tasks) // cols)
        fig = make_subplots(
            rows=rows,
            cols=cols,
            subplot_titles=tasks,
            shared_xaxes=False,
            vertical_spacing=0.12 / max(rows, 1) * 2,
        )
        keys = list(dict.fromkeys(zip(f.model, f.variant, f.family, strict=True)))
        for k, (model, variant, family) in enumerate(keys):
            color = COLORWAY[k % len(COLORWAY)]
            name = f"{model} · {family}" + ("" if variant == "trained" else " · random init")
            for t, task in enumerate(tasks):
                g = f[
                    (f.task == task) & (f.model == model) & (f.variant == variant) & (f.family == family)
                ].sort_values("layer")
                if g.empty:
                    continue
                r, c = t // cols + 1, t % cols + 1
                x = g.layer.tolist()
                if g.ci_low.notna().any():
                    fig.add_trace(
                        go.Scatter(
                            x=x + x[::-1],
                            y=g.ci_high.tolist() + g.ci_low.tolist()[::-1],
                            fill="toself",
                            fillcolor=_alpha(color, 0.15),
                            line={"width": 0},
                            hoverinfo="skip",
                            showlegend=False,
                            legendgroup=name,
                        ),
                        row=r,
                        col=c,
                    )
                fig.add_trace(
                    go.Scatter(
                        x=x,
                        y=g.value,
                        mode="lines+markers",
                        name=name,
                        legendgroup=name,
                        showlegend=t == 0,
                        line={"color": color, "dash": "dot" if variant != "trained" else None},
                        customdata=g.site,
                        hovertemplate="%{customdata}: %{y:.3f}<extra>" + name + "</extra>",
                    ),
                    row=r,
                    col=c,
                )
                if metric == "accuracy" and variant == "trained":
                    ctrl = self.frame[
                        (self.frame.metric == "control_accuracy")
                        & (self.frame.task == task)
                        & (self.frame.model == model)
                        & (self.frame.family == family)
                        & (self.frame.variant == variant)
                    ].sort_values("layer")
                    if not ctrl.empty:
                        fig.add_trace(
                            go.Scatter(
                                x=ctrl.layer,
                                y=ctrl.value,
                                mode="lines",
                                name=f"{name} · control",
                                legendgroup=name + "c",
                                showlegend=t == 0,
                                line={"color": color, "dash": "dash", "width": 1},
                            ),
                            row=r,
                            col=c,
                        )
            if metric == "accuracy" and k == 0:
                for t, task in enumerate(tasks):
                    maj = self.tasks[self.tasks.task == task].majority_accuracy
                    if len(maj):
                        fig.add_hline(
                            y=float(maj.iloc[0]),
                            line={"color": "gray", "dash": "dot", "width": 1},
                            row=t // cols + 1,
                            col=t % cols + 1,
                        )
        label = {
            "accuracy": "test accuracy (dashed: control task; dotted grey: majority)",
            "selectivity": "selectivity = task − control accuracy",
            "compression": "MDL compression (uniform / online codelength)",
        }.get(metric, metric)
        fig.update_layout(title={"text": label}, height=max(320, 260 * rows))
        fig.update_xaxes(title_text="layer (0 = embeddings)", dtick=1 if f.layer.max() <= 16 else None)
        return apply_style(fig, height=max(320, 260 * rows))

    def heatmap(self, *, family: str | None = None) -> Any:
        """Task × layer heatmap of the normalised gain over the majority baseline (0 = majority, 1 = best layer)."""
        from ..report.figures import heatmap

        f = self.frame[(self.frame.metric == "accuracy") & (self.frame.variant == "trained")]
        family = family or (f.family.iloc[0] if len(f) else "")
        f = f[f.family == family]
        rows, names = [], []
        layers = sorted(f.layer.unique())
        for (model, task), g in f.groupby(["model", "task"], sort=False):
            maj = self.tasks[(self.tasks.task == task) & (self.tasks.model == model)].majority_accuracy
            base = float(maj.iloc[0]) if len(maj) else 0.0
            v = g.set_index("layer").value.reindex(layers).to_numpy()
            span = max(np.nanmax(v) - base, 1e-9)
            rows.append((v - base) / span)
            names.append(task if f.model.nunique() == 1 else f"{model}: {task}")
        return heatmap(
            np.asarray(rows),
            x=[str(x) for x in layers],
            y=names,
            zmin=0.0,
            zmax=1.0,
            title=f"Where each property is decodable ({family} probes; share of the best gain over majority)",
            x_title="layer",
            colorbar_title="gain",
        )

    def expected_layer_figure(self) -> Any:
        """Expected layer (center of gravity) per task, one bar group per model × family."""
        import plotly.graph_objects as go

        from ..report.figures import apply_style

        el = self.expected_layer()
        fig = go.Figure()
        for (model, family), g in el.groupby(["model", "family"], sort=False):
            fig.add_trace(go.Bar(x=g.task, y=g.expected_layer, name=f"{model} · {family}"))
        fig.update_layout(
            title={"text": "Expected layer (Tenney et al. center of gravity of running-best accuracy gains)"},
            barmode="group",
            yaxis_title="layer",
        )
        return apply_style(fig)


def _alpha(hex_color: str, a: float) -> str:
    h = hex_color.lstrip("#")
    if len(h) != 6:
        return hex_color
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{a})"
