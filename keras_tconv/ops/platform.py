"""What the running TensorFlow computes with: facts that decide speed and correctness."""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=None)
def cpu_kernel_library() -> str:
    """``"oneDNN"`` or ``"Eigen"``: the library behind TensorFlow's CPU
    convolutions in this process.

    TensorFlow turns oneDNN on by default on CPUs with AVX-512 and leaves
    Eigen on the others; ``TF_ENABLE_ONEDNN_OPTS=0``/``1``, set before
    TensorFlow is imported, forces either. The two rank the lowerings
    differently, and some of oneDNN's kernels compute wrong for some shapes
    (see :mod:`keras_tconv.ops.gradients`).
    """
    from tensorflow.python.util import _pywrap_util_port

    return "oneDNN" if _pywrap_util_port.IsMklEnabled() else "Eigen"
