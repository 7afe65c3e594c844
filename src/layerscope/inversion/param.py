"""Soft prompts for causal LMs: the vocabulary index (nearest token as one matmul) and the parametrisation.

:class:`Vocabulary` caches the (normalised) input-embedding matrix once, with a mask of the tokens a prompt
may use; ``nearest`` finds the nearest allowed token of every prompt embedding with one matmul.

:class:`SoftPromptParam` implements :class:`layerscope.optimize.Parametrization`: ``batch`` rows
(targets × restarts) of ``length`` continuous prompt embeddings, optionally between a fixed prefix and a
fixed suffix, followed by the target continuation (teacher forcing: one pass scores every target token).
With ``project=True`` the rendering is the PEZ straight-through projection: the forward pass sees the
nearest vocabulary embeddings while the gradient updates the continuous ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError

METRICS = ("cosine", "l2")


class Vocabulary:
    """The input-embedding matrix with the tokens a prompt may use, cached for nearest-neighbour lookups.

    Args:
        weight: ``[d_vocab, d_model]`` input embeddings (not copied; detached).
        allowed: ``[n_groups, d_vocab]`` (or ``[d_vocab]``) boolean mask of usable tokens; one row per
            target when the exclusions differ between targets.
        metric: ``"cosine"`` (nearest by cosine similarity) or ``"l2"`` (nearest by Euclidean distance).
    """

    def __init__(self, weight: torch.Tensor, allowed: torch.Tensor, *, metric: str = "cosine") -> None:
        if metric not in METRICS:
            raise ConfigError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        w = weight.detach().float()
        allowed = torch.as_tensor(allowed, dtype=torch.bool, device=w.device)
        if allowed.ndim == 1:
            allowed = allowed.unsqueeze(0)
        if allowed.shape[1] != w.shape[0]:
            raise ConfigError(f"allowed mask has {allowed.shape[1]} entries for a vocabulary of {w.shape[0]}")
        if not bool(allowed.any(1).all()):
            raise ConfigError("the exclusion lists leave no usable token; allow more tokens")
        self.weight = w  # d_vocab, d_model
        self.metric = metric
        self.allowed = allowed  # n_groups, d_vocab
        self.normed = F.normalize(w, dim=1)  # d_vocab, d_model (cached once)
        self.sq_norm = w.pow(2).sum(1)  # d_vocab
        # additive mask: 0 where allowed, -inf where excluded
        self._penalty = torch.zeros(allowed.shape, dtype=w.dtype, device=w.device).masked_fill(
            ~allowed, float("-inf")
        )

    @property
    def d_vocab(self) -> int:
        return int(self.weight.shape[0])

    def nearest(self, emb: torch.Tensor, groups: torch.Tensor | None = None) -> torch.Tensor:
        """Nearest allowed token id of each embedding: ``[batch, pos, d_model] -> [batch, pos]`` (no grad).

        Args:
            emb: prompt embeddings.
            groups: ``[batch]`` row of ``allowed`` each batch element uses (default: row 0).
        """
        with torch.no_grad():
            e = emb.detach().float()
            if self.metric == "cosine":
                score = F.normalize(e, dim=-1) @ self.normed.T  # batch, pos, d_vocab
            else:  # argmin |e - v|^2 = argmax 2 e.v - |v|^2
                score = 2 * (e @ self.weight.T) - self.sq_norm
            rows = groups if groups is not None else torch.zeros(e.shape[0], dtype=torch.long)
            score = score + self._penalty[rows.to(self._penalty.device)].unsqueeze(1)
            return score.argmax(-1)

    def distance(self, emb: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Differentiable distance of each embedding to the token ``ids``: ``[batch, pos]``.

        ``cosine``: 1 − cos; ``l2``: squared Euclidean distance (smooth at 0, so Adam can settle on a token).
        """
        target = self.weight[ids].to(emb.dtype)
        if self.metric == "cosine":
            return 1 - F.cosine_similarity(emb, target, dim=-1)
        return (emb - target).pow(2).sum(-1)


class SoftPromptParam:
    """``batch`` soft prompts of ``length`` embeddings, with fixed prefix/suffix and the target appended.

    Args:
        vocab: the cached :class:`Vocabulary` (its raw ``weight`` is the model's input embedding).
        init_ids: ``[batch, length]`` token ids to start from (random vocabulary initialisations).
        target_ids: ``[batch, T]`` target token ids (right-padded), with ``target_mask`` ``[batch, T]``.
        groups: ``[batch]`` row of ``vocab.allowed`` each batch element uses.
        prefix_ids, suffix_ids: fixed token ids before / after the prompt.
        project: PEZ straight-through rendering (forward through the nearest tokens).
        dtype: model dtype the inputs are cast to.
    """

    def __init__(
        self,
        vocab: Vocabulary,
        init_ids: torch.Tensor,
        target_ids: torch.Tensor,
        target_mask: torch.Tensor,
        groups: torch.Tensor,
        *,
        prefix_ids: Sequence[int] = (),
        suffix_ids: Sequence[int] = (),
        project: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if init_ids.ndim != 2 or init_ids.shape[1] < 1:
            raise ConfigError(f"prompt length must be >= 1, got init ids of shape {tuple(init_ids.shape)}")
        dev = vocab.weight.device
        self.vocab = vocab
        self.batch = int(init_ids.shape[0])
        self.length = int(init_ids.shape[1])
        self.soft = vocab.weight[init_ids.to(dev)].clone().requires_grad_(True)  # batch, length, d_model
        self.target_ids = target_ids.to(dev)
        self.target_mask = target_mask.to(dev)
        self.groups = groups.to(dev)
        self.prefix_ids = torch.as_tensor(list(prefix_ids), dtype=torch.long, device=dev)
        self.suffix_ids = torch.as_tensor(list(suffix_ids), dtype=torch.long, device=dev)
        self.project = bool(project)
        self.dtype = dtype
        self.ids = vocab.nearest(self.soft, self.groups)  # batch, length: nearest tokens of the last render
        #: called with the nearest token ids at every ``render()`` (before the forward pass), e.g. to score
        #: the hard prompts exactly; ``None`` for nothing
        self.on_render: Callable[[torch.Tensor], None] | None = None

    # -- positions ---------------------------------------------------------------------------------
    @property
    def prompt_start(self) -> int:
        return int(self.prefix_ids.numel())

    @property
    def context_length(self) -> int:
        """Tokens before the first target token: prefix + prompt + suffix."""
        return self.prompt_start + self.length + int(self.suffix_ids.numel())

    def target_positions(self) -> torch.Tensor:
        """Positions whose next-token logits score the target tokens, ``[T]``."""
        t = self.target_ids.shape[1]
        return torch.arange(self.context_length - 1, self.context_length - 1 + t, device=self.soft.device)

    # -- Parametrization protocol ------------------------------------------------------------------
    def parameters(self) -> list[torch.Tensor]:
        return [self.soft]

    def render(self) -> torch.Tensor:
        """The prompt embeddings the model sees, ``[batch, length, d_model]``; refreshes ``self.ids``."""
        self.ids = self.vocab.nearest(self.soft, self.groups)
        if self.on_render is not None:
            self.on_render(self.ids)
        if not self.project:
            return self.soft
        hard = self.vocab.weight[self.ids]
        return self.soft + (hard - self.soft).detach()  # value: hard tokens; gradient: to the soft ones

    def model_inputs(self, rendered: torch.Tensor) -> dict[str, torch.Tensor]:
        embeds = self.sequence(rendered)
        mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        return {"inputs_embeds": embeds.to(self.dtype), "attention_mask": mask}

    def sequence(self, prompt: torch.Tensor) -> torch.Tensor:
        """prefix + prompt + suffix + target[:-1] embeddings, ``[batch, context + T - 1, d_model]``."""
        w = self.vocab.weight
        b = prompt.shape[0]
        parts = []
        if self.prefix_ids.numel():
            parts.append(w[self.prefix_ids].unsqueeze(0).expand(b, -1, -1))
        parts.append(prompt.to(w.dtype))
        if self.suffix_ids.numel():
            parts.append(w[self.suffix_ids].unsqueeze(0).expand(b, -1, -1))
        if self.target_ids.shape[1] > 1:
            parts.append(w[self.target_ids[:, :-1]])
        return torch.cat(parts, 1)

    def token_sequence(self, prompt_ids: torch.Tensor) -> torch.Tensor:
        """The same sequence as token ids (for exact evaluation of hard prompts), ``[batch, context + T - 1]``."""
        b = prompt_ids.shape[0]
        dev = self.soft.device
        parts = [self.prefix_ids.unsqueeze(0).expand(b, -1), prompt_ids.to(dev)]
        parts.append(self.suffix_ids.unsqueeze(0).expand(b, -1))
        parts.append(self.target_ids[:, :-1])
        return torch.cat(parts, 1)

    def distance(self) -> torch.Tensor:
        """Mean distance of each row's continuous embeddings to their nearest allowed token, ``[batch]``."""
        return self.vocab.distance(self.soft, self.ids).mean(1)
