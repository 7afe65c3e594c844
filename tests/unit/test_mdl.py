import numpy as np
import pytest
import torch

from layerscope.errors import ConfigError
from layerscope.probes.mdl import FRACTIONS, block_ends, online_code


def test_block_schedule_follows_voita_and_titov():
    ends = block_ends(10_000)
    assert list(ends) == [round(f * 10_000) for f in FRACTIONS]
    small = block_ends(50)
    assert small[0] >= 1 and small[-1] == 50 and np.all(np.diff(small) > 0)


def test_informative_layer_compresses_and_random_labels_do_not():
    g = torch.Generator().manual_seed(0)
    n, d = 2000, 8
    y = torch.randint(0, 3, (n,), generator=g)
    signal = torch.nn.functional.one_hot(y, 3).float() @ torch.randn(3, d, generator=g) * 3
    X = torch.stack(
        [signal + torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)]
    )  # layers: 0 informative
    code = online_code(X, y, n_classes=3, l2=1.0, seed=0)
    assert code.uniform_bits == pytest.approx(n * np.log2(3))
    assert code.compression[0] > 3 and 0.8 < code.compression[1] < 1.2
    np.testing.assert_allclose(code.block_bits.sum(1), code.codelength_bits)
    assert code.block_sizes.sum() == n
    # the first block is sent with the uniform code
    assert code.block_bits[0, 0] == pytest.approx(code.block_sizes[0] * np.log2(3))


def test_online_code_bad_input():
    with pytest.raises(ConfigError):
        online_code(torch.zeros(5, 3), torch.zeros(5, dtype=torch.long), n_classes=2)
    with pytest.raises(ConfigError):
        online_code(torch.zeros(1, 5, 3), torch.zeros(4, dtype=torch.long), n_classes=2)
    with pytest.raises(ConfigError):
        online_code(torch.zeros(1, 5, 3), torch.zeros(5, dtype=torch.long), n_classes=1)
