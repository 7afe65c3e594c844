"""Optimisation of inputs: the Objective algebra, parametrisations, transforms, regularisers and one loop.

Built on it: feature visualisation, class prototypes and entanglement, feature isolation masks (and their
comparison with attribution maps), adversarial examples (FGSM/PGD on images, embedding-space PGD and word
substitution on text) and the shortcut-learning case study.
"""

from .adversarial import (
    AdversarialResult,
    TextAttackResult,
    fgsm,
    pgd,
    pgd_embeddings,
    success_curve,
    word_substitution,
)
from .compare import MapComparisonResult, compare_maps, map_agreement
from .featvis import FeatureVisResult, visualize
from .isolation import IsolationResult, isolate, isolate_batch
from .loop import OptimizeOutput, default_forward, evaluate, optimize
from .objectives import (
    Objective,
    ObjectiveError,
    channel,
    check_not_probabilities,
    direction,
    diversity,
    layer,
    logit,
    logit_margin,
    neuron,
)
from .param import FourierParam, MaskParam, Parametrization, PixelParam, image_param
from .prototypes import EntanglementResult, PrototypeResult, entanglement, prototypes
from .regularizers import Regularizer, blur, l1, l2, total_variation
from .shortcut import ShortcutStudyResult, add_cue, cue_region, shortcut_study
from .transforms import Transform, no_transforms, standard_transforms

__all__ = [
    "AdversarialResult",
    "EntanglementResult",
    "FeatureVisResult",
    "FourierParam",
    "IsolationResult",
    "MapComparisonResult",
    "MaskParam",
    "Objective",
    "ObjectiveError",
    "OptimizeOutput",
    "Parametrization",
    "PixelParam",
    "PrototypeResult",
    "Regularizer",
    "ShortcutStudyResult",
    "TextAttackResult",
    "Transform",
    "add_cue",
    "blur",
    "channel",
    "check_not_probabilities",
    "compare_maps",
    "cue_region",
    "default_forward",
    "direction",
    "diversity",
    "entanglement",
    "evaluate",
    "fgsm",
    "image_param",
    "isolate",
    "isolate_batch",
    "l1",
    "l2",
    "layer",
    "logit",
    "logit_margin",
    "map_agreement",
    "neuron",
    "no_transforms",
    "optimize",
    "pgd",
    "pgd_embeddings",
    "prototypes",
    "shortcut_study",
    "standard_transforms",
    "success_curve",
    "total_variation",
    "visualize",
    "word_substitution",
]


from .._callable import make_module_callable

make_module_callable(__name__, optimize)  # ``layerscope.optimize(...)`` works once the subpackage is imported
