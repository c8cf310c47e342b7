"""The NHWC lowerings of a 2-D transposed convolution.

Every function here takes ``x`` of shape ``(batch, height, width, in_channels)``,
``kernel`` in Keras's Conv2DTranspose layout ``(kh, kw, filters, in_channels)``,
an optional ``bias`` of shape ``(filters,)`` and the two :class:`AxisPlan`
objects. The segregated lowerings (``split``, ``rows``, ``unified``) run
ordinary stride-1 ``tf.nn.conv2d`` calls on the un-expanded input and return
the phase blocks as a list of *phase groups* that :func:`interleave` turns into
the output: either the ``sh`` row phases, each ``(batch, Mh, Mw, sw*filters)``,
or one tensor ``(batch, Mh, Mw, sh*sw*filters)`` holding every phase.
``zero_insertion`` (the paper's baseline) and ``native`` (TensorFlow's own
kernel) return the output ``(batch, out_h, out_w, filters)`` itself.

Each segregated lowering runs its correlations through ``correlate``
(default :func:`_padded_conv`; :func:`correlation_by_taps` for a gradient
compiled by XLA).

The bias is added to each convolution's own output, before the interleave:
TensorFlow fuses a BiasAdd that follows a Conv2D into it, and the interleaved
tensor is not traversed once more. The phase arithmetic the lowerings rely on
is derived in :mod:`keras_tconv.ops.phases`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_tconv.ops.phases import (
    AxisPlan,
    margins,
    phase_correlations,
    stacked_index,
    union_window,
    zero_insertion_padding,
)
from keras_tconv.ops.platform import cpu_kernel_library


def slice_stop(amount: int):
    """Slice stop that drops ``amount`` trailing elements (None for zero)."""
    return -amount if amount > 0 else None


def _cropped(x, pads_h, pads_w):
    """``x`` cropped where a per-axis ``(before, after)`` padding is negative,
    and the remaining (non-negative) paddings in ``tf.pad``'s layout."""
    (bh, ah), (bw, aw) = pads_h, pads_w
    if min(bh, ah, bw, aw) < 0:
        x = x[:, max(-bh, 0) : slice_stop(-ah), max(-bw, 0) : slice_stop(-aw), :]
    return x, [[0, 0], [max(bh, 0), max(ah, 0)], [max(bw, 0), max(aw, 0)], [0, 0]]


def _padded_conv(x, filters, bias, pads_h, pads_w):
    """Stride-1 VALID correlation of ``x`` padded (or cropped) per axis, plus bias.

    Positive paddings go to ``tf.nn.conv2d``'s explicit padding, which avoids
    materialising a padded copy; negative ones crop the input first. An
    unpadded 1x1 window is a plain matrix product, which CPU kernels run
    faster than ``tf.nn.conv2d`` with few output channels. The BiasAdd
    directly follows the Conv2D or MatMul so that TensorFlow fuses the two.

    Under oneDNN, a half-precision (float16, bfloat16) Conv2D whose padding
    holds a whole window (an output position that sees no input, as a phase
    with fewer taps than its neighbours has) crashes the process on CPUs
    with AVX-512 and AMX (TF 2.21); there such padding goes into the input
    (:func:`_pad_whole_windows`).
    """
    x, pads = _cropped(x, pads_h, pads_w)
    if x.dtype in (tf.float16, tf.bfloat16) and cpu_kernel_library() == "oneDNN":
        x, pads = _pad_whole_windows(x, pads, filters.shape[:2])
    padded = any(pads[1] + pads[2])
    if filters.shape[:2] == (1, 1) and not padded:
        channels, outputs = filters.shape[2:]
        z = tf.matmul(tf.reshape(x, (-1, channels)), tf.reshape(filters, (channels, outputs)))
        z = z if bias is None else tf.nn.bias_add(z, bias)
        return tf.reshape(z, tf.concat([tf.shape(x)[:3], [outputs]], axis=0))
    z = tf.nn.conv2d(x, filters, strides=1, padding=pads if padded else "VALID")
    return z if bias is None else tf.nn.bias_add(z, bias)


@tf.custom_gradient
def _correlate_by_taps(x, filters):
    """Stride-1 "VALID" ``tf.nn.conv2d`` whose kernel gradient is one matrix
    product per tap (``x``'s window at that tap against the cotangent).

    XLA on CPU compiles the kernel gradient of a convolution
    (``Conv2DBackpropFilter``) of a small spatial size with many channels to
    a slow loop; the per-tap products are dense matrix multiplications. The
    input gradient stays ``Conv2DBackpropInput`` (stride 1), which XLA runs
    as an ordinary convolution.
    """
    z = tf.nn.conv2d(x, filters, strides=1, padding="VALID")

    def grad(dz):
        kh, kw = filters.shape[:2]
        out_h, out_w = tf.shape(dz)[1], tf.shape(dz)[2]
        taps = [
            tf.einsum("nhwc,nhwf->cf", x[:, i : i + out_h, j : j + out_w, :], dz)
            for i in range(kh)
            for j in range(kw)
        ]
        dfilters = tf.reshape(tf.stack(taps), filters.shape)
        dx = tf.raw_ops.Conv2DBackpropInput(
            input_sizes=tf.shape(x), filter=filters, out_backprop=dz, strides=[1, 1, 1, 1], padding="VALID"
        )
        return dx, dfilters

    return z, grad


def correlation_by_taps(x, filters, bias, pads_h, pads_w):
    """:func:`_padded_conv`'s correlation for a gradient compiled by XLA:
    the padding by ``tf.pad`` (XLA on CPU runs the gradients of a padded
    convolution on slow paths) and :func:`_correlate_by_taps`."""
    x, pads = _cropped(x, pads_h, pads_w)
    if any(pads[1] + pads[2]):
        x = tf.pad(x, pads)
    z = _correlate_by_taps(x, filters)
    return z if bias is None else tf.nn.bias_add(z, bias)


def _pad_whole_windows(x, pads, window: tuple[int, int]):
    """``x`` and ``tf.nn.conv2d``'s explicit ``pads``, with the padding beyond
    ``window - 1`` on each side (where a whole window would lie in it) moved
    into ``x`` by ``tf.pad``: the same correlation, whose padding holds no
    whole window."""
    excess = [[max(p - (k - 1), 0) for p in pads[axis]] for axis, k in zip((1, 2), window)]
    if not any(excess[0] + excess[1]):
        return x, pads
    moved = [[0, 0], *excess, [0, 0]]
    return tf.pad(x, moved), [[p - m for p, m in zip(pair, amounts)] for pair, amounts in zip(pads, moved)]


def _conv_taps(kernel):
    """The kernel's taps in ``tf.nn.conv2d``'s layout, flattened:
    ``(kh*kw, in_channels, filters)``, tap ``t_h * kw + t_w`` first."""
    kh, kw, filters, channels = kernel.shape
    return tf.reshape(tf.transpose(kernel, (0, 1, 3, 2)), (kh * kw, channels, filters))


def _gather_taps(taps, index: np.ndarray):
    """Taps picked by a static index array, -1 selecting a zero tap.

    ``taps`` comes from :func:`_conv_taps`; ``index`` holds flat tap indices
    and has any shape ``S``. Returns ``S + (in_channels, filters)``. One
    gather builds each sub-kernel or stacked kernel: a single small,
    differentiable op per call.
    """
    if (index < 0).any():
        taps = tf.concat([taps, tf.zeros((1,) + tuple(taps.shape[1:]), taps.dtype)], axis=0)
        index = np.where(index < 0, taps.shape[0] - 1, index)
    return tf.gather(taps, index)


def interleave(groups: list, plan_h: AxisPlan, plan_w: AxisPlan):
    """Phase groups (see the module docstring) to the cropped output ``(B, Oh, Ow, F)``.

    Row phases need one ``tf.stack``: a row's column phases, with channels
    ordered ``(qw, f)``, are already interleaved in memory, so reshaping
    ``(B, Mh, Mw, sw*F)`` to ``(B, Mh, Mw*sw*F)`` is free, and stacking the
    ``sh`` rows on a new axis 2 gives ``(B, Mh, sh, Mw*sw*F)``, which *is*
    ``(B, Mh*sh, Mw*sw, F)``. A single tensor of all phases takes one
    ``depth_to_space`` (a reshape and transpose when ``sh != sw``).
    Either way the output is written once; the stack also keeps each
    intermediate ``1/sh`` of the output's size, which matters when the
    output is large (allocations above glibc's 32 MB mmap threshold are
    page-faulted afresh on every call).
    """
    sh, sw = plan_h.stride, plan_w.stride
    shape = tf.shape(groups[0])
    batch, mh, mw = shape[0], shape[1], shape[2]
    filters = groups[0].shape[-1] * len(groups) // (sh * sw)
    if len(groups) == sh:
        y = (
            groups[0]
            if sh == 1
            else tf.stack([tf.reshape(g, tf.stack([batch, mh, -1])) for g in groups], axis=2)
        )
        y = tf.reshape(y, tf.stack([batch, mh * sh, mw * sw, filters]))
    elif sh == sw:
        y = tf.nn.depth_to_space(groups[0], sh)
    else:
        y = tf.reshape(groups[0], tf.stack([batch, mh, mw, sh, sw, filters]))
        y = tf.transpose(y, (0, 1, 3, 2, 4, 5))
        y = tf.reshape(y, tf.stack([batch, mh * sh, mw * sw, filters]))
    (lead_h, tail_h), (lead_w, tail_w) = margins(plan_h), margins(plan_w)
    if lead_h or tail_h or lead_w or tail_w:
        y = y[:, lead_h : slice_stop(tail_h), lead_w : slice_stop(tail_w), :]
    return y


def _fill_empty(outputs: list, bias) -> list:
    """``outputs`` with each ``None`` (a phase that no tap reaches, when the
    stride exceeds the kernel) replaced by zeros plus the bias."""
    reference = next(y for y in outputs if y is not None)
    empty = tf.zeros_like(reference) if bias is None else tf.zeros_like(reference) + bias
    return [empty if y is None else y for y in outputs]


def split(x, kernel, bias, plan_h: AxisPlan, plan_w: AxisPlan, correlate=_padded_conv):
    """One ``tf.nn.conv2d`` per phase with its exact sub-kernel.

    The paper's method, generalised: ``sh*sw`` convolutions whose sub-kernels
    hold only the taps of their phase, so the multiplications are exactly the
    useful ones. Each phase is padded to the same number of blocks; the
    column phases of a row are concatenated into one row phase group.
    """
    kw = kernel.shape[1]
    taps = _conv_taps(kernel)
    outputs = [
        None if phase is None else correlate(x, _gather_taps(taps, phase[0]), bias, *phase[1:])
        for phase in phase_correlations(plan_h, plan_w, kw)
    ]
    outputs = _fill_empty(outputs, bias)
    sw = plan_w.stride
    row_groups = [outputs[q * sw : (q + 1) * sw] for q in range(plan_h.stride)]
    return [group[0] if sw == 1 else tf.concat(group, axis=-1) for group in row_groups]


def _stacked_kernel(kernel, row_phases, row_window: tuple[int, int], plan_w: AxisPlan):
    """The sub-kernels of ``row_phases`` and of every column phase, stacked.

    Each phase's taps are placed, zero-filled, in a common window: the rows
    ``row_window`` = (first offset, length) and the union window of the
    column phases. Returns the kernel ``(window_h, window_w, in_channels,
    len(row_phases)*sw*filters)`` with output channels ordered
    ``(qh, qw, f)``, built by one gather (a single small, differentiable op).
    """
    _, kw, filters, channels = kernel.shape
    index = stacked_index(row_phases, row_window, plan_w, kw)
    size_h, size_w = index.shape[:2]
    stacked = _gather_taps(_conv_taps(kernel), index)  # (size_h, size_w, phases, C, F)
    stacked = tf.transpose(stacked, (0, 1, 3, 2, 4))
    return tf.reshape(stacked, (size_h, size_w, channels, index.shape[-1] * filters))


def rows(x, kernel, bias, plan_h: AxisPlan, plan_w: AxisPlan, correlate=_padded_conv):
    """One ``tf.nn.conv2d`` per row phase: exact along the height, stacked
    along the width.

    Row phase ``qh`` keeps only its own taps along the height and stacks all
    ``sw`` column phases into ``sw*filters`` output channels, so its result is
    already a row phase group that :func:`interleave` stacks without a
    ``depth_to_space``. It multiplies zero taps only where the column phases
    have different tap counts (k=3, s=2: 12 slots for 9 taps, against 16 for
    ``unified``).
    """
    low_w, size_w = union_window(plan_w)
    bias = None if bias is None else tf.tile(bias, [plan_w.stride])
    outputs = [
        correlate(
            x,
            _stacked_kernel(kernel, [ph], (ph.offsets[0], len(ph.taps)), plan_w),
            bias,
            plan_h.window_padding(ph.offsets[0], len(ph.taps)),
            plan_w.window_padding(low_w, size_w),
        )
        if ph.taps
        else None
        for ph in plan_h.phases
    ]
    return _fill_empty(outputs, bias)


def unified(x, kernel, bias, plan_h: AxisPlan, plan_w: AxisPlan, correlate=_padded_conv):
    """A single ``tf.nn.conv2d`` whose kernel stacks every phase's sub-kernel.

    The sub-kernels are placed, zero-filled, in the common window of all
    phases and stacked into ``sh*sw*filters`` output channels (the sub-pixel
    convolution of Shi et al.). Because the blocks
    are aligned to the crop (see :mod:`~keras_tconv.ops.phases`) the window is
    ``ceil(k/s)`` wide, so no tap is wasted when the stride divides the
    kernel size; otherwise the zero taps cost extra multiplications.
    """
    phases = plan_h.stride * plan_w.stride
    window_h, window_w = union_window(plan_h), union_window(plan_w)
    stacked = _stacked_kernel(kernel, plan_h.phases, window_h, plan_w)
    if bias is not None:
        bias = tf.tile(bias, [phases])
    return [correlate(x, stacked, bias, plan_h.window_padding(*window_h), plan_w.window_padding(*window_w))]


def _zero_insert(x, sh: int, sw: int):
    """Insert ``s-1`` zeros between neighbouring pixels of each spatial axis."""
    if sh == sw == 1:
        return x
    shape = tf.shape(x)
    batch, height, width = shape[0], shape[1], shape[2]
    channels = x.shape[-1]
    y = tf.reshape(x, tf.stack([batch, height, 1, width, 1, channels]))
    y = tf.pad(y, [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]])
    y = tf.reshape(y, tf.stack([batch, height * sh, width * sw, channels]))
    return y[:, : slice_stop(sh - 1), : slice_stop(sw - 1), :]


def dilate_kernel(kernel, dh: int, dw: int):
    """The undilated equivalent of a dilated kernel: zeros between its taps.

    The lowerings then need no dilation of their own (CPU kernels cannot
    differentiate dilated convolutions in half precision), at the price of
    ``dh*dw`` times the multiplications; Keras allows dilation only with
    stride 1, and its own layer cannot run it on CPU at all.
    """
    kh, kw, filters, channels = kernel.shape
    dilated = _zero_insert(tf.reshape(kernel, (1, kh, kw, filters * channels)), dh, dw)
    return tf.reshape(dilated, ((kh - 1) * dh + 1, (kw - 1) * dw + 1, filters, channels))


def zero_insertion(x, kernel, bias, plan_h: AxisPlan, plan_w: AxisPlan):
    """The conventional method: zero-expand the input, then a dense conv.

    Output position ``o`` sums ``W[t] * xz[o + p - t]`` over the expanded
    input ``xz``, i.e. a stride-1 correlation of ``xz`` with the flipped kernel
    after ``k - 1 - p`` leading zeros. Kept only as the paper's baseline:
    about ``s*s`` times the necessary multiplications.
    """
    xz = _zero_insert(x, plan_h.stride, plan_w.stride)
    flipped = tf.transpose(tf.reverse(kernel, axis=(0, 1)), (0, 1, 3, 2))
    return _padded_conv(xz, flipped, bias, zero_insertion_padding(plan_h), zero_insertion_padding(plan_w))


def native(x, kernel, bias, plan_h: AxisPlan, plan_w: AxisPlan):
    """TensorFlow's own transposed-convolution kernel, ``Conv2DBackpropInput``.

    The op ``keras.layers.Conv2DTranspose`` runs: on CPU a GEMM of the input
    with all ``kh*kw`` taps followed by a col2im scatter-add. It needs no
    zero-expanded input either; ``auto`` picks it for the shapes where it
    beats every segregated lowering. It is called with "SAME" or "VALID"
    exactly as Keras calls it, which TFLite converts to TRANSPOSE_CONV
    (it rejects explicit padding). The geometries Keras rejects ("same"
    with an ``output_padding`` that leaves trailing positions no input
    reaches) take the full "VALID" scatter, cropped by ``p`` and padded with
    the unreachable zeros.
    """
    shape = tf.shape(x)
    strides = [1, plan_h.stride, plan_w.stride, 1]
    common = plan_h.geometry.adjoint.tf_paddings() & plan_w.geometry.adjoint.tf_paddings()
    plans = (plan_h, plan_w)
    if common:
        sizes = [p.geometry.output_length(shape[a + 1]) for a, p in enumerate(plans)]
        padding = "SAME" if "SAME" in common else "VALID"  # equal results where both fit
    else:
        sizes = [shape[a + 1] * p.stride + p.geometry.kernel_size - p.stride for a, p in enumerate(plans)]
        padding = "VALID"
    y = tf.raw_ops.Conv2DBackpropInput(
        input_sizes=tf.stack([shape[0], *sizes, kernel.shape[2]]),
        filter=kernel,
        out_backprop=x,
        strides=strides,
        padding=padding,
    )
    if not common:
        (bh, ah), (bw, aw) = plan_h.geometry.conv_padding, plan_w.geometry.conv_padding
        y = y[:, bh : slice_stop(max(ah, 0)), bw : slice_stop(max(aw, 0)), :]
        y = tf.pad(y, [[0, 0], [0, max(-ah, 0)], [0, max(-aw, 0)], [0, 0]])
    return y if bias is None else tf.nn.bias_add(y, bias)


# Lowerings by implementation name (keras_tconv.ops.registry): those returning phase groups, and those
# returning the output.
SEGREGATED = {"split": split, "rows": rows, "unified": unified}
WHOLE_OUTPUT = {"native": native, "zero_insertion": zero_insertion}
