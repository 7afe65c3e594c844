"""Probing real MiniLM activations: the shared task + control paths give the separate fits' numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layerscope.capture.extract import extract
from layerscope.data import builtin_tasks
from layerscope.probes import fit_layers
from layerscope.probes.layerwise import fit_layers_with_control
from layerscope.probes.mdl import online_code, online_codes
from layerscope.probes.sweep import _control_targets, default_sites

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def upos(minilm, tmp_path_factory):
    """UPOS on 300 sentences: activations ``[7, n, 384]``, labels, control labels, splits."""
    task = builtin_tasks(["upos"], n_sentences=300, seed=0, progress=False)["upos"]
    path = tmp_path_factory.mktemp("probe") / "store"
    store = extract(
        minilm, task.dataset, default_sites(minilm), store=path, pooling="word_first", progress=False
    )
    ex, wid = store.meta("example_id"), store.meta("word_id")
    y = task.targets(ex, wid)
    keep = y >= 0
    X = torch.from_numpy(np.stack([store.read(s)[keep] for s in store.sites]))
    split = np.asarray(task.split)[ex[keep]]
    control = task.control(seed=0)

    class Rows:  # what _control_targets reads
        example, word = ex[keep], wid[keep]

    yc = _control_targets(control, Rows)
    return X, y[keep], yc, split, len(task.classes), len(control.classes)


@pytest.mark.parametrize("family", ["logistic", "mlp"])
def test_task_and_control_in_shared_work_match_separate_fits(upos, family):
    X, y, yc, split, K, Kc = upos
    train, val, test = split == 0, split == 1, split == 2
    opts = {"family": family, "train": train, "val": val}
    task, control = fit_layers_with_control(X, y, yc, n_classes=K, n_classes_control=Kc, **opts)
    alone = fit_layers(X, y, n_classes=K, **opts)
    alone_control = fit_layers(X, yc, n_classes=Kc, layer_lambdas=alone.best_lambda, **opts)
    acc = task.accuracy(X[:, test], y[test]).numpy()
    ctrl = control.accuracy(X[:, test], yc[test]).numpy()
    assert acc.max() > 0.85  # UPOS is linearly decodable from MiniLM
    assert (acc - ctrl).max() > 0.05  # and selective: the control task is harder
    np.testing.assert_allclose(acc, alone.accuracy(X[:, test], y[test]).numpy(), atol=0.005)
    # the MLP control group trains on the task's minibatch order (a separate run with K_c != K draws another
    # one), so it matches only to seed noise; the logistic control is the same optimum
    tol = 0.005 if family == "logistic" else 0.02
    np.testing.assert_allclose(ctrl, alone_control.accuracy(X[:, test], yc[test]).numpy(), atol=tol)


def test_joint_mdl_codes_match_separate_codes(upos):
    X, y, yc, split, K, Kc = upos
    tr = split == 0
    Xtr, ytr, yctr = X[:, torch.from_numpy(tr)], torch.from_numpy(y[tr]), torch.from_numpy(yc[tr])
    task, control = online_codes(Xtr, [ytr, yctr], n_classes=[K, Kc], l2=100.0, seed=0)
    alone = online_code(Xtr, ytr, n_classes=K, l2=100.0, seed=0)
    alone_control = online_code(Xtr, yctr, n_classes=Kc, l2=100.0, seed=0)
    np.testing.assert_allclose(task.compression, alone.compression, rtol=0.02)
    np.testing.assert_allclose(control.compression, alone_control.compression, rtol=0.02)
    assert task.compression.max() > 2 * control.compression.max()  # UPOS compresses far better
