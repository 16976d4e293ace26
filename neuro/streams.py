"""Task streams for continual learning, cut from a :class:`~neuro.datasets.Dataset`.

* :func:`split_tasks`: the classes in consecutive groups (split MNIST: 5 tasks of 2
  classes, ``0/1, 2/3, ...``);
* :func:`permuted_tasks`: every task is the whole data set under its own fixed
  pixel permutation (task 0 unpermuted).

Labels: every :class:`Task` keeps the original labels ``y`` and gives, per sample,
``y_in_task`` (the index of the label among the task's classes), which is the
target of the *domain-incremental* setting (one shared output per position in
the task, e.g. "first or second digit of the pair") and, with the output
restricted to ``classes``, of the *task-incremental* one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from neuro.datasets import Dataset


@dataclass(frozen=True, eq=False)
class Task:
    """One task of a stream; arrays as in :class:`~neuro.datasets.Dataset` (images ``(n, pixels)``)."""

    name: str
    classes: Tuple[int, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def in_task(self, y: np.ndarray) -> np.ndarray:
        """Each label's position among :attr:`classes` (``int64``)."""
        lookup = {c: k for k, c in enumerate(self.classes)}
        return np.array([lookup[int(v)] for v in y], dtype=np.int64)

    @property
    def y_train_in_task(self) -> np.ndarray:
        return self.in_task(self.y_train)

    @property
    def y_test_in_task(self) -> np.ndarray:
        return self.in_task(self.y_test)


def split_tasks(data: Dataset, n_tasks: int = 5) -> List[Task]:
    """Classes ``0..C-1`` cut into ``n_tasks`` consecutive groups of equal size (split MNIST)."""
    _check_count("split_tasks", n_tasks)
    if data.n_classes % n_tasks:
        raise ValueError(f"split_tasks: {data.n_classes} classes cannot be cut into {n_tasks!r} equal tasks")
    size = data.n_classes // n_tasks
    tasks = []
    for k in range(n_tasks):
        classes = tuple(range(k * size, (k + 1) * size))
        tr, te = np.isin(data.y_train, classes), np.isin(data.y_test, classes)
        if not tr.any() or not te.any():
            raise ValueError(f"split_tasks: task {k} (classes {classes}) has no {'training' if not tr.any() else 'test'} "
                             f"images in {data.name!r}")
        tasks.append(Task(f"{data.name} classes {'/'.join(map(str, classes))}", classes,
                          data.x_train[tr], data.y_train[tr], data.x_test[te], data.y_test[te]))
    return tasks


def permuted_tasks(data: Dataset, n_tasks: int = 5, seed: int = 0) -> List[Task]:
    """``n_tasks`` copies of the data set, task ``k > 0`` with its own seeded pixel permutation."""
    _check_count("permuted_tasks", n_tasks)
    rng = np.random.default_rng(seed)
    classes = tuple(range(data.n_classes))
    tasks = []
    for k in range(n_tasks):
        perm = np.arange(data.n_features) if k == 0 else rng.permutation(data.n_features)
        tasks.append(Task(f"{data.name} permutation {k}", classes,
                          data.x_train[:, perm], data.y_train, data.x_test[:, perm], data.y_test))
    return tasks


def _check_count(where: str, n_tasks: object) -> None:
    if isinstance(n_tasks, bool) or not isinstance(n_tasks, (int, np.integer)) or n_tasks < 1:
        raise ValueError(f"{where}: n_tasks must be a positive integer, got {n_tasks!r}")


def average_accuracy(acc: np.ndarray) -> float:
    """Mean accuracy over all tasks after the last one; ``acc[i, j]``: on task ``j`` after training task ``i``."""
    acc = _check(acc)
    return float(acc[-1].mean())


def average_forgetting(acc: np.ndarray) -> float:
    """Mean over tasks ``j < T-1`` of the best accuracy ever reached on ``j`` (before the end) minus
    the final one (Chaudhry et al. 2018); 0 for a single task."""
    acc = _check(acc)
    if len(acc) < 2:
        return 0.0
    return float(np.mean([acc[j:-1, j].max() - acc[-1, j] for j in range(len(acc) - 1)]))


def _check(acc: np.ndarray) -> np.ndarray:
    acc = np.asarray(acc, dtype=float)
    if acc.ndim != 2 or acc.shape[0] != acc.shape[1] or acc.size == 0:
        raise ValueError(f"accuracy matrix must be (tasks, tasks), got shape {acc.shape}")
    return acc


__all__ = ["Task", "split_tasks", "permuted_tasks", "average_accuracy", "average_forgetting"]
