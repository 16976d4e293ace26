"""Linear readouts that turn learned (unsupervised) features into accuracy."""
from __future__ import annotations

import numpy as np


def fit_readout(train_features: np.ndarray, train_labels: np.ndarray, max_iter: int = 2000):
    """A multinomial logistic regression on standardized features ``(n, d)`` with labels ``(n,)``
    (a scikit-learn pipeline: ``.score(features, labels)``, ``.predict(features)``)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _check("train", train_features, train_labels)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
    model.fit(train_features, train_labels)
    return model


def readout_accuracy(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    max_iter: int = 2000,
) -> float:
    """Fit :func:`fit_readout` on the training features; return its test accuracy in [0, 1].

    Shapes: features ``(n, d)``, labels ``(n,)`` integers.
    """
    _check("train", train_features, train_labels)
    _check("test", test_features, test_labels)
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError("train and test features have different widths")
    model = fit_readout(train_features, train_labels, max_iter)
    return float(model.score(test_features, test_labels))


def _check(name: str, x: np.ndarray, y: np.ndarray) -> None:
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"{name}: need features (n, d) and labels (n,), got {x.shape} and {y.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} features contain NaN or infinite values")
