"""Perturbation attribution: token ablation, image occlusion (big batches of perturbed copies, no gradients),
and LIME / KernelSHAP through Captum's implementations."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import ConfigError
from ..models.subject import Subject
from ._inputs import Continuation, Pairs, Prepared, objective_values
from .baselines import TokenBaseline, _special_id, baseline_name, resolve
from .gradient import Attributor, eval_mode


def _baseline_token(subject: Subject, spec: Any) -> int:
    if isinstance(spec, TokenBaseline):
        return int(spec.token_id)
    if isinstance(spec, int) and not isinstance(spec, bool):
        return spec
    if spec in ("pad", "mask", "unk"):
        return _special_id(subject, spec)
    raise ConfigError(
        f"text ablation needs a token baseline ('pad', 'mask', 'unk', a token id), got {spec!r}"
    )


class _Rows:
    """Evaluates the objective on many perturbed copies of examples (ids or images), chunked, no grad."""

    def __init__(self, subject: Subject, prep: Prepared, pairs: Pairs, batch_tokens: int) -> None:
        self.subject, self.prep, self.pairs, self.batch_tokens = subject, prep, pairs, batch_tokens
        self.evaluations = 0

    def run(self, pair_idx: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``rows``: input ids ``[R, pos]`` (text) or images ``[R, C, H, W]``; returns the objective ``[R]``."""
        out = torch.zeros(len(pair_idx), dtype=torch.float64)
        if self.prep.is_text:
            assert self.prep.first is not None and self.prep.last is not None
            samples = self.pairs.sample[pair_idx]
            order = torch.argsort(self.prep.last[samples] - self.prep.first[samples])
            per = max(1, self.batch_tokens // max(1, rows.shape[1]))
        else:
            order = torch.arange(len(pair_idx))
            per = max(1, self.batch_tokens // 64)
        with torch.no_grad():
            for s in range(0, len(order), per):
                idx = order[s : s + per]
                p = pair_idx[idx]
                if self.prep.is_text:
                    b = self.pairs.sample[p]
                    lo = int(self.prep.first[b].min())  # type: ignore[index]
                    hi = int(self.prep.last[b].max()) + 1  # type: ignore[index]
                    if self.pairs.kind == "callable":
                        lo, hi = 0, rows.shape[1]
                    dev = self.subject.device
                    inputs = {k: v[b.to(v.device)][:, lo:hi] for k, v in self.prep.inputs.items()}
                    inputs["input_ids"] = rows[idx.to(rows.device)][:, lo:hi].to(dev)
                    res = self.subject.forward(inputs)
                else:
                    lo = 0
                    res = self.subject.forward({"x": rows[idx.to(rows.device)]})
                self.evaluations += len(idx)
                out[idx] = objective_values(res, self.pairs, p, lo).double().cpu()
        return out


class FeatureAblation(Attributor):
    """Token ablation (text) / patch occlusion (images): score = F(x) − F(x with the feature replaced).

    Text: each prompt token (specials kept) is replaced by the baseline token, one perturbed copy per token,
    all copies in large batches. Images: ``window`` × ``window`` patches moved by ``stride`` are set to the
    baseline; a pixel's score is the mean drop over the patches that cover it (Captum ``Occlusion``).
    """

    method: ClassVar[str] = "feature-ablation"

    def __init__(
        self, subject: Subject, *, window: int = 16, stride: int = 8, batch_tokens: int = 16384
    ) -> None:
        super().__init__(subject, site=None, batch_tokens=batch_tokens)
        if window < 1 or stride < 1:
            raise ConfigError("window and stride must be positive")
        self.window, self.stride = window, stride

    def attribute(
        self,
        inputs: Any,
        *,
        target: Any = None,
        baseline: Any = None,
        output: str = "logit",
        continuation: Continuation | None = None,
    ) -> AttributionResult:
        """Ablate each feature and record the change of the target."""
        with eval_mode(self.subject):
            prep, pairs, eng = self._setup(inputs, target, output, continuation)
            S = len(pairs.sample)
            runner = _Rows(self.subject, prep, pairs, self.batch_tokens)
            if prep.is_text:
                baseline = "pad" if baseline is None else baseline
                tid = _baseline_token(self.subject, baseline)
                ids = prep.inputs["input_ids"]
                assert prep.attributed is not None and prep.special is not None
                ok = prep.attributed & ~prep.special & (prep.inputs["attention_mask"] > 0)
                p_list, c_list = [], []
                for p in range(S):
                    cols = torch.nonzero(ok[int(pairs.sample[p])]).flatten().tolist()
                    p_list += [p] * len(cols)
                    c_list += cols
                p_idx = torch.tensor(p_list + list(range(S)), dtype=torch.long)
                rows = ids[pairs.sample[p_idx].to(ids.device)].clone()
                n_pert = len(p_list)
                rows[torch.arange(n_pert), torch.tensor(c_list, dtype=torch.long)] = tid
                vals = runner.run(p_idx, rows)
                f_in = vals[n_pert:]
                attr = torch.zeros((S, ids.shape[1]), dtype=torch.float64)  # pairs, pos
                attr[torch.tensor(p_list), torch.tensor(c_list)] = f_in[torch.tensor(p_list)] - vals[:n_pert]
                eng._x = torch.zeros((*ids.shape, 1))
                res = self._result(prep, pairs, eng, attr.unsqueeze(-1), baseline=baseline_name(baseline))
            else:
                x = prep.inputs["x"]
                base = resolve("zero" if baseline is None else baseline, self.subject, prep, None, x)
                assert isinstance(base, torch.Tensor)
                _, _, H, W = x.shape
                tops = list(range(0, max(1, H - self.window) + 1, self.stride))
                lefts = list(range(0, max(1, W - self.window) + 1, self.stride))
                n_win = len(tops) * len(lefts)
                p_idx = torch.arange(S).repeat_interleave(n_win)
                wins = [(t, left) for t in tops for left in lefts]
                rows = x[pairs.sample.to(x.device)].repeat_interleave(n_win, 0).clone()
                cover = torch.zeros(H, W)
                for j, (t, left) in enumerate(wins):
                    sl = (slice(t, t + self.window), slice(left, left + self.window))
                    rows[j::n_win, :, sl[0], sl[1]] = base[pairs.sample.to(x.device)][:, :, sl[0], sl[1]]
                    cover[sl] += 1
                vals = runner.run(
                    torch.cat([p_idx, torch.arange(S)]), torch.cat([rows, x[pairs.sample.to(x.device)]])
                )
                f_in = vals[len(p_idx) :]
                drop = (f_in.repeat_interleave(n_win) - vals[: len(p_idx)]).view(S, n_win)
                attr = torch.zeros(S, H, W, dtype=torch.float64)
                for j, (t, left) in enumerate(wins):
                    attr[:, t : t + self.window, left : left + self.window] += drop[:, j].view(S, 1, 1)
                attr = attr / cover.clamp_min(1)
                res = self._result(
                    prep, pairs, eng, attr, baseline=baseline_name("zero" if baseline is None else baseline)
                )
            return _with(res, f_input=f_in.numpy(), evaluations=np.full(S, runner.evaluations // max(S, 1)))


def _with(res: Any, **kw: Any) -> Any:
    import dataclasses

    return dataclasses.replace(res, **kw)


class _CaptumSurrogate(Attributor):
    """LIME / KernelSHAP on token (or image-patch) presence, through Captum (``pip install captum``)."""

    captum_cls: ClassVar[str] = ""

    def __init__(
        self, subject: Subject, *, n_samples: int = 200, patch: int = 16, perturbations_per_eval: int = 64
    ) -> None:
        super().__init__(subject, site=None)
        if n_samples < 2:
            raise ConfigError("n_samples must be at least 2")
        self.n_samples, self.patch, self.per_eval = n_samples, patch, perturbations_per_eval

    def attribute(
        self,
        inputs: Any,
        *,
        target: Any = None,
        baseline: Any = None,
        output: str = "logit",
        seed: int = 0,
    ) -> AttributionResult:
        """Fit the surrogate on ``n_samples`` presence masks per (example, target) pair."""
        try:
            import captum.attr as ca
        except ImportError as e:  # pragma: no cover - captum is a dev/extra dependency
            raise ConfigError(f"{self.method} uses Captum: pip install captum") from e
        with eval_mode(self.subject):
            prep, pairs, eng = self._setup(inputs, target, output, None)
            S = len(pairs.sample)
            runner = _Rows(self.subject, prep, pairs, 16384)
            feats: list[torch.Tensor] = []
            f_in, f_base = np.zeros(S), np.zeros(S)
            if prep.is_text:
                tid = _baseline_token(self.subject, "pad" if baseline is None else baseline)
                ids = prep.inputs["input_ids"]
                assert prep.attributed is not None and prep.special is not None
                ok = prep.attributed & ~prep.special & (prep.inputs["attention_mask"] > 0)
                attr = torch.zeros((S, ids.shape[1], 1), dtype=torch.float64)
            else:
                x = prep.inputs["x"]
                base_img: Any = resolve("zero" if baseline is None else baseline, self.subject, prep, None, x)
                assert isinstance(base_img, torch.Tensor)
                attr = torch.zeros((S, x.shape[2], x.shape[3]), dtype=torch.float64)
            for p in range(S):
                torch.manual_seed(seed + p)
                b = int(pairs.sample[p])
                if prep.is_text:
                    inp = ids[b : b + 1].cpu()
                    mask_cols = ok[b].cpu()
                    fmask = torch.zeros_like(inp)
                    fmask[0, mask_cols] = torch.arange(1, int(mask_cols.sum()) + 1)
                    base_ids = torch.where(mask_cols.unsqueeze(0), torch.full_like(inp, tid), inp)
                else:
                    inp = x[b : b + 1].cpu()
                    H, W = inp.shape[-2:]
                    gy = torch.arange(H) // self.patch
                    gx = torch.arange(W) // self.patch
                    fmask = (gy.view(-1, 1) * ((W + self.patch - 1) // self.patch) + gx.view(1, -1)).expand(
                        1, 3, H, W
                    )
                    base_ids = base_img[b : b + 1].cpu()

                def forward(z: torch.Tensor, p: int = p) -> torch.Tensor:
                    return runner.run(torch.full((z.shape[0],), p, dtype=torch.long), z).float()

                method = getattr(ca, self.captum_cls)(forward)
                a = method.attribute(
                    inp,
                    baselines=base_ids,
                    feature_mask=fmask,
                    n_samples=self.n_samples,
                    perturbations_per_eval=self.per_eval,
                    show_progress=False,
                )
                ends = runner.run(torch.tensor([p, p]), torch.cat([inp, base_ids]))
                f_in[p], f_base[p] = float(ends[0]), float(ends[1])
                if prep.is_text:
                    attr[p, :, 0] = torch.where(mask_cols, a[0].double(), torch.zeros(()).double())
                else:
                    attr[p] = a[0, 0].double()
                feats.append(fmask)
            eng._x = torch.zeros((*prep.inputs["input_ids"].shape, 1)) if prep.is_text else eng.x
            res = self._result(
                prep,
                pairs,
                eng,
                attr,
                baseline=baseline_name(("pad" if prep.is_text else "zero") if baseline is None else baseline),
            )
            total = np.array([np.nansum(r) for r in res.scores]) if prep.is_text else attr.sum((1, 2)).numpy()
            return _with(
                res,
                f_input=f_in,
                f_baseline=f_base,
                delta=total - (f_in - f_base),
                evaluations=np.full(S, self.n_samples + 2),
            )


class KernelShap(_CaptumSurrogate):
    """KernelSHAP (Lundberg & Lee 2017) over tokens / image patches, via Captum's ``KernelShap``."""

    method: ClassVar[str] = "kernel-shap"
    captum_cls: ClassVar[str] = "KernelShap"


class Lime(_CaptumSurrogate):
    """LIME (Ribeiro et al. 2016) over tokens / image patches, via Captum's ``Lime`` (its default kernel)."""

    method: ClassVar[str] = "lime"
    captum_cls: ClassVar[str] = "Lime"


from .result import AttributionResult  # noqa: E402  (type of the return annotations above)
