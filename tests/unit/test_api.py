"""The public API: every exported name resolves; subpackages named after their function stay callable."""

from __future__ import annotations

import importlib

import pytest

import layerscope


def test_every_export_resolves() -> None:
    for name in layerscope.__all__:
        assert getattr(layerscope, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        layerscope.nope  # noqa: B018


@pytest.mark.parametrize(
    ("package", "function_module"),
    [
        ("capture", "layerscope.capture.trace"),
        ("optimize", "layerscope.optimize.loop"),
        ("deepview", "layerscope.deepview._core"),
    ],
)
def test_subpackage_named_after_its_function_forwards_calls(package: str, function_module: str) -> None:
    module = importlib.import_module(f"layerscope.{package}")
    # importing a submodule binds the subpackage to the parent attribute, shadowing the function
    importlib.import_module(function_module)
    function = getattr(importlib.import_module(function_module), package)
    bound = getattr(layerscope, package)
    assert callable(bound) and type(module).__doc__ == function.__doc__
    # the call reaches the function: its own argument checking answers
    with pytest.raises(TypeError, match="unexpected keyword argument 'not_an_argument'"):
        bound(not_an_argument=1)
