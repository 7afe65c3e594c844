"""``Adapter``: resolves canonical sites to real modules of one model, using its architecture table."""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterable

from torch import nn

from ..errors import UnknownSiteError
from ..sites import Site, parse_sites
from .tables import TABLES, ArchTable, Hookpoint, table_for_model_type


@dataclasses.dataclass(frozen=True)
class Resolved:
    """A site resolved to a module of the model."""

    site: Site
    module_name: str
    module: nn.Module
    hook: Hookpoint


class Adapter:
    """Maps canonical site names of one model to its modules (see ``layerscope.sites`` for the names)."""

    def __init__(self, model: nn.Module, table: ArchTable | None, *, base: str = "") -> None:
        self.model = model
        self.table = table
        self.base = base
        self._modules = dict(model.named_modules())
        self.n_layers = 0
        if table is not None:
            blocks = self._modules.get(base + table.blocks)
            if not isinstance(blocks, nn.ModuleList | nn.Sequential):
                raise UnknownSiteError(
                    f"model has no block list at {base + table.blocks!r} for family {table.family}"
                )
            self.n_layers = len(blocks)
        self._logits = self._find_logits()

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def for_model(cls, model: nn.Module) -> Adapter:
        """Pick the table from the model's type (transformers ``config.model_type`` or known classes)."""
        config = getattr(model, "config", None)
        model_type = getattr(config, "model_type", None)
        table = table_for_model_type(model_type) if model_type else None
        if table is None and hasattr(model, "_blocks") and hasattr(model, "_fc"):
            table = next(t for t in TABLES if t.family == "efficientnet")
        if table is None:
            return cls(model, None)
        prefix = getattr(model, "base_model_prefix", "")
        base = ""
        if prefix and isinstance(getattr(model, prefix, None), nn.Module) and not _has(model, table.blocks):
            base = prefix + "."
        try:
            return cls(model, table, base=base)
        except UnknownSiteError:
            return cls(model, None)

    @property
    def family(self) -> str:
        """Architecture family (``bert``, ``llama``, ``gpt2``, ``efficientnet``) or ``generic``."""
        return self.table.family if self.table else "generic"

    @property
    def kind(self) -> str:
        """``encoder``, ``causal_lm``, ``vision`` or ``generic``."""
        return self.table.kind if self.table else "generic"

    # -- names -------------------------------------------------------------------------------------
    def site_names(self) -> list[str]:
        """Every canonical site this model has, in forward order (module sites not listed)."""
        names: list[str] = []
        if self.table is not None:
            names += [g for g in ("embed",) if g in self.table.global_sites]
            for i in range(self.n_layers):
                for comp in self.table.block_sites:
                    names.append(f"blocks.{i}.{comp}")
            names += [g for g in self.table.global_sites if g != "embed" and g != "logits"]
            if "logits" in self.table.global_sites:
                names.append("logits")
        if self._logits is not None and "logits" not in names:
            names.append("logits")
        return [n for n in names if self._try_resolve(Site(n)) is not None]

    def block_components(self) -> list[str]:
        """The per-block components (``resid_post``, ``mlp.post`` …) of this architecture."""
        return list(self.table.block_sites) if self.table else []

    def expand(self, sites: object) -> list[Site]:
        """Normalise sites: expand ``*`` layers and shell patterns, make negative layer indices positive."""
        out: list[Site] = []
        for s in parse_sites(sites):
            if s.is_pattern:
                new = [s.with_layer(i) for i in range(self.n_layers)]
            elif not s.is_module and any(c in s.name for c in "*?["):
                new = [Site(n) for n in self.site_names() if fnmatch.fnmatchcase(n, s.name)]
                if not new:
                    raise UnknownSiteError(f"no site matches {s.name!r}; valid sites: {self._valid_hint()}")
            elif s.layer is not None and s.layer < 0:
                new = [s.with_layer(self.n_layers + s.layer)]
            else:
                new = [s]
            out += [n for n in new if n not in out]
        return out

    # -- resolution --------------------------------------------------------------------------------
    def resolve(self, site: str | Site) -> Resolved:
        """Resolve one site to its module; raises ``UnknownSiteError`` listing valid names."""
        s = self.expand(site)
        if len(s) != 1:
            raise UnknownSiteError(f"{site!s} names {len(s)} sites; resolve them one at a time")
        r = self._try_resolve(s[0])
        if r is None:
            raise UnknownSiteError(self._unknown_message(s[0]))
        return r

    def resolve_all(self, sites: Iterable[str | Site]) -> list[Resolved]:
        """Resolve several sites (after expansion); fails before touching the model if any is unknown."""
        return [self.resolve(s) for s in self.expand(list(sites))]

    def _try_resolve(self, site: Site) -> Resolved | None:
        if site.is_module:
            path = site.module_path
            mod = self._modules.get(path)
            return None if mod is None else Resolved(site, path, mod, Hookpoint(path))
        hp: Hookpoint | None = None
        layer = site.layer
        if self.table is not None:
            if layer is not None:
                if not 0 <= layer < self.n_layers:
                    return None
                hp = self.table.block_sites.get(site.component)
            else:
                hp = self.table.global_sites.get(site.name)
        if hp is None and site.name == "logits" and self._logits is not None:
            hp = self._logits
        if hp is None:
            return None
        path = hp.module.format(base=self.base, i=layer, last=self.n_layers - 1)
        mod = self._modules.get(path)
        if mod is None:
            return None
        return Resolved(site, path, mod, dataclasses.replace(hp, module=path))

    def _find_logits(self) -> Hookpoint | None:
        if self.table is not None and "logits" in self.table.global_sites:
            return self.table.global_sites["logits"]
        if self.table is not None:
            for name in self.table.logits_candidates:
                if name in self._modules and name != "":
                    return Hookpoint(name)
            return None
        return Hookpoint("")  # generic model: its own output

    def _valid_hint(self) -> str:
        names = self.site_names()
        if len(names) > 14:
            comps = ", ".join(self.block_components())
            globs = [n for n in names if not n.startswith("blocks.")]
            return (
                f"{', '.join(globs)}, blocks.{{0..{self.n_layers - 1}}}.{{{comps}}}, "
                "or module:<name> for any module (see `layerscope sites MODEL`)"
            )
        return ", ".join(names) + (", or module:<name>" if names else "module:<name> for any torch module")

    def _unknown_message(self, site: Site) -> str:
        if site.is_module:
            close = [n for n in self._modules if n and site.module_path.split(".")[-1] in n][:5]
            hint = f"; similar modules: {', '.join(close)}" if close else ""
            return f"model has no module named {site.module_path!r}{hint}"
        if site.layer is not None and self.n_layers and not 0 <= site.layer < self.n_layers:
            return f"unknown site {site.name!r}: layer {site.layer} is out of range, the model has {self.n_layers} blocks"
        return f"unknown site {site.name!r} for a {self.family} model; valid sites: {self._valid_hint()}"


def _has(model: nn.Module, path: str) -> bool:
    try:
        model.get_submodule(path)
        return True
    except AttributeError:
        return False
