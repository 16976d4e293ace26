"""Peers that local learning is measured against: the same architecture trained end to end with backprop."""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch

from networks.checks import check_dataset, check_int
from networks.softhebb import activation


def backprop_mlp_accuracy(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    initial_weights: np.ndarray,
    epochs: int = 20,
    batch: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    readout: str = "kwta",
) -> Tuple[float, np.ndarray]:
    """Train ``pixels -> hidden -> classes`` end to end with Adam.

    The hidden layer starts from ``initial_weights`` ``(hidden, pixels)`` (the same
    start as the local learner) and uses the same activation as the SoftHebb
    readout (:func:`networks.softhebb.activation` of kind ``readout``), so only the
    learning differs. ``epochs`` are passes over ``x_train``. Images are ``(n, pixels)``, labels
    ``(n,)`` non-negative integers (the classes are ``0 .. max label``); ``batch >= 2``, as the batch
    norm needs two samples (a last batch of one is left out). Returns the test accuracy in [0, 1] and
    the learned hidden weights.
    """
    check_int("epochs", epochs, minimum=0)
    check_int("batch", batch, minimum=2)
    pixels = np.shape(initial_weights)[1]
    # The class count is read from the labels, so they are only checked to be class indices.
    y_train = check_dataset("backprop_mlp_accuracy (train)", x_train, y_train, pixels, None)
    y_test = check_dataset("backprop_mlp_accuracy (test)", x_test, y_test, pixels, None)
    g = torch.Generator().manual_seed(seed)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    hidden = torch.nn.Linear(x_train.shape[1], len(initial_weights), bias=False)
    with torch.no_grad():
        hidden.weight.copy_(torch.as_tensor(initial_weights, dtype=torch.float32))
    with torch.random.fork_rng():  # the head's initialization must not depend on earlier torch use
        torch.manual_seed(seed)
        head = torch.nn.Linear(len(initial_weights), n_classes)
    # The features are unnormalized; a batch norm plays the readout's StandardScaler.
    norm = torch.nn.BatchNorm1d(len(initial_weights))
    params = list(hidden.parameters()) + list(norm.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    x = torch.as_tensor(x_train, dtype=torch.float32)
    y = torch.as_tensor(y_train, dtype=torch.long)

    def forward(inputs: torch.Tensor) -> torch.Tensor:
        return head(norm(activation(hidden(inputs), readout)))

    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g)
        for start in range(0, len(x), batch):
            idx = order[start : start + batch]
            if len(idx) < 2:
                continue
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(forward(x[idx]), y[idx])
            loss.backward()
            opt.step()
    norm.eval()
    with torch.no_grad():
        pred = forward(torch.as_tensor(x_test, dtype=torch.float32)).argmax(dim=1).numpy()
    return float((pred == y_test).mean()), hidden.weight.detach().numpy().copy()
