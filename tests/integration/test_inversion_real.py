"""Prompt inversion on the embedded SmolLM2 (short runs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layerscope.inversion import invert
from layerscope.testing import assert_no_hooks

pytestmark = pytest.mark.integration


def test_smollm2_girl_boy_hard_probabilities_are_exact(smollm2, one_thread):
    res = invert(smollm2, [" girl", " boy"], restarts=4, steps=6, length=2, suffix=" is a", seed=0)
    assert_no_hooks(smollm2)
    tok = smollm2.tokenizer
    suffix = tok(" is a", add_special_tokens=False)["input_ids"]
    for k, tgt in enumerate(res.target_ids):
        assert len(tgt) == 1
        seqs = torch.tensor([row.tolist() + suffix for row in res.prompt_ids[k]])
        with torch.no_grad():
            logp = torch.log_softmax(smollm2.model(input_ids=seqs).logits[:, -1].float(), -1)[:, tgt[0]]
        np.testing.assert_allclose(res.hard_logprob[k], logp.numpy(), atol=1e-4)
        assert not np.isin(res.prompt_ids[k], tgt + tok.all_special_ids).any()
    # the kept hard prompt of a restart is never worse than its random start
    assert (res.hard_logprob >= res.random_logprob - 1e-4).all()
    assert (res.hard_logprob > res.random_logprob + 1e-3).any()
