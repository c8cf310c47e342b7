"""TensorFlow's devices as the code that times on them uses them: the device
string of the first CPU or GPU, and waiting for a GPU's queued work.

``auto``'s tuner (:mod:`keras_tconv.ops.tensorflow.tuning` places its
measurements, :mod:`keras_tconv.ops.tensorflow.conv2d_transpose` runs them)
and the benchmark (:mod:`keras_tconv.benchmark.impls`) both use these, so
that they time the same way.
"""

from __future__ import annotations

import tensorflow as tf

_DEVICE_STRINGS = {"cpu": "/CPU:0", "gpu": "/GPU:0"}


def device_string(kind: str) -> str:
    """TensorFlow's device string of the first device of ``kind``, ``"cpu"``
    or ``"gpu"``: ``"/CPU:0"`` or ``"/GPU:0"``."""
    return _DEVICE_STRINGS[kind]


def wait_for_gpu(result=None) -> None:
    """Returns once the GPU has finished all work queued so far, ``result``'s
    included: a GPU runs its kernels after the call that queued them has
    returned, so a timer stops only after this. (``result`` is taken, not
    needed, so that this is a ``sync`` of :func:`keras_tconv.timing.measure`.)
    Must run eagerly, outside any ``tf.function``."""
    tf.test.experimental.sync_devices()
