"""Suite-wide settings: quiet TensorFlow, ``auto`` without timing, no state
shared between tests, and a GPU shared safely by the test workers.

``implementation="auto"`` times its candidates the first time it meets a
layer geometry; across hundreds of random geometries that would slow the
suite and make its choices depend on the machine's load. The suite runs the
static rule instead (exact either way: every lowering computes the same
numbers); tests/ops/test_tuning.py turns measuring on where it is the subject.

Every test starts from empty tuning state (:func:`_isolated_state`): no
choice remembered in the process, an empty cache directory of its own (never
the user's), tuning off, whatever an earlier test in the same worker did
(the benchmark's entry point, for one, turns tuning on). A test that needs a
particular choice forces it. The suite runs in random order
(pytest-randomly prints its seed; ``--randomly-seed=N`` replays an order,
``-p no:randomly`` keeps the file order).

On a GPU machine, each pytest-xdist worker is a TensorFlow process, and by
default the first one takes nearly all of the GPU's memory, so the others
fail to create cuDNN handles or crash: memory growth lets them share it.
TensorFloat-32 (on by default on Ampere and newer GPUs) rounds convolution
inputs to 10 mantissa bits, far outside the float32 tolerances the suite
checks against its float64 reference, so it is turned off.

Subprocesses started by the tests inherit the environment settings.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_TCONV_TUNING"] = "off"
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")  # cuBLAS and cuDNN, in subprocesses too


def _backend() -> str:
    """Keras's backend for this run (``KERAS_BACKEND``; the JAX tests run in a pytest run of their own)."""
    return os.environ.get("KERAS_BACKEND", "tensorflow")


def pytest_configure(config):
    """TensorFloat-32 off for XLA's GPU kernels too (``jit_compile="auto"``), in
    each process that runs tests: not in xdist's controller, which only
    schedules them and need not load TensorFlow."""
    if getattr(config.option, "dist", "no") != "no" and not hasattr(config, "workerinput"):
        return
    if _backend() != "tensorflow":
        return
    import tensorflow as tf

    tf.config.experimental.enable_tensor_float_32_execution(False)


@pytest.fixture(autouse=True)
def _isolated_state(monkeypatch, tmp_path_factory):
    """Fresh tuning state, float32 and op determinism off around every test;
    a test that leaks a dtype policy or op determinism fails."""
    import keras

    from keras_tconv.ops.choosing import tuning

    monkeypatch.setenv("KERAS_TCONV_TUNING", "off")
    monkeypatch.setenv("KERAS_TCONV_CACHE_DIR", str(tmp_path_factory.mktemp("tuning_cache")))
    tuning.clear_memory()
    yield
    tuning.clear_memory()
    leaked_policy = keras.config.dtype_policy().name
    keras.config.set_dtype_policy("float32")
    leaked_determinism = False
    if _backend() == "tensorflow":
        from tensorflow.python.framework import config as tf_config

        leaked_determinism = tf_config.is_op_determinism_enabled()
        tf_config.disable_op_determinism()
    assert leaked_policy == "float32", f"the test leaked the global dtype policy {leaked_policy!r}"
    assert not leaked_determinism, "the test left op determinism enabled"


# On the JAX backend only its own tests (tests/jax) and Keras's shipped layer
# tests run; the rest exercise TensorFlow.
if _backend() == "jax":
    collect_ignore = ["ops", "benchmark", "train"]
