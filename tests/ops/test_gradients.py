"""The gradients avoid the TensorFlow kernel calls that oneDNN computes wrong
(see keras_tconv/ops/tensorflow/gradients.py and the list of TensorFlow defects in docs/design.md).

The defects show only on some CPUs (the strided ``conv2d`` one on AVX-512),
so besides the numbers, these tests check the gradient graph itself: no
kernel receives a defective geometry, on any machine.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from graph_ops import gradient_graph_ops
from reference import Reference

from keras_tconv.ops import conv2d_transpose
from keras_tconv.ops.phases import plan_axes
from keras_tconv.ops.tensorflow.gradients import (
    KERNEL_GRADIENT_FORMS,
    _adjoint_axes,
    kernel_gradient,
    kernel_gradient_forms,
)

IMPLEMENTATIONS = ("split", "rows", "unified", "native", "auto")


def _strided_axes(op):
    strides = op.get_attr("strides")
    return [axis for axis in (1, 2) if strides[axis] > 1]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("strides", [(2, 2), (3, 1), (1, 4)])
def test_unit_kernel_gradient_is_never_strided(implementation, strides):
    """oneDNN's Conv2DBackpropFilter is wrong for a 1-long kernel axis with a
    stride: no kernel-gradient call has that geometry, and the numbers are
    the definition's."""
    spec = tf.TensorSpec((2, 5, 6, 3))
    ops = gradient_graph_ops(spec, (1, 1, 2, 3), implementation, strides=strides, padding="valid")
    filter_grads = [op for op in ops if op.type == "Conv2DBackpropFilter"]
    assert filter_grads
    for op in filter_grads:
        assert not _strided_axes(op), op

    rng = np.random.default_rng(0)
    x, kernel = rng.standard_normal((2, 5, 6, 3)), rng.standard_normal((1, 1, 2, 3))
    reference = Reference((1, 1), strides)
    cotangent = rng.standard_normal(reference.output_shape(x.shape, 2))
    xt, kt = tf.constant(x, tf.float32), tf.constant(kernel, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch([xt, kt])
        loss = tf.reduce_sum(conv2d_transpose(xt, kt, strides, implementation=implementation) * cotangent)
    dx, dkernel = tape.gradient(loss, [xt, kt])
    want_dx, want_dkernel, _ = reference.gradients(x, kernel, np.zeros(2), cotangent)
    np.testing.assert_allclose(dkernel, want_dkernel, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("spec_width", [1, None])
def test_one_pixel_wide_input_gradient_is_not_strided(implementation, spec_width):
    """oneDNN's Conv2D is wrong for a strided axis with a single output
    position (1 input channel, batch >= 2): the input gradient of a
    one-filter layer on a 1-pixel-wide input never runs it, whether the
    width is known when tracing or only at run time (a cond)."""
    spec = tf.TensorSpec((2, 2, spec_width, 3))
    ops = gradient_graph_ops(spec, (1, 2, 1, 3), implementation, strides=(1, 2), padding="valid")
    widths_of_one = [
        op for op in ops if op.type == "Conv2D" and 2 in _strided_axes(op) and op.outputs[0].shape[2] == 1
    ]
    assert not widths_of_one
    if spec_width is None:
        assert any(op.type in ("If", "StatelessIf") for op in ops)


@pytest.mark.parametrize(
    "kernel,stride,padding,output_padding",
    [
        (1, 3, "valid", None),
        (1, 2, "same", 1),
        (3, 2, "same", None),
        (4, 3, "valid", 1),
        (2, 5, "valid", None),
        # output_padding at or above the stride (a larger dilation allows it): 1-tap axes
        # with trailing positions.
        (1, 2, "valid", 2),
        (1, 2, "same", 3),
        (1, 3, "valid", 4),
        (2, 2, "valid", 3),
    ],
)
def test_adjoint_rewrites_are_identities(kernel, stride, padding, output_padding):
    """Each axis rewrite reads the same cotangent positions for every input
    length: the unit-kernel axis reads ``dy[::s]`` (``N`` positions), the
    one-window axis exactly the window of its single output."""
    (plan, _) = plan_axes((kernel, kernel, 1, 1), stride, padding, output_padding)
    for n in range(1, 6):
        (axis, step), _ = _adjoint_axes((plan, plan), (n, n))
        g = plan.geometry
        length = n * stride + g.extra
        original = [
            [o for o in (j * stride + t - g.crop for t in range(kernel)) if 0 <= o < length] for j in range(n)
        ]
        padded = axis.before + len(range(0, length, step)) + axis.after
        assert (padded - axis.kernel_size) // axis.stride + 1 == n
        rewritten = [
            [
                step * (j * axis.stride + t - axis.before)
                for t in range(axis.kernel_size)
                if 0 <= j * axis.stride + t - axis.before < len(range(0, length, step))
            ]
            for j in range(n)
        ]
        assert rewritten == original, (n, axis, step)


@pytest.mark.parametrize(
    "kernel,strides,padding,output_padding,size",
    [
        (3, 2, "same", None, (5, 6)),
        (4, 2, "same", None, (4, 4)),
        (2, 2, "valid", None, (3, 5)),
        (5, 3, "valid", (1, 2), (4, 3)),
        (3, 2, "valid", 1, (1, 4)),
    ],
)
def test_kernel_gradient_forms_agree_with_the_definition(kernel, strides, padding, output_padding, size):
    """Both padding forms of the kernel gradient (oneDNN's and Eigen's kernel
    under oneDNN; ``auto`` measures which is faster) compute the definition."""
    rng = np.random.default_rng(1)
    x, weights = rng.standard_normal((2, *size, 3)), rng.standard_normal((kernel, kernel, 4, 3))
    reference = Reference((kernel, kernel), strides, padding, output_padding)
    cotangent = rng.standard_normal(reference.output_shape(x.shape, 4))
    _, want, _ = reference.gradients(x, weights, np.zeros(4), cotangent)
    plans = plan_axes(weights.shape, strides, padding, output_padding)
    xt, dy = tf.constant(x, tf.float32), tf.constant(cotangent, tf.float32)
    assert kernel_gradient_forms(plans, size) in (KERNEL_GRADIENT_FORMS, ("explicit",))
    for form in KERNEL_GRADIENT_FORMS:
        got = kernel_gradient(dy, xt, weights.shape, *plans, form=form)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4, err_msg=form)


@pytest.mark.parametrize(
    "strides,dilation,output_padding,accepted",
    [
        (2, 3, (2, 0), True),
        (2, 1, (1, 1), True),
        (2, 3, (3, 0), False),
        (2, 1, (2, 0), False),
        (1, 1, (0, -1), False),
        (1, 4, 3, True),
    ],
)
def test_op_bounds_output_padding_by_stride_or_larger_dilation(strides, dilation, output_padding, accepted):
    """The op takes ``0 <= output_padding < max(stride, dilation)`` per axis
    (Keras's bound, extended with the dilation) and says so otherwise."""
    x, kernel = tf.zeros((1, 3, 3, 2)), tf.zeros((1, 2, 2, 2))
    run = lambda: conv2d_transpose(x, kernel, strides, "valid", output_padding, dilation_rate=dilation)  # noqa: E731
    if accepted:
        run()
        return
    with pytest.raises(
        ValueError, match="`output_padding` must be non-negative and strictly less than `strides`"
    ):
        run()
