"""The ``Objective`` algebra: what an optimisation maximises, computed from captured sites.

An objective maps a :class:`~layerscope.capture.Trace` (the activations captured during one forward pass)
to one score per batch element, shape ``[batch]``; the loop *maximises* the sum. Objectives compose with
``+``, ``-``, unary ``-`` and scalar ``*`` / ``/``, and carry a readable ``description``::

    obj = channel("blocks.10.out", [0, 1, 2, 3]) - 0.1 * diversity("blocks.10.out")

Unit and class arguments may be one index (the same for every batch element) or a sequence with one index
per batch element — that is how one batched run visualises many units or classes at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..errors import ConfigError
from ..sites import Site

ScoreFn = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]
Units = int | Sequence[int] | torch.Tensor


class ObjectiveError(ConfigError):
    """An objective that does not fit the model: wrong site shape, index out of range, softmax output."""


@dataclasses.dataclass(frozen=True)
class Objective:
    """A differentiable score per batch element, ``fn(trace) -> [batch]``, read from ``sites``.

    Attributes:
        fn: computes the score from the captured activations (keys are canonical site names).
        sites: canonical names of the sites ``fn`` reads (the forward pass stops after the last one).
        description: readable formula, e.g. ``"channel(blocks.3.out, 5) - 0.1 * diversity(blocks.3.out)"``.
    """

    fn: ScoreFn
    sites: tuple[str, ...]
    description: str

    def __call__(self, trace: Mapping[str, torch.Tensor]) -> torch.Tensor:
        out = self.fn(trace)
        if out.ndim != 1:
            raise ObjectiveError(
                f"objective {self.description!r} returned shape {tuple(out.shape)}; it must return [batch]"
            )
        return out

    # -- algebra -----------------------------------------------------------------------------------
    def __add__(self, other: Objective | float) -> Objective:
        if isinstance(other, int | float):
            c = float(other)
            return Objective(lambda t: self(t) + c, self.sites, f"{self.description} + {c:g}")
        if not isinstance(other, Objective):
            return NotImplemented
        return Objective(
            lambda t: self(t) + other(t),
            _union(self.sites, other.sites),
            f"{self.description} + {other.description}",
        )

    __radd__ = __add__

    def __neg__(self) -> Objective:
        return Objective(lambda t: -self(t), self.sites, f"-({self.description})")

    def __sub__(self, other: Objective | float) -> Objective:
        if isinstance(other, int | float):
            return self + (-float(other))
        if not isinstance(other, Objective):
            return NotImplemented
        return Objective(
            lambda t: self(t) - other(t),
            _union(self.sites, other.sites),
            f"{self.description} - {_paren(other.description)}",
        )

    def __rsub__(self, other: float) -> Objective:
        return (-self) + other

    def __mul__(self, k: float) -> Objective:
        if not isinstance(k, int | float) or isinstance(k, bool):
            return NotImplemented  # products of objectives are not part of the algebra
        c = float(k)
        return Objective(lambda t: c * self(t), self.sites, f"{c:g} * {_paren(self.description)}")

    __rmul__ = __mul__

    def __truediv__(self, k: float) -> Objective:
        if not isinstance(k, int | float) or k == 0:
            return NotImplemented
        return self * (1.0 / float(k))


def _paren(s: str) -> str:
    return f"({s})" if (" + " in s or " - " in s) else s


def _union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(a + b))


def _name(site: str | Site) -> str:
    return Site.parse(site).name


def _index(
    units: Units, batch: int, size: int, *, what: str, site: str, device: torch.device
) -> torch.Tensor:
    """Per-batch-element indices ``[batch]`` (validated against ``size``)."""
    idx = torch.as_tensor(units, dtype=torch.long).reshape(-1).to(device)
    if idx.numel() == 1:
        idx = idx.expand(batch)
    if idx.numel() != batch:
        raise ObjectiveError(
            f"{what} at {site}: {idx.numel()} indices for a batch of {batch}; pass one index or one per batch element"
        )
    bad = idx[(idx < 0) | (idx >= size)]
    if bad.numel():
        raise ObjectiveError(
            f"{what} index {int(bad[0])} is out of range at {site}: it has {size} {what}s (0..{size - 1})"
        )
    return idx


def _get(trace: Mapping[str, torch.Tensor], site: str) -> torch.Tensor:
    v = trace[site]
    if isinstance(v, tuple | list):
        v = v[0]
    if hasattr(v, "logits") and not isinstance(v, torch.Tensor):
        v = v.logits
    if not isinstance(v, torch.Tensor):
        raise ObjectiveError(f"site {site} holds a {type(v).__name__}, not a tensor")
    return v


def _as_units_last(t: torch.Tensor) -> tuple[torch.Tensor, str]:
    """``[batch, C, H, W]`` feature maps stay; ``[batch, pos, d]`` becomes ``[batch, d, pos]`` (units second)."""
    if t.ndim == 4:
        return t, "channel"
    if t.ndim == 3:
        return t.transpose(1, 2), "feature"
    return t, "unit"


def channel(site: str | Site, units: Units) -> Objective:
    """Mean activation of channel ``units`` over all positions (``[batch, C, H, W]`` or ``[batch, pos, d]``)."""
    name = _name(site)

    def fn(trace: Mapping[str, torch.Tensor]) -> torch.Tensor:
        t = _get(trace, name)
        if t.ndim < 3:
            raise ObjectiveError(
                f"site {name} has no channels (shape {tuple(t.shape)}: one vector per item); "
                f"use neuron({name!r}, i) instead"
            )
        t, _kind = _as_units_last(t)
        idx = _index(units, t.shape[0], t.shape[1], what="channel", site=name, device=t.device)
        sel = t[torch.arange(t.shape[0], device=t.device), idx]  # batch, *spatial
        return sel.flatten(1).mean(1)

    return Objective(fn, (name,), f"channel({name}, {_units_str(units)})")


def neuron(site: str | Site, units: Units, *, pos: tuple[int, int] | int | None = None) -> Objective:
    """One unit: a vector entry (``[batch, d]``), or a channel at one position (default: the centre).

    Args:
        site: where to read.
        units: unit (channel) index, or one per batch element.
        pos: ``(y, x)`` for feature maps, a token position for sequences (default: centre / last position).
    """
    name = _name(site)

    def fn(trace: Mapping[str, torch.Tensor]) -> torch.Tensor:
        t = _get(trace, name)
        b = t.shape[0]
        ar = torch.arange(b, device=t.device)
        if t.ndim == 2:
            idx = _index(units, b, t.shape[1], what="unit", site=name, device=t.device)
            return t[ar, idx]
        if t.ndim == 4:
            idx = _index(units, b, t.shape[1], what="channel", site=name, device=t.device)
            y, x = pos if isinstance(pos, tuple) else (t.shape[2] // 2, t.shape[3] // 2)
            return t[ar, idx, y, x]
        if t.ndim == 3:
            idx = _index(units, b, t.shape[2], what="unit", site=name, device=t.device)
            p = pos if isinstance(pos, int) else t.shape[1] - 1
            return t[ar, p, idx]
        raise ObjectiveError(f"neuron objective cannot read site {name} of shape {tuple(t.shape)}")

    return Objective(fn, (name,), f"neuron({name}, {_units_str(units)})")


def layer(site: str | Site) -> Objective:
    """Mean squared activation of the whole site (DeepDream-style "layer" objective)."""
    name = _name(site)
    return Objective(lambda t: _get(t, name).flatten(1).pow(2).mean(1), (name,), f"layer({name})")


def _logits(trace: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
    t = _get(trace, name)
    if t.ndim == 3:  # batch, pos, vocab: the last position
        t = t[:, -1]
    if t.ndim != 2:
        raise ObjectiveError(f"logit objectives need [batch, n_classes] at {name}, got {tuple(t.shape)}")
    check_not_probabilities(t, site=name)
    return t


def check_not_probabilities(t: torch.Tensor, *, site: str = "logits") -> None:
    """Raise when ``t`` looks like softmax (or log-softmax) output instead of logits."""
    if t.shape[-1] < 2:
        return
    with torch.no_grad():
        x = t.detach().float()
        probs = bool((x >= 0).all() and (x.sum(-1) - 1).abs().max() < 1e-3)
        logprobs = bool((x <= 0).all() and torch.logsumexp(x, -1).abs().max() < 1e-3)
    if probs or logprobs:
        kind = "probabilities (rows are >= 0 and sum to 1)" if probs else "log-probabilities"
        raise ObjectiveError(
            f"the model's output at {site} looks like {kind}: the model ends in a (log-)softmax. "
            "Optimisation needs raw logits; remove the final Softmax/LogSoftmax layer (e.g. model[:-1])"
        )


def logit(classes: Units, *, site: str | Site = "logits") -> Objective:
    """The logit of class ``classes`` (one, or one per batch element)."""
    name = _name(site)

    def fn(trace: Mapping[str, torch.Tensor]) -> torch.Tensor:
        t = _logits(trace, name)
        idx = _index(classes, t.shape[0], t.shape[1], what="class", site=name, device=t.device)
        return t[torch.arange(t.shape[0], device=t.device), idx]

    return Objective(fn, (name,), f"logit({_units_str(classes)})")


def logit_margin(classes: Units, *, site: str | Site = "logits") -> Objective:
    """The class logit minus the mean of the other logits (raises the class, pushes the others down)."""
    name = _name(site)

    def fn(trace: Mapping[str, torch.Tensor]) -> torch.Tensor:
        t = _logits(trace, name)
        b, k = t.shape
        idx = _index(classes, b, k, what="class", site=name, device=t.device)
        own = t[torch.arange(b, device=t.device), idx]
        return own - (t.sum(1) - own) / (k - 1)

    return Objective(fn, (name,), f"logit_margin({_units_str(classes)})")


def direction(site: str | Site, vector: Any) -> Objective:
    """Dot product of the (spatially / position-averaged) activation with ``vector`` (e.g. a probe's weights).

    ``vector`` is ``[d]`` (shared) or ``[batch, d]`` (one direction per batch element).
    """
    name = _name(site)
    vec = torch.as_tensor(vector, dtype=torch.float32)
    if vec.ndim not in (1, 2):
        raise ObjectiveError(f"direction vector must be [d] or [batch, d], got shape {tuple(vec.shape)}")

    def fn(trace: Mapping[str, torch.Tensor]) -> torch.Tensor:
        t = _get(trace, name)
        if t.ndim == 4:
            t = t.mean((2, 3))
        elif t.ndim == 3:
            t = t.mean(1)
        v = vec.to(t.device, t.dtype)
        if v.shape[-1] != t.shape[-1]:
            raise ObjectiveError(
                f"direction has {v.shape[-1]} entries but site {name} has {t.shape[-1]} units"
            )
        return (t * v).sum(-1)

    return Objective(fn, (name,), f"direction({name})")


def diversity(site: str | Site) -> Objective:
    """Minus each element's mean cosine similarity of Gram (style) matrices to the rest of the batch."""
    name = _name(site)

    def fn(trace: Mapping[str, torch.Tensor]) -> torch.Tensor:
        t = _get(trace, name)
        b = t.shape[0]
        if b < 2:
            return t.new_zeros(b)
        if t.ndim == 4:
            flat = t.flatten(2)  # batch, C, H*W
        elif t.ndim == 3:
            flat = t.transpose(1, 2)  # batch, d, pos
        else:
            flat = t.unsqueeze(-1)
        gram = torch.bmm(flat, flat.transpose(1, 2)).flatten(1)  # batch, C*C
        g = torch.nn.functional.normalize(gram, dim=1)
        sim = g @ g.T  # batch, batch
        off = sim.sum(1) - sim.diagonal()
        return -off / (b - 1)

    return Objective(fn, (name,), f"diversity({name})")


def _units_str(units: Units) -> str:
    if isinstance(units, int):
        return str(units)
    vals = torch.as_tensor(units).reshape(-1).tolist()
    if len(vals) == 1:
        return str(vals[0])
    return "[" + ", ".join(str(v) for v in vals[:6]) + (", …" if len(vals) > 6 else "") + "]"
