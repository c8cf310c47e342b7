"""Operations: the transposed convolution, its lowerings per backend, and how ``auto`` chooses.

Layout: :mod:`~keras_tconv.ops.phases` (the phase arithmetic, backend-free) and
:mod:`~keras_tconv.ops.registry` (the implementations) -> one package per
backend (:mod:`~keras_tconv.ops.tensorflow`, :mod:`~keras_tconv.ops.jax`), each
with its lowerings, gradients and op; :mod:`~keras_tconv.ops.choosing` (static
rules, measurement, cache, lowering target) serves both. Nothing here imports
a backend until :func:`conv2d_transpose` runs on it.
"""

from __future__ import annotations

from keras_tconv.ops.choosing.rules import lowering_target
from keras_tconv.ops.choosing.tuning import choices as tuning_choices
from keras_tconv.ops.registry import IMPLEMENTATIONS


def conv2d_transpose(inputs, kernel, strides, *args, **kwargs):
    """Keras's Conv2DTranspose computed by kernel segregation, on Keras's
    backend: :func:`keras_tconv.ops.tensorflow.conv2d_transpose.conv2d_transpose`
    (TensorFlow) or :func:`keras_tconv.ops.jax.conv2d_transpose.conv2d_transpose`
    (JAX), which document the arguments."""
    import keras

    if keras.backend.backend() == "jax":
        from keras_tconv.ops.jax.conv2d_transpose import conv2d_transpose as op
    else:
        from keras_tconv.ops.tensorflow.conv2d_transpose import conv2d_transpose as op
    return op(inputs, kernel, strides, *args, **kwargs)


__all__ = ["IMPLEMENTATIONS", "conv2d_transpose", "lowering_target", "tuning_choices"]
