"""``InversionResult``: the best hard prompt per restart and target, their exact probabilities, token maps."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import ConfigError
from ..result import Result

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

_GOLDEN = math.pi * (3 - math.sqrt(5))


def show(token: str) -> str:
    """A token's text made visible: spaces as ␣, newlines/tabs escaped."""
    return token.replace(" ", "␣").replace("\n", "\\n").replace("\t", "\\t") or "∅"


@dataclasses.dataclass(frozen=True)
class InversionResult(Result):
    """Prompt inversion for one or more targets, ``restarts`` random starts each.

    Attributes:
        targets, target_ids: the continuations and their token ids.
        prompt_ids: best hard prompt per target and restart, ``[n_targets, restarts, length]``.
        prompt_tokens, prompt_texts: their token texts and decoded prompt text.
        hard_logprob: exact Σ log p(target | hard prompt) (plain forward on token ids), ``[n_targets, restarts]``.
        soft_logprob: the same for the final continuous (soft) prompt embeddings.
        random_logprob: the random starting prompts (the baseline), ``[n_targets, restarts]``.
        soft_distance: mean distance of the final soft embeddings to their nearest allowed token (``metric``).
        best_history: best hard log-probability so far per step and target, ``[steps, n_targets]``.
        soft_history: best log-probability of the optimised prompts per step (what the forward pass saw).
    """

    model: str
    targets: list[str]
    target_ids: list[list[int]]
    prefix: str
    suffix: str
    length: int
    restarts: int
    steps: int
    lam: float
    metric: str
    project: bool
    fluency_weight: float
    lr: float
    seed: int
    threshold: float
    prompt_ids: np.ndarray
    prompt_tokens: list[list[list[str]]]
    prompt_texts: list[list[str]]
    hard_logprob: np.ndarray
    soft_logprob: np.ndarray
    random_logprob: np.ndarray
    soft_distance: np.ndarray
    best_history: np.ndarray
    soft_history: np.ndarray
    seconds: float
    steps_per_second: float

    title: ClassVar[str] = "Prompt inversion"

    # -- numbers -----------------------------------------------------------------------------------
    @property
    def hard_prob(self) -> np.ndarray:
        """Exact target probability of each restart's best hard prompt, ``[n_targets, restarts]``."""
        return np.exp(self.hard_logprob)

    @property
    def soft_prob(self) -> np.ndarray:
        return np.exp(self.soft_logprob)

    @property
    def random_prob(self) -> np.ndarray:
        return np.exp(self.random_logprob)

    def _k(self, target: str | int) -> int:
        if isinstance(target, int) and not isinstance(target, bool):
            if not 0 <= target < len(self.targets):
                raise ConfigError(f"target index {target} out of range (0..{len(self.targets) - 1})")
            return target
        if target not in self.targets:
            raise ConfigError(f"target {target!r} is not in this result; it has {self.targets}")
        return self.targets.index(target)

    def success_rate(self, threshold: float | None = None) -> np.ndarray:
        """Share of restarts whose hard prompt reaches ``threshold`` probability, per target."""
        th = self.threshold if threshold is None else threshold
        return (self.hard_prob >= th).mean(1)

    def best_prompt(self, target: str | int = 0) -> tuple[str, float]:
        """The best hard prompt's text and its exact target probability."""
        k = self._k(target)
        r = int(np.argmax(self.hard_logprob[k]))
        return self.prompt_texts[k][r], float(self.hard_prob[k, r])

    def token_map(self, target: str | int = 0, *, unit: str = "token") -> pd.DataFrame:
        """How many restarts' best hard prompts contain each token (or word), with their probabilities.

        Args:
            target: target text or index.
            unit: ``"token"`` (projected vocabulary tokens) or ``"word"`` (whitespace-separated words of the
                decoded prompt, lower-cased).

        Returns:
            Frame sorted by ``restarts`` (descending): ``item``, ``restarts``, ``share``, ``mean_prob``,
            ``best_prob``.
        """
        import pandas as pd

        if unit not in ("token", "word"):
            raise ConfigError(f"unit must be 'token' or 'word', got {unit!r}")
        k = self._k(target)
        counts: Counter[str] = Counter()
        probs: dict[str, list[float]] = {}
        for r in range(self.restarts):
            if unit == "token":
                items = set(self.prompt_tokens[k][r])
            else:
                items = {w.strip(".,;:!?\"'()[]").lower() for w in self.prompt_texts[k][r].split()} - {""}
            for it in items:
                counts[it] += 1
                probs.setdefault(it, []).append(float(self.hard_prob[k, r]))
        rows = [
            (it, c, c / self.restarts, float(np.mean(probs[it])), float(np.max(probs[it])))
            for it, c in counts.items()
        ]
        frame = pd.DataFrame(rows, columns=["item", "restarts", "share", "mean_prob", "best_prob"])
        return frame.sort_values(["restarts", "mean_prob"], ascending=[False, False]).reset_index(drop=True)

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        rows = []
        for k, t in enumerate(self.targets):
            for r in range(self.restarts):
                rows.append(
                    {
                        "target": t,
                        "restart": r,
                        "prompt": self.prompt_texts[k][r],
                        "tokens": " | ".join(show(s) for s in self.prompt_tokens[k][r]),
                        "hard_prob": float(self.hard_prob[k, r]),
                        "soft_prob": float(self.soft_prob[k, r]),
                        "random_prob": float(self.random_prob[k, r]),
                        "soft_distance": float(self.soft_distance[k, r]),
                    }
                )
        frame = pd.DataFrame(rows)
        return frame.sort_values(["target", "hard_prob"], ascending=[True, False]).reset_index(drop=True)

    # -- figures -----------------------------------------------------------------------------------
    def _subplots(self, **kw: Any) -> go.Figure:
        from plotly.subplots import make_subplots

        return make_subplots(
            rows=1, cols=len(self.targets), subplot_titles=[f"target {show(t)}" for t in self.targets], **kw
        )

    def figure(self, *, top: int = 15, unit: str = "token") -> go.Figure:
        """Token map as bar charts: share of restarts using each token, one panel per target."""
        import plotly.graph_objects as go

        from ..report.figures import COLORWAY, apply_style

        fig = self._subplots(horizontal_spacing=0.12)
        for k, t in enumerate(self.targets):
            m = self.token_map(k, unit=unit).head(top).iloc[::-1]
            fig.add_trace(
                go.Bar(
                    x=m["share"],
                    y=[show(s) for s in m["item"]],
                    orientation="h",
                    marker_color=COLORWAY[k % len(COLORWAY)],
                    name=show(t),
                    customdata=np.stack([m["restarts"], m["mean_prob"]], 1),
                    hovertemplate="%{y}: %{customdata[0]} restarts, mean p=%{customdata[1]:.3f}<extra></extra>",
                ),
                row=1,
                col=k + 1,
            )
            fig.update_xaxes(title_text="share of restarts", row=1, col=k + 1)
        fig.update_layout(
            title={"text": f"Token map: prompt {unit}s over {self.restarts} restarts ({self.model})"},
            showlegend=False,
        )
        return apply_style(fig, height=max(320, 22 * top + 120))

    def cloud(self, *, top: int = 40, unit: str = "token") -> go.Figure:
        """Word-cloud-like token map: text size ∝ number of restarts (spiral layout), one panel per target."""
        import plotly.graph_objects as go

        from ..report.figures import COLORWAY, apply_style

        fig = self._subplots(horizontal_spacing=0.04)
        for k, _t in enumerate(self.targets):
            m = self.token_map(k, unit=unit).head(top)
            n = len(m)
            i = np.arange(n)
            radius = np.sqrt(i + 0.5)
            x, y = radius * np.cos(i * _GOLDEN), radius * np.sin(i * _GOLDEN)
            size = 11 + 29 * (m["restarts"].to_numpy() / max(1, int(m["restarts"].max() if n else 1)))
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    mode="text",
                    text=[show(s) for s in m["item"]],
                    textfont={"size": size, "color": COLORWAY[k % len(COLORWAY)]},
                    customdata=np.stack([m["restarts"], m["mean_prob"]], 1) if n else None,
                    hovertemplate="%{text}: %{customdata[0]} restarts, mean p=%{customdata[1]:.3f}<extra></extra>",
                ),
                row=1,
                col=k + 1,
            )
            fig.update_xaxes(visible=False, row=1, col=k + 1)
            fig.update_yaxes(visible=False, row=1, col=k + 1)
        fig.update_layout(title={"text": "Token cloud (size = restarts using the token)"}, showlegend=False)
        return apply_style(fig, height=420)

    def probability_figure(self) -> go.Figure:
        """Exact target probability of the best hard prompts vs. their soft prompts and random prompts."""
        import plotly.graph_objects as go

        from ..report.figures import COLORWAY, apply_style

        fig = go.Figure()
        xs = [show(t) for t in self.targets]
        for j, (name, vals) in enumerate(
            (
                ("hard prompt (exact)", self.hard_prob),
                ("soft prompt", self.soft_prob),
                ("random prompt", self.random_prob),
            )
        ):
            fig.add_trace(
                go.Box(
                    x=np.repeat(xs, self.restarts),
                    y=vals.reshape(-1),
                    name=name,
                    boxpoints="all",
                    jitter=0.4,
                    pointpos=0,
                    marker_color=COLORWAY[j],
                )
            )
        fig.add_hline(y=self.threshold, line_dash="dot", line_color="#999999")
        fig.update_layout(
            boxmode="group",
            title={"text": f"p(target | prompt) per restart (dotted: threshold {self.threshold:g})"},
        )
        fig.update_yaxes(title_text="probability", type="log")
        return apply_style(fig, height=380)

    def history_figure(self) -> go.Figure:
        """Best hard-prompt probability so far, per step and target."""
        import plotly.graph_objects as go

        from ..report.figures import apply_style

        fig = go.Figure()
        steps = np.arange(1, len(self.best_history) + 1)
        for k, t in enumerate(self.targets):
            fig.add_trace(go.Scatter(x=steps, y=np.exp(self.best_history[:, k]), name=show(t), mode="lines"))
        fig.update_layout(title={"text": "Best hard-prompt probability so far"})
        fig.update_xaxes(title_text="step")
        fig.update_yaxes(title_text="p(target)", type="log")
        return apply_style(fig, height=320)

    def figures(self) -> list[go.Figure]:
        return [self.figure(), self.cloud(), self.probability_figure(), self.history_figure()]

    def summary(self) -> str:
        parts = []
        for k, t in enumerate(self.targets):
            text, p = self.best_prompt(k)
            m = self.token_map(k)
            top = ", ".join(f"{show(s)} ({c})" for s, c in zip(m["item"][:3], m["restarts"][:3], strict=True))
            parts.append(
                f"{t!r}: best hard prompt {text!r} gives p={p:.3g} (best of {self.restarts} random prompts "
                f"{float(self.random_prob[k].max()):.2g}); {self.success_rate()[k]:.0%} of restarts reach "
                f"p≥{self.threshold:g}; most frequent tokens {top}."
            )
        mode = "PEZ projected steps" if self.project else f"soft prompts, λ={self.lam:g} ({self.metric})"
        return (
            f"Prompt inversion on {self.model}: {self.restarts} restarts × {self.steps} steps, "
            f"{self.length} prompt tokens, {mode}. " + " ".join(parts)
        )
