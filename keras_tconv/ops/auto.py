"""The rule ``implementation="auto"`` uses to pick a lowering per layer shape.

Measured on a 2-core AMD EPYC CPU (AVX2) with TensorFlow 2.21 (Eigen kernels; see the
README's Performance section, produced by ``python -m keras_tconv.benchmark``):

* When every stride divides its kernel size (k=2 or 4 with s=2, k=3 with
  s=3, ...), stacking the sub-kernels wastes no multiplication and the single
  wide convolution ("unified") is the fastest lowering: it was the faster of
  the two on every such layer but DCGAN's first (4x4 input, where both beat
  Keras by 3-4x).
* Otherwise the stacked kernel carries zero taps (16 slots for 9 taps at
  k=3, s=2). With 16 or more filters and input channels the exact per-phase
  convolutions ("split") are then faster (k=3 and k=5 decoder layers with
  64-256 channels: split 1.0-1.6x of Keras, unified 0.85-1.3x); with fewer,
  each phase convolution is too thin to run efficiently and "unified" wins
  (RGB 3->3 layers: unified 1.05-1.96x, split 0.44-0.73x; the paper's MNIST
  layer, 1 -> 32 channels: unified 1.80x, split 0.67x).
"""

from __future__ import annotations

from keras_tconv.ops.lowerings import stacked_window
from keras_tconv.ops.phases import AxisPlan

MIN_CHANNELS_FOR_SPLIT = 16


def stacked_waste(plan_h: AxisPlan, plan_w: AxisPlan) -> float:
    """Multiplications of the stacked ("unified") kernel per useful one."""
    window_h, window_w = stacked_window(plan_h, plan_w)
    slots = window_h * window_w * plan_h.stride * plan_w.stride
    return slots / (plan_h.geometry.kernel_size * plan_w.geometry.kernel_size)


def choose_implementation(kernel_shape, plan_h: AxisPlan, plan_w: AxisPlan) -> str:
    """"unified" or "split" for a kernel ``(kh, kw, filters, in_channels)``."""
    if stacked_waste(plan_h, plan_w) <= 1.0:
        return "unified"
    return "split" if min(kernel_shape[2:]) >= MIN_CHANNELS_FOR_SPLIT else "unified"
