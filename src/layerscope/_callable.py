"""Subpackages named after their main function (``capture``, ``optimize``, ``deepview``) made callable."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any


def make_module_callable(module_name: str, fn: Callable[..., Any]) -> None:
    """Make the module ``module_name`` forward calls to ``fn``.

    ``layerscope.capture`` is both a subpackage and a function: once any of its submodules is imported,
    Python binds the subpackage to the parent's attribute, shadowing the lazily exported function. A
    callable module makes ``layerscope.capture(model, sites)`` work either way.
    """

    class _CallableModule(types.ModuleType):
        __doc__ = fn.__doc__

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

    sys.modules[module_name].__class__ = _CallableModule
