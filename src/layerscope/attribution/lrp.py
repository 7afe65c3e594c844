"""Layer-wise Relevance Propagation (Bach et al. 2015; Montavon et al. 2019) for CNNs, MLPs and transformers,
with AttnLRP's rules for LayerNorm/RMSNorm, softmax attention and gated products (Achtibat et al. 2024).

One forward and one backward pass per batch: the rules of ``_lrp_rules`` change the backward pass only, and
the relevance at the site is ``site value × modified gradient``. Conservation — the relevance sums to the
target logit — holds exactly for bias-free ReLU networks under the ε-rule (as ε → 0); biases, the stabiliser ε,
the softmax rule and constant additions (position embeddings after the ``embed`` site, attention masks)
absorb part of it. ``delta`` reports the gap per (example, target) pair, the way IG reports its
completeness error.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import ConfigError
from ..models.subject import Subject
from ._engine import Engine, frozen_params
from ._inputs import Continuation
from ._lrp_rules import AFFINE_RULES, ATTENTION_RULES, Plan, RuleSet, check_plan, discover, rules_applied
from .gradient import Attributor, eval_mode
from .result import AttributionResult

RULES = ("auto", *AFFINE_RULES)


class LRP(Attributor):
    """Layer-wise Relevance Propagation as modified gradients: ``R = x ⊙ ĝ`` at the site.

    Args:
        subject: the model (text encoder, causal LM, CNN or MLP).
        site: where relevance is read (``embed`` for text, ``input`` for images, or any other site; the
            relevance is then that of the site's activations).
        rule: rule of the convolutions: ``epsilon`` (ε-rule), ``gamma`` (γ-rule, favours positive
            contributions), ``zplus`` (z⁺ / α1β0, positive contributions only) or ``auto`` (``gamma`` for image
            models, ``epsilon`` otherwise). A convolution followed by an eval-mode BatchNorm is folded first.
        linear_rule: rule of the fully connected layers (``epsilon`` by default, as zennit's composites).
        epsilon: the ε of the ε-rule and the stabiliser of the others (Captum's default 1e-9).
        gamma: the γ of the γ-rule (Captum's default 0.25).
        first_layer: a different rule for the first layer that reads the pixels (image models, site
            ``input``), e.g. ``zplus``; None keeps the layer's own rule.
        attention: ``attnlrp`` — the softmax rule of AttnLRP (relevance also flows through queries and keys,
            with the uniform rule on ``QKᵀ`` and ``A·V``) — or ``cp`` — CP-LRP (Ali et al. 2022): attention
            weights are constants and relevance flows through the values only.
        batch_tokens, batch_size: chunking of the (example, target) rows, as for the other attributors.

    Every rule is applied for the duration of one ``attribute`` call and removed in ``finally``; the model's
    outputs are unchanged (rules alter gradients only).
    """

    method: ClassVar[str] = "lrp"

    def __init__(
        self,
        subject: Subject,
        *,
        site: str | None = None,
        rule: str = "auto",
        linear_rule: str = "epsilon",
        epsilon: float = 1e-9,
        gamma: float = 0.25,
        first_layer: str | None = None,
        attention: str = "attnlrp",
        batch_tokens: int = 8192,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(subject, site=site, batch_tokens=batch_tokens, batch_size=batch_size)
        if rule not in RULES:
            raise ConfigError(f"unknown LRP rule {rule!r}; use one of {', '.join(RULES)}")
        if linear_rule not in AFFINE_RULES:
            raise ConfigError(f"unknown linear_rule {linear_rule!r}; use one of {', '.join(AFFINE_RULES)}")
        if first_layer is not None and first_layer not in AFFINE_RULES:
            raise ConfigError(
                f"unknown first_layer rule {first_layer!r}; use one of {', '.join(AFFINE_RULES)} or None"
            )
        if attention not in ATTENTION_RULES:
            raise ConfigError(
                f"unknown attention rule {attention!r}; use one of {', '.join(ATTENTION_RULES)}"
            )
        if not (isinstance(epsilon, int | float) and epsilon > 0):
            raise ConfigError(f"epsilon must be a positive number (e.g. 1e-9), got {epsilon!r}")
        if not (isinstance(gamma, int | float) and gamma >= 0):
            raise ConfigError(f"gamma must be a number ≥ 0 (e.g. 0.25), got {gamma!r}")
        if first_layer is not None and self.site != "input":
            raise ConfigError(
                "first_layer applies to the first layer that reads the pixels: use it with an image model at "
                f"site 'input', not at site {self.site!r}"
            )
        is_image = subject.image is not None or subject.kind == "vision"
        conv = ("gamma" if is_image else "epsilon") if rule == "auto" else rule
        self.rules = RuleSet(
            conv=conv,
            linear=linear_rule,
            first=first_layer,
            epsilon=float(epsilon),
            gamma=float(gamma),
            attention=attention,
        )

    def attribute(
        self,
        inputs: Any,
        *,
        target: Any = None,
        keep_raw: bool = False,
    ) -> AttributionResult:
        """Relevance of every site feature for ``target`` (class index, token id, one per input, or a
        callable ``out -> [batch]``), summed per token/word (text) or per pixel (images).

        ``delta`` is Σ relevance − F(x) per pair (``f_input`` = F(x), ``f_baseline`` = 0: LRP's reference);
        ``conservation(result)`` gives Σ relevance / F(x).
        """
        if isinstance(target, Continuation):
            raise ConfigError(
                "LRP explains a logit, not a continuation's log-probabilities: pass the next token's id as "
                "target (or use IntegratedGradients with a Continuation)"
            )
        with eval_mode(self.subject):
            prep, pairs, eng = self._setup(inputs, target, "logit", None)
            eng.keep_head()  # the head's own LRP rule must run
            x = eng.x
            plan = self._plan(eng)
            check_plan(plan)
            S = len(pairs.sample)
            rows = eng.rows_between(torch.zeros_like(x), torch.tensor([1.0], dtype=torch.float64))
            with rules_applied(self.subject.model, self.rules, plan):
                g = eng.grad_sum(torch.arange(S), 1, rows, torch.ones(1), per_step=True)
            f_in = eng.row_values[:, 0].numpy().astype(np.float64)
            attr = g[:, 0] * x[pairs.sample.to(x.device)]
            total = attr.double().sum(dim=tuple(range(1, attr.ndim))).cpu().numpy()
            ones = np.ones(S, dtype=np.int64)
            return self._result(
                prep,
                pairs,
                eng,
                attr,
                baseline="none",
                delta=total - f_in,
                steps=ones,
                f_input=f_in,
                f_baseline=np.zeros(S),
                evaluations=ones,
                keep_raw=keep_raw,
            )

    def _plan(self, eng: Engine) -> Plan:
        """One forward pass of the first row with read-only hooks: conv→BatchNorm pairs, the first layer and
        modules without a rule (every module downstream of the site is checked)."""
        sample = eng.pairs.sample[:1]
        lo, hi = eng._span(sample)
        x = eng.x
        s = sample.to(x.device)
        v = (x[s][:, lo:hi] if eng.positional else x[s]).detach().clone().requires_grad_(True)
        with frozen_params(self.subject.model):
            plan = discover(self.subject.model, lambda: eng.forward(sample, lo, hi, v))
        if self.rules.first is not None and plan.first is None:
            raise ConfigError("first_layer was given but no Linear/Conv layer reads the attributed input")
        return plan


def conservation(result: AttributionResult) -> np.ndarray:
    """Σ relevance / F(x) per row of an LRP result (1 = relevance fully conserved)."""
    if result.method != LRP.method:
        raise ConfigError(f"conservation() reads LRP results; this one is {result.method!r}")
    f = np.asarray(result.f_input, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.asarray(result.delta, dtype=np.float64) + f) / f
