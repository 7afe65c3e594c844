"""``Site``: the canonical name of a place in a model where activations are read or written.

Canonical names (mapped to real modules by each architecture's adapter table):

=========================  ==========================================================  =======================
name                       meaning                                                      shape
=========================  ==========================================================  =======================
``embed``                  token embeddings (the lookup, before positions/LayerNorm)   batch, pos, d_model
``blocks.{i}.resid_pre``   residual stream entering block i                            batch, pos, d_model
``blocks.{i}.attn.out``    attention output added to the residual (after out-proj)     batch, pos, d_model
``blocks.{i}.attn.pattern``attention probabilities (read-only)                         batch, n_heads, pos, pos
``blocks.{i}.resid_mid``   residual stream between attention and MLP                   batch, pos, d_model
``blocks.{i}.mlp.pre``     MLP neurons before the nonlinearity (where the model has it) batch, pos, d_mlp
``blocks.{i}.mlp.post``    MLP neurons after the nonlinearity (gated: act(gate) * up)   batch, pos, d_mlp
``blocks.{i}.mlp.out``     MLP output added to the residual                            batch, pos, d_model
``blocks.{i}.resid_post``  residual stream leaving block i                             batch, pos, d_model
``final``                  after the last norm (post-LN encoders: last resid_post)     batch, pos, d_model
``logits``                 model output scores                                         batch, [pos,] d_vocab
``module:{dotted.path}``   output of any torch module by its own name                  module's output
=========================  ==========================================================  =======================

Vision adapters name ``blocks.{i}.out``, ``final`` (last feature map), ``pooled`` (penultimate) and ``logits``.
Layer indices may be negative (``blocks.-1.resid_post``) and ``*`` expands to every layer.
"""

from __future__ import annotations

import dataclasses
import re

_BLOCK = re.compile(r"^blocks\.(-?\d+|\*)\.([A-Za-z_][\w.]*)$")


@dataclasses.dataclass(frozen=True, order=True)
class Site:
    """A place in a model, by canonical name (``Site("blocks.3.resid_post")``) or module (``Site.module("fc")``)."""

    name: str

    def __post_init__(self) -> None:
        if isinstance(self.name, Site):
            object.__setattr__(self, "name", self.name.name)
        if not isinstance(self.name, str) or not self.name.strip():
            raise TypeError(f"a site name must be a non-empty string, got {self.name!r}")
        name = self.name.strip()
        if name.startswith("module:"):
            name = "module:" + name[len("module:") :].strip()
        else:
            name = re.sub(r"\s+", "", name)
            if name.startswith(("layers.", "layer.", "block.")):  # common spellings of blocks.
                name = "blocks." + name.split(".", 1)[1]
        object.__setattr__(self, "name", name)

    @classmethod
    def module(cls, path: str) -> Site:
        """A site at the output of the torch module named ``path`` (as in ``model.named_modules()``)."""
        return cls("module:" + path)

    @classmethod
    def parse(cls, value: str | Site) -> Site:
        """Normalise a string or Site to a Site."""
        return value if isinstance(value, Site) else cls(value)

    @property
    def is_module(self) -> bool:
        """True for ``module:`` sites (raw torch module names)."""
        return self.name.startswith("module:")

    @property
    def module_path(self) -> str:
        """The dotted module path of a ``module:`` site."""
        return self.name[len("module:") :]

    @property
    def layer(self) -> int | None:
        """The block index of a ``blocks.{i}.*`` site (``None`` for ``*`` and for non-block sites)."""
        m = _BLOCK.match(self.name)
        if not m or m.group(1) == "*":
            return None
        return int(m.group(1))

    @property
    def component(self) -> str:
        """The part after ``blocks.{i}.`` (``resid_post``, ``mlp.post`` …), or the whole name otherwise."""
        m = _BLOCK.match(self.name)
        return m.group(2) if m else self.name

    @property
    def is_pattern(self) -> bool:
        """True when the name contains a ``*`` layer wildcard."""
        m = _BLOCK.match(self.name)
        return bool(m and m.group(1) == "*")

    def with_layer(self, layer: int) -> Site:
        """The same component at block ``layer``."""
        return Site(f"blocks.{layer}.{self.component}")

    def __str__(self) -> str:
        return self.name


def parse_sites(sites: object) -> list[Site]:
    """Normalise one site or an iterable of sites (strings or Site) to a list of Sites (order kept, no dups)."""
    if isinstance(sites, str | Site):
        items: list[object] = [sites]
    else:
        try:
            items = list(sites)  # type: ignore[call-overload]
        except TypeError:
            raise TypeError(
                f"sites must be a string, a Site or an iterable of them, got {type(sites).__name__}"
            ) from None
    out: list[Site] = []
    for s in items:
        site = Site.parse(s)  # type: ignore[arg-type]
        if site not in out:
            out.append(site)
    return out
