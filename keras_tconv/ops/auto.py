"""The static rule ``implementation="auto"`` falls back on, and the lowering target.

``auto`` measures where it can (:mod:`keras_tconv.ops.tuning`); this rule
decides where nothing can be measured: for the LiteRT target, when the
spatial size is unknown while tracing, inside XLA compilation, or with tuning
turned off and no cached choice. The best lowering depends on where the
graph runs, so the rule has two *lowering targets*, chosen with
:func:`lowering_target` while a model is traced:

``"tensorflow"`` (the default)
    The graph runs on TensorFlow's own kernels. Fitted on a 2-core AMD EPYC
    CPU (AVX2) with TensorFlow 2.21's Eigen kernels at the models suite's
    batch sizes; under oneDNN, which ranks the lowerings differently, the
    measured choice is what keeps a layer fast (see the README).

    * Few filters (at most 4) from 16 or more input channels: ``native``.
      TensorFlow's kernel is one GEMM of the input with all ``kh*kw`` taps
      followed by a col2im; with 1-3 filters that GEMM is most of the op,
      while every segregated convolution has only ``s*s*filters`` outputs,
      a shape Eigen's convolution runs at a fraction of its rate.
    * When every stride divides its kernel size (k=2 or 4 with s=2) no
      stacked tap is wasted, and with fewer than 16 filters or input
      channels the per-phase convolutions of ``split`` are too thin whatever
      the kernel. There: ``rows`` with 16 or more filters, else ``unified``.
    * Otherwise stacked kernels carry zero taps. When every phase keeps at
      least two taps per axis (k=5, s=2) or the layer has 256 or more
      channels, the exact per-phase convolutions: ``split``. Left are
      k=3, s=2 layers with 16-255 channels, where a 1-tap phase makes the
      segregated convolutions thin: ``native``.
    * With the batch known, few rows of work take ``native``
      (:func:`native_below_rows`).

``"litert"``
    The graph is converted to TensorFlow Lite / LiteRT. There Keras's layer
    becomes TRANSPOSE_CONV, which every segregated lowering beat on every
    layer of the models suite at batch 1 (XNNPACK, 2 threads), so
    ``native`` is never picked: ``unified`` when no stacked tap is wasted,
    else ``split`` with 16 or more filters and input channels, else
    ``unified``.
"""

from __future__ import annotations

import contextlib
import contextvars

from keras_tconv.ops.lowerings import stacked_window
from keras_tconv.ops.phases import AxisPlan

TARGETS = ("tensorflow", "litert")
MAX_NATIVE_FILTERS = 4
MIN_CHANNELS = 16
WIDE_CHANNELS = 256
MIN_SEGREGATED_WORK = 2**15

_target = contextvars.ContextVar("keras_tconv_lowering_target", default="tensorflow")


@contextlib.contextmanager
def lowering_target(target: str):
    """Make ``implementation="auto"`` choose for ``target`` while the block runs.

    The choice is made when a layer is traced, so wrap whatever traces the
    model for that runtime, e.g.::

        with keras_tconv.lowering_target("litert"):
            model.export("model.tflite", format="litert")

    Args:
        target: ``"tensorflow"`` (the default outside the block) or
            ``"litert"``.
    """
    if target not in TARGETS:
        raise ValueError(f"Invalid lowering target. Expected one of {TARGETS}. Received: target={target!r}")
    token = _target.set(target)
    try:
        yield
    finally:
        _target.reset(token)


def stacked_waste(plan_h: AxisPlan, plan_w: AxisPlan) -> float:
    """Multiplications of the stacked ("unified") kernel per useful one."""
    window_h, window_w = stacked_window(plan_h, plan_w)
    slots = window_h * window_w * plan_h.stride * plan_w.stride
    return slots / (plan_h.geometry.kernel_size * plan_w.geometry.kernel_size)


def _fewest_taps(plan: AxisPlan) -> int:
    """Taps of the thinnest phase along one axis (0 if the stride exceeds the kernel)."""
    return min(len(phase.taps) for phase in plan.phases)


def lowering_target_name() -> str:
    """The current :func:`lowering_target`."""
    return _target.get()


def choose_implementation(kernel_shape, plan_h: AxisPlan, plan_w: AxisPlan, batch=None, height=None, width=None) -> str:
    """The static rule's lowering for a kernel ``(kh, kw, filters,
    in_channels)`` under the current :func:`lowering_target`, given the
    input's batch and spatial size where known."""
    choice = _by_shape(kernel_shape, plan_h, plan_w)
    rows = None if None in (batch, height, width) else batch * height * width
    if rows is not None and rows < native_below_rows(kernel_shape, choice):
        return "native"
    return choice


def _by_shape(kernel_shape, plan_h: AxisPlan, plan_w: AxisPlan) -> str:
    filters, channels = kernel_shape[2:]
    exact = stacked_waste(plan_h, plan_w) <= 1.0
    narrow = min(filters, channels) < MIN_CHANNELS
    if _target.get() == "litert":
        return "unified" if exact or narrow else "split"
    if filters <= MAX_NATIVE_FILTERS and channels >= MIN_CHANNELS:
        return "native"
    if exact or narrow:
        return "rows" if filters >= MIN_CHANNELS else "unified"
    if min(_fewest_taps(plan_h), _fewest_taps(plan_w)) >= 2 or min(filters, channels) >= WIDE_CHANNELS:
        return "split"
    return "native"


def native_below_rows(kernel_shape, implementation: str) -> int:
    """Rows of work below which TensorFlow's kernel beats ``implementation``
    (0: never), for the choice :func:`choose_implementation` made.

    A segregated lowering re-lays the kernel out on every call (a gather and
    a transpose), which TensorFlow's kernel does not; with few rows of work
    (batch x input height x input width) that per-call cost outweighs the
    faster convolutions (with the batch unknown, the rule assumes a large
    one). Measured forward at batch 1-16 on the DCGAN and TF
    DCGAN layers of the models suite, the segregated lowering wins once
    ``rows * min(filters, in_channels)`` reaches about ``2**15`` (DCGAN
    512 -> 256 on 4x4 inputs: 0.37x at batch 1, a tie at 4, 1.7x at 8; TF DCGAN
    128 -> 64 on 7x7: 0.51x at 1, a tie at 8, 1.2x at 16); checked on U-Net,
    LapSRN and SRDenseNet layers at batch 1-4, where every batch left on the
    segregated lowering measured 0.97-1.51x of Keras's layer. Layers with fewer
    than 16 channels have kernels too small for this to matter, and TFLite
    folds the re-layout into constant weights.
    """
    filters, channels = kernel_shape[2:]
    if _target.get() == "litert" or implementation == "native" or min(filters, channels) < MIN_CHANNELS:
        return 0
    return -(-MIN_SEGREGATED_WORK // min(filters, channels))
