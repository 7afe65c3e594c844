"""layerscope: look inside neural networks — where a property is encoded, which neurons carry it,
what drove an output, what a unit wants to see, where a model breaks.

The public API is loaded lazily (``import layerscope`` stays fast; torch loads on first use).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load": "layerscope.models.zoo",
    "list_models": "layerscope.models.zoo",
    "Subject": "layerscope.models.subject",
    "ImageSpec": "layerscope.models.subject",
    "Adapter": "layerscope.models.adapter",
    "Site": "layerscope.sites",
    "capture": "layerscope.capture.trace",
    "intervene": "layerscope.capture.trace",
    "SiteOptions": "layerscope.capture.trace",
    "extract": "layerscope.capture.extract",
    "extract_images": "layerscope.capture.extract_images",
    "ActivationStore": "layerscope.capture.store",
    "TextDataset": "layerscope.data.dataset",
    "read_dataset": "layerscope.data.readers",
    "Result": "layerscope.result",
    "Report": "layerscope.report.html",
    "build_report": "layerscope.report.html",
    "layer_summary": "layerscope.overview",
    "LayerSummaryResult": "layerscope.overview",
    "probe": "layerscope.probes.sweep",
    "ProbeSweepResult": "layerscope.probes.result",
    "sparse_probe": "layerscope.neurons.sparse",
    "SparseProbeResult": "layerscope.neurons.result",
    "NeuronResult": "layerscope.neurons.result",
    "neuron_page": "layerscope.neurons.pages",
    "invert": "layerscope.inversion.invert",
    "InversionResult": "layerscope.inversion.result",
    "deepview": "layerscope.deepview._core",
    "DeepViewResult": "layerscope.deepview.result",
    "ConceptModelResult": "layerscope.concepts.result",
    "optimize": "layerscope.optimize.loop",
    "visualize": "layerscope.optimize.featvis",
    "prototypes": "layerscope.optimize.prototypes",
    "entanglement": "layerscope.optimize.prototypes",
    "isolate": "layerscope.optimize.isolation",
    "pgd": "layerscope.optimize.adversarial",
    "IntegratedGradients": "layerscope.attribution",
    "Saliency": "layerscope.attribution",
    "InputXGradient": "layerscope.attribution",
    "Continuation": "layerscope.attribution",
    "AttributionResult": "layerscope.attribution",
    "baseline_sensitivity": "layerscope.attribution",
    "attention": "layerscope.attribution",
    "sentiment_classifier": "layerscope.models.classifier",
    "LayerscopeError": "layerscope.errors",
    "UnknownSiteError": "layerscope.errors",
    "DataError": "layerscope.errors",
    "ConfigError": "layerscope.errors",
    "StoreError": "layerscope.errors",
    "ModelLoadError": "layerscope.errors",
    "FetchError": "layerscope.errors",
    "InterventionError": "layerscope.errors",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'layerscope' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
