"""The NHWC lowerings of a 2-D transposed convolution onto ``tf.nn.conv2d``.

Every function here takes ``x`` of shape ``(batch, height, width, in_channels)``,
``kernel`` in Keras's Conv2DTranspose layout ``(kh, kw, filters, in_channels)``,
an optional ``bias`` of shape ``(filters,)`` and the two :class:`AxisPlan`
objects. ``split`` and ``unified`` return the phase *blocks*
``(batch, Mh, Mw, sh*sw*filters)`` that :func:`interleave` turns into the
output; ``zero_insertion`` returns the output ``(batch, out_h, out_w, filters)``
itself. The bias is added to each convolution's own output, before the
interleave: TensorFlow fuses a BiasAdd that follows a Conv2D into it, and the
interleaved tensor is not traversed once more. The phase arithmetic they
rely on is derived in :mod:`keras_tconv.ops.phases`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_tconv.ops.phases import AxisPlan, Phase


def slice_stop(amount: int):
    """Slice stop that drops ``amount`` trailing elements (None for zero)."""
    return -amount if amount > 0 else None


def _padded_conv(x, filters, bias, pads_h, pads_w):
    """Stride-1 VALID correlation of ``x`` padded (or cropped) per axis, plus bias.

    Positive paddings go to ``tf.nn.conv2d``'s explicit padding, which avoids
    materialising a padded copy; negative ones crop the input first. An
    unpadded 1x1 window is a plain matrix product, which runs about twice as
    fast on CPU as ``tf.nn.conv2d`` with few output channels. The BiasAdd
    directly follows the Conv2D or MatMul so that TensorFlow fuses the two.
    """
    (bh, ah), (bw, aw) = pads_h, pads_w
    if min(bh, ah, bw, aw) < 0:
        x = x[:, max(-bh, 0) : slice_stop(-ah), max(-bw, 0) : slice_stop(-aw), :]
    pads = [[0, 0], [max(bh, 0), max(ah, 0)], [max(bw, 0), max(aw, 0)], [0, 0]]
    padded = any(pads[1] + pads[2])
    if filters.shape[:2] == (1, 1) and not padded:
        channels, outputs = filters.shape[2:]
        z = tf.matmul(tf.reshape(x, (-1, channels)), tf.reshape(filters, (channels, outputs)))
        z = z if bias is None else tf.nn.bias_add(z, bias)
        return tf.reshape(z, tf.concat([tf.shape(x)[:3], [outputs]], axis=0))
    z = tf.nn.conv2d(x, filters, strides=1, padding=pads if padded else "VALID")
    return z if bias is None else tf.nn.bias_add(z, bias)


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


def interleave(z, plan_h: AxisPlan, plan_w: AxisPlan):
    """Blocks ``(B, Mh, Mw, sh*sw*F)`` with channels ordered ``(qh, qw, f)``
    to the cropped output ``(B, Oh, Ow, F)``."""
    sh, sw = plan_h.stride, plan_w.stride
    if sh == sw:
        y = tf.nn.depth_to_space(z, sh) if sh > 1 else z
    else:
        batch, mh, mw = tf.unstack(tf.shape(z)[:3])
        filters = z.shape[-1] // (sh * sw)
        y = tf.reshape(z, tf.stack([batch, mh, mw, sh, sw, filters]))
        y = tf.transpose(y, (0, 1, 3, 2, 4, 5))
        y = tf.reshape(y, tf.stack([batch, mh * sh, mw * sw, filters]))
    (lead_h, tail_h), (lead_w, tail_w) = _margins(plan_h), _margins(plan_w)
    if lead_h or tail_h or lead_w or tail_w:
        y = y[:, lead_h : slice_stop(tail_h), lead_w : slice_stop(tail_w), :]
    return y


def _margins(plan: AxisPlan) -> tuple[int, int]:
    """Interleaved positions before and after the output: ``delta`` and
    ``s*M - (O + delta)``, static because ``M - N`` and ``O - N*s`` are."""
    g = plan.geometry
    return plan.shift, g.stride * plan.extra_blocks - g.extra - plan.shift


def _phase_index(ph: Phase, pw: Phase, kw: int) -> np.ndarray:
    return np.array([[th * kw + tw for tw in pw.taps] for th in ph.taps], dtype=np.int64)


def split(x, kernel, bias, plan_h: AxisPlan, plan_w: AxisPlan):
    """One ``tf.nn.conv2d`` per phase with its exact sub-kernel.

    The paper's method, generalised: ``sh*sw`` convolutions whose sub-kernels
    hold only the taps of their phase, so the multiplications are exactly the
    useful ones. Each phase is padded to the same number of blocks so the
    results stack along channels; phases without taps are zeros (plus bias).
    """
    kw = kernel.shape[1]
    taps = _conv_taps(kernel)
    outputs = []
    for ph in plan_h.phases:
        for pw in plan_w.phases:
            if not ph.taps or not pw.taps:
                outputs.append(None)
                continue
            outputs.append(
                _padded_conv(
                    x,
                    _gather_taps(taps, _phase_index(ph, pw, kw)),
                    bias,
                    plan_h.window_padding(ph.offsets[0], len(ph.taps)),
                    plan_w.window_padding(pw.offsets[0], len(pw.taps)),
                )
            )
    if len(outputs) == 1:
        return outputs[0]
    reference = next(y for y in outputs if y is not None)
    empty = tf.zeros_like(reference) if bias is None else tf.zeros_like(reference) + bias
    return tf.concat([empty if y is None else y for y in outputs], axis=-1)


def _union_window(plan: AxisPlan) -> tuple[int, int]:
    """(first offset, number of taps) of the window shared by all phases."""
    low, high = plan.union_offsets
    return low, high - low + 1


def stacked_window(plan_h: AxisPlan, plan_w: AxisPlan) -> tuple[int, int]:
    """Height and width of the ``unified`` lowering's stacked kernel."""
    return _union_window(plan_h)[1], _union_window(plan_w)[1]


def _stacked_index(kernel_shape, plan_h: AxisPlan, plan_w: AxisPlan) -> np.ndarray:
    """Flat tap index (or -1) of every slot of the stacked kernel,
    shaped ``(window_h, window_w, sh*sw)``."""
    kw = kernel_shape[1]
    (low_h, size_h), (low_w, size_w) = _union_window(plan_h), _union_window(plan_w)
    sw = plan_w.stride
    index = np.full((size_h, size_w, plan_h.stride * sw), -1, dtype=np.int64)
    for qh, ph in enumerate(plan_h.phases):
        for qw, pw in enumerate(plan_w.phases):
            for th, eh in zip(ph.taps, ph.offsets):
                for tw, ew in zip(pw.taps, pw.offsets):
                    index[eh - low_h, ew - low_w, qh * sw + qw] = th * kw + tw
    return index


def unified(x, kernel, bias, plan_h: AxisPlan, plan_w: AxisPlan):
    """A single ``tf.nn.conv2d`` whose kernel stacks every phase's sub-kernel.

    The sub-kernels are placed, zero-filled, in the common window of all
    phases and stacked into ``sh*sw*filters`` output channels (the sub-pixel
    convolution of Shi et al.). Because the blocks
    are aligned to the crop (see :mod:`~keras_tconv.ops.phases`) the window is
    ``ceil(k/s)`` wide, so no tap is wasted when the stride divides the
    kernel size; otherwise the zero taps cost extra multiplications.
    """
    _, _, filters, channels = kernel.shape
    index = _stacked_index(kernel.shape, plan_h, plan_w)
    size_h, size_w, phases = index.shape
    stacked = _gather_taps(_conv_taps(kernel), index)  # (size_h, size_w, phases, C, F)
    stacked = tf.reshape(tf.transpose(stacked, (0, 1, 3, 2, 4)), (size_h, size_w, channels, phases * filters))
    if bias is not None:
        bias = tf.tile(bias, [phases])
    return _padded_conv(
        x, stacked, bias, plan_h.window_padding(*_union_window(plan_h)), plan_w.window_padding(*_union_window(plan_w))
    )


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
    pads = []
    for plan in (plan_h, plan_w):
        g = plan.geometry
        before = g.kernel_size - 1 - g.crop
        # Expanded length (N-1)*s + 1; output length N*s + c.
        after = g.extra + g.stride - 1 - before + g.kernel_size - 1
        pads.append((before, after))
    return _padded_conv(xz, flipped, bias, pads[0], pads[1])


SEGREGATED = {"split": split, "unified": unified}
