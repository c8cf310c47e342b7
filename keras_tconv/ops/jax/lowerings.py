"""The NHWC lowerings of a 2-D transposed convolution on ``jax.lax``.

The same phase plans as the TensorFlow lowerings
(:mod:`keras_tconv.ops.tensorflow.lowerings`; the arithmetic is in
:mod:`keras_tconv.ops.phases`), as functions ``(x, kernel, plan_h, plan_w) ->
y`` of ``x`` ``(batch, height, width, in_channels)`` and Keras's kernel
``(kh, kw, filters, in_channels)``, returning ``(batch, out_h, out_w,
filters)`` without the bias (the op adds it; XLA fuses the addition).

The segregated lowerings (``split``, ``rows``, ``unified``) run only stride-1
``lax.conv_general_dilated`` calls without any dilation on the un-expanded
input, so their derivatives are stride-1 convolutions too: XLA runs the
``lhs_dilation`` convolution of Keras's own layer (``native`` here, what
``jax.lax.conv_transpose`` computes) and its gradients on slow paths.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.custom_derivatives import SymbolicZero

from keras_tconv.ops.phases import (
    AxisPlan,
    margins,
    phase_correlations,
    stacked_index,
    union_window,
    zero_insertion_padding,
)

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")


def _plain_conv(x, filters, pads_h, pads_w, lhs_dilation=(1, 1)):
    """``lax.conv_general_dilated`` of ``x`` padded per axis (a negative padding crops) with ``filters``."""
    pads = [tuple(pads_h), tuple(pads_w)]
    return lax.conv_general_dilated(
        x, filters, (1, 1), pads, lhs_dilation=lhs_dilation, dimension_numbers=_DIMENSIONS
    )


def _conv(x, filters, pads_h, pads_w):
    """The stride-1 correlation of ``x`` padded per axis (a negative padding
    crops) with ``filters`` ``(h, w, in, out)``, as the segregated lowerings
    run it: the padding by ``lax.pad``, then :func:`_correlate`.

    XLA on CPU computes the kernel gradient of a convolution padded on both
    sides of both axes on a slow path, and not that of a padded input (see
    docs/design.md on XLA).
    """
    if any(pads_h) or any(pads_w):
        x = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (*pads_h, 0), (*pads_w, 0), (0, 0, 0)])
    return _correlate(x, filters)


def _tap_products(x, filters):
    """``sum over taps (a, b) of x[:, a:a+Ho, b:b+Wo, :] @ filters[a, b]``:
    the "VALID" correlation as one matrix product per tap."""
    kh, kw = filters.shape[:2]
    out_h, out_w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    return sum(
        jnp.einsum("nhwc,co->nhwo", x[:, a : a + out_h, b : b + out_w, :], filters[a, b])
        for a in range(kh)
        for b in range(kw)
    )


@jax.custom_jvp
def _correlate(x, filters):
    """The "VALID" stride-1 correlation of ``x`` with ``filters``, whose
    derivative in ``filters`` is written as one matrix product per tap
    (:func:`_tap_products`).

    JAX transposes that derivative into the kernel gradient: per tap, the
    product of the shifted input with the cotangent, ``(in, batch*Ho*Wo) @
    (batch*Ho*Wo, out)``, which XLA runs as fast matrix products; the
    transpose of ``lax.conv_general_dilated`` instead is a correlation whose
    window is the whole output, which XLA on CPU runs slowly when the phase
    convolution has few outputs or a wide input (see docs/design.md on
    XLA). The derivative in ``x`` stays JAX's (a stride-1 correlation of the
    cotangent). Forward-mode and higher derivatives work as usual.
    """
    return _plain_conv(x, filters, (0, 0), (0, 0))


def _correlate_jvp(primals, tangents):
    """Only the tangents that are not zero (a frozen kernel, an input that
    needs no gradient) cost a product."""
    x, filters = primals
    dx, dfilters = tangents
    parts = []
    if not isinstance(dx, SymbolicZero):
        parts.append(_plain_conv(dx, filters, (0, 0), (0, 0)))
    if not isinstance(dfilters, SymbolicZero):
        parts.append(_tap_products(x, dfilters))
    y = _correlate(x, filters)
    return y, sum(parts[1:], parts[0]) if parts else jnp.zeros_like(y)


_correlate.defjvp(_correlate_jvp, symbolic_zeros=True)


def _conv_taps(kernel):
    """The kernel's taps flattened, ``(kh*kw, in_channels, filters)``, tap ``t_h * kw + t_w`` first."""
    kh, kw, filters, channels = kernel.shape
    return jnp.transpose(kernel, (0, 1, 3, 2)).reshape(kh * kw, channels, filters)


def _gather_taps(taps, index: np.ndarray):
    """Taps picked by a static index array, -1 selecting a zero tap:
    ``index.shape + (in_channels, filters)``."""
    if (index < 0).any():
        taps = jnp.concatenate([taps, jnp.zeros((1, *taps.shape[1:]), taps.dtype)])
        index = np.where(index < 0, taps.shape[0] - 1, index)
    return taps[index]


def _output(blocks, plan_h: AxisPlan, plan_w: AxisPlan):
    """Interleaved blocks ``(B, Mh, sh, Mw, sw, F)`` to the output ``(B, Oh, Ow, F)``."""
    _, mh, sh, mw, sw, filters = blocks.shape
    y = blocks.reshape(-1, mh * sh, mw * sw, filters)
    (lead_h, tail_h), (lead_w, tail_w) = margins(plan_h), margins(plan_w)
    return y[:, lead_h : mh * sh - tail_h, lead_w : mw * sw - tail_w, :]


def _phase_blocks(stacked, plan_h: AxisPlan, plan_w: AxisPlan):
    """``(B, Mh, Mw, sh*sw*F)``, channels ordered ``(qh, qw, f)``, to ``(B, Mh, sh, Mw, sw, F)``."""
    _, mh, mw, channels = stacked.shape
    sh, sw = plan_h.stride, plan_w.stride
    blocks = stacked.reshape(-1, mh, mw, sh, sw, channels // (sh * sw))
    return jnp.transpose(blocks, (0, 1, 3, 2, 4, 5))


def split(x, kernel, plan_h: AxisPlan, plan_w: AxisPlan):
    """One convolution per phase with its exact sub-kernel (no zero tap)."""
    kw, filters = kernel.shape[1], kernel.shape[2]
    taps = _conv_taps(kernel)
    outputs = [
        None if phase is None else _conv(x, _gather_taps(taps, phase[0]), *phase[1:])
        for phase in phase_correlations(plan_h, plan_w, kw)
    ]
    reference = next(y for y in outputs if y is not None)
    outputs = [jnp.zeros_like(reference) if y is None else y for y in outputs]
    _, mh, mw, _ = reference.shape
    sh, sw = plan_h.stride, plan_w.stride
    # (B, Mh, Mw, sh*sw, F) -> (B, Mh, sh, Mw, sw, F)
    stacked = jnp.stack(outputs, axis=3).reshape(-1, mh, mw, sh, sw, filters)
    return _output(jnp.transpose(stacked, (0, 1, 3, 2, 4, 5)), plan_h, plan_w)


def _stacked_kernel(kernel, row_phases, row_window: tuple[int, int], plan_w: AxisPlan):
    """The sub-kernels of ``row_phases`` and every column phase in a common
    window, ``(window_h, window_w, in_channels, phases*filters)``, output
    channels ordered ``(qh, qw, f)``."""
    _, kw, filters, channels = kernel.shape
    index = stacked_index(row_phases, row_window, plan_w, kw)
    stacked = _gather_taps(_conv_taps(kernel), index)  # (h, w, phases, C, F)
    size_h, size_w, phases = index.shape
    return jnp.transpose(stacked, (0, 1, 3, 2, 4)).reshape(size_h, size_w, channels, phases * filters)


def rows(x, kernel, plan_h: AxisPlan, plan_w: AxisPlan):
    """One convolution per row phase: exact along the height, the column
    phases stacked; the rows interleave by a stack, without a transpose."""
    filters = kernel.shape[2]
    low_w, size_w = union_window(plan_w)
    outputs = [
        _conv(
            x,
            _stacked_kernel(kernel, [ph], (ph.offsets[0], len(ph.taps)), plan_w),
            plan_h.window_padding(ph.offsets[0], len(ph.taps)),
            plan_w.window_padding(low_w, size_w),
        )
        if ph.taps
        else None
        for ph in plan_h.phases
    ]
    reference = next(y for y in outputs if y is not None)
    outputs = [jnp.zeros_like(reference) if y is None else y for y in outputs]
    _, mh, mw, _ = reference.shape
    blocks = jnp.stack(outputs, axis=2).reshape(-1, mh, plan_h.stride, mw, plan_w.stride, filters)
    return _output(blocks, plan_h, plan_w)


def unified(x, kernel, plan_h: AxisPlan, plan_w: AxisPlan):
    """A single convolution whose kernel stacks every phase's sub-kernel
    (the sub-pixel convolution), then one interleave."""
    window_h, window_w = union_window(plan_h), union_window(plan_w)
    stacked = _stacked_kernel(kernel, plan_h.phases, window_h, plan_w)
    y = _conv(x, stacked, plan_h.window_padding(*window_h), plan_w.window_padding(*window_w))
    return _output(_phase_blocks(y, plan_h, plan_w), plan_h, plan_w)


def _flipped(kernel):
    """Keras's kernel as the dense correlation's filters: taps reversed, ``(kh, kw, in, out)``."""
    return jnp.transpose(kernel[::-1, ::-1], (0, 1, 3, 2))


def native(x, kernel, plan_h: AxisPlan, plan_w: AxisPlan):
    """What Keras's layer computes on JAX (``jax.lax.conv_transpose``): one
    convolution with ``lhs_dilation`` (the input expanded inside XLA).

    Where a side has no padding, every side is padded by one more position,
    which the output then drops: XLA on CPU (jaxlib 0.10) aborts the process
    compiling some of those convolutions (an even kernel with "same" and
    ``output_padding=0`` next to a wider kernel on the other axis), Keras's
    own layer included (see docs/design.md). Elsewhere it is Keras's convolution
    exactly.
    """
    pads = [zero_insertion_padding(plan) for plan in (plan_h, plan_w)]
    dilation = (plan_h.stride, plan_w.stride)
    if min(min(p) for p in pads) > 0:
        return _plain_conv(x, _flipped(kernel), *pads, lhs_dilation=dilation)
    wider = [(max(b, 0) + 1, max(a, 0) + 1) for b, a in pads]
    y = _plain_conv(x, _flipped(kernel), *wider, lhs_dilation=dilation)
    (bh, ah), (bw, aw) = [(w[0] - b, w[1] - a) for w, (b, a) in zip(wider, pads)]
    return y[:, bh : y.shape[1] - ah, bw : y.shape[2] - aw, :]


def zero_insertion(x, kernel, plan_h: AxisPlan, plan_w: AxisPlan):
    """The conventional method: an explicitly zero-expanded and padded input
    (one ``lax.pad``, interior and edges), then a dense "VALID" stride-1
    convolution, differentiated by JAX (its padding outside the convolution,
    as for the segregated lowerings, see :func:`_conv`)."""
    (bh, ah), (bw, aw) = zero_insertion_padding(plan_h), zero_insertion_padding(plan_w)
    pads = [(0, 0, 0), (bh, ah, plan_h.stride - 1), (bw, aw, plan_w.stride - 1), (0, 0, 0)]
    return _plain_conv(lax.pad(x, jnp.zeros((), x.dtype), pads), _flipped(kernel), (0, 0), (0, 0))


def dilate_kernel(kernel, dh: int, dw: int):
    """The undilated equivalent of a dilated kernel: zeros between its taps,
    so that no convolution needs a window dilation."""
    return lax.pad(
        kernel, jnp.zeros((), kernel.dtype), [(0, 0, dh - 1), (0, 0, dw - 1), (0, 0, 0), (0, 0, 0)]
    )


LOWERINGS = {
    "native": native,
    "split": split,
    "rows": rows,
    "unified": unified,
    "zero_insertion": zero_insertion,
}
