"""Next-token objectives read from the final hidden states (``attribution._head``): the same numbers as the
full logits, in every derivative mode, and the full path wherever the split would not be exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import jvp, vmap

import layerscope.attribution._engine as engine_mod
from layerscope.attribution import Continuation, IntegratedGradients, Saliency, TokenBaseline
from layerscope.attribution._head import head_of, token_logprob
from layerscope.testing import assert_no_hooks, tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")


def _reference(h: torch.Tensor, w: torch.Tensor, tok: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(h @ w.T, -1)[torch.arange(len(tok)), tok]


def test_token_logprob_value_gradient_and_tangents_equal_log_softmax():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(300, 16, generator=g)
    h = torch.randn(6, 16, generator=g, requires_grad=True)
    tok = torch.randint(0, 300, (6,), generator=g)
    torch.testing.assert_close(token_logprob(h, w, tok), _reference(h, w, tok))
    (a,) = torch.autograd.grad(token_logprob(h, w, tok).sum(), h)
    (b,) = torch.autograd.grad(_reference(h, w, tok).sum(), h)
    torch.testing.assert_close(a, b)
    eye = torch.eye(6)  # one cotangent per row, batched (the vmapped backward of shared rows)
    (a,) = torch.autograd.grad(token_logprob(h, w, tok), h, grad_outputs=eye, is_grads_batched=True)
    (b,) = torch.autograd.grad(_reference(h, w, tok), h, grad_outputs=eye, is_grads_batched=True)
    torch.testing.assert_close(a, b)
    tangents = torch.randn(4, 6, 16, generator=g)  # forward mode under vmap (continuations)
    with torch.no_grad():
        a = vmap(lambda t: jvp(lambda x: token_logprob(x, w, tok), (h.detach(),), (t,))[1])(tangents)
        b = vmap(lambda t: jvp(lambda x: _reference(x, w, tok), (h.detach(),), (t,))[1])(tangents)
    torch.testing.assert_close(a, b)
    assert w.grad is None


@pytest.fixture(scope="module")
def llama():
    return tiny_llama(seed=2)


def _without_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_mod, "head_of", lambda model: None)


@pytest.mark.parametrize("jacobian", ["forward", "reverse"])
def test_continuation_scores_equal_the_full_head_path(llama, monkeypatch, jacobian):
    cont = Continuation(ids=tuple(llama.tokenizer(" the mat", add_special_tokens=False)["input_ids"]))
    texts = [
        "The cat sat on",
        "A dog",
    ]  # two examples of different lengths: the shared rows scatter per example

    def run():
        ig = IntegratedGradients(llama, n_steps=6, jacobian=jacobian)
        return ig.attribute(texts, target=cont, baseline=TokenBaseline(5))

    head = llama.model.lm_head
    split = run()
    assert llama.model.lm_head is head  # the head is back in the model
    _without_split(monkeypatch)
    full = run()
    scale = float(np.nanmax(np.abs(full.scores)))
    np.testing.assert_allclose(split.scores, full.scores, atol=1e-5 * scale)
    np.testing.assert_allclose(split.f_input, full.f_input, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(split.f_baseline, full.f_baseline, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(split.delta, full.delta, atol=1e-5 * scale)
    assert_no_hooks(llama)


@pytest.mark.parametrize("output", ["logit", "logprob", "prob"])
def test_next_token_ig_equals_the_full_head_path_for_every_output(llama, monkeypatch, output):
    texts = ["The cat sat", "A dog ran to the"]

    def run():
        return IntegratedGradients(llama, n_steps=4).attribute(
            texts, target=[7, 9], output=output, baseline="zero"
        )

    split = run()
    _without_split(monkeypatch)
    full = run()
    scale = float(np.nanmax(np.abs(full.scores)))
    np.testing.assert_allclose(split.scores, full.scores, atol=1e-5 * scale)
    np.testing.assert_allclose(split.f_input, full.f_input, rtol=1e-5, atol=1e-7)


def test_next_token_gradients_equal_the_full_head_path(llama, monkeypatch):
    texts = ["The cat sat", "A dog ran to the"]
    split = Saliency(llama).attribute(texts, target=[7, 9], output="logprob", keep_raw=True)
    _without_split(monkeypatch)
    full = Saliency(llama).attribute(texts, target=[7, 9], output="logprob", keep_raw=True)
    np.testing.assert_allclose(split.raw, full.raw, atol=1e-5 * float(np.abs(full.raw).max()))


def test_the_split_is_used_only_where_it_is_exact(llama):
    prompt = "The cat sat on"
    cont = Continuation(ids=(7, 9))
    ig = IntegratedGradients(llama, n_steps=2)
    _, _, eng = ig._setup(prompt, cont, "logprob", None)
    assert eng.head_split() is not None and eng.head_split()[0] == "lm_head"
    assert head_of(llama.model) == ("lm_head", llama.model.lm_head)

    # a model that soft-caps its logits after the head (as Gemma 2 does): h Wᵀ is not its logits
    def softcap(module, args, out):
        out.logits = 3.0 * torch.tanh(out.logits / 3.0)
        return out

    h = llama.model.register_forward_hook(softcap)
    try:
        _, _, eng = ig._setup(prompt, cont, "logprob", None)
        assert eng.head_split() is None
        capped = ig.attribute(prompt, target=cont, baseline=TokenBaseline(5), output="logprob")
        assert np.all(np.isfinite(capped.scores[:, :4]))
        np.testing.assert_allclose(
            np.nansum(capped.scores, 1),
            capped.f_input - capped.f_baseline,
            atol=0.05 * np.abs(capped.f_input).max(),
        )
    finally:
        h.remove()
    # a callable objective reads the real logits: never split
    _, _, eng = ig._setup(prompt, lambda out: out.logits[:, -1, 3], "logit", None)
    assert eng.head_split() is None


def test_token_logprob_chunks_rows_and_supports_batched_primals(monkeypatch):
    import layerscope.attribution._head as head_mod

    monkeypatch.setattr(head_mod, "_HEAD_ROWS", 2)  # 5 rows in chunks of 2
    g = torch.Generator().manual_seed(1)
    w = torch.randn(40, 8, generator=g)
    h = torch.randn(3, 5, 8, generator=g)
    tok = torch.randint(0, 40, (5,), generator=g)
    torch.testing.assert_close(token_logprob(h[0], w, tok), _reference(h[0], w, tok))
    batched = vmap(lambda x: token_logprob(x, w, tok))(h)  # a vmapped primal (e.g. per-example gradients)
    torch.testing.assert_close(batched, torch.stack([_reference(x, w, tok) for x in h]))


def test_lrp_keeps_the_head_so_its_rule_runs(llama, monkeypatch):
    from layerscope.attribution import LRP

    texts = ["The cat sat", "A dog ran to the big red house and"]
    kept = LRP(llama, linear_rule="zplus").attribute(texts, target=[7, 9])
    _without_split(monkeypatch)
    ref = LRP(llama, linear_rule="zplus").attribute(texts, target=[7, 9])
    np.testing.assert_allclose(kept.scores, ref.scores, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(kept.delta, ref.delta, rtol=1e-6, atol=1e-9)


def test_nan_at_pad_positions_does_not_break_the_check(llama, monkeypatch):
    state: dict[str, torch.Tensor | None] = {}

    def remember_mask(module, args, kwargs):
        state["mask"] = kwargs.get("attention_mask")

    def nan_pads(module, args, out):  # what some attention kernels give at fully masked rows
        mask = state.get("mask")
        if mask is None or out.shape[1] != mask.shape[1]:
            return out
        out = out.clone()
        out[mask == 0] = float("nan")
        return out

    hooks = [
        llama.model.register_forward_pre_hook(remember_mask, with_kwargs=True),
        llama.model.model.norm.register_forward_hook(nan_pads),
    ]
    try:
        texts = ["Hi", "A dog ran to the big red house and"]
        split = Saliency(llama).attribute(texts, target=[7, 9], output="logprob")
        _without_split(monkeypatch)
        full = Saliency(llama).attribute(texts, target=[7, 9], output="logprob")
    finally:
        for h in hooks:
            h.remove()
    np.testing.assert_allclose(split.f_input, full.f_input, rtol=1e-5)
    np.testing.assert_allclose(split.scores, full.scores, atol=1e-5 * float(np.nanmax(np.abs(full.scores))))


def test_sites_that_contain_the_head_keep_it(llama):
    ig = IntegratedGradients(llama, n_steps=2, site="module:")  # the root module holds the head
    _, _, eng = ig._setup(["The cat sat"], [7], "logprob", None)
    assert eng.head_split() is None
    ig = IntegratedGradients(llama, n_steps=2, site="module:lm_head")
    _, _, eng = ig._setup(["The cat sat"], [7], "logprob", None)
    assert eng.head_split() is None


def test_real_errors_are_raised_not_swallowed_by_the_fallbacks(llama):
    from layerscope.attribution.gradient import _transform_unsupported

    assert _transform_unsupported(NotImplementedError("no jvp"))
    assert _transform_unsupported(RuntimeError("Batching rule not implemented for aten::foo"))
    assert not _transform_unsupported(RuntimeError("boom"))
    assert not _transform_unsupported(RuntimeError("CUDA out of memory (vmap)"))

    def boom(module, args, out):  # fails only in the shared-row passes (3 rows = 3 steps of one example)
        hidden = out[0] if isinstance(out, tuple) else out
        if hidden.shape[0] == 3:
            raise RuntimeError("boom")

    h = llama.model.model.layers[0].register_forward_hook(boom)
    try:
        for jacobian in ("auto", "reverse"):
            with pytest.raises(RuntimeError, match="boom"):
                IntegratedGradients(llama, n_steps=3, jacobian=jacobian).attribute(
                    "The cat", target=Continuation(ids=(7, 9)), baseline=TokenBaseline(5)
                )
    finally:
        h.remove()
    assert_no_hooks(llama)
    assert isinstance(llama.model.lm_head, torch.nn.Linear)
