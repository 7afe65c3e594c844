"""DeepView on the embedded MiniLM + MultiEmo: case (a) with a small head; Roberts et al.'s λ effect."""

from __future__ import annotations

import numpy as np

from layerscope.deepview.text import pgd_embeddings, sentence_embeddings, split_corpus, text_deepview


def test_sentence_embeddings_match_masked_mean(minilm):
    import torch

    texts = ["a short one", "a somewhat longer sentence with more words in it"]
    emb = sentence_embeddings(minilm, texts)
    enc = minilm.tokenize(texts)
    with torch.no_grad():
        h = minilm.forward(dict(enc)).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).float()
    ref = ((h * m).sum(1) / m.sum(1)).numpy()
    np.testing.assert_allclose(emb, ref, atol=1e-5)


def test_frozen_case_lambda_effect_and_adversarial(tmp_path):
    res = text_deepview(
        "frozen",
        n_view=200,
        n_train=400,
        lambdas=(0.5, 1.0),
        n_adversarial=10,
        n_neighbors=15,
        resolution=30,
        cache_dir=tmp_path,
    )
    assert res.coords.shape == (2, 210, 2) and res.point_kind.count("adversarial") == 10
    # frozen encoder: the discriminative component separates the predicted classes (Roberts et al.)
    assert res.q_knn[0] < res.q_knn[1] - 0.1
    assert len(split_corpus(5, 5)[0]) == 5


def test_pgd_flips_predictions():
    import torch

    torch.manual_seed(0)
    head = torch.nn.Linear(8, 3)
    x = np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32)
    y = head(torch.from_numpy(x)).argmax(1).numpy()
    x_adv, flipped = pgd_embeddings(head, x, y, eps=1.0)
    assert flipped.mean() > 0.8
    assert np.all(np.linalg.norm(x_adv - x, axis=1) <= 1.0 * np.linalg.norm(x, axis=1) + 1e-4)
