"""Small torch MLP / low-rank linear probes and their seeded training loop (shared by MLPProbe and fit_layers)."""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from layerscope.errors import ConfigError
from layerscope.probes._validation import threads_for

Tensor = torch.Tensor


@dataclasses.dataclass
class MLPTraining:
    """Outcome of :func:`train_mlp`: the module (best validation state when early stopping) and its curve."""

    module: nn.Sequential
    n_epochs: int
    loss_curve: list[float]
    best_val_loss: float | None


def check_mlp_params(
    *,
    hidden_size: int,
    n_layers: int,
    rank: int | None,
    dropout: float,
    lr: float,
    max_epochs: int,
    batch_size: int,
) -> None:
    """Raise ``ConfigError`` for out-of-range MLP hyperparameters."""
    if hidden_size < 0 or n_layers < 0:
        raise ConfigError(f"hidden_size and n_layers must be >= 0, got {hidden_size} and {n_layers}")
    if rank is not None and rank < 1:
        raise ConfigError(f"rank must be None or >= 1, got {rank}")
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"dropout must lie in [0, 1), got {dropout}")
    if lr <= 0 or max_epochs < 1 or batch_size < 1:
        raise ConfigError(
            f"need lr > 0, max_epochs >= 1, batch_size >= 1; got {lr}, {max_epochs}, {batch_size}"
        )


def build_mlp(
    n_features: int, n_classes: int, *, hidden_size: int, n_layers: int, rank: int | None, dropout: float
) -> nn.Sequential:
    """The probe network: linear when ``hidden_size == 0`` or ``n_layers == 0``, else ``n_layers`` ReLU layers.

    ``rank=r`` factorises the first map through ``r`` dimensions (``W = A·B``, no bias in ``A``): for a
    linear probe this is Hewitt & Liang's rank constraint; for an MLP it bottlenecks the input.
    """
    linear = hidden_size == 0 or n_layers == 0
    layers: list[nn.Module] = []
    width = n_features
    if rank is not None:
        layers.append(nn.Linear(width, rank, bias=False))
        width = rank
    if not linear:
        for _ in range(n_layers):
            layers += [nn.Linear(width, hidden_size), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden_size
    elif dropout > 0:
        layers.insert(0, nn.Dropout(dropout))
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def train_mlp(
    X: Tensor,
    y: Tensor,
    *,
    n_classes: int,
    hidden_size: int,
    n_layers: int,
    rank: int | None,
    dropout: float,
    weight_decay: float,
    lr: float,
    max_epochs: int,
    batch_size: int,
    early_stopping: bool,
    seed: int,
    X_val: Tensor | None = None,
    y_val: Tensor | None = None,
    patience: int = 5,
    val_fraction: float = 0.1,
) -> MLPTraining:
    """Train a probe network with Adam on cross-entropy, deterministically for a given ``seed``.

    Args:
        X: ``[n, d]`` float32 training inputs (standardised by the caller); y: ``[n]`` class indices.
        n_classes, hidden_size, n_layers, rank, dropout: the architecture (see :func:`build_mlp`).
        weight_decay: Adam's (coupled) L2 weight decay.
        lr, max_epochs, batch_size: optimisation.
        early_stopping: stop when the validation loss has not improved for ``patience`` epochs and restore
            the best weights. Validation is ``X_val``/``y_val`` or, if absent, a seeded ``val_fraction`` of
            ``X`` (only when that leaves at least 2 rows; otherwise no early stopping).
        seed: seeds initialisation, shuffling, the validation split and dropout (global RNG state restored).

    Returns:
        The trained module (train mode off), epochs run, mean training loss per epoch, best validation loss.
    """
    work = batch_size * max(X.shape[1], hidden_size, 1) * max(hidden_size, n_classes, rank or 0)
    with threads_for(work), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        if early_stopping and X_val is None:
            n_val = round(val_fraction * X.shape[0])
            if n_val >= 2 and X.shape[0] - n_val >= 2:
                perm = torch.randperm(X.shape[0], generator=gen)
                X_val, y_val = X[perm[:n_val]], y[perm[:n_val]]
                X, y = X[perm[n_val:]], y[perm[n_val:]]
        use_val = early_stopping and X_val is not None and y_val is not None
        module = build_mlp(
            X.shape[1], n_classes, hidden_size=hidden_size, n_layers=n_layers, rank=rank, dropout=dropout
        )
        opt = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
        loss_fn = nn.CrossEntropyLoss()
        curve: list[float] = []
        best, best_state, stale, epoch = float("inf"), None, 0, 0
        n = X.shape[0]
        for epoch in range(1, max_epochs + 1):  # noqa: B007 - epochs run are returned
            module.train()
            perm = torch.randperm(n, generator=gen)
            total = 0.0
            for start in range(0, n, batch_size):
                idx = perm[start : start + batch_size]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(module(X[idx]), y[idx])
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            curve.append(total / max(n, 1))
            if not use_val:
                continue
            assert X_val is not None and y_val is not None
            module.eval()
            with torch.no_grad():
                val_loss = float(loss_fn(module(X_val), y_val))
            if val_loss < best - 1e-6:
                best, best_state, stale = val_loss, copy.deepcopy(module.state_dict()), 0
            else:
                stale += 1
                if stale >= patience:
                    break
        if best_state is not None:
            module.load_state_dict(best_state)
    module.eval()
    return MLPTraining(module, epoch, curve, best if use_val else None)
