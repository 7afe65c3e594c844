"""LRP rules as modified gradients, installed on a model for one forward/backward pass.

The relevance of a tensor ``t`` is ``t ⊙ ĝ(t)``, where ``ĝ`` is a *modified* gradient (the Gradient×Input
framework of zennit and LXT). Every rule below returns the model's exact forward value and changes only the
backward pass:

- ``F.linear`` / ``F.conv*d``: ε-rule ``ĝ_in = Wᵀ(ĝ_out · z / (z + ε·sign z))``; γ-rule (sign-aware) and z⁺
  (α1β0) through a surrogate ``z′`` built from the positive/negative contributions,
  ``ĝ_in = ∂z′/∂x · (ĝ_out · z / z′)`` (see ``affine_rule``). A conv (or linear) layer followed by an
  eval-mode BatchNorm is folded into one affine layer before its rule is applied; a lone BatchNorm is a
  diagonal linear layer under the ε-rule.
- element-wise nonlinearities (ReLU6, GELU, SiLU, tanh, …) and RMSNorm: identity rule, ``ĝ_in = ĝ_out · y / x``
  (for ReLU and leaky ReLU y / x is the derivative, so they run unmodified).
- LayerNorm / GroupNorm: the standard deviation is a constant (identity rule on the division); the mean
  subtraction keeps its gradient, so centring is a linear map (LRP-0) and conserves relevance.
- products of two live tensors (``*``, ``@``, ``einsum``, attention ``QKᵀ`` and ``A·V``): uniform rule, each of
  the n operands gets ``1/n`` of the gradient.
- division of a live tensor by a live tensor: the denominator is a constant (a normaliser).
- softmax: AttnLRP's rule ``R_in = x ⊙ (R_out − s Σ R_out)``, which in gradient form is the plain gradient
  (``attention="attnlrp"``), or CP-LRP's constant attention weights (``attention="cp"``).
- ``F.scaled_dot_product_attention`` (the SDPA kernel hides its softmax) is recomputed step by step with the
  rules above; its forward value is the kernel's own.

Rules sit in a ``TorchFunctionMode`` (functions) plus forward hooks on the modules that need module-level
knowledge (element-wise activations whatever their implementation, RMSNorm classes, conv→BatchNorm pairs).
Every hook and the mode are removed in ``finally``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..capture.hooks import LayerscopeHook
from ..errors import ConfigError
from ._inputs import AttributionWarning

T = torch.Tensor


# -- autograd pieces ----------------------------------------------------------------------------------
class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by ``scale`` (a tensor or a float)."""

    @staticmethod
    def forward(ctx: Any, x: T, scale: Any) -> T:  # type: ignore[override]
        if isinstance(scale, torch.Tensor):
            ctx.save_for_backward(scale)
            ctx.scalar = None
        else:
            ctx.scalar = float(scale)
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, g: T) -> tuple[T, None]:  # type: ignore[override]
        if ctx.scalar is not None:
            return g * ctx.scalar, None
        (scale,) = ctx.saved_tensors
        return g * scale, None


class _Substitute(torch.autograd.Function):
    """Forward value of ``value``; the gradient goes to ``surrogate`` (times ``scale`` when given)."""

    @staticmethod
    def forward(ctx: Any, value: T, surrogate: T, scale: T | None) -> T:  # type: ignore[override]
        if scale is not None:
            ctx.save_for_backward(scale)
        ctx.has_scale = scale is not None
        return value.detach().clone()

    @staticmethod
    def backward(ctx: Any, g: T) -> tuple[None, T, None]:  # type: ignore[override]
        if ctx.has_scale:
            (scale,) = ctx.saved_tensors
            return None, g * scale, None
        return None, g, None


def scale_grad(x: T, scale: Any) -> T:
    """``x`` with its gradient multiplied by ``scale`` on the way back."""
    return _ScaleGrad.apply(x, scale)  # type: ignore[no-any-return]


def substitute(value: T, surrogate: T, scale: T | None = None) -> T:
    """``value`` forward, gradient routed into ``surrogate`` (same shape) times ``scale``."""
    return _Substitute.apply(value, surrogate, scale)  # type: ignore[no-any-return]


def live(t: Any) -> bool:
    """A tensor that carries relevance: requires grad and is not a (frozen or trainable) parameter."""
    return isinstance(t, torch.Tensor) and t.requires_grad and not isinstance(t, nn.Parameter)


def stabilise(z: T, eps: float) -> T:
    """``z + ε·sign(z)`` (sign(+0) = +1): the LRP denominator."""
    return z + torch.copysign(z.new_tensor(eps), z)


def epsilon_ratio(z: T, eps: float) -> T:
    """``z / (z + ε·sign z)`` = ``|z| / (|z| + ε)``: the ε-rule's factor on the output gradient."""
    a = z.abs()
    return a.div_(a + eps)


def identity_rule(x: T, y: T) -> T:
    """Identity rule for an element-wise map ``y = f(x)``: forward ``y``, ``ĝ_x = ĝ_y · y / x``."""
    if not live(x) or y.shape != x.shape:
        return y
    with torch.no_grad():
        nz = x != 0
        ratio = torch.where(nz, y.to(x.dtype) / torch.where(nz, x, torch.ones_like(x)), torch.zeros_like(x))
    return substitute(y, x, ratio.to(y.dtype) if ratio.dtype != y.dtype else ratio)


# -- rule configuration -------------------------------------------------------------------------------
AFFINE_RULES = ("epsilon", "gamma", "zplus")
ATTENTION_RULES = ("attnlrp", "cp")


@dataclasses.dataclass(frozen=True)
class RuleSet:
    """Which rule each layer kind gets.

    Attributes:
        conv: rule for convolutions (``epsilon``, ``gamma`` or ``zplus``).
        linear: rule for fully connected layers.
        first: rule for the first affine layer that reads the attributed input (None: its kind's rule).
        epsilon: ε of the ε-rule (and the stabiliser of γ and z⁺).
        gamma: γ of the γ-rule.
        attention: ``attnlrp`` (softmax rule of Achtibat et al. 2024) or ``cp`` (constant attention weights).
    """

    conv: str = "epsilon"
    linear: str = "epsilon"
    first: str | None = None
    epsilon: float = 1e-9
    gamma: float = 0.25
    attention: str = "attnlrp"


def _split_affine(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[T, T, T | None, tuple[Any, ...], dict[str, Any]]:
    a = list(args)
    kw = dict(kwargs)
    x = a.pop(0) if a else kw.pop("input")
    w = a.pop(0) if a else kw.pop("weight")
    b = a.pop(0) if a else kw.pop("bias", None)
    return x, w, b, tuple(a), kw


def affine_rule(
    func: Callable[..., T],
    x: T,
    w: T,
    b: T | None,
    rest: tuple[Any, ...],
    kw: dict[str, Any],
    rule: str,
    rs: RuleSet,
    z: T | None = None,
) -> T:
    """``func(x, w, b, *rest)`` (linear or conv) with ``rule``. ``z``: the layer's output with its graph when
    the caller has it already (a folded conv→BatchNorm pair passes the BatchNorm output).

    - ``epsilon``: ``ĝ_x = ∂z/∂x · ĝ_z · z / (z + ε sign z)``.
    - ``gamma``: sign-aware γ-rule (zennit's form): outputs z > 0 boost the positive contributions
      ``(x_i w_i)⁺`` (bias part ``b⁺`` included) by 1 + γ, outputs z < 0 the negative ones; for non-negative
      inputs and z > 0 this is the classic ``W + γW⁺`` of Montavon et al. 2019 (and Captum's ``GammaRule``,
      which leaves the bias out). The surrogate keeps z's sign and |z′| ≥ |z|, so it cannot blow up on the
      mixed-sign inputs of residual streams and pixels.
    - ``zplus``: z⁺ / α1β0 without bias, positive contributions only: ``z′ = W⁺x⁺ + W⁻x⁻``; it conserves
      relevance wherever an output with relevance has a positive contribution.
    """
    if rule == "epsilon":
        if z is None:
            z = func(x, w, b, *rest, **kw)
        return scale_grad(z, epsilon_ratio(z.detach(), rs.epsilon))
    if rule not in ("gamma", "zplus"):  # pragma: no cover - validated by LRP
        raise ConfigError(f"unknown rule {rule!r}")
    if z is None:
        if rule == "gamma":  # z is part of the γ surrogate: keep its graph
            z = func(x, w, b, *rest, **kw)
        else:
            with torch.no_grad():
                z = func(x, w, b, *rest, **kw)
    with torch.no_grad():
        wp, wn = w.clamp(min=0), w.clamp(max=0)
        mixed = bool((x < 0).any())
    pos = func(x.clamp(min=0), wp, None, *rest, **kw)  # positive contributions (x w)⁺, no bias
    if mixed:
        pos = pos + func(x.clamp(max=0), wn, None, *rest, **kw)
    zd = z.detach()
    if rule == "zplus":
        zr = pos
    else:  # z′ = z + γ·(positive part for z > 0, negative part for z < 0); negative part = z − b − pos
        up = (zd > 0).to(z.dtype)
        if b is None:
            boost = up * pos + (1 - up) * (z - pos)
        else:  # linear: bias on the last axis; conv: on the channel axis
            bb = b.detach() if func is F.linear else b.detach().view(-1, *([1] * (z.ndim - 2)))
            boost = up * (pos + bb.clamp(min=0)) + (1 - up) * (z - bb.clamp(min=0) - pos)
        zr = z + rs.gamma * boost
    with torch.no_grad():
        ratio = zd / stabilise(zr.detach(), rs.epsilon)
    return substitute(zd, zr, ratio)


def _fold_bn(w: T, b: T | None, bn: tuple[Any, ...]) -> tuple[T, T]:
    """Weights of conv (``w``, ``b``) followed by eval BatchNorm (running mean, var, weight, bias, eps)."""
    mean, var, weight, bias, eps = bn
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = scale * weight
    shift = -mean * scale
    if bias is not None:
        shift = shift + bias
    wf = w * scale.view(-1, *([1] * (w.ndim - 1)))
    bf = shift if b is None else b * scale + shift
    return wf, bf


def _bn_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    names = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
    out: dict[str, Any] = {"weight": None, "bias": None, "training": False, "momentum": 0.1, "eps": 1e-5}
    out.update(dict(zip(names, args, strict=False)))
    out.update(kwargs)
    return out


# -- module classification ----------------------------------------------------------------------------
_ELEMENTWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU,
    nn.Softplus, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.PReLU, nn.RMSNorm,
)  # fmt: skip
_PASSIVE_MODULES: tuple[type[nn.Module], ...] = (
    nn.modules.dropout._DropoutNd, nn.Identity, nn.Flatten, nn.Unflatten, nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.padding._ConstantPadNd, nn.Upsample, nn.Softmax, nn.Embedding, nn.LayerNorm, nn.GroupNorm,
    nn.Sequential, nn.ModuleList, nn.ModuleDict,
)  # fmt: skip
_ELEMENTWISE_NAMES = ("Swish", "MemoryEfficientSwish")
_HOMOGENEOUS_MODULES = (nn.ReLU, nn.LeakyReLU, nn.PReLU)


def classify(m: nn.Module) -> str:
    """``affine`` (Linear/Conv), ``batchnorm``, ``elementwise`` (identity rule), ``passive`` (linear or
    rules at function level) or ``unknown``."""
    name = type(m).__name__
    if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d) or (
        name == "Conv1D" and type(m).__module__.startswith("transformers")  # GPT-2's transposed linear
    ):
        return "affine"
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return "batchnorm"
    if isinstance(m, _HOMOGENEOUS_MODULES):  # y / x is their derivative: identity rule = plain gradient
        return "passive"
    if (
        isinstance(m, _ELEMENTWISE_MODULES)
        or name.endswith("RMSNorm")
        or name in _ELEMENTWISE_NAMES
        or type(m).__module__ == "transformers.activations"
    ):
        return "elementwise"
    if isinstance(m, _PASSIVE_MODULES) or "Rotary" in name or name == "Identity":
        return "passive"
    return "unknown"


def _first_tensor(args: tuple[Any, ...], kwargs: dict[str, Any]) -> T | None:
    for v in (*args, *kwargs.values()):
        if isinstance(v, torch.Tensor):
            return v
    return None


@dataclasses.dataclass
class Plan:
    """What one discovery pass found: conv→BatchNorm pairs, the first affine layer, unsupported modules."""

    folds: dict[nn.Module, nn.Module] = dataclasses.field(default_factory=dict)  # batchnorm -> conv
    first: nn.Module | None = None
    unsupported: dict[str, str] = dataclasses.field(default_factory=dict)  # module name -> type
    unknown: dict[str, str] = dataclasses.field(default_factory=dict)


def _qualname(m: nn.Module) -> str:
    t = type(m)
    return f"{t.__module__}.{t.__qualname__}"


def discover(model: nn.Module, run: Callable[[], Any]) -> Plan:
    """Run ``run()`` once (its input must require grad) with read-only hooks and return the ``Plan``."""
    plan = Plan()
    names = {m: n for n, m in model.named_modules()}
    conv_out: dict[int, tuple[T, nn.Module]] = {}
    handles = []

    def pre(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        x = _first_tensor(args, kwargs)
        kind = classify(m)
        is_live = any(live(v) for v in (*args, *kwargs.values()))
        if kind == "batchnorm" and x is not None and id(x) in conv_out and conv_out[id(x)][0] is x:
            plan.folds[m] = conv_out[id(x)][1]
        if not is_live:
            return
        if kind == "affine" and plan.first is None:
            plan.first = m
        if kind == "unknown":
            own = any(True for _ in m.parameters(recurse=False))
            leaf = not any(True for _ in m.children())
            if own:
                plan.unsupported[names.get(m, "?")] = _qualname(m)
            elif leaf:
                plan.unknown[names.get(m, "?")] = _qualname(m)

    def post(m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear) and isinstance(out, torch.Tensor):
            conv_out[id(out)] = (out, m)

    try:
        for m in model.modules():
            handles.append(m.register_forward_pre_hook(LayerscopeHook(pre), with_kwargs=True))
            handles.append(m.register_forward_hook(LayerscopeHook(post)))
        with torch.enable_grad():
            run()
    finally:
        for h in handles:
            h.remove()
        conv_out.clear()
    return plan


def check_plan(plan: Plan) -> None:
    """Raise for modules with parameters and no rule; warn (once) for parameter-free unknown modules."""
    if plan.unsupported:
        listed = ", ".join(f"{n} ({t})" for n, t in list(plan.unsupported.items())[:5])
        more = f" and {len(plan.unsupported) - 5} more" if len(plan.unsupported) > 5 else ""
        raise ConfigError(
            f"LRP has no rule for {listed}{more}: modules with their own parameters must be Linear, Conv1d/2d/3d, "
            "BatchNorm, LayerNorm, GroupNorm, RMSNorm, an element-wise activation or an embedding. Use "
            "IntegratedGradients for this model, or attribute at a site after these modules"
        )
    if plan.unknown:
        types = sorted(set(plan.unknown.values()))
        warnings.warn(
            f"LRP has no module rule for {', '.join(types)}; the relevance passes through with the rules of "
            "the torch operations it calls (products: uniform, activations: identity, everything else: its "
            "plain gradient)",
            AttributionWarning,
            stacklevel=4,
        )


# -- the function-level rules -------------------------------------------------------------------------
def _ids(*fs: Any) -> list[Any]:
    return [f for f in fs if f is not None]


_KIND: dict[Any, str] = {}
_KIND[F.linear] = "linear"
_KIND[torch.addmm] = "addmm"
for _f in _ids(F.conv1d, F.conv2d, F.conv3d):
    _KIND[_f] = "conv"
_KIND[F.batch_norm] = "batch_norm"
_KIND[F.layer_norm] = "layer_norm"
_KIND[F.group_norm] = "group_norm"
_KIND[F.rms_norm] = "rms_norm"
for _f in _ids(  # not ReLU / leaky ReLU: their plain gradient already is the identity rule
    F.relu6, F.hardtanh, F.gelu, F.silu, F.elu, F.selu, F.celu, F.softplus, F.mish, F.hardswish, F.sigmoid,
    F.tanh, torch.sigmoid, torch.tanh, torch.selu, torch.celu, T.sigmoid, T.tanh,
):  # fmt: skip
    _KIND[_f] = "elementwise"
for _f in _ids(torch.mul, torch.multiply, T.mul, T.multiply, torch.matmul, T.matmul, torch.bmm, T.bmm):
    _KIND[_f] = "product"
_KIND[torch.einsum] = "einsum"
for _f in _ids(torch.div, torch.divide, torch.true_divide, T.div, T.divide, T.true_divide):
    _KIND[_f] = "divide"
for _f in _ids(F.softmax, torch.softmax, T.softmax):
    _KIND[_f] = "softmax"
_KIND[F.scaled_dot_product_attention] = "sdpa"


class RuleMode(TorchFunctionMode):
    """Applies the function-level rules; module hooks tell it which module is running."""

    def __init__(self, rules: RuleSet, plan: Plan) -> None:
        super().__init__()
        self.rules = rules
        self.plan = plan
        self.stack: list[nn.Module] = []  # affine/batchnorm modules being run
        self.opaque = 0  # >0 inside an element-wise module: its own hook applies the rule
        self.folded_convs = set(plan.folds.values())
        self.pending: dict[nn.Module, tuple[Any, ...]] = {}  # folded conv -> (func, x, w, b, rest, kw, out)

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        kind = _KIND.get(func)
        if kind is None or self.opaque:
            return func(*args, **kwargs)
        return getattr(self, "_" + kind)(func, args, kwargs)

    # affine layers
    def _affine(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], rule: str) -> Any:
        x, w, b, rest, kw = _split_affine(args, kwargs)
        if not live(x):
            return func(*args, **kwargs)
        mod = self.stack[-1] if self.stack else None
        if mod is not None and mod is self.plan.first and self.rules.first is not None:
            rule = self.rules.first
        if mod is not None and mod in self.folded_convs:
            out = func(*args, **kwargs)  # the rule is applied at the BatchNorm, on the folded weights
            self.pending[mod] = (func, x, w, b, rest, kw, out, rule)
            return out
        return affine_rule(func, x, w, b, rest, kw, rule, self.rules)

    def _linear(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self._affine(func, args, kwargs, self.rules.linear)

    def _addmm(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """``addmm(b, x, W)`` = ``x @ W + b`` (transformers' Conv1D): the linear layer ``F.linear(x, Wᵀ, b)``."""
        if len(args) != 3 or kwargs or not live(args[1]) or live(args[2]) or live(args[0]):
            return func(*args, **kwargs)
        b, x, w = args
        return self._affine(F.linear, (x, w.t(), b), {}, self.rules.linear)

    def _conv(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self._affine(func, args, kwargs, self.rules.conv)

    def _batch_norm(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        a = _bn_args(args, kwargs)
        x = a["input"]
        if not live(x) or a["training"]:
            return func(*args, **kwargs)
        mod = self.stack[-1] if self.stack else None
        conv = self.plan.folds.get(mod) if mod is not None else None
        pend = self.pending.pop(conv, None) if conv is not None else None
        y = func(*args, **kwargs)
        if pend is None or pend[6] is not x:  # not folded: BatchNorm is a diagonal linear layer (ε-rule)
            with torch.no_grad():
                ratio = epsilon_ratio(y, self.rules.epsilon)
            return scale_grad(y, ratio)
        cfunc, cx, w, b, rest, kw, _, rule = pend
        if rule == "epsilon":
            return affine_rule(cfunc, cx, w, b, rest, kw, rule, self.rules, z=y)
        wf, bf = _fold_bn(w, b, (a["running_mean"], a["running_var"], a["weight"], a["bias"], a["eps"]))
        return affine_rule(cfunc, cx, wf.detach(), bf.detach(), rest, kw, rule, self.rules, z=y)

    # normalisation
    def _layer_norm(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        names = ("input", "normalized_shape", "weight", "bias", "eps")
        a: dict[str, Any] = {"weight": None, "bias": None, "eps": 1e-5}
        a.update(dict(zip(names, args, strict=False)))
        a.update(kwargs)
        x = a["input"]
        if not live(x):
            return func(*args, **kwargs)
        with torch.no_grad():
            y = func(*args, **kwargs)
        dims = tuple(range(-len(tuple(a["normalized_shape"])), 0))
        centred = x - x.mean(dims, keepdim=True)
        with torch.no_grad():
            rstd = torch.rsqrt(x.var(dims, unbiased=False, keepdim=True) + a["eps"])
        s = centred * rstd
        if a["weight"] is not None:
            s = s * a["weight"].detach()
        return substitute(y, s)

    def _group_norm(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        names = ("input", "num_groups", "weight", "bias", "eps")
        a: dict[str, Any] = {"weight": None, "bias": None, "eps": 1e-5}
        a.update(dict(zip(names, args, strict=False)))
        a.update(kwargs)
        x = a["input"]
        if not live(x):
            return func(*args, **kwargs)
        with torch.no_grad():
            y = func(*args, **kwargs)
        g = x.reshape(x.shape[0], int(a["num_groups"]), -1)
        centred = g - g.mean(-1, keepdim=True)
        with torch.no_grad():
            rstd = torch.rsqrt(g.var(-1, unbiased=False, keepdim=True) + a["eps"])
        s = (centred * rstd).reshape(x.shape)
        if a["weight"] is not None:
            s = s * a["weight"].detach().view(1, -1, *([1] * (x.ndim - 2)))
        return substitute(y, s)

    def _rms_norm(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        x: Any = args[0] if args else kwargs.get("input")
        if not live(x):
            return func(*args, **kwargs)
        with torch.no_grad():
            y = func(*args, **kwargs)
        return identity_rule(x, y)

    # element-wise, products, normalisers, attention
    def _elementwise(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        x: Any = args[0] if args else kwargs.get("input")
        if not live(x):
            return func(*args, **kwargs)
        with torch.no_grad():  # on a copy: in-place variants must not overwrite x
            y = func(x.detach().clone(), *args[1:], **{k: v for k, v in kwargs.items() if k != "input"})
        return identity_rule(x, y)

    def _product(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if len(args) >= 2 and live(args[0]) and live(args[1]):
            args = (scale_grad(args[0], 0.5), scale_grad(args[1], 0.5), *args[2:])
        return func(*args, **kwargs)

    def _einsum(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        eq, *ops = args
        if len(ops) == 1 and isinstance(ops[0], list | tuple):
            ops = list(ops[0])
        n = sum(live(o) for o in ops)
        if n >= 2:
            ops = [scale_grad(o, 1.0 / n) if live(o) else o for o in ops]
        return func(eq, *ops, **kwargs)

    def _divide(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if len(args) >= 2 and live(args[0]) and live(args[1]):
            args = (args[0], args[1].detach(), *args[2:])
        return func(*args, **kwargs)

    def _softmax(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        out = func(*args, **kwargs)
        return out.detach() if self.rules.attention == "cp" else out

    def _sdpa(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
        a: dict[str, Any] = {"attn_mask": None, "dropout_p": 0.0, "is_causal": False, "scale": None}
        a["enable_gqa"] = False
        a.update(dict(zip(names, args, strict=False)))
        a.update(kwargs)
        q, k, v = a["query"], a["key"], a["value"]
        if not (live(q) or live(k) or live(v)):
            return func(*args, **kwargs)
        with torch.no_grad():
            y = func(*args, **kwargs)
        if k.shape[-3] != q.shape[-3]:  # grouped-query attention
            rep = q.shape[-3] // k.shape[-3]
            k = k.repeat_interleave(rep, dim=-3)
            v = v.repeat_interleave(rep, dim=-3)
        scale = a["scale"] if a["scale"] is not None else 1.0 / math.sqrt(q.shape[-1])
        if live(q) and live(k):
            q, k = scale_grad(q, 0.5), scale_grad(k, 0.5)
        scores = torch.matmul(q, k.transpose(-2, -1)) * scale
        L, S = scores.shape[-2], scores.shape[-1]
        low = torch.finfo(scores.dtype).min
        if a["is_causal"]:
            keep = torch.ones(L, S, dtype=torch.bool, device=scores.device).tril()
            scores = scores.masked_fill(~keep, low)
        mask = a["attn_mask"]
        if mask is not None:
            scores = scores.masked_fill(~mask, low) if mask.dtype == torch.bool else scores + mask
        p = torch.softmax(scores, dim=-1)
        if self.rules.attention == "cp":
            p = p.detach()
        if live(p) and live(v):
            p, v = scale_grad(p, 0.5), scale_grad(v, 0.5)
        return substitute(y, torch.matmul(p, v))


@contextlib.contextmanager
def rules_applied(model: nn.Module, rules: RuleSet, plan: Plan) -> Iterator[RuleMode]:
    """Install the rules on ``model`` for the duration of the block; everything is removed in finally."""
    mode = RuleMode(rules, plan)
    handles: list[Any] = []
    stash: list[tuple[nn.Module, T | None]] = []

    def push(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        mode.stack.append(m)
        return None

    def pop(m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
        if mode.stack and mode.stack[-1] is m:
            mode.stack.pop()

    def enter_elementwise(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        x = _first_tensor(args, kwargs)
        stash.append((m, x))
        mode.opaque += 1
        if getattr(m, "inplace", False) and x is not None and args and args[0] is x:
            return (x.clone(), *args[1:]), kwargs  # keep x intact for the ratio y / x
        return None

    def leave_elementwise(m: nn.Module, args: tuple[Any, ...], out: Any) -> Any:
        x = None
        if stash and stash[-1][0] is m:
            x = stash.pop()[1]
        try:  # still opaque: the rule's own arithmetic must not meet the function-level rules
            if x is None or not isinstance(out, torch.Tensor):
                return None
            return identity_rule(x, out)
        finally:
            mode.opaque = max(0, mode.opaque - 1)

    try:
        for m in model.modules():
            kind = classify(m)
            if kind in ("affine", "batchnorm"):
                handles.append(m.register_forward_pre_hook(LayerscopeHook(push), with_kwargs=True))
                handles.append(m.register_forward_hook(LayerscopeHook(pop)))
            elif kind == "elementwise":
                handles.append(
                    m.register_forward_pre_hook(LayerscopeHook(enter_elementwise), with_kwargs=True)
                )
                handles.append(m.register_forward_hook(LayerscopeHook(leave_elementwise)))
        with mode:
            yield mode
    finally:
        for h in handles:
            h.remove()
        mode.pending.clear()
        stash.clear()
