"""scikit-learn probe estimators backed by the batched torch solvers.

Each estimator follows scikit-learn's contract (``get_params``/``set_params``, fitted attributes ending in
``_``, ``check_is_fitted``, ``classes_``, ``n_features_in_``) so it works in ``Pipeline`` and
``GridSearchCV``; inputs may be numpy arrays, array-likes, pandas frames or torch tensors.

* :class:`LinearProbe`: multinomial logistic regression (L2 or elastic net), like ``LogisticRegression``.
* :class:`RidgeProbe`: closed-form one-vs-rest ridge classifier, like ``RidgeClassifier``.
* :class:`LDAProbe`: linear discriminant analysis with shrinkage, like ``LinearDiscriminantAnalysis``.
* :class:`RidgeRegressionProbe`: ridge regression for continuous targets, like ``Ridge``.
* :class:`MLPProbe`: a torch MLP, or a rank-constrained linear probe (Hewitt & Liang's complexity knobs).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy.special import expit, softmax
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data

from layerscope.errors import ConfigError
from layerscope.probes._core import SufficientStats
from layerscope.probes._logistic import _fit_logistic
from layerscope.probes._mlp import check_mlp_params, train_mlp
from layerscope.probes._validation import ProbeDataError, threads_for, to_numpy
from layerscope.probes.solvers import lda, ridge_path

_PRECONDITION_MAX_FEATURES = 2048


def _standardise(X: np.ndarray, on: bool) -> tuple[np.ndarray, np.ndarray]:
    """Column means and scales (population std; 1 for constant columns, or all 0/1 when ``on`` is False)."""
    if not on:
        return np.zeros(X.shape[1]), np.ones(X.shape[1])
    mean = X.mean(0)
    scale = X.std(0)
    scale[scale < 1e-12 * max(1.0, float(np.abs(mean).max(initial=0.0)))] = 1.0
    return mean, scale


class _ProbeClassifier(ClassifierMixin, BaseEstimator):
    """Shared fit-time validation and prediction for the probe classifiers."""

    def _validate_fit(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Validated float64 ``X``, label indices ``y``; sets ``classes_`` and ``n_features_in_``."""
        X, y = validate_data(self, to_numpy(X), to_numpy(y), dtype=np.float64)
        check_classification_targets(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ProbeDataError(
                f"y has only 1 class ({self.classes_[0]!r}); a probe needs at least 2 classes to separate"
            )
        return X, y_idx

    def _validate_predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        return validate_data(self, to_numpy(X), reset=False, dtype=np.float64)

    def _scores(self, X: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def decision_function(self, X: Any) -> np.ndarray:
        """Class scores ``[n, K]`` (``[n]`` for two classes: the score of ``classes_[1]``)."""
        return self._scores(self._validate_predict(X))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class labels ``[n]``."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[scores.argmax(1)]


class _LinearClassifier(_ProbeClassifier):
    """A classifier whose scores are ``X @ coef_.T + intercept_`` (sklearn's coefficient layout)."""

    coef_: np.ndarray
    intercept_: np.ndarray

    def _set_linear(self, W: np.ndarray, b: np.ndarray, *, binary: str) -> None:
        """Store ``W [d, K]``, ``b [K]`` as ``coef_ [K, d]`` (``[1, d]`` for 2 classes) and ``intercept_``."""
        if W.shape[1] == 2:
            if binary == "difference":
                W, b = W[:, 1:] - W[:, :1], b[1:] - b[:1]
            else:
                W, b = W[:, 1:], b[1:]
        self.coef_ = np.ascontiguousarray(W.T)
        self.intercept_ = np.asarray(b, dtype=np.float64)

    def _scores(self, X: np.ndarray) -> np.ndarray:
        scores = X @ self.coef_.T + self.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores


class _ProbabilisticLinear(_LinearClassifier):
    """Linear classifier with softmax (sigmoid for two classes) probabilities."""

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``[n, K]``."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            p = expit(scores)
            return np.column_stack([1 - p, p])
        return softmax(scores, axis=1)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log class probabilities ``[n, K]``."""
        return np.log(np.clip(self.predict_proba(X), 1e-300, None))


class LinearProbe(_ProbabilisticLinear):
    """Multinomial logistic-regression probe (L2 or elastic net), solved by the batched torch solver.

    Minimises ``Σ_i w_i·CE_i + (1/C)·penalty(W)`` on (optionally) standardised features, the objective of
    ``LogisticRegression(C=C)`` (L2: ``½||W||²``; elastic net: ``l1_ratio·||W||₁ + ½(1-l1_ratio)·||W||²``),
    intercept unpenalised. L2 uses one preconditioned L-BFGS (strong Wolfe); elastic net uses FISTA
    (accelerated proximal gradient, exact zeros). Two classes are fitted as one logistic regression (like
    scikit-learn's binary case), via a 2-column softmax whose penalty is doubled (the two are equivalent).
    The fit is deterministic: ``random_state`` is accepted for API compatibility and unused.

    Args:
        C: inverse regularisation strength (> 0).
        penalty: ``"l2"`` or ``"elasticnet"``.
        l1_ratio: elastic-net mixing in ``[0, 1]`` (only with ``"elasticnet"``).
        standardize: fit on standardised features (train mean/std); ``coef_`` is mapped back to raw units.
        class_weight: ``None``, ``"balanced"`` or ``{label: weight}``.
        max_iter: L-BFGS iterations (FISTA: 20× as many cheap steps).
        tol: largest allowed |gradient| entry of the sample-weight-normalised objective.
        random_state: unused (the solver is deterministic).

    Attributes:
        coef_: ``[K, d]`` (``[1, d]`` for two classes), in raw feature units.
        intercept_: ``[K]`` (``[1]``).
        classes_, n_features_in_, n_iter_ (solver iterations), mean_, scale_ (standardisation).
    """

    def __init__(
        self,
        C: float = 1.0,
        penalty: str = "l2",
        l1_ratio: float = 0.5,
        standardize: bool = True,
        class_weight: Any = None,
        max_iter: int = 200,
        tol: float = 1e-6,
        random_state: Any = None,
    ) -> None:
        self.C = C
        self.penalty = penalty
        self.l1_ratio = l1_ratio
        self.standardize = standardize
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def _penalties(self) -> tuple[float, float]:
        if not (isinstance(self.C, int | float) and self.C > 0):
            raise ConfigError(f"C must be a positive number, got {self.C!r}")
        if self.penalty == "l2":
            return 1.0 / self.C, 0.0
        if self.penalty == "elasticnet":
            if not 0.0 <= self.l1_ratio <= 1.0:
                raise ConfigError(f"l1_ratio must lie in [0, 1], got {self.l1_ratio!r}")
            return (1.0 - self.l1_ratio) / self.C, self.l1_ratio / self.C
        raise ConfigError(f"penalty must be 'l2' or 'elasticnet', got {self.penalty!r}")

    def fit(self, X: Any, y: Any) -> LinearProbe:
        """Fit the probe on ``X [n, d]`` and labels ``y [n]``; returns ``self``."""
        l2, l1 = self._penalties()
        if self.max_iter < 1:
            raise ConfigError(f"max_iter must be >= 1, got {self.max_iter}")
        y_raw = to_numpy(y)
        X, y_idx = self._validate_fit(X, y_raw)
        K = len(self.classes_)
        sw = (
            None
            if self.class_weight is None
            else compute_sample_weight(self.class_weight, self.classes_[y_idx])
        )
        self.mean_, self.scale_ = _standardise(X, self.standardize)
        Xs = torch.from_numpy((X - self.mean_) / self.scale_)  # [n, d]
        if K == 2:
            l2 *= 2.0  # 2-column softmax with penalty 2·l2 ≡ binary logistic regression with l2
        W, b, self.n_iter_ = _fit_logistic(
            Xs,
            torch.from_numpy(y_idx),
            l2=l2,
            l1=l1,
            n_classes=K,
            sample_weight=sw,
            max_iter=self.max_iter,
            tol=self.tol,
            precondition=X.shape[1] <= _PRECONDITION_MAX_FEATURES,
        )
        self.n_iter_ = max(1, int(self.n_iter_))
        Wn, bn = W[0].numpy() / self.scale_[:, None], b[0].numpy()
        bn = bn - self.mean_ @ Wn
        self._set_linear(Wn, bn, binary="difference")
        return self


class RidgeProbe(_LinearClassifier):
    """Closed-form ridge classifier (±1 targets, one-vs-rest), like scikit-learn's ``RidgeClassifier``.

    Fitted from the sufficient statistics (one eigendecomposition). ``decision_function`` gives the ridge
    scores; there is no ``predict_proba`` (ridge scores are not probabilities).

    Args:
        alpha: L2 penalty (>= 0), on centred data with an unpenalised intercept.

    Attributes:
        coef_: ``[K, d]`` (``[1, d]`` for two classes); intercept_; classes_; n_features_in_.
    """

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha

    def fit(self, X: Any, y: Any) -> RidgeProbe:
        """Fit on ``X [n, d]`` and labels ``y [n]``; returns ``self``."""
        if not (isinstance(self.alpha, int | float) and self.alpha >= 0):
            raise ConfigError(f"alpha must be a number >= 0, got {self.alpha!r}")
        X, y_idx = self._validate_fit(X, y)
        stats = SufficientStats.from_arrays(X, y_idx, n_classes=len(self.classes_))
        W, b = ridge_path(stats, [float(self.alpha)], coding="pm1")
        self._set_linear(W[0, 0].numpy(), b[0, 0].numpy(), binary="positive")
        return self


class LDAProbe(_ProbabilisticLinear):
    """Linear discriminant analysis probe (shared covariance), from the sufficient statistics.

    Float ``shrinkage`` gives exactly ``LinearDiscriminantAnalysis(solver="lsqr", shrinkage=...)``;
    ``"auto"`` shrinks towards the diagonal with an OAS intensity (see :func:`~layerscope.probes.solvers.lda`).

    Args:
        shrinkage: ``"auto"``, ``None`` or a float in ``[0, 1]``.

    Attributes:
        coef_: ``[K, d]`` (``[1, d]`` for two classes); intercept_; classes_; n_features_in_.
    """

    def __init__(self, shrinkage: Any = "auto") -> None:
        self.shrinkage = shrinkage

    def fit(self, X: Any, y: Any) -> LDAProbe:
        """Fit on ``X [n, d]`` and labels ``y [n]``; returns ``self``."""
        s = self.shrinkage
        if not (s is None or s == "auto" or (isinstance(s, int | float) and 0.0 <= s <= 1.0)):
            raise ConfigError(f"shrinkage must be 'auto', None or a float in [0, 1], got {s!r}")
        X, y_idx = self._validate_fit(X, y)
        stats = SufficientStats.from_arrays(X, y_idx, n_classes=len(self.classes_))
        W, b = lda(stats, s)
        self._set_linear(W[0].numpy(), b[0].numpy(), binary="difference")
        return self


class RidgeRegressionProbe(RegressorMixin, BaseEstimator):
    """Closed-form ridge regression probe for continuous targets, like scikit-learn's ``Ridge``.

    Args:
        alpha: L2 penalty (>= 0), on centred data with an unpenalised intercept.

    Attributes:
        coef_: ``[d]`` for 1-D ``y``, ``[T, d]`` for ``y [n, T]``; intercept_; n_features_in_.
    """

    coef_: np.ndarray
    intercept_: Any

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    def fit(self, X: Any, y: Any) -> RidgeRegressionProbe:
        """Fit on ``X [n, d]`` and targets ``y [n]`` or ``[n, T]``; returns ``self``."""
        if not (isinstance(self.alpha, int | float) and self.alpha >= 0):
            raise ConfigError(f"alpha must be a number >= 0, got {self.alpha!r}")
        X, y = validate_data(
            self, to_numpy(X), to_numpy(y), dtype=np.float64, y_numeric=True, multi_output=True
        )
        y = np.asarray(y, dtype=np.float64)
        stats = SufficientStats.from_arrays(X, y, task="regression")
        W, b = ridge_path(stats, [float(self.alpha)])
        Wn, bn = W[0, 0].numpy(), b[0, 0].numpy()  # [d, T], [T]
        if y.ndim == 1:
            self.coef_, self.intercept_ = Wn[:, 0].copy(), float(bn[0])
        else:
            self.coef_, self.intercept_ = np.ascontiguousarray(Wn.T), bn.copy()
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets ``[n]`` (or ``[n, T]``)."""
        check_is_fitted(self)
        X = validate_data(self, to_numpy(X), reset=False, dtype=np.float64)
        return X @ self.coef_.T + self.intercept_


class MLPProbe(_ProbeClassifier):
    """Torch MLP probe, or a rank-constrained linear probe (Hewitt & Liang's complexity knobs).

    ``hidden_size=0`` or ``n_layers=0`` gives a linear probe; with ``rank=r`` its weight is ``W = A·B`` of
    rank at most ``r``. Trained with Adam (coupled ``weight_decay``) on cross-entropy over standardised
    features, mini-batches of ``batch_size``; ``early_stopping`` holds out a seeded 10 % and restores the
    best epoch (patience 5). Same ``random_state`` → same weights (CPU). Predictions run in float64.

    Args:
        hidden_size, rank, n_layers, dropout: architecture.
        weight_decay, lr, max_epochs, batch_size, early_stopping: training.
        random_state: int seed (``None``: a fresh seed each fit).
        standardize: standardise features with the training mean/std first.

    Attributes:
        module_: the trained ``torch.nn.Sequential`` (float64, eval mode); n_iter_ (epochs run);
        loss_curve_; coef_/intercept_ (raw units) for linear configurations; classes_; n_features_in_.
    """

    def __init__(
        self,
        hidden_size: int = 256,
        rank: int | None = None,
        n_layers: int = 1,
        dropout: float = 0.0,
        weight_decay: float = 0.0,
        lr: float = 1e-3,
        max_epochs: int = 50,
        batch_size: int = 256,
        early_stopping: bool = True,
        random_state: Any = None,
        standardize: bool = True,
    ) -> None:
        self.hidden_size = hidden_size
        self.rank = rank
        self.n_layers = n_layers
        self.dropout = dropout
        self.weight_decay = weight_decay
        self.lr = lr
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.early_stopping = early_stopping
        self.random_state = random_state
        self.standardize = standardize

    @property
    def _is_linear(self) -> bool:
        return self.hidden_size == 0 or self.n_layers == 0

    def fit(self, X: Any, y: Any) -> MLPProbe:
        """Train on ``X [n, d]`` and labels ``y [n]``; returns ``self``."""
        check_mlp_params(
            hidden_size=self.hidden_size,
            n_layers=self.n_layers,
            rank=self.rank,
            dropout=self.dropout,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
        )
        X, y_idx = self._validate_fit(X, y)
        seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        self.mean_, self.scale_ = _standardise(X, self.standardize)
        Xs = torch.from_numpy((X - self.mean_) / self.scale_).float()  # [n, d]
        run = train_mlp(
            Xs,
            torch.from_numpy(y_idx),
            n_classes=len(self.classes_),
            hidden_size=self.hidden_size,
            n_layers=self.n_layers,
            rank=self.rank,
            dropout=self.dropout,
            weight_decay=self.weight_decay,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            early_stopping=self.early_stopping,
            seed=seed,
        )
        self.module_ = run.module.double()
        self.n_iter_ = run.n_epochs
        self.loss_curve_ = run.loss_curve
        if self._is_linear:
            W, b = self._effective_linear()
            self.coef_, self.intercept_ = W.T, b
        return self

    def _effective_linear(self) -> tuple[np.ndarray, np.ndarray]:
        """The linear map ``[d, K]``, ``[K]`` of a linear configuration, in raw feature units."""
        d = len(self.mean_)
        with torch.no_grad():
            eye = torch.eye(d, dtype=torch.float64)  # [d, d]
            zero = self.module_(torch.zeros(1, d, dtype=torch.float64))[0]  # [K]
            W = (self.module_(eye) - zero).numpy() / self.scale_[:, None]  # [d, K]
        return W, zero.numpy() - self.mean_ @ W

    def _logits(self, X: np.ndarray) -> np.ndarray:
        with torch.no_grad(), threads_for(X.size * max(self.hidden_size, len(self.classes_))):
            return self.module_(torch.from_numpy((X - self.mean_) / self.scale_)).numpy()

    def _scores(self, X: np.ndarray) -> np.ndarray:
        logits = self._logits(X)
        return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities ``[n, K]``."""
        return softmax(self._logits(self._validate_predict(X)), axis=1)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Log class probabilities ``[n, K]``."""
        return np.log(np.clip(self.predict_proba(X), 1e-300, None))
