"""Fixtures for the layer-level tests (tests/layer)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Keras's shipped tests and the argument and input errors run on both backends;
# the rest of this directory exercises TensorFlow.
BOTH_BACKENDS = {"test_keras_shipped_tests.py", "test_errors.py"}
if os.environ.get("KERAS_BACKEND") == "jax":
    collect_ignore = sorted(
        name
        for name in os.listdir(os.path.dirname(__file__))
        if name.endswith(".py") and name not in BOTH_BACKENDS
    )

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded():
    """Seed every test (the dtype policy is guarded suite-wide, tests/conftest.py)."""
    keras.utils.set_random_seed(0)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
