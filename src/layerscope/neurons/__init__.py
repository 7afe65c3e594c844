"""Sparse probing and neuron localisation (Gurnee et al. 2023, "Finding Neurons in a Haystack").

Which individual neurons carry a feature, and is it one dedicated neuron or a sparse combination?

- :func:`sparse_probe`: k-sparse probes for every layer and every k, selected by a ranking, the telescopic
  elastic-net re-ranking or the closed-form small-k search; with the rotated-basis control.
- :func:`rank_scores` / :class:`NeuronStats`: neuron rankings from streamed statistics, batched over layers.
- :func:`neuron_page`: top/bottom-activating examples, class histograms, promoted tokens, ranks per feature.
- :func:`ablation_check`: zero/mean/resample ablation of the found neurons inside the forward pass.
- :func:`store_features` / :func:`token_features` / :func:`binarize`: 0/1 feature labels per stored row.
"""

from __future__ import annotations

from ._common import GURNEE_KS, NeuronError
from ._fit import METRICS, binary_metrics
from .ablation import ablation_check
from .features import TOKEN_FEATURES, binarize, decode_tokens, store_features, token_features
from .pages import neuron_page, promoted_tokens
from .rankings import RANKINGS, NeuronStats, rank_scores, top_neurons
from .result import AblationResult, NeuronResult, SparseProbeResult
from .search import fisher, small_k_search
from .sparse import METHODS, sparse_probe, split_items

__all__ = [
    "GURNEE_KS",
    "METHODS",
    "METRICS",
    "RANKINGS",
    "TOKEN_FEATURES",
    "AblationResult",
    "NeuronError",
    "NeuronResult",
    "NeuronStats",
    "SparseProbeResult",
    "ablation_check",
    "binarize",
    "binary_metrics",
    "decode_tokens",
    "fisher",
    "neuron_page",
    "promoted_tokens",
    "rank_scores",
    "small_k_search",
    "sparse_probe",
    "split_items",
    "store_features",
    "token_features",
    "top_neurons",
]
