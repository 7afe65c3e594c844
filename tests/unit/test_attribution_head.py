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


@pytest.mark.parametrize("output", ["logit", "logprob", "prob"])
@pytest.mark.parametrize("jacobian", ["forward", "reverse"])
def test_continuation_scores_equal_the_full_head_path(llama, monkeypatch, output, jacobian):
    cont = Continuation(ids=tuple(llama.tokenizer(" the mat", add_special_tokens=False)["input_ids"]))

    def run():
        ig = IntegratedGradients(llama, n_steps=6, jacobian=jacobian)
        return ig.attribute("The cat sat on", target=cont, baseline=TokenBaseline(5), output=output)

    head = llama.model.lm_head
    split = run()
    assert llama.model.lm_head is head  # the head is back in the model
    _without_split(monkeypatch)
    full = run()
    scale = float(np.nanmax(np.abs(full.scores)))
    np.testing.assert_allclose(split.scores, full.scores, atol=1e-5 * scale)
    np.testing.assert_allclose(split.f_input, full.f_input, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(split.delta, full.delta, atol=1e-5 * scale)
    assert_no_hooks(llama)


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
