"""Hook plumbing: one tagged hook per (module, io), guaranteed removal, output picking/replacing."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from ..models.adapter import Adapter, Resolved


class LayerscopeHook:
    """A callable hook tagged as ours, so ``assert_no_hooks`` can tell it from other libraries' hooks."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def pick(value: Any, index: int) -> torch.Tensor:
    """The tensor at ``index`` of a module's output/input (tensor, tuple, list or ModelOutput)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, tuple | list):
        return value[index]
    if isinstance(value, Mapping):
        if "logits" in value:
            return value["logits"]
        return list(value.values())[index]
    raise TypeError(f"cannot read a tensor from a {type(value).__name__}")


def replace(value: Any, index: int, new: torch.Tensor) -> Any:
    """``value`` with the tensor at ``index`` replaced by ``new`` (same container type)."""
    if isinstance(value, torch.Tensor):
        return new
    if isinstance(value, tuple):
        items = list(value)
        items[index] = new
        return type(value)(items) if type(value) is tuple else type(value)(*items)
    if isinstance(value, list):
        items = list(value)
        items[index] = new
        return items
    if isinstance(value, Mapping):
        out: Any = value.__class__(**value) if hasattr(value, "to_tuple") else dict(value)
        key = "logits" if "logits" in value else list(value.keys())[index]
        out[key] = new
        return out
    raise TypeError(f"cannot write a tensor into a {type(value).__name__}")


def _first_input(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str | int, torch.Tensor]:
    if args and isinstance(args[0], torch.Tensor):
        return 0, args[0]
    for key in ("hidden_states", "input", "x", "inputs"):
        if isinstance(kwargs.get(key), torch.Tensor):
            return key, kwargs[key]
    for key, v in kwargs.items():
        if isinstance(v, torch.Tensor):
            return key, v
    raise TypeError("module was called without a tensor input")


Reader = Callable[[Resolved, torch.Tensor], "torch.Tensor | None"]


class HookSet:
    """Registers hooks for resolved sites and removes every one of them on ``remove()``."""

    def __init__(self) -> None:
        self.handles: list[torch.utils.hooks.RemovableHandle] = []

    def add(self, resolved: list[Resolved], on_value: Reader) -> None:
        """Hook each site; ``on_value(site, tensor)`` may return a replacement tensor (or None)."""
        by_module: dict[tuple[str, str], list[Resolved]] = {}
        for r in resolved:
            by_module.setdefault((r.module_name, r.hook.io), []).append(r)
        for (_name, io), group in by_module.items():
            module = group[0].module
            if io == "output":
                self.handles.append(
                    module.register_forward_hook(LayerscopeHook(_output_hook(group, on_value)))
                )
            else:
                self.handles.append(
                    module.register_forward_pre_hook(
                        LayerscopeHook(_input_hook(group, on_value)), with_kwargs=True
                    )
                )

    def remove(self) -> None:
        """Remove every hook this set registered (idempotent)."""
        while self.handles:
            self.handles.pop().remove()


def _output_hook(group: list[Resolved], on_value: Reader) -> Callable[..., Any]:
    def hook(module: nn.Module, args: Any, output: Any) -> Any:
        changed = False
        for r in group:
            new = on_value(r, pick(output, r.hook.index))
            if new is not None:
                output = replace(output, r.hook.index, new)
                changed = True
        return output if changed else None

    return hook


def _input_hook(group: list[Resolved], on_value: Reader) -> Callable[..., Any]:
    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        key, value = _first_input(args, kwargs)
        changed = False
        for r in group:
            new = on_value(r, value)
            if new is not None:
                value = new
                changed = True
        if not changed:
            return None
        if isinstance(key, int):
            return (value, *args[1:]), kwargs
        return args, {**kwargs, key: value}

    return hook


def layerscope_hook_count(model: nn.Module) -> int:
    """How many layerscope hooks are attached to ``model`` and its submodules."""
    n = 0
    for m in model.modules():
        for d in (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks):
            n += sum(isinstance(h, LayerscopeHook) for h in d.values())  # type: ignore[operator]
    return n


@contextlib.contextmanager
def eager_attention_if(model: nn.Module, needed: bool) -> Iterator[None]:
    """Switch a transformers model to eager attention while attention patterns are read (SDPA gives none)."""
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    if not needed or current in (None, "eager") or not hasattr(model, "set_attn_implementation"):
        yield
        return
    setter: Any = model.set_attn_implementation
    setter("eager")
    try:
        yield
    finally:
        setter(current)


def adapter_of(model: Any) -> tuple[nn.Module, Adapter]:
    """The torch module and adapter of a ``Subject`` or a plain ``nn.Module``."""
    adapter = getattr(model, "adapter", None)
    module = getattr(model, "model", model)
    if isinstance(adapter, Adapter) and isinstance(module, nn.Module):
        return module, adapter
    if isinstance(model, nn.Module):
        cached = getattr(model, "_layerscope_adapter", None)
        if isinstance(cached, Adapter) and cached.model is model:
            return model, cached
        ad = Adapter.for_model(model)
        with contextlib.suppress(Exception):  # exotic modules may refuse new attributes
            object.__setattr__(model, "_layerscope_adapter", ad)
        return model, ad
    raise TypeError(f"expected a layerscope Subject or a torch nn.Module, got {type(model).__name__}")
