"""``capture`` and ``intervene``: context managers that read or edit activations at sites."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any

import torch

from ..errors import InterventionError
from ..models.adapter import Resolved
from ..sites import Site
from .hooks import HookSet, adapter_of, eager_attention_if


class StopForward(Exception):
    """Raised inside the forward pass once every requested site was captured (``stop=True``)."""


@dataclasses.dataclass(frozen=True)
class SiteOptions:
    """Per-site capture options.

    Attributes:
        detach: detach from the graph (``None``: follow ``capture(detach=...)``).
        fn: applied to the tensor before it is kept (e.g. pooling), ``fn(tensor) -> tensor``.
        dtype: cast the kept tensor (e.g. ``torch.float16``).
        to_cpu: move the kept tensor to the CPU.
        retain_grad: call ``retain_grad()`` on the kept (non-detached) tensor so ``.grad`` fills on backward.
    """

    detach: bool | None = None
    fn: Callable[[torch.Tensor], torch.Tensor] | None = None
    dtype: torch.dtype | None = None
    to_cpu: bool = False
    retain_grad: bool = False


class Trace(Mapping[str, torch.Tensor]):
    """What ``capture`` read: ``trace["blocks.3.resid_post"]`` (keys are canonical site names)."""

    def __init__(self, sites: list[Site]) -> None:
        self.sites = sites
        self._values: dict[str, torch.Tensor] = {}

    def __getitem__(self, key: str | Site) -> torch.Tensor:  # type: ignore[override]
        name = key.name if isinstance(key, Site) else Site(key).name
        if name not in self._values:
            if any(s.name == name for s in self.sites):
                raise KeyError(f"site {name!r} was requested but not reached by the forward pass")
            raise KeyError(f"site {name!r} was not captured; captured: {', '.join(self._values)}")
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    @property
    def complete(self) -> bool:
        """True when every requested site was captured."""
        return len(self._values) == len(self.sites)


class _Session:
    """Shared enter/exit logic: hooks registered on enter, removed in finally on exit."""

    def __init__(self, model: Any, sites: list[str | Site]) -> None:
        self.module, self.adapter = adapter_of(model)
        self.resolved: list[Resolved] = self.adapter.resolve_all(sites)
        self.hooks = HookSet()
        needs_eager = any(r.site.component == "attn.pattern" for r in self.resolved)
        self._eager = eager_attention_if(self.module, needs_eager)

    def _register(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        self._eager.__enter__()
        try:
            self._register()
        except BaseException:
            self.hooks.remove()
            self._eager.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> bool:
        try:
            self.hooks.remove()
        finally:
            self._eager.__exit__(None, None, None)
        return et is not None and issubclass(et, StopForward)


class capture(_Session):
    """Read activations at ``sites`` during forward passes run inside the ``with`` block.

    ``with capture(subject, ["blocks.3.resid_post"]) as tr: subject.model(**batch)`` then ``tr["blocks.3.resid_post"]``.

    Args:
        model: a ``Subject`` or any ``nn.Module``.
        sites: site names, ``Site`` objects, or a mapping site -> ``SiteOptions``.
        stop: cut the forward pass once every site was read (code after the forward call in the block is
            skipped in that case; the ``with`` statement swallows the cut).
        detach: detach kept tensors (set ``False`` to differentiate through them).
    """

    def __init__(
        self,
        model: Any,
        sites: Any,
        *,
        stop: bool = True,
        detach: bool = True,
    ) -> None:
        opts: dict[str, SiteOptions] = {}
        if isinstance(sites, Mapping):
            names = list(sites)
            for k, v in sites.items():
                opts[Site.parse(k).name] = v if isinstance(v, SiteOptions) else SiteOptions(**(v or {}))
        else:
            names = list(sites) if not isinstance(sites, str | Site) else [sites]
        super().__init__(model, names)
        expanded_opts: dict[str, SiteOptions] = {}
        for r in self.resolved:
            expanded_opts[r.site.name] = opts.get(r.site.name, SiteOptions())
        self.options = expanded_opts
        self.stop = stop
        self.detach = detach
        self.trace = Trace([r.site for r in self.resolved])

    def _register(self) -> None:
        self.hooks.add(self.resolved, self._on_value)

    def _on_value(self, r: Resolved, value: torch.Tensor) -> None:
        opt = self.options[r.site.name]
        detach = self.detach if opt.detach is None else opt.detach
        v = value
        if detach:
            v = v.detach()
        if opt.fn is not None:
            v = opt.fn(v)
        if opt.dtype is not None:
            v = v.to(opt.dtype)
        if opt.to_cpu:
            v = v.cpu()
        if opt.retain_grad and not detach and v.requires_grad:
            v.retain_grad()
        self.trace._values[r.site.name] = v
        if self.stop and self.trace.complete:
            raise StopForward()
        return None

    def __enter__(self) -> Trace:  # type: ignore[override]
        super().__enter__()
        return self.trace


InterventionFn = Callable[..., "torch.Tensor | None"]


class intervene(_Session):
    """Edit activations at sites (ablation, patching, steering) during forwards inside the ``with`` block.

    ``fn(tensor, *, site) -> tensor | None``: return a tensor of the same shape to replace the activation,
    or ``None`` to keep it (in-place edits are allowed).
    """

    def __init__(self, model: Any, edits: Mapping[str | Site, InterventionFn]) -> None:
        if not isinstance(edits, Mapping) or not edits:
            raise InterventionError("intervene needs a non-empty mapping {site: fn(tensor, *, site)}")
        fns: dict[str, InterventionFn] = {}
        keys = list(edits)
        super().__init__(model, keys)
        by_key = {}
        for k in keys:
            for s in self.adapter.expand(k):
                by_key[s.name] = edits[k]
        for r in self.resolved:
            if r.hook.read_only:
                raise InterventionError(
                    f"site {r.site.name!r} is read-only (attention patterns are not used after they are returned); "
                    "intervene on blocks.{i}.attn.out or a module site instead"
                )
            fn = by_key[r.site.name]
            if not callable(fn):
                raise InterventionError(
                    f"the edit for {r.site.name!r} is a {type(fn).__name__}, not a callable"
                )
            fns[r.site.name] = fn
        self.fns = fns

    def _register(self) -> None:
        self.hooks.add(self.resolved, self._on_value)

    def _on_value(self, r: Resolved, value: torch.Tensor) -> torch.Tensor | None:
        out = self.fns[r.site.name](value, site=r.site)
        if out is None:
            return None
        if not isinstance(out, torch.Tensor):
            raise InterventionError(
                f"the edit for {r.site.name!r} returned a {type(out).__name__}; return a tensor or None"
            )
        if out.shape != value.shape:
            raise InterventionError(
                f"the edit for {r.site.name!r} returned shape {tuple(out.shape)}, expected {tuple(value.shape)}"
            )
        return out

    def __enter__(self) -> intervene:
        super().__enter__()
        return self
