"""Interpretable-by-design models: concept bottleneck models (Koh et al. 2020) and concept embedding models
(Espinosa Zarlenga et al. 2022), with the XOR / Trig / Dot benchmarks and test-time interventions.

Example::

    from layerscope import concepts
    result = concepts.run(["trig"], ["cem", "cbm-joint-bool", "dnn"], seeds=3)
    print(result.table())
"""

from __future__ import annotations

from .data import (
    SENTENCE_CONCEPTS,
    SYNTHETIC,
    ConceptDataset,
    bayes_ceiling,
    dot,
    from_arrays,
    from_file,
    from_sentences,
    load_dataset,
    monte_carlo_ceiling,
    sentence_concepts,
    trig,
    xor,
)
from .metrics import POLICIES, concept_alignment_score, evaluate_model, intervention_curve
from .models import PRESETS, SUITE, ConceptModelConfig, StackedConceptModel, model_config
from .result import ConceptModelResult
from .suite import run
from .train import FittedConceptModel, TrainConfig, fit

__all__ = [
    "POLICIES",
    "PRESETS",
    "SENTENCE_CONCEPTS",
    "SUITE",
    "SYNTHETIC",
    "ConceptDataset",
    "ConceptModelConfig",
    "ConceptModelResult",
    "FittedConceptModel",
    "StackedConceptModel",
    "TrainConfig",
    "bayes_ceiling",
    "concept_alignment_score",
    "dot",
    "evaluate_model",
    "fit",
    "from_arrays",
    "from_file",
    "from_sentences",
    "intervention_curve",
    "load_dataset",
    "model_config",
    "monte_carlo_ceiling",
    "run",
    "sentence_concepts",
    "trig",
    "xor",
]
