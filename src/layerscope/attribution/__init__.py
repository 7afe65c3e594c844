"""Attribution: what in this input drove this output? Gradient, relevance (LRP/AttnLRP) and perturbation
methods, baselines, baseline sensitivity, and attention rollout/flow — method and site are independent."""

from ._inputs import AttributionWarning, Continuation
from .attention import AttentionResult, attention, attention_flow, attention_patterns, attention_rollout
from .attention_view import attention_view_html
from .baselines import DatasetMean, Distribution, TokenBaseline, dataset_mean
from .gradient import (
    Attributor,
    ExpectedGradients,
    GradientShap,
    InputXGradient,
    IntegratedGradients,
    Saliency,
    SmoothGrad,
    quadrature,
)
from .lrp import LRP, conservation
from .perturbation import FeatureAblation, KernelShap, Lime
from .result import AttributionResult, BaselineSensitivityResult
from .sensitivity import baseline_sensitivity, compare_results

__all__ = [
    "LRP",
    "AttentionResult",
    "AttributionResult",
    "AttributionWarning",
    "Attributor",
    "BaselineSensitivityResult",
    "Continuation",
    "DatasetMean",
    "Distribution",
    "ExpectedGradients",
    "FeatureAblation",
    "GradientShap",
    "InputXGradient",
    "IntegratedGradients",
    "KernelShap",
    "Lime",
    "Saliency",
    "SmoothGrad",
    "TokenBaseline",
    "attention",
    "attention_flow",
    "attention_patterns",
    "attention_rollout",
    "attention_view_html",
    "baseline_sensitivity",
    "compare_results",
    "conservation",
    "dataset_mean",
    "quadrature",
]
