"""LRP on tiny models: hand-written LRP, Captum's LRP, conservation, rules, hook hygiene and bad input."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from layerscope.attribution import AttributionWarning, Continuation, InputXGradient
from layerscope.attribution._lrp_rules import RuleSet, discover, rules_applied
from layerscope.attribution.lrp import LRP, conservation
from layerscope.errors import ConfigError
from layerscope.models.adapter import Adapter
from layerscope.models.subject import ImageSpec, Subject
from layerscope.testing import assert_no_hooks, tiny_bert, tiny_gpt2, tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")
captum_attr = pytest.importorskip("captum.attr")


def _subject(model: nn.Module, size: int) -> Subject:
    model.eval()
    return Subject(model=model, adapter=Adapter.for_model(model), name="tiny", image=ImageSpec(size=size))


def _mlp(bias: bool, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 20, bias=bias),
        nn.ReLU(),
        nn.Linear(20, 12, bias=bias),
        nn.ReLU(),
        nn.Linear(12, 5, bias=bias),
    ).eval()


class SmallCNN(nn.Module):
    """Conv-(BN)-ReLU-MaxPool-Conv-ReLU-AvgPool-Linear with a functional flatten (Captum-compatible)."""

    def __init__(self, *, bias: bool = True, bn: bool = False, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.c1 = nn.Conv2d(3, 8, 3, padding=1, bias=bias)
        self.bn = nn.BatchNorm2d(8) if bn else None
        self.r1 = nn.ReLU()
        self.p1 = nn.MaxPool2d(2)
        self.c2 = nn.Conv2d(8, 16, 3, padding=1, bias=bias)
        self.r2 = nn.ReLU()
        self.p2 = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10, bias=bias)
        if self.bn is not None:
            with torch.no_grad():
                self.bn.running_mean.uniform_(-0.5, 0.5)
                self.bn.running_var.uniform_(0.5, 2.0)
                self.bn.weight.uniform_(-1.5, 1.5)  # negative scales too: folding must flip signs
                self.bn.bias.uniform_(-0.2, 0.2)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c1(x)
        if self.bn is not None:
            h = self.bn(h)
        h = self.p2(self.r2(self.c2(self.p1(self.r1(h)))))
        return self.fc(h.flatten(1))


def _hand_lrp(mlp: nn.Sequential, x: torch.Tensor, target: list[int], eps: float = 1e-9) -> torch.Tensor:
    """The textbook ε-LRP backward loop: R_i = a_i Σ_j w_ji R_j / (z_j + ε sign z_j)."""
    lins = [mlp[1], mlp[3], mlp[5]]
    acts = [x.flatten(1)]
    h = acts[0]
    for k, lin in enumerate(lins):
        h = lin(h)
        h = h.relu() if k < 2 else h
        acts.append(h)
    rows = torch.arange(len(target))
    R = torch.zeros_like(acts[-1])
    R[rows, target] = acts[-1][rows, target]
    for k in reversed(range(3)):
        a = acts[k]
        z = lins[k](a)
        s = R / (z + eps * torch.where(z >= 0, 1.0, -1.0))
        R = a * (s @ lins[k].weight)
    return R.reshape(x.shape)


# -- equality with definitions and references ---------------------------------------------------------
@pytest.mark.parametrize("bias", [False, True])
def test_epsilon_equals_hand_written_lrp_on_relu_mlp(bias):
    mlp = _mlp(bias)
    x = torch.randn(6, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    target = [0, 1, 2, 3, 4, 0]
    r = LRP(_subject(mlp, 4), rule="epsilon").attribute(x, target=target, keep_raw=True)
    with torch.no_grad():
        ref = _hand_lrp(mlp, x, target).numpy()
    np.testing.assert_allclose(r.raw, ref, atol=1e-5 * np.abs(ref).max(), rtol=0)
    if not bias:  # no bias, ε → 0: relevance sums to the logit
        np.testing.assert_allclose(conservation(r), 1.0, atol=1e-5)
    else:  # biases absorb relevance: the delta is real and reported
        assert np.abs(r.delta).max() > 1e-3


def test_lrp0_equals_gradient_times_input_on_a_linear_model():
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(48, 7)).eval()
    s = _subject(lin, 4)
    x = torch.randn(5, 3, 4, 4)
    r = LRP(s, rule="epsilon", epsilon=1e-12).attribute(x, target=[0, 1, 2, 3, 4], keep_raw=True)
    ixg = InputXGradient(s, site="input").attribute(x, target=[0, 1, 2, 3, 4], keep_raw=True)
    np.testing.assert_allclose(r.raw, ixg.raw, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("bias", "bn", "rule"),
    [(True, False, "epsilon"), (True, True, "epsilon"), (False, False, "gamma")],
)
def test_equals_captum_lrp_on_small_cnn(bias, bn, rule):
    """Captum's rules coincide with ours for ε (BatchNorm as its own ε layer = folded, as ε → 0) and for γ on
    non-negative inputs without biases (Captum's GammaRule leaves biases unboosted; ours boosts b⁺)."""
    from captum.attr._utils.lrp_rules import GammaRule

    model = SmallCNN(bias=bias, bn=bn)
    x = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(2))  # ≥ 0: γ rules coincide
    target = [0, 1, 2, 3, 4, 5]
    r = LRP(_subject(model, 16), rule=rule).attribute(x, target=target, keep_raw=True)
    theirs = copy.deepcopy(model)
    if rule == "gamma":
        theirs.c1.rule = GammaRule()
        theirs.c2.rule = GammaRule()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = captum_attr.LRP(theirs).attribute(x.clone(), target=target).detach().numpy()
    np.testing.assert_allclose(r.raw, a, atol=1e-5 * np.abs(a).max(), rtol=0)


def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    out = copy.deepcopy(conv)
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        out.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        b = conv.bias if conv.bias is not None else torch.zeros_like(bn.bias)
        out.bias = nn.Parameter(b * scale + bn.bias - bn.running_mean * scale)
    return out


def test_batchnorm_is_folded_into_the_conv_before_its_rule():
    model = SmallCNN(bias=True, bn=True)
    folded = copy.deepcopy(model)
    folded.c1 = _folded(model.c1, model.bn)
    folded.bn = None
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    for rule in ("gamma", "zplus"):
        a = LRP(_subject(model, 16), rule=rule).attribute(x, target=[1, 2, 3, 4], keep_raw=True)
        b = LRP(_subject(folded, 16), rule=rule).attribute(x, target=[1, 2, 3, 4], keep_raw=True)
        np.testing.assert_allclose(a.raw, b.raw, atol=1e-5 * np.abs(b.raw).max(), rtol=0)


@pytest.mark.parametrize("rule", ["epsilon", "gamma", "zplus"])
def test_conservation_is_exact_without_biases(rule):
    model = SmallCNN(bias=False)
    x = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(4))  # mixed-sign pixels
    r = LRP(_subject(model, 16), rule=rule, linear_rule=rule).attribute(x, target=[0, 1, 2, 3, 4])
    np.testing.assert_allclose(conservation(r), 1.0, atol=1e-4)
    assert r.scores.shape == (5, 16, 16)  # per-pixel (channels summed)


def test_gamma_and_zplus_change_the_heatmap_and_first_layer_rule_applies():
    model = SmallCNN(bias=False)
    s = _subject(model, 16)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    eps = LRP(s, rule="epsilon").attribute(x, target=[0, 1], keep_raw=True).raw
    gam = LRP(s, rule="gamma").attribute(x, target=[0, 1], keep_raw=True).raw
    first = LRP(s, rule="gamma", first_layer="zplus").attribute(x, target=[0, 1], keep_raw=True)
    assert np.abs(gam - eps).max() > 1e-3 * np.abs(eps).max()
    assert np.abs(first.raw - gam).max() > 1e-3 * np.abs(gam).max()
    np.testing.assert_allclose(conservation(first), 1.0, atol=1e-4)


def test_gamma_on_linear_layers_equals_captum_on_a_bias_free_mlp():
    from captum.attr._utils.lrp_rules import GammaRule

    mlp = _mlp(False)
    x = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(6))
    r = LRP(_subject(mlp, 4), linear_rule="gamma").attribute(x, target=[0, 1, 2, 3], keep_raw=True)

    class Functional(nn.Module):  # Captum has no rule for nn.Flatten
        def __init__(self) -> None:
            super().__init__()
            self.l1, self.r1, self.l2, self.r2, self.l3 = (copy.deepcopy(mlp[k]) for k in range(1, 6))
            for lin in (self.l1, self.l2, self.l3):
                lin.rule = GammaRule()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.l3(self.r2(self.l2(self.r1(self.l1(x.flatten(1))))))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = captum_attr.LRP(Functional().eval()).attribute(x.clone(), target=[0, 1, 2, 3]).detach().numpy()
    # the output layer differs: ours boosts the negative contributions of negative logits; compare positives
    pos = r.f_input > 0
    assert pos.any()
    np.testing.assert_allclose(r.raw[pos], a[pos], atol=1e-5 * np.abs(a).max(), rtol=0)


# -- transformer rules ---------------------------------------------------------------------------------
class GatedMLP(nn.Module):
    """Bias-free SwiGLU block on top of an RMSNorm and a LayerNorm (no bias): every rule conserves."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.norm = nn.LayerNorm(12, bias=False)
        self.gate = nn.Linear(12, 24, bias=False)
        self.up = nn.Linear(12, 24, bias=False)
        self.act = nn.SiLU()
        self.down = nn.Linear(24, 12, bias=False)
        self.rms = nn.RMSNorm(12)
        self.head = nn.Linear(12, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        h = h + self.down(self.act(self.gate(h)) * self.up(h))
        return self.head(torch.nn.functional.gelu(self.rms(h)))


def test_gated_mlp_with_norms_conserves_and_uses_the_uniform_rule():
    model = GatedMLP().eval()
    s = _subject(model, 1)
    x = torch.randn(6, 12, generator=torch.Generator().manual_seed(7))
    r = LRP(s).attribute(x, target=[0, 1, 2, 0, 1, 2], keep_raw=True)
    np.testing.assert_allclose(conservation(r), 1.0, atol=1e-4)
    # without the uniform rule the product would count its relevance twice: check that it does differ
    ixg = InputXGradient(s, site="input").attribute(x, target=[0, 1, 2, 0, 1, 2])
    assert np.abs(conservation(r) - (ixg.scores.sum(1) / r.f_input)).max() > 1e-2


def test_layernorm_rule_is_the_linear_centring_with_constant_std():
    torch.manual_seed(1)
    ln = nn.LayerNorm(6, bias=False)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
    model = nn.Sequential(ln, nn.Linear(6, 2, bias=False)).eval()
    x = torch.randn(3, 6, generator=torch.Generator().manual_seed(8))
    r = LRP(_subject(model, 1)).attribute(x, target=[0, 1, 0], keep_raw=True)
    # by hand: R_in = x ⊙ Cᵀ(w ⊙ ĝ / σ) with C = I − 11ᵀ/n the centring matrix and ĝ = W[target]
    lin = model[1].weight.detach()
    g = lin[[0, 1, 0]] * ln.weight.detach() / torch.sqrt(x.var(1, unbiased=False, keepdim=True) + ln.eps)
    ref = x * (g - g.mean(1, keepdim=True))
    np.testing.assert_allclose(r.raw, ref.numpy(), atol=1e-5)
    np.testing.assert_allclose(conservation(r), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def llama():
    return tiny_llama()


def test_cp_lrp_conserves_exactly_on_a_bias_free_llama_and_sdpa_equals_eager(llama):
    s = llama
    texts = ["the cat sat on the mat", "hello world"]
    cp = LRP(s, attention="cp").attribute(texts, target=[5, 7], keep_raw=True)
    np.testing.assert_allclose(conservation(cp), 1.0, atol=1e-4)  # Llama has no biases
    full = LRP(s).attribute(texts, target=[5, 7], keep_raw=True)
    assert np.all(np.isfinite(full.scores[np.isfinite(full.scores)]))
    assert np.abs(full.raw - cp.raw).max() > 1e-4  # the softmax rule sends relevance through Q and K
    impl = s.model.config._attn_implementation
    s.model.set_attn_implementation("eager" if impl != "eager" else "sdpa")
    try:
        other = LRP(s).attribute(texts, target=[5, 7], keep_raw=True)
    finally:
        s.model.set_attn_implementation(impl)
    np.testing.assert_allclose(other.raw, full.raw, atol=1e-5 * np.abs(full.raw).max())


def test_gpt2_conv1d_layers_get_the_linear_rule_and_conserve_without_biases():
    s = tiny_gpt2()
    with torch.no_grad():
        for m in s.model.modules():
            if isinstance(getattr(m, "bias", None), nn.Parameter):
                m.bias.zero_()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every module has a rule: no fallback warning
        r = LRP(s, site="blocks.0.resid_pre", attention="cp").attribute(
            ["the cat sat", "hello world"], target=[5, 7]
        )
    # after the position embeddings and with no biases, constant attention weights conserve exactly
    np.testing.assert_allclose(conservation(r), 1.0, atol=1e-4)


def test_text_result_has_tokens_words_and_conservation_delta():
    s = tiny_bert(classifier=True)
    r = LRP(s).attribute(["the cat sat on the mat.", "hello world"], target=[1, 2])
    assert r.method == "lrp" and r.tokens[0][0] == "[CLS]"
    assert [w for w, _ in r.word_scores_of(1)] == ["hello", "world"]
    with torch.no_grad():
        enc = s.tokenize(["the cat sat on the mat.", "hello world"])
        logits = s.model(**enc).logits
    np.testing.assert_allclose(r.f_input, logits[[0, 1], [1, 2]].numpy(), atol=1e-5)
    total = np.nansum(r.scores, 1)
    np.testing.assert_allclose(r.delta, total - r.f_input, atol=1e-5)  # every position is attributed


# -- hook hygiene ----------------------------------------------------------------------------------------
def _hook_state(model: nn.Module) -> list[tuple[int, int, int, bool]]:
    return [
        (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks), "forward" in vars(m))
        for m in model.modules()
    ]


def test_rules_leave_no_trace_even_after_an_error():
    s = tiny_bert(classifier=True)
    before = _hook_state(s.model)
    enc = s.tokenize(["the cat sat on the mat."])
    with torch.no_grad():
        out0 = s.model(**enc).logits
    LRP(s).attribute(["the cat sat on the mat."], target=1)

    def boom(out: object) -> torch.Tensor:
        raise RuntimeError("objective failed")

    with pytest.raises(RuntimeError, match="objective failed"):
        LRP(s).attribute(["the cat sat on the mat."], target=boom)
    assert _hook_state(s.model) == before
    assert_no_hooks(s)
    assert not torch._C._is_torch_function_mode_enabled()
    with torch.no_grad():
        assert torch.equal(s.model(**enc).logits, out0)


def test_rules_do_not_change_the_forward_value():
    model = SmallCNN(bias=True, bn=True)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        ref = model(x)
    for p in model.parameters():
        p.requires_grad_(False)
    v = x.clone().requires_grad_(True)
    plan = discover(model, lambda: model(v))
    for rule in ("epsilon", "gamma", "zplus"):
        with rules_applied(model, RuleSet(conv=rule, linear=rule), plan):
            out = model(v)
        assert torch.equal(out.detach(), ref)


def test_train_mode_is_warned_and_restored():
    model = _mlp(False).train()
    s = Subject(model=model, adapter=Adapter.for_model(model), name="tiny", image=ImageSpec(size=4))
    with pytest.warns(AttributionWarning, match="train mode"):
        LRP(s).attribute(torch.randn(1, 3, 4, 4), target=0)
    assert model.training


# -- bad input ---------------------------------------------------------------------------------------------
def test_bad_rules_and_arguments_are_named(llama):
    s = _subject(_mlp(False), 4)
    with pytest.raises(ConfigError, match=r"unknown LRP rule 'alpha2beta1'.*epsilon, gamma, zplus"):
        LRP(s, rule="alpha2beta1")
    with pytest.raises(ConfigError, match="unknown linear_rule"):
        LRP(s, linear_rule="flat")
    with pytest.raises(ConfigError, match="unknown attention rule 'rollout'"):
        LRP(s, attention="rollout")
    with pytest.raises(ConfigError, match="epsilon must be a positive"):
        LRP(s, epsilon=0)
    with pytest.raises(ConfigError, match="gamma must be"):
        LRP(s, gamma=-1)
    with pytest.raises(ConfigError, match="first_layer"):
        LRP(tiny_bert(classifier=True), first_layer="zplus")
    with pytest.raises(ConfigError, match="out of range"):
        LRP(s).attribute(torch.randn(1, 3, 4, 4), target=5)
    with pytest.raises(ConfigError, match="continuation"):
        LRP(llama).attribute("the cat", target=Continuation(text=" sat"))


def test_unsupported_layer_raises_and_unknown_parameter_free_module_warns():
    class WithLSTM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(4, 4, batch_first=True)
            self.head = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.lstm(x)[0][:, -1])

    s = _subject(WithLSTM(), 1)
    with pytest.raises(ConfigError, match=r"lstm \(torch\.nn\.modules\.rnn\.LSTM\)"):
        LRP(s).attribute(torch.randn(2, 3, 4), target=0)
    assert_no_hooks(s)

    class Square(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * x

    model = nn.Sequential(nn.Linear(4, 4, bias=False), Square(), nn.Linear(4, 2, bias=False)).eval()
    with pytest.warns(AttributionWarning, match=r"no module rule for .*Square"):
        r = LRP(_subject(model, 1)).attribute(torch.randn(3, 4), target=0)
    np.testing.assert_allclose(conservation(r), 1.0, atol=1e-4)  # x·x: uniform rule, ½ + ½


def test_conservation_reads_lrp_results_only():
    s = _subject(_mlp(False), 4)
    r = InputXGradient(s, site="input").attribute(torch.randn(1, 3, 4, 4), target=0)
    with pytest.raises(ConfigError, match="LRP results"):
        conservation(r)
