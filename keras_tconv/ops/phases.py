"""Per-axis phase arithmetic of a transposed convolution.

A transposed convolution along one spatial axis, with stride ``s``, kernel size
``k`` and leading crop ``p``, scatters input pixel ``i`` through tap ``t`` into
output position::

    o = i*s + t - p                         (t = 0 .. k-1)

(A dilated kernel enters as its undilated equivalent, with zeros between the
taps, of size ``k_eff = (k-1)*d + 1``.)

``p`` is the "before" padding that TensorFlow's ``Conv2DBackpropInput`` derives
from Keras's output length (see :func:`axis_geometry`).

**Blocks and phases.** Group the output into blocks of ``s`` consecutive
positions, aligned so that block ``j`` starts where ``o + p`` is a multiple of
``s``: with ``delta = p mod s`` and ``P = p // s``,
``o = s*j + q - delta`` for phase ``q`` in ``0 .. s-1``. Substituting::

    i = (o + p - t) / s = j + P + (q - t) / s

so tap ``t`` reaches phase ``q`` exactly when ``t = q (mod s)``, and then reads
input ``j + P + e`` with the static offset ``e = (q - t) / s``.
Each phase is therefore an ordinary stride-1 correlation of the *un-expanded*
input with the taps of its residue class (reversed, since ``e`` decreases as
``t`` grows), shifted by ``P + e_min``. The shift becomes explicit padding (or a
crop when negative). All offsets lie in ``[-floor((k-1)/s), 0]``, so this
alignment makes the common window of all phases ``ceil(k/s)`` wide: the
smallest possible, which is what lets the "unified"
lowering stack all phases into one kernel without wasted taps when ``s`` divides
``k``. Phases with no taps (stride larger than the kernel) are all zero.

**Lengths.** Keras's output length is ``O = N*s + c`` for input length ``N``
and a static ``c``, so every padding below is static even when ``N`` is not.
The phases are computed on ``M = ceil((O + delta) / s)`` blocks, interleaved
into ``s*M >= O + delta`` positions, and the output is the slice
``[delta, delta + O)``.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class AxisGeometry:
    """Static description of a transposed convolution along one axis.

    Attributes:
        stride: ``s``.
        kernel_size: ``k``, the undilated equivalent's size ``(k-1)*d + 1``.
        crop: ``p``, the leading crop of the full scatter (TF's pad-before).
        extra: ``c`` in ``O = N*s + c``.
    """

    stride: int
    kernel_size: int
    crop: int
    extra: int

    def output_length(self, n):
        """Keras's output length ``O = N*s + c`` for input length ``n`` (an
        int, or a scalar tensor when the length is known only at run time)."""
        return n * self.stride + self.extra

    @property
    def adjoint(self) -> StridedAxis:
        """This axis of the adjoint strided correlation (output -> input),
        which computes the input gradient and, with the roles of its operands
        swapped, the kernel gradient."""
        before, after = self.conv_padding
        return StridedAxis(self.stride, self.kernel_size, self.extra, before, after)

    @property
    def conv_padding(self) -> tuple[int, int]:
        """(before, after) padding of the output for its adjoint convolution.

        The transposed convolution is the input-gradient of a stride-``s``
        convolution whose input has the output's length ``O``: padding that
        input by ``p`` in front and ``(N-1)*s + k - O - p`` behind makes the
        convolution produce exactly ``N`` positions. The trailing amount is
        static (``O - N*s = c``) and is negative when the last positions of
        the output receive no input pixel.
        """
        return self.crop, self.kernel_size - self.stride - self.extra - self.crop


@dataclasses.dataclass(frozen=True)
class StridedAxis:
    """One axis of a strided correlation that maps an input of length
    ``L = N*stride + extra`` to ``N`` outputs (``extra`` static, ``N`` maybe not).

    Attributes:
        stride, kernel_size: of the correlation.
        extra: ``L - N*stride``.
        before, after: explicit padding of the input; a negative ``after``
            crops that many trailing positions, which no output reads.
    """

    stride: int
    kernel_size: int
    extra: int
    before: int
    after: int

    def tf_paddings(self) -> set[str]:
        """The padding strings with which TensorFlow's kernels compute this
        axis exactly as the explicit padding does, for every ``N``.

        "VALID" reads from position 0 and yields ``floor((L-k)/s) + 1``
        outputs, which is ``N`` when ``k - s <= extra < k`` (it drops a
        trailing remainder, as a negative ``after`` does). "SAME" yields
        ``ceil(L/s)``, which is ``N`` when ``-s < extra <= 0``, and pads
        ``(k - s - extra) // 2`` in front.
        """
        s, k, e = self.stride, self.kernel_size, self.extra
        strings = set()
        if self.before == 0 and k - s <= e < k:
            strings.add("VALID")
        if -s < e <= 0 and self.after >= 0 and self.before == (self.before + self.after) // 2:
            strings.add("SAME")
        return strings


def axis_geometry(
    kernel_size: int,
    stride: int,
    padding: str,
    output_padding: int | None,
) -> AxisGeometry:
    """Geometry of one axis exactly as Keras and TensorFlow define it.

    ``kernel_size`` is that of the undilated equivalent kernel (Keras's
    ``k_eff``).

    Keras fixes the output length (``keras.src.backend.common.backend_utils``):
    "valid" gives ``(N-1)*s + k_eff + op`` with ``op`` defaulting to
    ``max(k_eff, s) - k_eff``; "same" gives ``N*s`` without ``output_padding``
    and ``(N-1)*s + k_eff % 2 + op`` with it. TensorFlow's
    ``Conv2DBackpropInput`` then treats the output as the input of a forward
    convolution: for "same" its pad-before is ``max((N-1)*s + k_eff - O, 0)//2``
    and for "valid" zero. Both are independent of ``N``.
    """
    padding = padding.lower()
    k_eff = kernel_size
    if padding == "valid":
        op = max(k_eff, stride) - k_eff if output_padding is None else output_padding
        extra = k_eff - stride + op
        crop = 0
    elif padding == "same":
        extra = 0 if output_padding is None else k_eff % 2 + output_padding - stride
        crop = max(k_eff - stride - extra, 0) // 2
    else:
        raise ValueError(
            f"The `padding` argument must be one of 'valid', 'same'. Received: padding={padding}"
        )
    return AxisGeometry(stride, kernel_size, crop, extra)


@dataclasses.dataclass(frozen=True)
class Phase:
    """The taps of one output phase along one axis.

    Attributes:
        taps: kernel tap indices ``t`` reaching this phase, ordered by
            increasing input offset (i.e. decreasing ``t``); consecutive taps
            read consecutive input pixels.
        offsets: input offset ``e`` of each tap, relative to ``j + P``.
    """

    taps: tuple[int, ...]
    offsets: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class AxisPlan:
    """All phases of one axis plus the paddings that place them.

    The lowerings read input position ``j + P + e`` for block ``j``. A
    correlation whose window starts at offset ``e0`` therefore needs
    ``-(P + e0)`` leading padding (a crop when negative) and enough trailing
    padding to produce ``M = N + extra_blocks`` outputs.
    """

    geometry: AxisGeometry
    phases: tuple[Phase, ...]

    @property
    def stride(self) -> int:
        return self.geometry.stride

    @property
    def shift(self) -> int:
        """``delta``: where the output starts inside the interleaved blocks."""
        return self.geometry.crop % self.geometry.stride

    @property
    def block_offset(self) -> int:
        """``P``: input index of block 0's zero offset."""
        return self.geometry.crop // self.geometry.stride

    @property
    def extra_blocks(self) -> int:
        """``M - N``: blocks computed beyond the input length (static)."""
        g = self.geometry
        return -((-(g.extra + self.shift)) // g.stride)

    def window_padding(self, first_offset: int, window: int) -> tuple[int, int]:
        """(before, after) padding of the input for a stride-1 window.

        ``first_offset`` is the offset read by the window's first tap and
        ``window`` its length. Either value may be negative, which
        means cropping the input instead.
        """
        before = -(self.block_offset + first_offset)
        # Valid correlation length: N + before + after - window + 1 == M.
        after = self.extra_blocks - before + window - 1
        return before, after

    @property
    def union_offsets(self) -> tuple[int, int]:
        """Smallest and largest offset over all phases with taps."""
        offsets = [e for ph in self.phases for e in ph.offsets]
        return min(offsets), max(offsets)


def axis_plan(geometry: AxisGeometry) -> AxisPlan:
    """Split the taps of one axis into its ``s`` phases."""
    s = geometry.stride
    phases = []
    for q in range(s):
        taps = tuple(t for t in reversed(range(geometry.kernel_size)) if t % s == q)
        phases.append(Phase(taps, tuple((q - t) // s for t in taps)))
    return AxisPlan(geometry, tuple(phases))


def union_window(plan: AxisPlan) -> tuple[int, int]:
    """(first offset, number of taps) of the window shared by all phases."""
    low, high = plan.union_offsets
    return low, high - low + 1


def stacked_window(plan_h: AxisPlan, plan_w: AxisPlan) -> tuple[int, int]:
    """Height and width of the ``unified`` lowering's stacked kernel."""
    return union_window(plan_h)[1], union_window(plan_w)[1]


def pair(value, name: str) -> tuple[int, int] | None:
    """An int or a pair as a pair of ints (None stays None)."""
    if value is None:
        return None
    if isinstance(value, int):
        return (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2:
        raise ValueError(f"`{name}` must be an int or a tuple of 2 ints. Received: {name}={value}")
    return value


def check_output_padding(output_padding, strides, dilation_rate) -> None:
    """Keras's bound on ``output_padding`` (below the stride), extended as
    the output length extends with a dilation larger than the stride: an
    output position past the last one any tap reaches would be bias only."""
    if output_padding is None:
        return
    for i, (op, s, d) in enumerate(zip(output_padding, strides, dilation_rate)):
        if not 0 <= op < max(s, d):
            raise ValueError(
                "`output_padding` must be non-negative and strictly less than `strides` (or "
                f"`dilation_rate` where that is larger) for all dimensions. At dimension {i}, "
                f"`output_padding` is {op} but `strides` is {s} and `dilation_rate` is {d}. "
                f"Received: output_padding={output_padding}, strides={strides}, dilation_rate={dilation_rate}"
            )


def plan_axes(kernel_shape, strides, padding, output_padding):
    """The two :class:`AxisPlan` objects of a 2-D transposed convolution
    with an undilated kernel of shape ``kernel_shape``."""
    strides = pair(strides, "strides")
    output_padding = pair(output_padding, "output_padding") or (None, None)
    return tuple(
        axis_plan(axis_geometry(kernel_shape[axis], strides[axis], padding, output_padding[axis]))
        for axis in range(2)
    )


def phase_index(ph: Phase, pw: Phase, kw: int) -> np.ndarray:
    """Flat tap indices ``t_h * kw + t_w`` of one phase's sub-kernel, ``(len(ph.taps), len(pw.taps))``."""
    return np.array([[th * kw + tw for tw in pw.taps] for th in ph.taps], dtype=np.int64)


def phase_correlations(plan_h: AxisPlan, plan_w: AxisPlan, kw: int) -> list:
    """The stride-1 correlations of ``split``, one per output phase (phases
    ordered ``(qh, qw)``): ``(tap index, padding along the height, padding
    along the width)`` each (see :func:`phase_index`), or None for a phase
    that no tap reaches (a stride above the kernel)."""
    return [
        (
            phase_index(ph, pw, kw),
            plan_h.window_padding(ph.offsets[0], len(ph.taps)),
            plan_w.window_padding(pw.offsets[0], len(pw.taps)),
        )
        if ph.taps and pw.taps
        else None
        for ph in plan_h.phases
        for pw in plan_w.phases
    ]


def stacked_index(row_phases, row_window: tuple[int, int], plan_w: AxisPlan, kw: int) -> np.ndarray:
    """Flat tap indices of the sub-kernels of ``row_phases`` and of every
    column phase, placed in a common window and stacked.

    ``row_window`` is (first offset, length) along the height; along the
    width the window is the column phases' union. Returns
    ``(window_h, window_w, len(row_phases) * sw)``, phases ordered
    ``(qh, qw)``, -1 where a phase has no tap.
    """
    (low_h, size_h), (low_w, size_w) = row_window, union_window(plan_w)
    sw = plan_w.stride
    index = np.full((size_h, size_w, len(row_phases) * sw), -1, dtype=np.int64)
    for qh, ph in enumerate(row_phases):
        for qw, pw in enumerate(plan_w.phases):
            for th, eh in zip(ph.taps, ph.offsets):
                for tw, ew in zip(pw.taps, pw.offsets):
                    index[eh - low_h, ew - low_w, qh * sw + qw] = th * kw + tw
    return index


def margins(plan: AxisPlan) -> tuple[int, int]:
    """Interleaved positions before and after the output: ``delta`` and
    ``s*M - (O + delta)``, static because ``M - N`` and ``O - N*s`` are."""
    g = plan.geometry
    return plan.shift, g.stride * plan.extra_blocks - g.extra - plan.shift


def zero_insertion_padding(plan: AxisPlan) -> tuple[int, int]:
    """(before, after) padding of the zero-expanded input (length
    ``(N-1)*s + 1``) for the dense stride-1 correlation with the flipped
    kernel that gives the output (length ``N*s + c``)."""
    g = plan.geometry
    before = g.kernel_size - 1 - g.crop
    return before, g.extra + g.stride - 1 - before + g.kernel_size - 1
