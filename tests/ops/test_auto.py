"""``implementation="auto"``: the rule documented in keras_tconv/ops/auto.py, per lowering target,
and its switch to TensorFlow's kernel for few rows of work."""

from __future__ import annotations

import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_tconv import SegregatedConv2DTranspose, lowering_target
from keras_tconv.ops.auto import choose_implementation
from keras_tconv.ops.conv2d_transpose import plan_axes

# (kernel, stride, padding, filters, in_channels) -> choice for TensorFlow, choice for LiteRT.
# The layers are those of the benchmark's models and paper suites that the rule's docstring cites.
CASES = [
    ((5, 5), 2, "same", 1, 64, "native", "unified"),  # TF DCGAN 64 -> 1
    ((4, 4), 2, "same", 3, 64, "native", "unified"),  # DCGAN to RGB
    ((4, 4), 2, "same", 256, 512, "rows", "unified"),  # DCGAN 512 -> 256
    ((2, 2), 2, "same", 32, 64, "rows", "unified"),  # U-Net k=2
    ((4, 4), 2, "same", 3, 3, "unified", "unified"),  # RGB 3 -> 3, no wasted tap
    ((3, 3), 2, "same", 32, 1, "rows", "unified"),  # the paper's MNIST layer
    ((5, 5), 2, "same", 3, 3, "unified", "unified"),  # RGB k=5
    ((5, 5), 2, "same", 64, 128, "split", "split"),  # TF DCGAN 128 -> 64: every phase >= 2 taps
    ((3, 3), 2, "same", 256, 256, "split", "split"),  # SRDenseNet: wide
    ((3, 3), 2, "same", 32, 64, "native", "split"),  # VAE / CIFAR decoders: 1-tap phases
    ((3, 3), 2, "valid", 64, 128, "native", "split"),
    ((3, 3), 1, "same", 8, 8, "unified", "unified"),  # stride 1: a plain convolution
    ((2, 2), 5, "valid", 32, 32, "native", "split"),  # stride above the kernel: empty phases
]


def _choose(kernel, stride, padding, filters, channels):
    shape = (*kernel, filters, channels)
    return choose_implementation(shape, *plan_axes(shape, stride, padding, None))


@pytest.mark.parametrize("kernel,stride,padding,filters,channels,tensorflow,litert", CASES)
def test_rule(kernel, stride, padding, filters, channels, tensorflow, litert):
    assert _choose(kernel, stride, padding, filters, channels) == tensorflow
    with lowering_target("litert"):
        assert _choose(kernel, stride, padding, filters, channels) == litert
    assert _choose(kernel, stride, padding, filters, channels) == tensorflow  # restored on exit


def test_litert_never_picks_tensorflows_kernel():
    with lowering_target("litert"):
        choices = {_choose(k, s, p, f, c) for k, s, p, f, c, *_ in CASES}
    assert "native" not in choices and choices <= {"split", "unified", "rows"}


def test_target_is_per_thread_and_restored_after_errors():
    seen = []
    with pytest.raises(RuntimeError):
        with lowering_target("litert"):
            worker = threading.Thread(target=lambda: seen.append(_choose((5, 5), 2, "same", 1, 64)))
            worker.start()
            worker.join()
            raise RuntimeError("boom")
    assert seen == ["native"]  # another thread keeps the default target
    assert _choose((5, 5), 2, "same", 1, 64) == "native"


def test_unknown_target_is_rejected():
    with pytest.raises(ValueError, match=r"Expected one of \('tensorflow', 'litert'\). Received: target='tflite'"):
        with lowering_target("tflite"):
            pass


def test_native_below_rows():
    from keras_tconv.ops.auto import native_below_rows

    assert native_below_rows((4, 4, 256, 512), "rows") == 128  # 2**15 / 256
    assert native_below_rows((5, 5, 64, 128), "split") == 512
    assert native_below_rows((4, 4, 3, 3), "unified") == 0  # small kernels: never worth it
    assert native_below_rows((5, 5, 1, 64), "native") == 0
    with lowering_target("litert"):
        assert native_below_rows((4, 4, 256, 512), "rows") == 0


def _graph_op_types(layer, signature):
    function = tf.function(layer.call, input_signature=[signature])
    return {op.type for op in function.get_concrete_function().graph.get_operations()}


def test_small_batches_take_tensorflows_kernel_decided_when_the_graph_runs():
    """With a dynamic batch the choice is a cond on the rows of work; both
    branches match Keras, forward and gradients, under one trace."""
    ours = SegregatedConv2DTranspose(32, 4, strides=2, padding="same", activation="relu")
    ours.build((None, 4, 4, 64))
    keras_layer = keras.layers.Conv2DTranspose(32, 4, strides=2, padding="same", activation="relu")
    keras_layer.build((None, 4, 4, 64))
    keras_layer.set_weights(ours.get_weights())
    traced = tf.function(ours.call, input_signature=[tf.TensorSpec((None, 4, 4, 64), tf.float32)])
    # 2**15 / 32 = 1024 rows: batch 1 (16 rows) runs TF's kernel, batch 80 (1280 rows) the lowering.
    for batch in (1, 80):
        x = tf.random.normal((batch, 4, 4, 64), seed=batch)
        got, want = [], []
        for call, variables, out in ((traced, ours.trainable_weights, got), (keras_layer, keras_layer.trainable_weights, want)):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = call(x)
                loss = tf.reduce_sum(y * tf.cos(y))
            out += [y, *tape.gradient(loss, [x, *variables])]
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(w).max())))
    assert traced.experimental_get_tracing_count() == 1
    assert "StatelessIf" in _graph_op_types(ours, tf.TensorSpec((None, 4, 4, 64), tf.float32))
    # A static batch decides while tracing: no cond, and the right kernel.
    assert {"StatelessIf", "Conv2D"}.isdisjoint(_graph_op_types(ours, tf.TensorSpec((1, 4, 4, 64), tf.float32)))
    big = _graph_op_types(ours, tf.TensorSpec((80, 4, 4, 64), tf.float32))
    assert "Conv2D" in big and "Conv2DBackpropInput" not in big
    with lowering_target("litert"):
        assert "StatelessIf" not in _graph_op_types(ours, tf.TensorSpec((None, 4, 4, 64), tf.float32))
