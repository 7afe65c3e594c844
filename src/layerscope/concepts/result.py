"""``ConceptModelResult``: task/concept metrics per (dataset, model, seed) and intervention curves."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from ..result import Result

__all__ = ["ConceptModelResult"]

#: Metrics shown in the summary table, in order.
TABLE_METRICS = ("task_accuracy", "concept_accuracy", "concept_auc", "cas")


@dataclasses.dataclass(frozen=True)
class ConceptModelResult(Result):
    """Concept bottleneck / embedding models evaluated on one or more datasets.

    Attributes:
        metrics: tidy rows ``dataset, model, seed, metric, value`` (``task_accuracy``, ``task_auc``,
            ``concept_accuracy``, ``concept_auc``, ``cas``, ``epochs``; NaN where a model has no concepts).
        interventions: rows ``dataset, model, seed, policy, n_intervened, task_accuracy``.
        ceilings: per dataset, the test accuracy of the best classifier that sees only the true concepts.
        config: how the models were trained (JSON).
        seconds: wall time of the whole run.
    """

    metrics: pd.DataFrame
    interventions: pd.DataFrame
    ceilings: dict[str, float]
    config: dict[str, Any]
    seconds: float = 0.0

    title = "Concept bottleneck and concept embedding models"

    def to_frame(self) -> pd.DataFrame:
        return self.metrics

    def table(self, *, metrics: tuple[str, ...] = TABLE_METRICS, digits: int = 1) -> pd.DataFrame:
        """Mean ± std over seeds (in %) per (dataset, model), one column per metric."""
        f = self.metrics[self.metrics.metric.isin(metrics)]
        g = f.groupby(["dataset", "model", "metric"], sort=False)["value"]
        stats = g.agg(["mean", "std", "count"]).reset_index()
        out: dict[tuple[str, str], dict[str, str]] = {}
        for rec in stats.to_dict("records"):
            key = (str(rec["dataset"]), str(rec["model"]))
            mean, std = float(rec["mean"]), float(rec["std"])
            if np.isnan(mean):
                cell = "—"
            else:
                std = 0.0 if np.isnan(std) else std
                cell = f"{100 * mean:.{digits}f} ± {100 * std:.{digits}f}"
            out.setdefault(key, {})[str(rec["metric"])] = cell
        rows = [
            {"dataset": d, "model": m, **{k: v.get(k, "—") for k in metrics}} for (d, m), v in out.items()
        ]
        frame = pd.DataFrame(rows)
        if not frame.empty:
            frame.insert(
                2, "ceiling", [f"{100 * self.ceilings.get(d, float('nan')):.1f}" for d in frame.dataset]
            )
        return frame

    def mean(self, metric: str = "task_accuracy") -> pd.DataFrame:
        """Mean over seeds: rows datasets, columns models."""
        f = self.metrics[self.metrics.metric == metric]
        return f.pivot_table(index="dataset", columns="model", values="value", aggfunc="mean", sort=False)

    def summary(self) -> str:
        acc = self.mean("task_accuracy")
        if acc.empty:
            return ""
        parts = []
        for ds, row in acc.iterrows():
            best = row.idxmax()
            ceiling = self.ceilings.get(str(ds))
            text = f"{ds}: best task accuracy {100 * row.max():.1f}% ({best})"
            if ceiling is not None:
                text += f"; concepts alone allow {100 * ceiling:.1f}%"
            parts.append(text)
        n_seeds = self.metrics.seed.nunique()
        return "; ".join(parts) + f". Mean over {n_seeds} seed(s), test split."

    # -- figures -----------------------------------------------------------------------------------
    def figure(self) -> Any:
        return self.intervention_figure()

    def figures(self) -> list[Any]:
        figs = [self.accuracy_figure()]
        if not self.interventions.empty:
            figs.append(self.intervention_figure())
        return figs

    def accuracy_figure(self, metric: str = "task_accuracy") -> Any:
        """Bars: mean ± std of ``metric`` per model, one group per dataset; dashed ceiling per dataset."""
        import plotly.graph_objects as go

        from ..report.figures import apply_style

        f = self.metrics[self.metrics.metric == metric]
        stats = f.groupby(["dataset", "model"], sort=False)["value"].agg(["mean", "std"]).reset_index()
        fig = go.Figure()
        datasets = list(dict.fromkeys(stats.dataset))
        for model in dict.fromkeys(stats.model):
            g = stats[stats.model == model].set_index("dataset").reindex(datasets)
            fig.add_trace(
                go.Bar(
                    name=str(model),
                    x=datasets,
                    y=(100 * g["mean"]).round(2).tolist(),
                    error_y={"type": "data", "array": (100 * g["std"].fillna(0)).round(2).tolist()},
                )
            )
        for i, ds in enumerate(datasets):
            if metric == "task_accuracy" and ds in self.ceilings:
                fig.add_shape(
                    type="line",
                    x0=i - 0.45,
                    x1=i + 0.45,
                    y0=100 * self.ceilings[ds],
                    y1=100 * self.ceilings[ds],
                    line={"dash": "dash", "color": "#555"},
                )
        fig.update_layout(
            barmode="group",
            title=f"{metric.replace('_', ' ')} (mean ± std over seeds; dashes: concept-only ceiling)",
            yaxis_title="%",
        )
        return apply_style(fig, height=420)

    def intervention_figure(self, policy: str | None = None) -> Any:
        """Task accuracy vs number of intervened concepts, one panel per dataset, a line per model."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        from ..report.figures import COLORWAY, apply_style

        f = self.interventions
        if policy is not None:
            f = f[f.policy == policy]
        datasets = list(dict.fromkeys(f.dataset)) or ["(none)"]
        fig = make_subplots(rows=1, cols=len(datasets), subplot_titles=datasets)
        keys = list(dict.fromkeys(zip(f.model, f.policy, strict=True)))
        for j, (model, pol) in enumerate(keys):
            color = COLORWAY[j % len(COLORWAY)]
            for i, ds in enumerate(datasets):
                g = f[(f.dataset == ds) & (f.model == model) & (f.policy == pol)]
                if g.empty:
                    continue
                s = g.groupby("n_intervened")["task_accuracy"].agg(["mean", "std"]).reset_index()
                fig.add_trace(
                    go.Scatter(
                        x=s.n_intervened.tolist(),
                        y=(100 * s["mean"]).round(2).tolist(),
                        error_y={"type": "data", "array": (100 * s["std"].fillna(0)).round(2).tolist()},
                        mode="lines+markers",
                        name=f"{model} · {pol}",
                        legendgroup=f"{model} · {pol}",
                        showlegend=i == 0,
                        line={"color": color, "dash": "solid" if pol == "random" else "dot"},
                    ),
                    row=1,
                    col=i + 1,
                )
        fig.update_xaxes(title_text="concepts intervened", dtick=1)
        fig.update_yaxes(title_text="task accuracy (%)", col=1)
        fig.update_layout(title="Test-time interventions: true concept values replace predictions")
        return apply_style(fig, height=420)

    @classmethod
    def concat(cls, results: list[ConceptModelResult]) -> ConceptModelResult:
        """One result from several runs."""
        ceilings: dict[str, float] = {}
        for r in results:
            ceilings.update(r.ceilings)
        return cls(
            metrics=pd.concat([r.metrics for r in results], ignore_index=True),
            interventions=pd.concat([r.interventions for r in results], ignore_index=True),
            ceilings=ceilings,
            config=results[0].config if results else {},
            seconds=float(sum(r.seconds for r in results)),
        )
