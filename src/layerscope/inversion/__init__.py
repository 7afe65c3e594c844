"""Prompt inversion for causal LMs: which prompts make the model continue with a target (e.g. " girl")?

Soft prompts (``restarts`` random starts per target, all in one batch) optimised with the shared loop of
:mod:`layerscope.optimize`, a nearest-vocabulary penalty or PEZ projected steps, exact re-scoring of the hard
prompts, and token maps over restarts.
"""

from .invert import InversionError, allowed_tokens, invert, tokenize_targets
from .param import SoftPromptParam, Vocabulary
from .result import InversionResult

__all__ = [
    "InversionError",
    "InversionResult",
    "SoftPromptParam",
    "Vocabulary",
    "allowed_tokens",
    "invert",
    "tokenize_targets",
]
