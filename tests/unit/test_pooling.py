import numpy as np
import pytest
import torch

from layerscope.capture.pooling import BatchPooler, align_tokens_to_words, check_pooling, plan_example
from layerscope.data import TextDataset
from layerscope.errors import ConfigError
from layerscope.testing import tiny_bpe_tokenizer, tiny_wordpiece_tokenizer


def _align(tok, ds, i=0, **kw):
    enc = tok([ds.texts[i]], return_offsets_mapping=True, return_special_tokens_mask=True, **kw)
    return enc, align_tokens_to_words(
        ds.texts[i], enc["offset_mapping"][0], enc["special_tokens_mask"][0], ds.word_spans[i]
    )


def test_wordpiece_pieces_map_to_their_word_and_specials_to_minus_one():
    ds = TextDataset.from_texts(["Hello unbelievable world!"])
    enc, t2w = _align(tiny_wordpiece_tokenizer(), ds)
    toks = enc.tokens()
    assert toks[0] == "[CLS]" and toks[-1] == "[SEP]"
    assert t2w[0] == -1 and t2w[-1] == -1
    assert [t2w[k] for k, t in enumerate(toks) if t == "hello"] == [0]
    # every piece of "unbelievable" maps to word 1, and "world!" (one whitespace word) covers "world" and "!"
    assert set(t2w[2 : toks.index("world")]) == {1}
    assert t2w[toks.index("world")] == 2 and t2w[toks.index("!")] == 2


def test_bpe_leading_space_tokens_and_pretokenised_words():
    ds = TextDataset.from_words([["I", "ca", "n't", "believe", "it", "."]])
    _enc, t2w = _align(tiny_bpe_tokenizer(), ds)
    # every word gets at least one token, tokens never map outside words, order is monotone
    assert set(t2w[t2w >= 0]) == set(range(6))
    assert np.all(np.diff(t2w[t2w >= 0]) >= 0)


def test_same_word_split_differently_in_context():
    tok = tiny_bpe_tokenizer()
    ds = TextDataset.from_texts(["running", "the running dogs"])
    for i, word in ((0, 0), (1, 1)):
        _enc, t2w = _align(tok, ds, i)
        assert word in t2w


def test_truncation_drops_words_without_error():
    tok = tiny_wordpiece_tokenizer()
    ds = TextDataset.from_texts(["the cat sat on the mat and the dog ran"])
    enc, t2w = _align(tok, ds, truncation=True, max_length=5)
    plan = plan_example("word_first", t2w, len(ds.words[0]), len(enc["input_ids"][0]))
    assert plan.dropped_words == len(ds.words[0]) - 3
    assert list(plan.word_ids) == [0, 1, 2]


def test_plan_positions():
    t2w = np.array([-1, 0, 1, 1, 1, 2, -1])
    assert list(plan_example("word_first", t2w, 3, 7).positions) == [1, 2, 5]
    assert list(plan_example("word_last", t2w, 3, 7).positions) == [1, 4, 5]
    assert list(plan_example("token", t2w, 3, 7).positions) == list(range(7))
    assert list(plan_example("sentence_last", t2w, 3, 7).positions) == [6]


def test_batch_pooler_matches_manual():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]).bool()
    plans = [
        plan_example(p, t2w, 2, L)
        for p, t2w, L in [
            ("word_mean", np.array([-1, 0, 1, 1, -1]), 5),
            ("word_mean", np.array([-1, 0, 1]), 3),
        ]
    ]
    out = BatchPooler.build("word_mean", plans, mask)(x)
    expect = torch.stack([x[0, 1], x[0, 2:4].mean(0), x[1, 1], x[1, 2]])
    torch.testing.assert_close(out, expect)
    sm = BatchPooler.build("sentence_mean", [plan_example("sentence_mean", np.zeros(5), 1, 5)] * 2, mask)(x)
    torch.testing.assert_close(sm[1], x[1, :3].mean(0))
    mx = BatchPooler.build("sentence_max", [plan_example("sentence_max", np.zeros(5), 1, 5)] * 2, mask)(x)
    torch.testing.assert_close(mx[1], x[1, :3].amax(0))
    last = BatchPooler.build(
        "sentence_last", [plan_example("sentence_last", np.zeros(L), 1, L) for L in (5, 3)], mask
    )(x)
    torch.testing.assert_close(last, torch.stack([x[0, 4], x[1, 2]]))


def test_pooling_bad_inputs():
    with pytest.raises(ConfigError, match="unknown pooling"):
        check_pooling("avg")
    assert check_pooling("word") == "word_first"
    p = BatchPooler.build("token", [plan_example("token", np.zeros(2), 1, 2)], torch.ones(1, 2).bool())
    with pytest.raises(ConfigError, match="cannot pool"):
        p(torch.zeros(1, 2, 2, 2))


def test_token_spanning_two_words_belongs_to_both():
    from layerscope.capture.pooling import word_token_ranges

    text = "Don't !!"
    words = [(0, 2), (2, 5), (6, 7), (7, 8)]  # spaCy: Do | n't | ! | !
    offsets = [(0, 0), (0, 3), (3, 5), (5, 8), (0, 0)]  # [BOS] "Don" "'t" " !!" [EOS]
    special = [1, 0, 0, 0, 1]
    r = word_token_ranges(text, offsets, special, words)
    assert r.tolist() == [[1, 1], [1, 2], [3, 3], [3, 3]]
    t2w = align_tokens_to_words(text, offsets, special, words)
    plan = plan_example("word_mean", t2w, 4, 5, r)
    assert plan.dropped_words == 0 and plan.positions.tolist() == [1, 1, 3, 3]
    x = torch.arange(5.0).view(1, 5, 1)
    out = BatchPooler.build("word_mean", [plan], torch.ones(1, 5).bool())(x)
    assert out.squeeze(1).tolist() == [1.0, 1.5, 3.0, 3.0]
    last = plan_example("word_last", t2w, 4, 5, r)
    assert last.positions.tolist() == [1, 2, 3, 3]
