"""scikit-learn's estimator checks for every probe estimator (no expected failures)."""

from __future__ import annotations

from typing import Any

from sklearn.utils.estimator_checks import parametrize_with_checks

from layerscope.probes import LDAProbe, LinearProbe, MLPProbe, RidgeProbe, RidgeRegressionProbe

ESTIMATORS = [
    LinearProbe(),
    LinearProbe(penalty="elasticnet", l1_ratio=0.3, class_weight="balanced"),
    RidgeProbe(),
    LDAProbe(),
    LDAProbe(shrinkage=0.2),
    RidgeRegressionProbe(),
    MLPProbe(hidden_size=32, max_epochs=30),
    MLPProbe(hidden_size=0, rank=2, lr=0.05, max_epochs=30),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator: Any, check: Any) -> None:
    check(estimator)
