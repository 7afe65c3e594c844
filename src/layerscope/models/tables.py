"""Per-architecture site tables: canonical site component -> where it lives in the module tree.

Tables are data, in the spirit of pyvene's per-model mappings. ``{base}`` is the base-model prefix
(``bert.``, ``model.``, ``transformer.`` or empty), ``{i}`` the block index, ``{last}`` the last block.
Every table is checked by identity tests (``resid_mid == resid_pre + attn.out`` for pre-LN models, the
LayerNorm'd version for post-LN BERT) on tiny random models and on the embedded models.
"""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True)
class Hookpoint:
    """Where a site is read: a module (path template), its ``output`` or ``input``, and a tuple index."""

    module: str
    io: Literal["output", "input"] = "output"
    index: int = 0
    read_only: bool = False


@dataclasses.dataclass(frozen=True)
class ArchTable:
    """The site table of one architecture family."""

    family: str
    model_types: tuple[str, ...]
    blocks: str  # ModuleList of blocks, relative to the base prefix
    block_sites: dict[str, Hookpoint]
    global_sites: dict[str, Hookpoint]
    logits_candidates: tuple[str, ...] = ()  # top-level head module names, first present wins
    post_ln: bool = False  # post-LayerNorm residual (BERT): identities hold through the norms
    kind: str = "encoder"


BERT = ArchTable(
    family="bert",
    model_types=("bert", "roberta", "xlm-roberta", "camembert", "mpnet_bert"),
    blocks="encoder.layer",
    block_sites={
        "resid_pre": Hookpoint("{base}encoder.layer.{i}", "input"),
        "attn.pattern": Hookpoint("{base}encoder.layer.{i}.attention.self", "output", 1, read_only=True),
        "attn.out": Hookpoint("{base}encoder.layer.{i}.attention.output.dense"),
        "resid_mid": Hookpoint("{base}encoder.layer.{i}.attention.output.LayerNorm"),
        "mlp.pre": Hookpoint("{base}encoder.layer.{i}.intermediate.dense"),
        "mlp.post": Hookpoint("{base}encoder.layer.{i}.intermediate"),
        "mlp.out": Hookpoint("{base}encoder.layer.{i}.output.dense"),
        "resid_post": Hookpoint("{base}encoder.layer.{i}"),
    },
    global_sites={
        "embed": Hookpoint("{base}embeddings.word_embeddings"),
        "final": Hookpoint("{base}encoder.layer.{last}"),
    },
    logits_candidates=("classifier", "cls", "lm_head", "qa_outputs"),
    post_ln=True,
    kind="encoder",
)

LLAMA = ArchTable(
    family="llama",
    model_types=("llama", "mistral", "qwen2", "qwen3", "smollm3"),
    blocks="layers",
    block_sites={
        "resid_pre": Hookpoint("{base}layers.{i}", "input"),
        "attn.pattern": Hookpoint("{base}layers.{i}.self_attn", "output", 1, read_only=True),
        "attn.out": Hookpoint("{base}layers.{i}.self_attn", "output", 0),
        "resid_mid": Hookpoint("{base}layers.{i}.post_attention_layernorm", "input"),
        "mlp.post": Hookpoint("{base}layers.{i}.mlp.down_proj", "input"),
        "mlp.out": Hookpoint("{base}layers.{i}.mlp"),
        "resid_post": Hookpoint("{base}layers.{i}"),
    },
    global_sites={
        "embed": Hookpoint("{base}embed_tokens"),
        "final": Hookpoint("{base}norm"),
    },
    logits_candidates=("lm_head", "score"),
    kind="causal_lm",
)

GPT2 = ArchTable(
    family="gpt2",
    model_types=("gpt2",),
    blocks="h",
    block_sites={
        "resid_pre": Hookpoint("{base}h.{i}", "input"),
        "attn.pattern": Hookpoint("{base}h.{i}.attn", "output", 1, read_only=True),
        "attn.out": Hookpoint("{base}h.{i}.attn", "output", 0),
        "resid_mid": Hookpoint("{base}h.{i}.ln_2", "input"),
        "mlp.post": Hookpoint("{base}h.{i}.mlp.c_proj", "input"),
        "mlp.out": Hookpoint("{base}h.{i}.mlp"),
        "resid_post": Hookpoint("{base}h.{i}"),
    },
    global_sites={
        "embed": Hookpoint("{base}wte"),
        "final": Hookpoint("{base}ln_f"),
    },
    logits_candidates=("lm_head", "score"),
    kind="causal_lm",
)

EFFICIENTNET = ArchTable(
    family="efficientnet",
    model_types=("efficientnet-lite",),
    blocks="_blocks",
    block_sites={"out": Hookpoint("_blocks.{i}")},
    global_sites={
        "embed": Hookpoint("_blocks.0", "input"),
        "final": Hookpoint("_avg_pooling", "input"),
        "pooled": Hookpoint("_fc", "input"),
        "logits": Hookpoint("_fc"),
    },
    kind="vision",
)

TABLES: tuple[ArchTable, ...] = (BERT, LLAMA, GPT2, EFFICIENTNET)


def table_for_model_type(model_type: str) -> ArchTable | None:
    """The table whose family lists ``model_type`` (a transformers ``config.model_type``), or None."""
    for t in TABLES:
        if model_type in t.model_types:
            return t
    return None
