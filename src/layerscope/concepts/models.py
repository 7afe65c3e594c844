"""Concept bottleneck (CBM) and concept embedding (CEM) models, stacked over seeds.

Every model here holds ``S`` independent copies of its weights (one per seed) as ``[S, fan_in, fan_out]``
tensors and runs them with batched matrix products, so training 5 seeds costs about as much as one.
Copies never interact: each is initialised from its own seed, sees its own shuffles and RandInt masks, and
Adam is element-wise, so seed ``s`` gives the same model whichever other seeds are trained beside it.

Shapes: ``x [S, batch, n_features]``, concept logits ``[S, batch, k]``, task logits ``[S, batch, n_classes]``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ConfigError

__all__ = ["PRESETS", "ConceptModelConfig", "StackedConceptModel", "model_config"]

BOTTLENECKS = ("sigmoid", "logit", "boolean")
TRAININGS = ("joint", "sequential", "independent")


@dataclasses.dataclass(frozen=True)
class ConceptModelConfig:
    """Architecture and loss of one model variant (defaults: the CEM paper's synthetic experiments).

    Attributes:
        kind: ``"cbm"`` or ``"cem"``.
        training: CBM training — ``joint`` (L_task + λ·L_concept), ``sequential`` (x→c, then c→y on the
            predicted concepts) or ``independent`` (x→c; c→y on the true concepts).
        bottleneck: CBM bottleneck — ``sigmoid`` (probabilities), ``logit`` (raw logits) or ``boolean``
            (probabilities thresholded at 0.5; no task gradient reaches the concept extractor).
        extra_dims: unsupervised bottleneck dimensions (hybrid CBM, LeakyReLU); ``-1`` means
            ``(emb_size − 1)·k``, the paper's size-matched hybrid.
        concept_loss_weight: λ; 0 turns a hybrid CBM into the paper's no-concept DNN baseline.
        emb_size: CEM embedding size m (per concept, per state).
        hidden: hidden widths of the MLP feature extractor (LeakyReLU).
        latent_dim: width of the CEM latent code the context generators read.
        head_hidden: hidden widths of the task head (``()`` = a linear head, as in the paper).
        randint_p: CEM RandInt probability of replacing a concept by its true value during training.
    """

    kind: str = "cbm"
    training: str = "joint"
    bottleneck: str = "sigmoid"
    extra_dims: int = 0
    concept_loss_weight: float = 1.0
    emb_size: int = 128
    hidden: tuple[int, ...] = (128, 128)
    latent_dim: int = 128
    head_hidden: tuple[int, ...] = ()
    randint_p: float = 0.25

    def __post_init__(self) -> None:
        if self.kind not in ("cbm", "cem"):
            raise ConfigError(f"kind must be 'cbm' or 'cem', got {self.kind!r}")
        if self.training not in TRAININGS:
            raise ConfigError(f"training must be one of {TRAININGS}, got {self.training!r}")
        if self.bottleneck not in BOTTLENECKS:
            raise ConfigError(f"bottleneck must be one of {BOTTLENECKS}, got {self.bottleneck!r}")
        if self.kind == "cem" and self.training != "joint":
            raise ConfigError("CEMs are trained jointly; use training='joint'")
        if self.training != "joint" and self.extra_dims != 0:
            raise ConfigError("sequential/independent CBMs cannot have extra (unsupervised) dimensions")
        if self.training == "independent" and self.bottleneck == "logit":
            raise ConfigError(
                "an independent CBM's head learns from 0/1 concepts; use a sigmoid or boolean bottleneck"
            )
        if self.extra_dims < -1:
            raise ConfigError(f"extra_dims must be >= 0 (or -1 for auto), got {self.extra_dims}")
        if self.concept_loss_weight < 0:
            raise ConfigError(f"concept_loss_weight must be >= 0, got {self.concept_loss_weight}")
        if not 0 <= self.randint_p <= 1:
            raise ConfigError(f"randint_p must lie in [0, 1], got {self.randint_p}")
        for name in ("emb_size", "latent_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if any(h < 1 for h in (*self.hidden, *self.head_hidden)):
            raise ConfigError("hidden layer widths must be >= 1")

    @property
    def has_concepts(self) -> bool:
        """Whether the bottleneck is supervised by concepts (False for the DNN baseline)."""
        return self.concept_loss_weight > 0 or self.training != "joint"

    def n_extra(self, n_concepts: int) -> int:
        return (self.emb_size - 1) * n_concepts if self.extra_dims == -1 else self.extra_dims


#: Named variants (CLI ``--model``). Names follow the paper: Fuzzy = sigmoid, Bool = boolean.
PRESETS: dict[str, ConceptModelConfig] = {
    "cem": ConceptModelConfig(kind="cem"),
    "cem-no-randint": ConceptModelConfig(kind="cem", randint_p=0.0),
    "cbm-joint": ConceptModelConfig(),
    "cbm-joint-bool": ConceptModelConfig(bottleneck="boolean"),
    "cbm-joint-logit": ConceptModelConfig(bottleneck="logit"),
    "cbm-hybrid": ConceptModelConfig(extra_dims=-1),
    "cbm-hybrid-logit": ConceptModelConfig(extra_dims=-1, bottleneck="logit"),
    "cbm-sequential": ConceptModelConfig(training="sequential"),
    "cbm-independent": ConceptModelConfig(training="independent"),
    "dnn": ConceptModelConfig(extra_dims=-1, concept_loss_weight=0.0),
}
#: The variants the benchmark suite runs by default.
SUITE = (
    "cem",
    "cbm-joint",
    "cbm-joint-bool",
    "cbm-joint-logit",
    "cbm-hybrid",
    "cbm-sequential",
    "cbm-independent",
    "dnn",
)


def model_config(model: str | ConceptModelConfig) -> ConceptModelConfig:
    """A preset name or a config, validated."""
    if isinstance(model, ConceptModelConfig):
        return model
    if model not in PRESETS:
        raise ConfigError(f"unknown model {model!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[model]


def _linear(gens: Sequence[torch.Generator], fan_in: int, fan_out: int) -> tuple[nn.Parameter, nn.Parameter]:
    """Stacked Linear weights ``[S, fan_in, fan_out]`` and biases ``[S, 1, fan_out]`` with torch's default
    init (U(±1/√fan_in)), each copy drawn from its own generator."""
    bound = 1.0 / math.sqrt(fan_in)
    ws, bs = [], []
    for g in gens:
        ws.append((torch.rand(fan_in, fan_out, generator=g) * 2 - 1) * bound)
        bs.append((torch.rand(1, fan_out, generator=g) * 2 - 1) * bound)
    return nn.Parameter(torch.stack(ws)), nn.Parameter(torch.stack(bs))


class _StackedMLP(nn.Module):
    def __init__(self, gens: Sequence[torch.Generator], widths: Sequence[int]) -> None:
        super().__init__()
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in itertools.pairwise(widths):
            w, bias = _linear(gens, a, b)
            self.weights.append(w)
            self.biases.append(bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # h [S, batch, in]
        n = len(self.weights)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if i < n - 1:
                h = nn.functional.leaky_relu(h)
        return h


class StackedConceptModel(nn.Module):
    """``S`` copies (one per seed) of a CBM, hybrid CBM, DNN or CEM.

    Args:
        config: the variant.
        n_features, n_concepts, n_classes: data sizes.
        seeds: one seed per copy; copy ``s`` is initialised from ``torch.Generator().manual_seed(seeds[s])``.
    """

    on_value: torch.Tensor
    off_value: torch.Tensor

    def __init__(
        self,
        config: ConceptModelConfig,
        *,
        n_features: int,
        n_concepts: int,
        n_classes: int,
        seeds: Sequence[int],
    ) -> None:
        super().__init__()
        if not seeds:
            raise ConfigError("give at least one seed")
        self.config = config
        self.n_concepts = k = n_concepts
        self.n_classes = n_classes
        self.seeds = tuple(int(s) for s in seeds)
        gens = [torch.Generator().manual_seed(s) for s in self.seeds]
        S = len(gens)
        if config.kind == "cem":
            m = config.emb_size
            self.extractor = _StackedMLP(gens, [n_features, *config.hidden, config.latent_dim])
            # k context generators Linear(latent → 2m) fused into one matrix (same input for all concepts)
            self.ctx_w, self.ctx_b = _linear(gens, config.latent_dim, k * 2 * m)
            self.score_w, self.score_b = _linear(gens, 2 * m, 1)  # shared scorer
            head_in = k * m
        else:
            self.n_extra_dims = config.n_extra(k)
            self.extractor = _StackedMLP(gens, [n_features, *config.hidden, k + self.n_extra_dims])
            head_in = k + self.n_extra_dims
        self.head = _StackedMLP(gens, [head_in, *config.head_hidden, n_classes])
        # values a CBM bottleneck takes when a concept is set to 1 / 0 by an intervention
        self.register_buffer("on_value", torch.ones(S, 1, k))
        self.register_buffer("off_value", torch.zeros(S, 1, k))

    @property
    def n_models(self) -> int:
        return len(self.seeds)

    # -- pieces ------------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Concept logits ``[S, batch, k]`` and the side information: CBM extra dims ``[S, batch, e]``
        (after LeakyReLU) or CEM contexts ``[S, batch, k, 2m]``."""
        h = self.extractor(x)
        k = self.n_concepts
        if self.config.kind == "cem":
            S, B = h.shape[:2]
            ctx = nn.functional.leaky_relu(torch.baddbmm(self.ctx_b, h, self.ctx_w)).view(S, B, k, -1)
            logits = torch.baddbmm(self.score_b, ctx.view(S, B * k, -1), self.score_w).view(S, B, k)
            return logits, ctx
        return h[..., :k], nn.functional.leaky_relu(h[..., k:])

    def bottleneck(
        self,
        logits: torch.Tensor,
        side: torch.Tensor,
        *,
        c_true: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The head's input, with concepts where ``mask`` is True replaced by ``c_true`` (interventions)."""
        cfg = self.config
        if cfg.kind == "cem":
            p = torch.sigmoid(logits)
            if mask is not None and c_true is not None:
                p = torch.where(mask, c_true, p)
            pos, neg = side.chunk(2, dim=-1)  # [S, B, k, m] each
            emb = pos * p.unsqueeze(-1) + neg * (1 - p.unsqueeze(-1))
            return emb.flatten(2)
        if cfg.bottleneck == "logit":
            b = logits
        elif cfg.bottleneck == "boolean":
            b = (logits > 0).to(logits.dtype)  # sigmoid > 0.5; carries no gradient
        else:
            b = torch.sigmoid(logits)
        if mask is not None and c_true is not None:
            target = (
                c_true
                if cfg.bottleneck != "logit"
                else self.off_value + c_true * (self.on_value - self.off_value)
            )
            b = torch.where(mask, target, b)
        return torch.cat([b, side], dim=-1) if side.shape[-1] else b

    def forward(
        self,
        x: torch.Tensor,
        *,
        c_true: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(concept logits [S,B,k], bottleneck [S,B,·], task logits [S,B,n_classes])``."""
        logits, side = self.encode(x)
        z = self.bottleneck(logits, side, c_true=c_true, mask=mask)
        return logits, z, self.head(z)

    def concept_representation(self, logits: torch.Tensor, side: torch.Tensor) -> list[torch.Tensor]:
        """Per concept, what the bottleneck holds about it (for the Concept Alignment Score):
        CEM — its embedding ``[S, B, m]``; hybrid CBM — its value plus the extra dims; CBM — its value."""
        k = self.n_concepts
        if self.config.kind == "cem":
            z = self.bottleneck(logits, side)
            S, B = z.shape[:2]
            emb = z.view(S, B, k, -1)
            return [emb[:, :, i] for i in range(k)]
        b = self.bottleneck(logits, side[..., :0])
        return [torch.cat([b[..., i : i + 1], side], dim=-1) for i in range(k)]
