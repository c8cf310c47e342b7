"""Fixtures for the layer-level tests (tests/layer)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded_and_policy_guarded():
    """Seed every test; fail loudly if a test leaks a non-float32 global dtype policy."""
    keras.utils.set_random_seed(0)
    yield
    leaked = keras.config.dtype_policy().name
    keras.config.set_dtype_policy("float32")
    assert leaked == "float32", f"test leaked the global dtype policy {leaked!r}"


@pytest.fixture
def rng():
    return np.random.default_rng(0)
