"""Public test helpers: tiny models of each family built from configs (no download), hook assertions."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .capture.hooks import layerscope_hook_count
from .models.adapter import Adapter
from .models.subject import Subject

_WORDS = [
    "the",
    "a",
    "an",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "hello",
    "world",
    "is",
    "was",
    "of",
    "and",
    "to",
    "in",
    "it",
    "that",
    "this",
    "new",
    "old",
    "big",
    "small",
    "red",
    "blue",
    "run",
    "runs",
    "running",
    "ran",
    "walk",
    "walked",
    "play",
    "played",
    "un",
    "believ",
    "able",
    "##s",
    "##ed",
    "##ing",
    "##able",
    "##ly",
    "##er",
    "##est",
    ".",
    ",",
    "!",
    "?",
    "'",
    "-",
]


def tiny_wordpiece_tokenizer(*, with_specials: bool = True) -> Any:
    """A small WordPiece tokenizer (lower-cased; letters as fallback pieces) built in memory."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    pieces = ["##" + c for c in letters]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(specials + _WORDS + letters + pieces))}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    if with_specials:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def tiny_bpe_tokenizer(corpus: list[str] | None = None, *, vocab_size: int = 300) -> Any:
    """A byte-level BPE tokenizer trained in memory on a small corpus (GPT-2/Llama style, no specials added)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = (
        corpus
        or [
            "The cat sat on the mat.",
            "Hello world, hello again!",
            "Unbelievable: running dogs played.",
            "A new red ball, an old blue car.",
            "It was small; it is big.",
        ]
        * 4
    )
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def _subject(model: nn.Module, tokenizer: Any, name: str) -> Subject:
    model.eval()
    return Subject(
        model=model, adapter=Adapter.for_model(model), name=name, tokenizer=tokenizer, revision="tiny"
    )


def tiny_bert(*, seed: int = 0, n_layers: int = 2, classifier: bool = False) -> Subject:
    """A random 2-layer BERT (d_model 32, 4 heads) with a tiny WordPiece tokenizer."""
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    tok = tiny_wordpiece_tokenizer()
    torch.manual_seed(seed)
    cfg = BertConfig(  # type: ignore[call-arg]
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=3,
    )
    model: nn.Module = BertForSequenceClassification(cfg) if classifier else BertModel(cfg)
    return _subject(model, tok, "tiny-bert")


def tiny_llama(*, seed: int = 0, n_layers: int = 2) -> Subject:
    """A random 2-layer Llama causal LM (d_model 32, 4 heads, 2 KV heads) with a tiny BPE tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_bpe_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    return _subject(LlamaForCausalLM(cfg), tok, "tiny-llama")


def tiny_gpt2(*, seed: int = 0, n_layers: int = 2) -> Subject:
    """A random 2-layer GPT-2 (d_model 32, 4 heads) with a tiny BPE tokenizer."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = tiny_bpe_tokenizer()
    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=len(tok),
        n_embd=32,
        n_layer=n_layers,
        n_head=4,
        n_positions=64,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    return _subject(GPT2LMHeadModel(cfg), tok, "tiny-gpt2")


def tiny_cnn(*, seed: int = 0, n_classes: int = 10) -> nn.Sequential:
    """A small random CNN for 32x32 RGB images (generic adapter: module sites and logits)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, n_classes),
    ).eval()


def assert_no_hooks(model: Any) -> None:
    """Fail if any layerscope hook is still attached to ``model`` (a Subject or nn.Module)."""
    module = getattr(model, "model", model)
    n = layerscope_hook_count(module)
    if n:
        raise AssertionError(f"{n} layerscope hook(s) still attached to the model")
