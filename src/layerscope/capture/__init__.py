"""Reading and editing activations: hooks, ``capture``/``intervene``, extraction, the activation store."""

from .hooks import layerscope_hook_count
from .trace import SiteOptions, StopForward, Trace, capture, intervene

__all__ = ["SiteOptions", "StopForward", "Trace", "capture", "intervene", "layerscope_hook_count"]


def _make_callable() -> None:
    """``layerscope.capture`` is both this subpackage and the context manager: make the module callable.

    Once ``layerscope.capture.*`` is imported, Python binds the subpackage to ``layerscope.capture``; calling
    it then forwards to :func:`capture` so ``with layerscope.capture(model, sites)`` works either way.
    """
    import sys
    import types

    class _CallableModule(types.ModuleType):
        def __call__(self, *args: object, **kwargs: object) -> capture:
            return capture(*args, **kwargs)  # type: ignore[arg-type]

    sys.modules[__name__].__class__ = _CallableModule


_make_callable()
