"""``AttributionResult`` and ``BaselineSensitivityResult``: scores per token/word (or pixel) with diagnostics."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..result import Result

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go


@dataclasses.dataclass(frozen=True)
class AttributionResult(Result):
    """Attribution scores, one row per (example, target) pair.

    Attributes:
        method, site, model, baseline: what produced the scores.
        texts: the input texts (empty for images).
        example: ``[rows]`` example index of each row; ``target``: its target label.
        tokens: per row, the attributed tokens (prompt only for continuations).
        scores: ``[rows, max_tokens]`` per-token scores (site attribution summed over features, NaN padded),
            or ``[rows, H, W]`` per-pixel scores (summed over channels) for images.
        words, word_scores: per row, words (tokenizer word boundaries) and their summed subword scores.
        delta: ``[rows]`` completeness delta Σ attributions − (F(x) − F(x′)) (NaN where not defined).
        steps: ``[rows]`` integration steps used (adaptive IG: the converged count).
        f_input, f_baseline: ``[rows]`` the objective at the input and at the baseline.
        evaluations: ``[rows]`` model evaluations (rows of one example) spent on each pair.
        raw: the full site attribution ``[rows, ...]`` when asked for (``keep_raw=True``), else None.
        images: for image models attributed at the input, the photos as uint8 ``[examples, H, W, 3]`` (for
            the overlay figure), else None.
    """

    method: str
    site: str
    model: str
    baseline: str
    texts: list[str]
    example: np.ndarray
    target: list[str]
    tokens: list[list[str]]
    scores: np.ndarray
    words: list[list[str]]
    word_scores: np.ndarray
    delta: np.ndarray
    steps: np.ndarray
    f_input: np.ndarray
    f_baseline: np.ndarray
    evaluations: np.ndarray
    raw: Any = None
    images: Any = None

    title: ClassVar[str] = "Attribution"

    @property
    def is_text(self) -> bool:
        return bool(self.texts)

    def token_scores(self, row: int = 0) -> list[tuple[str, float]]:
        """(token, score) of one row, padding removed."""
        toks = self.tokens[row]
        return [(t, float(self.scores[row, i])) for i, t in enumerate(toks)]

    def word_scores_of(self, row: int = 0) -> list[tuple[str, float]]:
        """(word, score) of one row."""
        return [(w, float(self.word_scores[row, i])) for i, w in enumerate(self.words[row])]

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        if not self.is_text:
            flat = self.scores.reshape(len(self.scores), -1)
            return pd.DataFrame(
                {
                    "example": self.example,
                    "target": self.target,
                    "sum": flat.sum(1),
                    "abs_max": np.abs(flat).max(1),
                    "delta": self.delta,
                    "steps": self.steps,
                }
            )
        rows = []
        for r, toks in enumerate(self.tokens):
            for i, t in enumerate(toks):
                rows.append((int(self.example[r]), self.target[r], i, t, float(self.scores[r, i])))
        return pd.DataFrame(rows, columns=["example", "target", "position", "token", "score"])

    def figure(self, *, max_rows: int = 12) -> go.Figure:
        """Token heat map (rows: example → target; cells coloured by score, labelled by token)."""
        import plotly.graph_objects as go

        from ..report.figures import DIVERGING, apply_style

        if not self.is_text:
            if self.images is not None and self.scores.ndim == 3:
                from .images import overlay_figure

                return overlay_figure(self, max_images=max_rows, title=f"{self.method}: pixel attribution")
            z = self.scores[0]
            bound = float(np.nanmax(np.abs(z))) or 1.0
            fig = go.Figure(go.Heatmap(z=z, colorscale=DIVERGING, zmid=0, zmin=-bound, zmax=bound))
            fig.update_yaxes(autorange="reversed", scaleanchor="x")
            fig.update_layout(title={"text": f"{self.method}: pixel attribution ({self.target[0]})"})
            return apply_style(fig, height=420)
        n = min(max_rows, len(self.tokens))
        width = max(len(t) for t in self.tokens[:n])
        z = np.full((n, width), np.nan)
        text = [["" for _ in range(width)] for _ in range(n)]
        for r in range(n):
            k = len(self.tokens[r])
            z[r, :k] = self.scores[r, :k]
            text[r][:k] = self.tokens[r]
        bound = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
        labels = [f"{int(self.example[r])} → {self.target[r]}" for r in range(n)]
        fig = go.Figure(
            go.Heatmap(
                z=z,
                text=text,
                texttemplate="%{text}",
                colorscale=DIVERGING,
                zmid=0,
                zmin=-bound,
                zmax=bound,
                hovertemplate="%{text}: %{z:.4f}<extra></extra>",
                colorbar={"title": {"text": "score"}},
            )
        )
        fig.update_xaxes(title_text="position", showgrid=False)
        # numeric rows with their labels as ticks (a category axis without y values drew a zero-size canvas)
        fig.update_yaxes(tickmode="array", tickvals=list(range(n)), ticktext=labels, autorange="reversed")
        fig.update_layout(title={"text": f"{self.method} at {self.site} ({self.baseline} baseline)"})
        return apply_style(fig, height=min(900, 120 + 34 * n))

    def summary(self) -> str:
        d = self.delta[np.isfinite(self.delta)]
        parts = [
            f"{self.method} on {self.model} at site {self.site} for {len(self.target)} (example, target) pairs"
        ]
        if d.size and self.method == "lrp":  # Σ relevance / F(x): LRP has no integration steps
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = (np.asarray(self.delta) + self.f_input) / self.f_input
            parts.append(f"median conservation (Σ relevance / F(x)) {np.nanmedian(ratio):.3f}")
        elif d.size:
            parts.append(f"max |delta| {np.abs(d).max():.2e}, median steps {int(np.median(self.steps))}")
        if self.is_text and len(self.words) and len(self.words[0]):
            top = int(np.nanargmax(np.abs(self.word_scores[0, : len(self.words[0])])))
            parts.append(f"strongest word of the first row: {self.words[0][top]!r}")
        return "; ".join(parts) + "."


@dataclasses.dataclass(frozen=True)
class BaselineSensitivityResult(Result):
    """How much attributions change with the baseline: rank correlation and top-k overlap per pair of baselines.

    Attributes:
        baselines: the baseline names compared.
        k: the top-k size for the overlap.
        per_example: frame (example, baseline_a, baseline_b, spearman, topk_overlap).
        spearman, topk: ``[n_baselines, n_baselines]`` means over examples.
    """

    baselines: list[str]
    k: int
    per_example: Any
    spearman: np.ndarray
    topk: np.ndarray

    title: ClassVar[str] = "Baseline sensitivity"

    def to_frame(self) -> pd.DataFrame:
        return self.per_example

    def figure(self) -> go.Figure:
        from ..report.figures import heatmap

        return heatmap(
            self.spearman,
            x=self.baselines,
            y=self.baselines,
            title="Mean Spearman rank correlation of token scores between baselines",
            colorbar_title="ρ",
            zmin=-1,
            zmax=1,
            diverging=True,
        )

    def figures(self) -> list[go.Figure]:
        from ..report.figures import heatmap

        return [
            self.figure(),
            heatmap(
                self.topk,
                x=self.baselines,
                y=self.baselines,
                title=f"Mean top-{self.k} token overlap between baselines",
                colorbar_title="overlap",
                zmin=0,
                zmax=1,
                diverging=False,
            ),
        ]

    def summary(self) -> str:
        n = len(self.baselines)
        off = ~np.eye(n, dtype=bool)
        if not off.any():
            return "One baseline only: nothing to compare."
        return (
            f"Across {len(self.baselines)} baselines, token rankings agree with mean Spearman ρ "
            f"{self.spearman[off].mean():.2f} (min {self.spearman[off].min():.2f}); the top-{self.k} tokens "
            f"overlap {self.topk[off].mean():.0%} on average."
        )
