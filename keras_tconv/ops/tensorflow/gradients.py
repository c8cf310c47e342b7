"""Input and kernel gradients of the transposed convolution, on TensorFlow's kernels.

Both are the adjoint strided correlation of the cotangent ``dy`` (see
:attr:`~keras_tconv.ops.phases.AxisGeometry.adjoint`): the input gradient is
``conv2d(dy, kernel, strides)``, the kernel gradient
``Conv2DBackpropFilter(dy, ..., x, strides)``, the two kernels TensorFlow
runs for its own Conv2DTranspose. They are called with "SAME" or "VALID"
wherever one of those expresses the geometry, as TensorFlow's registered
gradient does: oneDNN runs convolution gradients only for those paddings
and leaves ``"EXPLICIT"`` to a slower Eigen fallback.

A few geometries are rewritten first, each an exact identity, so that no
kernel sees a shape on which one of TensorFlow's CPU kernel libraries
computes wrong (TensorFlow 2.21, oneDNN; listed in docs/design.md):

* A kernel of length 1 along a strided axis reads every ``s``-th cotangent
  position: that axis becomes ``dy[::s]`` with stride 1. oneDNN's
  ``Conv2DBackpropFilter`` returns wrong, run-to-run different values for
  1x1 kernels with a stride above 1 (uninitialised scratch memory).
* An input of length 1 along a strided axis has one window: that axis
  becomes stride 1 over exactly that window. oneDNN's ``Conv2D`` returns
  wrong values for a strided axis with one output position (1 input
  channel, batch >= 2, on AVX-512). When the length is unknown and the
  layer has one filter, a ``tf.cond`` on the runtime length picks the form.
* A stride above the kernel length on any axis (windows that skip
  positions) sends the kernel gradient to Eigen's kernel (``"EXPLICIT"``
  padding), which computes it right, instead of oneDNN's.

Under oneDNN the kernel gradient has two forms that compute the same values
on different kernels (:data:`KERNEL_GRADIENT_FORMS`): ``"native"``, the
"SAME"/"VALID" call above (oneDNN's kernel), and ``"explicit"``, the same
correlation with ``"EXPLICIT"`` padding (Eigen's kernel). Which is faster
depends on the CPU and the shapes, either way, so
``implementation="auto"`` measures them (see
:func:`keras_tconv.ops.tensorflow.conv2d_transpose.conv2d_transpose`).
"""

from __future__ import annotations

import tensorflow as tf

from keras_tconv.ops.phases import AxisPlan, StridedAxis
from keras_tconv.ops.tensorflow.lowerings import slice_stop


def _unit_kernel_axis(axis: StridedAxis) -> StridedAxis:
    """``axis`` read through ``dy[::s]``: its every ``s``-th position, stride 1.

    A 1-tap kernel has no crop (``before == 0``) and ``extra > -s`` for
    every Keras output length, so ``dy[::s]`` holds ``N + ceil(extra / s)``
    positions: ``N`` when ``extra <= 0``, more when an ``output_padding`` of
    at least the stride (which a larger dilation allows) lengthens the
    output. The positions beyond ``N`` receive no input pixel; a negative
    ``after`` crops them.
    """
    assert axis.before == 0 and axis.extra > -axis.stride, axis  # no geometry reaches this
    extra = -(-axis.extra // axis.stride) if axis.extra > 0 else 0
    return StridedAxis(1, 1, extra, 0, -extra)


def _single_window_axis(axis: StridedAxis) -> StridedAxis:
    """``axis`` for ``N == 1`` as a stride-1 correlation over its one window."""
    length = axis.stride + axis.extra
    return StridedAxis(1, axis.kernel_size, length - 1, axis.before, axis.kernel_size - axis.before - length)


def _adjoint_axes(plans, lengths):
    """Per axis: (the correlation to run, the step with which ``dy`` is read),
    given the input's static lengths (``None`` where unknown)."""
    axes = []
    for plan, length in zip(plans, lengths):
        axis = plan.geometry.adjoint
        if axis.stride > 1 and axis.kernel_size == 1:
            axes.append((_unit_kernel_axis(axis), axis.stride))
        elif axis.stride > 1 and length == 1:
            axes.append((_single_window_axis(axis), 1))
        else:
            axes.append((axis, 1))
    return axes


def _correlation_args(dy, axes, allow_strings: bool = True):
    """``dy`` read as ``axes`` say, the strides, and the padding: a string
    where one fits both axes, else explicit ``(before, after)`` pairs per
    dimension, after cropping the positions a negative ``after`` drops."""
    steps = [step for _, step in axes]
    if max(steps) > 1:
        dy = dy[:, :: steps[0], :: steps[1], :]
    axes = [axis for axis, _ in axes]
    strides = [1, axes[0].stride, axes[1].stride, 1]
    common = axes[0].tf_paddings() & axes[1].tf_paddings() if allow_strings else set()
    if common:
        return dy, strides, "SAME" if "SAME" in common else "VALID"
    crop_h, crop_w = (max(-axis.after, 0) for axis in axes)
    if crop_h or crop_w:
        dy = dy[:, : slice_stop(crop_h), : slice_stop(crop_w), :]
    return dy, strides, [[0, 0], *([axis.before, max(axis.after, 0)] for axis in axes), [0, 0]]


def _conv2d(dy, kernel, axes):
    dy, strides, padding = _correlation_args(dy, axes)
    return tf.nn.conv2d(dy, kernel, strides=strides, padding=padding)


def input_gradient(dy, kernel, x, plan_h: AxisPlan, plan_w: AxisPlan):
    """``d<y, dy>/dx`` for the transposed convolution ``y`` of ``x`` with ``kernel``.

    ``dy`` is ``(batch, out_h, out_w, filters)`` and ``kernel`` Keras's
    ``(kh, kw, filters, in_channels)``.
    """
    plans = (plan_h, plan_w)

    def conv(lengths, unknown):
        """With one filter, each strided axis whose length is known only at
        run time branches to the one-window form where it is 1."""
        axes = _adjoint_axes(plans, lengths)
        if not unknown or kernel.shape[2] != 1:
            return _conv2d(dy, kernel, axes)
        a, rest = unknown[0], unknown[1:]
        single = tuple(1 if b == a else n for b, n in enumerate(lengths))
        return tf.cond(tf.shape(x)[a + 1] == 1, lambda: conv(single, rest), lambda: conv(lengths, rest))

    lengths = tuple(x.shape[1:3])
    axes = _adjoint_axes(plans, lengths)
    return conv(
        lengths, [a for a, n in enumerate(lengths) if n is None and plans[a].stride > 1 and axes[a][1] == 1]
    )


KERNEL_GRADIENT_FORMS = ("native", "explicit")


def _skips_positions(axes) -> bool:
    """Whether a window skips positions (a stride above the kernel length)."""
    return any(axis.stride > axis.kernel_size for axis, _ in axes)


def kernel_gradient_forms(plans, lengths) -> tuple[str, ...]:
    """The kernel gradient's forms for input ``lengths`` (``None`` where
    unknown): both of :data:`KERNEL_GRADIENT_FORMS` where "SAME" or "VALID"
    expresses the geometry and no window skips positions, else only
    ``"explicit"``."""
    axes = _adjoint_axes(plans, lengths)
    if _skips_positions(axes):
        return ("explicit",)
    (axis_h, _), (axis_w, _) = axes
    return KERNEL_GRADIENT_FORMS if axis_h.tf_paddings() & axis_w.tf_paddings() else ("explicit",)


def kernel_gradient(dy, x, kernel_shape, plan_h: AxisPlan, plan_w: AxisPlan, form: str = "native"):
    """``d<y, dy>/dkernel``, shaped like Keras's kernel ``(kh, kw, filters, in_channels)``.

    ``form`` is one of :data:`KERNEL_GRADIENT_FORMS`; ``"native"`` falls
    back to ``"explicit"`` where the geometry has no other form.
    """
    axes = _adjoint_axes((plan_h, plan_w), tuple(x.shape[1:3]))
    # Windows that skip positions go to Eigen's kernel (see the module docstring).
    strings = form == "native" and not _skips_positions(axes)
    dy, strides, padding = _correlation_args(dy, axes, allow_strings=strings)
    explicit = not isinstance(padding, str)
    return tf.raw_ops.Conv2DBackpropFilter(
        input=dy,
        filter_sizes=kernel_shape,
        out_backprop=x,
        strides=strides,
        padding="EXPLICIT" if explicit else padding,
        explicit_paddings=[v for pair in padding for v in pair] if explicit else [],
    )
