"""Reading and editing activations: hooks, ``capture``/``intervene``, extraction, the activation store."""

from .hooks import layerscope_hook_count
from .trace import SiteOptions, StopForward, Trace, capture, intervene

__all__ = ["SiteOptions", "StopForward", "Trace", "capture", "intervene", "layerscope_hook_count"]


from .._callable import make_module_callable

make_module_callable(__name__, capture)
