"""Results of the neurons package: k-sparse probe sweeps, neuron pages and ablation checks."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from ..result import Result


@dataclasses.dataclass(frozen=True)
class SparseProbeResult(Result):
    """k-sparse probing results.

    Attributes:
        frame: one row per (feature, basis, method, layer, k): ``f1, precision, recall, mcc, auroc,
            accuracy, balanced_accuracy`` on the test split, ``neurons`` (comma-separated indices), sizes.
        rankings: the top neurons per (feature, ranking, layer): ``rank, neuron, score``.
        sites: the probed sites, in layer order.
    """

    frame: pd.DataFrame
    rankings: pd.DataFrame
    sites: list[str]

    title = "Sparse probing: which neurons carry each feature?"

    def to_frame(self) -> pd.DataFrame:
        return self.frame

    def table(
        self, metric: str = "f1", *, feature: str | None = None, method: str | None = None
    ) -> pd.DataFrame:
        """Wide table: rows are layers, columns k (first feature/method unless given; neuron basis)."""
        f = self._select(feature, method)
        return f.pivot_table(index="layer", columns="k", values=metric).round(4)

    def _select(self, feature: str | None, method: str | None, basis: str = "neuron") -> pd.DataFrame:
        f = self.frame[self.frame.basis == basis]
        feature = feature if feature is not None else str(f.feature.iloc[0])
        method = method if method is not None else str(f.method.iloc[0])
        return f[(f.feature == feature) & (f.method == method)]

    def best(self, metric: str = "f1") -> pd.DataFrame:
        """Per (feature, basis, method, k): the best layer and its score."""
        idx = self.frame.groupby(["feature", "basis", "method", "k"], sort=False)[metric].idxmax()
        return self.frame.loc[idx, ["feature", "basis", "method", "k", "layer", "site", metric, "neurons"]]

    def superposition(self, *, threshold: float = 0.9) -> pd.DataFrame:
        """Per (feature, layer): k=1 F1, best F1 and whether one neuron reaches ``threshold`` of the best.

        ``single_neuron`` features are carried by one dedicated neuron; the others need k > 1 (a sparse
        combination — superposition in Gurnee et al.'s sense) or are not linearly present.
        """
        f = self.frame[self.frame.basis == "neuron"]
        rows = []
        for (feat, method, layer), g in f.groupby(["feature", "method", "layer"], sort=False):
            best = float(g.f1.max())
            f1_1 = float(g[g.k == g.k.min()].f1.iloc[0])
            k90 = int(g[g.f1 >= threshold * best].k.min()) if best > 0 else -1
            rows.append(
                {
                    "feature": feat,
                    "method": method,
                    "layer": layer,
                    "f1_k1": f1_1,
                    "f1_best": best,
                    "k_to_90pct": k90,
                    "single_neuron": bool(best > 0 and f1_1 >= threshold * best),
                }
            )
        return pd.DataFrame(rows)

    def figure(self) -> Any:
        """F1 against k (log scale), one line per layer (first feature and method)."""
        from ..report.figures import line_per_layer

        f = self._select(None, None).copy()
        f["layer"] = f["layer"].astype(str)
        fig = line_per_layer(
            f, x="k", y="f1", color="layer", title=f"F1 vs k per layer — {f.feature.iloc[0]} ({f.method.iloc[0]})",
            y_title="test F1", y_range=(0, 1),
        )  # fmt: skip
        fig.update_xaxes(type="log", title_text="k (neurons)")
        return fig

    def figures(self) -> list[Any]:
        from ..report.figures import heatmap, line_per_layer

        figs = [self.figure()]
        for (feat, method), g in self.frame[self.frame.basis == "neuron"].groupby(
            ["feature", "method"], sort=False
        ):
            t = g.pivot_table(index="layer", columns="k", values="f1")
            figs.append(
                heatmap(
                    t.to_numpy(),
                    x=[str(k) for k in t.columns],
                    y=[str(v) for v in t.index],
                    title=f"F1 by layer × k — {feat} ({method})",
                    x_title="k",
                    y_title="layer",
                    colorbar_title="F1",
                    zmin=0,
                    zmax=1,
                )
            )
        if (self.frame.basis == "rotated").any():
            g = self.frame.groupby(["basis", "k"], sort=True).f1.max().reset_index()
            fig = line_per_layer(
                g, x="k", y="f1", color="basis", title="Best-layer F1: neuron vs rotated basis"
            )
            fig.update_xaxes(type="log")
            figs.append(fig)
        sp = self.superposition()
        if len(sp):
            s = sp.groupby("layer").single_neuron.mean().reset_index()
            s["share"] = s.single_neuron.astype(float)
            figs.append(
                line_per_layer(
                    s,
                    x="layer",
                    y="share",
                    title="Share of features a single neuron carries",
                    y_title="share (k=1 F1 ≥ 90 % of best)",
                    y_range=(0, 1),
                )
            )
        return figs

    def summary(self) -> str:
        best = self.best()
        nb = best[best.basis == "neuron"]
        if nb.empty:
            return ""
        k1 = nb[nb.k == nb.k.min()]
        parts = [
            f"{r.feature} ({r.method}): best single neuron at layer {r.layer} (neuron {r.neurons}), F1 {r.f1:.3f}"
            for r in k1.itertuples()
        ][:6]
        return "; ".join(parts) + "."


@dataclasses.dataclass(frozen=True)
class NeuronResult(Result):
    """A neuron page: what one neuron of one site responds to, and what it writes.

    Attributes:
        site: the site name; neuron: the neuron index.
        top_examples / bottom_examples: ``activation, example_id, position, token, context`` (the token
            marked ``⟦token⟧`` in its context).
        histogram: ``label, bin_left, bin_right, count`` per class (``all`` without labels).
        promoted_tokens: ``direction, token, logit`` (causal LMs: the neuron's output row through the
            unembedding); may be empty.
        rankings: the neuron's rank per (feature, ranking) where a sparse-probe result was given.
        stats: mean, std, max, min, fraction active (> 0).
    """

    site: str
    neuron: int
    top_examples: pd.DataFrame
    bottom_examples: pd.DataFrame
    histogram: pd.DataFrame
    promoted_tokens: pd.DataFrame
    rankings: pd.DataFrame
    stats: dict[str, float]

    title = "Neuron page"

    def to_frame(self) -> pd.DataFrame:
        return self.top_examples

    def figure(self) -> Any:
        import plotly.graph_objects as go

        from ..report.figures import apply_style

        fig = go.Figure()
        for label, g in self.histogram.groupby("label", sort=False):
            centres = (g.bin_left.to_numpy() + g.bin_right.to_numpy()) / 2
            total = max(1, int(g["count"].sum()))
            fig.add_trace(go.Bar(x=centres, y=g["count"].to_numpy() / total, name=str(label), opacity=0.6))
        fig.update_layout(
            barmode="overlay", title={"text": f"{self.site} neuron {self.neuron}: activations per class"}
        )
        fig.update_xaxes(title_text="activation")
        fig.update_yaxes(title_text="share of items")
        return apply_style(fig)

    def summary(self) -> str:
        top = self.top_examples.token.head(5).tolist()
        s = f"{self.site} neuron {self.neuron}: mean {self.stats.get('mean', np.nan):.3f}, max "
        s += f"{self.stats.get('max', np.nan):.3f}; top tokens {top}"
        if len(self.promoted_tokens):
            up = self.promoted_tokens[self.promoted_tokens.direction == "promotes"].token.head(5).tolist()
            s += f"; promotes {up}"
        return s + "."


@dataclasses.dataclass(frozen=True)
class AblationResult(Result):
    """Causal check of a sparse probe's neurons: ablate them in the forward pass and measure the change.

    Attributes:
        frame: one row per mode (``clean``, ``zero``, ``mean``, ``resample``): ``probe_accuracy``,
            ``probe_f1`` of a probe at ``probe_site`` (fitted on clean activations), and for causal LMs
            ``loss_pos``/``loss_neg`` (mean next-token loss on feature-positive/negative tokens) and their
            changes from clean.
        site, neurons, probe_site, feature: what was ablated, and where it was read.
    """

    frame: pd.DataFrame
    site: str
    neurons: list[int]
    probe_site: str
    feature: str

    title = "Ablation of the top neurons"

    def to_frame(self) -> pd.DataFrame:
        return self.frame

    def figure(self) -> Any:
        import plotly.graph_objects as go

        from ..report.figures import apply_style

        f = self.frame
        fig = go.Figure()
        fig.add_trace(go.Bar(x=f["mode"], y=f["probe_accuracy"], name=f"probe accuracy ({self.probe_site})"))
        if "delta_loss_pos" in f:
            fig.add_trace(go.Bar(x=f["mode"], y=f["delta_loss_pos"], name="Δ loss, feature tokens"))
            fig.add_trace(go.Bar(x=f["mode"], y=f["delta_loss_neg"], name="Δ loss, other tokens"))
        fig.update_layout(
            barmode="group", title={"text": f"Ablating {len(self.neurons)} neurons of {self.site}"}
        )
        return apply_style(fig)

    def summary(self) -> str:
        f = self.frame.set_index("mode")
        s = f"Ablating neurons {self.neurons[:8]} of {self.site} ({self.feature}): probe accuracy "
        s += ", ".join(f"{m} {f.loc[m, 'probe_accuracy']:.3f}" for m in f.index)
        if "delta_loss_pos" in f:
            parts = [
                f"{m} {f.loc[m, 'delta_loss_pos']:+.3f}/{f.loc[m, 'delta_loss_neg']:+.3f}"
                for m in f.index
                if m != "clean"
            ]
            s += "; Δ next-token loss on feature/other tokens: " + ", ".join(parts)
        return s + "."
