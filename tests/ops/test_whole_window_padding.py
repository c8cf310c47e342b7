"""Half-precision convolutions never pad a whole window under oneDNN.

On a CPU with AVX-512 and AMX (an Intel Xeon; TensorFlow 2.21, oneDNN), a
float16 or bfloat16 ``Conv2D`` whose explicit padding holds a whole window
(an output position that sees no input) crashes the process with a
segmentation fault, for example input ``(1, 5, 1, 2)``, kernel
``(1, 2, 2, 8)``, width padding ``(1, 2)``; float32 and 16 input channels
did not. The segregated lowerings pad whole windows wherever a phase has
fewer taps than its neighbours (k=3, s=2, "valid": the one-tap phase has one
output block more than input positions), so the layer moves such padding
into the input (``lowerings._pad_whole_windows``). The crash needs such a
CPU, so these tests check the graphs on any machine (the kernel library
patched to oneDNN), the rewrite's numbers, and run the crashing call itself
in a subprocess under oneDNN.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from graph_ops import gradient_graph_ops
from reference import pair

from keras_tconv.ops.tensorflow import lowerings
from keras_tconv.ops.tensorflow.conv2d_transpose import conv2d_transpose

# (kernel, strides, padding, output_padding): geometries whose phases pad whole windows.
GEOMETRIES = [(3, 2, "valid", None), (2, 2, "valid", 1), (3, 3, "valid", 2), ((1, 3), (3, 2), "same", None)]
HALF = [tf.float16, tf.bfloat16]


def _conv_ops(dtype, implementation, geometry, shape=(2, 4, 1, 2), filters=4):
    """The Conv2D ops of the traced forward and gradient graph (a 1x1 window
    left without padding is a MatMul instead)."""
    kernel_size, strides, padding, output_padding = geometry
    ops = gradient_graph_ops(
        tf.TensorSpec(shape, dtype),
        (*pair(kernel_size), filters, shape[-1]),
        implementation,
        strides=strides,
        padding=padding,
        output_padding=output_padding,
    )
    return [op for op in ops if op.type == "Conv2D"]


def _whole_window_padded(op) -> bool:
    if op.get_attr("padding") != b"EXPLICIT":
        return False
    pads, (kh, kw) = op.get_attr("explicit_paddings"), op.inputs[1].shape[:2]
    return max(pads[2:4]) >= kh or max(pads[4:6]) >= kw


@pytest.mark.parametrize("implementation", ["split", "rows", "unified", "zero_insertion"])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_half_precision_pads_no_whole_window_under_onednn(monkeypatch, implementation, geometry):
    monkeypatch.setattr(lowerings, "cpu_kernel_library", lambda: "oneDNN")
    for dtype in HALF:
        ops = _conv_ops(dtype, implementation, geometry)
        assert not any(_whole_window_padded(op) for op in ops), (dtype, ops)


def test_the_geometries_do_pad_whole_windows_otherwise(monkeypatch):
    """Without the rewrite (float32, or Eigen) these geometries do pad whole
    windows: the test above checks something."""
    assert any(_whole_window_padded(op) for op in _conv_ops(tf.float32, "split", GEOMETRIES[0]))
    monkeypatch.setattr(lowerings, "cpu_kernel_library", lambda: "Eigen")
    assert any(_whole_window_padded(op) for op in _conv_ops(tf.bfloat16, "split", GEOMETRIES[0]))


@pytest.mark.parametrize("implementation", ["split", "rows", "unified"])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_rewrite_computes_the_same_numbers(monkeypatch, implementation, geometry):
    """The rewritten half-precision layer against the unrewritten one (same
    dtype, same rounding: both sum the same products in the same order)."""
    kernel_size, strides, padding, output_padding = geometry
    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((2, 4, 3, 2)), tf.float16)
    kernel = tf.constant(rng.standard_normal((*pair(kernel_size), 3, 2)), tf.float16)
    run = lambda: conv2d_transpose(x, kernel, strides, padding, output_padding, implementation=implementation)  # noqa: E731
    monkeypatch.setattr(lowerings, "cpu_kernel_library", lambda: "Eigen")
    want = run()
    monkeypatch.setattr(lowerings, "cpu_kernel_library", lambda: "oneDNN")
    np.testing.assert_array_equal(run(), want)


_CRASHING_CALL = """
import numpy as np, tensorflow as tf
from keras_tconv.ops.tensorflow import lowerings
x = np.random.default_rng(0).standard_normal((1, 5, 1, 2))
k = np.random.default_rng(1).standard_normal((1, 2, 2, 8))
want = lowerings._padded_conv(tf.constant(x, tf.float32), tf.constant(k, tf.float32), None, (0, 0), (1, 2))
for dtype in (tf.bfloat16, tf.float16):
    got = lowerings._padded_conv(tf.constant(x, dtype), tf.constant(k, dtype), None, (0, 0), (1, 2))
    np.testing.assert_allclose(tf.cast(got, tf.float32), want, rtol=0.05, atol=0.05)
print("ok")
"""


def test_the_crashing_call_runs_under_onednn():
    """The call that crashed oneDNN on an AVX-512/AMX Xeon, in a subprocess
    (a crash must not take the test worker with it)."""
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(
        [sys.executable, "-c", _CRASHING_CALL], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]
