"""Linear readouts that turn learned (unsupervised) features into accuracy."""
from __future__ import annotations

import numpy as np


def readout_accuracy(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    max_iter: int = 2000,
) -> float:
    """Fit a multinomial logistic regression on standardized features; return test accuracy in [0, 1].

    Shapes: features ``(n, d)``, labels ``(n,)`` integers.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    for name, x, y in (("train", train_features, train_labels), ("test", test_features, test_labels)):
        if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"{name}: need features (n, d) and labels (n,), got {x.shape} and {y.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name} features contain NaN or infinite values")
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError("train and test features have different widths")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
    model.fit(train_features, train_labels)
    return float(model.score(test_features, test_labels))
