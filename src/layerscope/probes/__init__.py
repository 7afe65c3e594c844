"""Probes: scikit-learn estimators and batched (all layers at once) torch solvers.

Closed forms (ridge, LDA) come from additive sufficient statistics with one eigendecomposition per layer;
logistic probes use one L-BFGS over every layer and regularisation value; :func:`fit_layers` is the batched
entry point that standardises, fits and picks the regularisation per layer on a validation split;
:func:`fit_layers_with_control` adds the Hewitt & Liang control probe in shared work; :func:`fit_mlp_tasks`
trains the MLP probes of several tasks on the same rows as one batched model.
"""

from __future__ import annotations

from layerscope.probes._validation import ProbeDataError
from layerscope.probes.estimators import LDAProbe, LinearProbe, MLPProbe, RidgeProbe, RidgeRegressionProbe
from layerscope.probes.layerwise import LayerwiseFit, fit_layers, fit_layers_with_control, fit_mlp_tasks
from layerscope.probes.solvers import (
    SufficientStats,
    fit_logistic,
    lda,
    lda_path,
    logistic_objective,
    oas_shrinkage,
    predict_logits,
    ridge_path,
    warm_start_scale,
)

__all__ = [
    "LDAProbe",
    "LayerwiseFit",
    "LinearProbe",
    "MLPProbe",
    "ProbeDataError",
    "RidgeProbe",
    "RidgeRegressionProbe",
    "SufficientStats",
    "fit_layers",
    "fit_layers_with_control",
    "fit_logistic",
    "fit_mlp_tasks",
    "lda",
    "lda_path",
    "logistic_objective",
    "oas_shrinkage",
    "predict_logits",
    "ridge_path",
    "warm_start_scale",
]
