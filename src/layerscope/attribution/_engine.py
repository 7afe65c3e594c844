"""The batched gradient engine: rows = (example, target) pairs x steps, chunked by a token budget.

Every gradient method builds rows (a site value per row, e.g. a point on the IG path) and asks the engine
for the weighted sum of the objective's gradients per pair. Rows are sorted by example length and each
chunk is cut to its own longest example, so short sentences do not pay for the longest one's padding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

from ..capture import capture, intervene
from ..capture.hooks import pick
from ..errors import ConfigError
from ..models.subject import Subject, frozen_params
from ._head import head_of, headless
from ._inputs import Pairs, Prepared, objective_values

#: make_rows(pair_idx, step_idx, lo, hi) -> (site values [rows, ...], multiplier or None)
RowMaker = Callable[[torch.Tensor, torch.Tensor, int, int], "tuple[torch.Tensor, torch.Tensor | None]"]


def _null() -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


class Engine:
    """Runs rows through ``subject`` with the site replaced, returning objectives and gradients."""

    def __init__(
        self,
        subject: Subject,
        site: str,
        prep: Prepared,
        pairs: Pairs,
        *,
        batch_tokens: int = 8192,
        batch_size: int | None = None,
    ) -> None:
        if batch_tokens < 1 or (batch_size is not None and batch_size < 1):
            raise ConfigError("batch_tokens and batch_size must be positive")
        self.subject = subject
        self.site = site
        self.prep = prep
        self.pairs = pairs
        self.batch_tokens = batch_tokens
        self.batch_size = batch_size
        self.evaluations = 0  # model rows evaluated (forward passes of one example)
        self._abs = False
        self._per_step = False
        self._x: torch.Tensor | None = None
        self._head: tuple[str, torch.Tensor] | bool | None = False  # False: not decided yet

    # -- site values -------------------------------------------------------------------------------
    def site_value(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The (detached) site activation of a batch; ``input`` is the model input itself."""
        if self.site == "input":
            return inputs["x"].detach().clone()
        with torch.no_grad(), capture(self.subject, [self.site], stop=True) as tr:
            self.subject.forward(inputs)
        return tr[self.site].detach().clone()

    @property
    def x(self) -> torch.Tensor:
        """Site value of the real inputs: ``[batch, ...]``."""
        if self._x is None:
            self._x = self.site_value(self.prep.inputs)
        return self._x

    @property
    def positional(self) -> bool:
        """True when the site has a position axis (dim 1) that chunks may trim."""
        x = self.x
        width = self.prep.inputs["input_ids"].shape[1] if self.prep.is_text else -1
        return self.prep.is_text and x.ndim >= 3 and x.shape[1] == width and self.pairs.kind != "callable"

    # -- forward with the site replaced ------------------------------------------------------------
    def forward(self, sample: torch.Tensor, lo: int, hi: int, value: torch.Tensor) -> object:
        """Model output for rows of examples ``sample`` (columns lo:hi) with the site set to ``value``.

        For next-token objectives of a causal LM with a plain linear head (see :mod:`._head`) the output is the
        final hidden states; :meth:`objective` applies the head to the target positions only.
        """
        self.evaluations += int(value.shape[0])
        if self.site == "input":
            return self.subject.forward({"x": value})
        inputs = {k: v[sample.to(v.device)][:, lo:hi] for k, v in self.prep.inputs.items()}

        def put(t: torch.Tensor, *, site: object) -> torch.Tensor:
            return value

        split = self.head_split()
        with (
            intervene(self.subject, {self.site: put}),
            headless(self.subject.model, split[0]) if split else _null(),
        ):
            out = self.subject.forward(inputs)
        return out

    def objective(self, out: object, pair_idx: torch.Tensor, col0: int, *, grad: bool = True) -> torch.Tensor:
        """The scalar objective of each row of a :meth:`forward` output (``pair_idx`` names its pair);
        ``grad=False`` when no derivative will be taken."""
        split = self.head_split()
        return objective_values(out, self.pairs, pair_idx, col0, head=split[1] if split else None, grad=grad)

    def objectives(self, out: object, table: torch.Tensor, col0: int, *, grad: bool = True) -> torch.Tensor:
        """Objectives of several targets per row (``table [rows, T]`` names the pairs) in one batched
        evaluation: ``[rows, T]``."""
        split = self.head_split()
        rows, T = table.shape
        row = torch.arange(rows).repeat_interleave(T)
        flat = objective_values(
            out, self.pairs, table.reshape(-1), col0, head=split[1] if split else None, row=row, grad=grad
        )
        return flat.view(rows, T)

    def head_split(self) -> tuple[str, torch.Tensor] | None:
        """(head attribute, weight) when objectives are read from hidden states (decided once, checked)."""
        if self._head is False:
            self._head = self._find_head_split()
        return self._head  # type: ignore[return-value]

    def keep_head(self) -> None:
        """Never split the head (methods whose rules act on the head module itself, such as LRP)."""
        self._head = None

    def _find_head_split(self) -> tuple[str, torch.Tensor] | None:
        if (
            self.site == "input"
            or not self.prep.is_text
            or self.pairs.kind not in ("logprob", "prob", "logit")
        ):
            return None
        model = self.subject.model
        found = head_of(model)
        if found is None:
            return None
        name, head = found
        if getattr(head, "_hf_hook", None) is not None or head.weight.device.type == "meta":
            return None  # offloaded / dispatched heads run through their own hooks
        site_module = self.subject.adapter.resolve(self.site).module
        if any(m is head for m in site_module.modules()) or any(m is site_module for m in head.modules()):
            return None  # the site is the head, inside it, or contains it (e.g. the root module): keep it
        inputs = {k: v[:1] for k, v in self.prep.inputs.items()}  # one example, real inputs
        try:
            with torch.no_grad():
                logits = pick(self.subject.forward(inputs), 0)
                with headless(model, name):
                    hidden = pick(self.subject.forward(inputs), 0)
                if (
                    logits.ndim != 3
                    or hidden.shape[:2] != logits.shape[:2]
                    or hidden.shape[-1] != head.in_features
                ):
                    return None
                mine = (hidden @ head.weight.T).float()
                ref = logits.float()
                scale = float(ref.nan_to_num(0.0, 0.0, 0.0).abs().max().clamp_min(1e-6))
                if not torch.allclose(mine, ref, rtol=1e-4, atol=1e-4 * scale, equal_nan=True):
                    return None  # the model scales or soft-caps its logits: keep the full head
        except Exception:  # any model that cannot run headless keeps its head (its errors resurface later)
            return None
        return name, head.weight.detach()

    # -- chunking ----------------------------------------------------------------------------------
    def _span(self, sample: torch.Tensor) -> tuple[int, int]:
        if not self.positional:
            width = self.prep.inputs["input_ids"].shape[1] if self.prep.is_text else 0
            return 0, int(width)
        assert self.prep.first is not None and self.prep.last is not None
        s = sample.cpu()
        return int(self.prep.first[s].min()), int(self.prep.last[s].max()) + 1

    def _length(self, pair: int) -> int:
        if not self.positional:
            return 1
        assert self.prep.first is not None and self.prep.last is not None
        b = int(self.pairs.sample[pair])
        return int(self.prep.last[b] - self.prep.first[b]) + 1

    def chunks(self, pair_ids: torch.Tensor, n_per_pair: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(pair_idx, step_idx) row chunks: pairs sorted by length, each chunk within the token budget."""
        order = sorted(pair_ids.tolist(), key=self._length)
        per_row = 1
        if not self.positional and self.x.ndim > 1:
            per_row = max(1, int(self.x[0].numel()) // max(1, int(self.x.shape[-1])))
        rows_p: list[int] = []
        rows_k: list[int] = []
        width = 0
        for p in order:
            length = self._length(p) if self.positional else per_row
            for k in range(n_per_pair):
                w = max(width, length)
                full = (
                    len(rows_p) >= self.batch_size
                    if self.batch_size is not None
                    else (len(rows_p) + 1) * w > self.batch_tokens
                )
                if rows_p and full:
                    yield torch.tensor(rows_p), torch.tensor(rows_k)
                    rows_p, rows_k, w = [], [], length
                rows_p.append(p)
                rows_k.append(k)
                width = w
        if rows_p:
            yield torch.tensor(rows_p), torch.tensor(rows_k)

    # -- the two operations ------------------------------------------------------------------------
    def grad_sum(
        self,
        pair_ids: torch.Tensor,
        n_per_pair: int,
        make_rows: RowMaker,
        weights: torch.Tensor,
        *,
        abs_rows: bool = False,
        per_step: bool = False,
    ) -> torch.Tensor:
        """Σ_k weights[k] · mult · ∂objective/∂site over the rows of each pair: ``[n_pairs, *site shape]``.

        ``abs_rows`` takes |gradient| of each row before weighting (SmoothGrad of saliency); ``per_step``
        keeps the steps apart: ``[n_pairs, n_per_pair, *site shape]`` (for nested quadrature rules).
        """
        x = self.x
        shape = (len(self.pairs.sample), n_per_pair) if per_step else (len(self.pairs.sample),)
        total = torch.zeros((*shape, *x.shape[1:]), dtype=x.dtype, device=x.device)
        self._abs = abs_rows
        self._per_step = per_step
        if per_step:  # the objective of every row, kept for rules that read F at their nodes
            self.row_values = torch.full(
                (len(self.pairs.sample), n_per_pair), float("nan"), dtype=torch.float64
            )
        with frozen_params(self.subject.model):
            for p_idx, k_idx in self.chunks(pair_ids, n_per_pair):
                self._grad_chunk(p_idx, k_idx, make_rows, weights, total)
        return total

    def _grad_chunk(
        self,
        p_idx: torch.Tensor,
        k_idx: torch.Tensor,
        make_rows: RowMaker,
        weights: torch.Tensor,
        total: torch.Tensor,
    ) -> None:
        sample = self.pairs.sample[p_idx]
        lo, hi = self._span(sample)
        try:
            value, mult = make_rows(p_idx, k_idx, lo, hi)
            value = value.detach().requires_grad_(True)
            with torch.enable_grad():
                out = self.forward(sample, lo, hi, value)
                obj = self.objective(out, p_idx, lo)
                (g,) = torch.autograd.grad(obj.sum(), value)
            if self._per_step:
                self.row_values[p_idx, k_idx] = obj.detach().double().cpu()
        except RuntimeError as e:
            if not _is_oom(e) or len(p_idx) == 1:
                raise
            half = len(p_idx) // 2  # back off: split the chunk and retry
            self._grad_chunk(p_idx[:half], k_idx[:half], make_rows, weights, total)
            self._grad_chunk(p_idx[half:], k_idx[half:], make_rows, weights, total)
            return
        if self._abs:
            g = g.abs()
        w = weights.to(g.device, g.dtype)[k_idx].view(-1, *([1] * (g.ndim - 1)))
        contrib = g * w
        if mult is not None:
            contrib = contrib * mult
        dev_idx = p_idx.to(g.device)
        if self._per_step:
            view = total[:, :, lo:hi] if self.positional else total
            view.index_put_((dev_idx, k_idx.to(g.device)), contrib, accumulate=True)
        elif self.positional:
            total[:, lo:hi].index_add_(0, dev_idx, contrib)
        else:
            total.index_add_(0, dev_idx, contrib)

    def _target_slots(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Pairs grouped by example: ``slots [n_examples, T]`` (pair of each target slot, -1: none) and one
        representative pair per example (the rows of shared-row methods are made for it)."""
        groups: dict[int, list[int]] = {}
        for p, b in enumerate(self.pairs.sample.tolist()):
            groups.setdefault(int(b), []).append(p)
        T = max(len(v) for v in groups.values())
        slots = torch.full((int(self.pairs.sample.max()) + 1, T), -1, dtype=torch.long)
        for b, ps in groups.items():
            slots[b, : len(ps)] = torch.tensor(ps)
        return slots, torch.tensor([ps[0] for ps in groups.values()])

    def grad_sum_shared(self, n_per_pair: int, make_rows: RowMaker, weights: torch.Tensor) -> torch.Tensor:
        """``grad_sum`` for targets that share their rows (several targets of one example, e.g. continuation
        tokens): one forward pass per row and one vmapped backward for all of the example's targets.

        Rows must depend on the example and step only (true for IG with a per-example baseline). Falls back
        to one row per (target, step) when the model's backward cannot be vmapped.
        """
        x = self.x
        slots, reps = self._target_slots()
        T = slots.shape[1]
        total = torch.zeros((len(self.pairs.sample), *x.shape[1:]), dtype=x.dtype, device=x.device)
        saved = self.batch_tokens, self.batch_size
        self.batch_tokens = max(1, self.batch_tokens // T)
        if self.batch_size is not None:
            self.batch_size = max(1, self.batch_size // T)
        try:
            with frozen_params(self.subject.model):
                for p_idx, k_idx in self.chunks(reps, n_per_pair):
                    self._shared_chunk(p_idx, k_idx, slots, make_rows, weights, total)
        finally:
            self.batch_tokens, self.batch_size = saved
        return total

    def _shared_chunk(
        self,
        p_idx: torch.Tensor,
        k_idx: torch.Tensor,
        slots: torch.Tensor,
        make_rows: RowMaker,
        weights: torch.Tensor,
        total: torch.Tensor,
    ) -> None:
        sample = self.pairs.sample[p_idx]
        lo, hi = self._span(sample)
        table = slots[sample]  # rows, T: pair of each target slot (-1: none)
        valid = table >= 0
        table = torch.where(valid, table, p_idx.unsqueeze(1))
        T = table.shape[1]
        value, mult = make_rows(p_idx, k_idx, lo, hi)
        value = value.detach().requires_grad_(True)
        with torch.enable_grad():
            out = self.forward(sample, lo, hi, value)
            obj = self.objectives(out, table, lo)
            obj = obj * valid.to(obj.device, obj.dtype)
            eye = torch.eye(T, dtype=obj.dtype, device=obj.device)
            grad_out = eye.unsqueeze(1).expand(T, len(p_idx), T)
            (g,) = torch.autograd.grad(obj, value, grad_outputs=grad_out, is_grads_batched=True)
        w = weights.to(g.device, g.dtype)[k_idx].view(1, -1, *([1] * (g.ndim - 2)))
        contrib = g * w  # T, rows, ...
        if mult is not None:
            contrib = contrib * mult.unsqueeze(0)
        flat_idx = table.T.reshape(-1).to(g.device)
        keep = valid.T.reshape(-1).to(g.device)
        contrib = contrib.reshape(-1, *contrib.shape[2:])[keep]
        if self.positional:
            total[:, lo:hi].index_add_(0, flat_idx[keep], contrib)
        else:
            total.index_add_(0, flat_idx[keep], contrib)

    def jvp_token_sums(
        self, n_per_pair: int, make_rows: RowMaker, weights: torch.Tensor, direction: torch.Tensor
    ) -> torch.Tensor:
        """Σ_k weights[k] · ∂objective/∂site[pos] · direction[pos] for every pair and position: ``[n_pairs, width]``.

        Forward-mode AD: one Jacobian-vector product per attributed position (the direction restricted to it)
        gives the derivative of EVERY target of the example at once, so the cost grows with the positions
        attributed, not with the targets. For a continuation of T tokens after a P-token prompt this replaces
        T backward passes per row by P tangent passes (``torch.func.jvp`` under ``vmap``). Only the per-position
        sums exist (no per-feature attributions). Attention runs eagerly (SDPA kernels have no forward AD).
        """
        from ..capture.hooks import eager_attention_if

        x = self.x
        slots, reps = self._target_slots()
        total = torch.zeros((len(self.pairs.sample), x.shape[1]), dtype=torch.float64)
        with frozen_params(self.subject.model), eager_attention_if(self.subject.model, True), torch.no_grad():
            for p_idx, k_idx in self.chunks(reps, n_per_pair):
                self._jvp_chunk(p_idx, k_idx, slots, make_rows, weights, direction, total)
        return total

    def _jvp_chunk(
        self,
        p_idx: torch.Tensor,
        k_idx: torch.Tensor,
        slots: torch.Tensor,
        make_rows: RowMaker,
        weights: torch.Tensor,
        direction: torch.Tensor,
        total: torch.Tensor,
    ) -> None:
        from torch.func import jvp, vmap

        x = self.x
        sample = self.pairs.sample[p_idx]
        lo, hi = self._span(sample)
        table = slots[sample]  # rows, T: pair of each target slot (-1: none)
        valid = table >= 0
        table = torch.where(valid, table, p_idx.unsqueeze(1))
        value, _ = make_rows(p_idx, k_idx, lo, hi)  # rows, hi - lo, ...
        d = direction[sample.to(x.device), lo:hi]  # rows, hi - lo, ...
        live = torch.nonzero(d.flatten(2).abs().sum(-1).amax(0) > 0).flatten()  # positions to attribute
        if not len(live):
            return

        def objectives(v: torch.Tensor) -> torch.Tensor:
            out = self.forward(sample, lo, hi, v)
            return self.objectives(out, table, lo)

        def tangent_product(t: torch.Tensor) -> torch.Tensor:
            return jvp(objectives, (value,), (t,))[1]

        # tangent j: the direction at position live[j] only; chunked so positions × rows × width fit the budget
        per = max(1, self.batch_tokens // max(1, len(p_idx) * (hi - lo)))
        w = weights.to(x.device, torch.float64)[k_idx]  # rows
        flat = table.reshape(-1)
        keep = valid.reshape(-1)
        for c0 in range(0, len(live), per):
            pos = live[c0 : c0 + per]
            tang = torch.zeros((len(pos), *value.shape), dtype=value.dtype, device=value.device)
            tang[torch.arange(len(pos)), :, pos] = d[:, pos].transpose(0, 1)
            jv = vmap(tangent_product)(tang)  # positions, rows, T
            jv = (jv.double() * w.view(1, -1, 1)).permute(1, 2, 0)  # rows, T, positions
            contrib = jv.reshape(-1, len(pos))[keep.to(jv.device)].cpu()
            part = torch.zeros(len(total), len(pos), dtype=torch.float64).index_add_(0, flat[keep], contrib)
            total[:, (pos + lo).cpu()] += part

    def values(
        self, pair_ids: torch.Tensor, n_per_pair: int, make_rows: RowMaker, *, shared: bool = False
    ) -> torch.Tensor:
        """Objective of every row, no gradients: ``[n_pairs_given, n_per_pair]`` in ``pair_ids`` order.

        ``shared``: the targets of one example share their rows (see :meth:`grad_sum_shared`), so one forward
        pass per (example, step) reads all of the example's targets.
        """
        out = torch.zeros((len(self.pairs.sample), n_per_pair), dtype=torch.float64)
        slots, reps = self._target_slots() if shared else (None, pair_ids)
        with torch.no_grad():
            for p_idx, k_idx in self.chunks(reps, n_per_pair):
                sample = self.pairs.sample[p_idx]
                lo, hi = self._span(sample)
                value, _ = make_rows(p_idx, k_idx, lo, hi)
                res = self.forward(sample, lo, hi, value)
                table = slots[sample] if slots is not None else p_idx.unsqueeze(1)  # rows, targets per row
                valid = table >= 0
                table = torch.where(valid, table, p_idx.unsqueeze(1))
                obj = self.objectives(res, table, lo, grad=False).detach().double().cpu()
                steps = k_idx.unsqueeze(1).expand_as(table)
                out[table[valid], steps[valid]] = obj[valid]
        return out[pair_ids]

    def rows_between(
        self, base: torch.Tensor, alphas: torch.Tensor
    ) -> Callable[[torch.Tensor, torch.Tensor, int, int], tuple[torch.Tensor, None]]:
        """Row maker for the straight path ``base + α (x − base)`` (``base`` per example; α per step, or per
        pair and step when ``alphas`` is ``[n_pairs, n_steps]``)."""
        x = self.x

        def make(p_idx: torch.Tensor, k_idx: torch.Tensor, lo: int, hi: int) -> tuple[torch.Tensor, None]:
            s = self.pairs.sample[p_idx].to(x.device)
            xs, bs = (x[s], base[s]) if not self.positional else (x[s, lo:hi], base[s, lo:hi])
            al = alphas.to(x.device, x.dtype)
            a = (al[k_idx] if al.ndim == 1 else al[p_idx.to(x.device), k_idx]).view(
                -1, *([1] * (xs.ndim - 1))
            )
            return bs + a * (xs - bs), None

        return make
