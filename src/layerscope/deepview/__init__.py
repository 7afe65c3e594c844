"""DeepView maps: a classifier's decision function with its data in 2-D (Schulz et al. 2020; Roberts et al. 2024).

Works on any ``(embeddings [N, D], probability function R^D → simplex)`` pair; :mod:`.text` builds those pairs
for MiniLM sentence classifiers (frozen + head, fine-tuned, multi-task) and adds adversarial points.
"""

from __future__ import annotations

from ._core import DEFAULT_LAMBDAS, deepview, distance_matrix, prob_fn_from_module, q_knn
from ._distance import js_divergence
from ._inverse import InverseMap
from ._validation import (
    DeepViewError,
    EmbeddingError,
    ProbabilityError,
    SingleClassError,
    TooFewPointsError,
)
from .result import DeepViewResult

__all__ = [
    "DEFAULT_LAMBDAS",
    "DeepViewError",
    "DeepViewResult",
    "EmbeddingError",
    "InverseMap",
    "ProbabilityError",
    "SingleClassError",
    "TooFewPointsError",
    "deepview",
    "distance_matrix",
    "js_divergence",
    "prob_fn_from_module",
    "q_knn",
]


from .._callable import make_module_callable

make_module_callable(__name__, deepview)  # ``layerscope.deepview(...)`` works once the subpackage is imported
