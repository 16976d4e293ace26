"""Linear readouts that turn learned (unsupervised) features into accuracy."""
from __future__ import annotations

import numpy as np


def fit_readout(train_features: np.ndarray, train_labels: np.ndarray, max_iter: int = 2000):
    """A multinomial logistic regression on standardized features ``(n, d)`` with labels ``(n,)``
    (a scikit-learn pipeline: ``.score(features, labels)``, ``.predict(features)``)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_features, train_labels = _check("train", train_features, train_labels)
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
    train_features, train_labels = _check("train", train_features, train_labels)
    test_features, test_labels = _check("test", test_features, test_labels)
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError("train and test features have different widths")
    model = fit_readout(train_features, train_labels, max_iter)
    return float(model.score(test_features, test_labels))


def _as_numpy(a) -> np.ndarray:
    # torch tensors (what the engine returns) and lists as well as arrays
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def _check(name: str, x, y) -> tuple:
    """Features ``(n, d)`` and integer labels ``(n,)`` as numpy arrays (the features' dtype kept)."""
    x, y = _as_numpy(x), _as_numpy(y)
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"{name}: need features (n, d) and labels (n,), got {x.shape} and {y.shape}")
    if x.dtype.kind not in "biuf":
        raise ValueError(f"{name} features must be numbers, got dtype {x.dtype}")
    if y.dtype.kind not in "iu":
        raise ValueError(f"{name} labels must be integer classes, got dtype {y.dtype}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} features contain NaN or infinite values")
    return x, y
