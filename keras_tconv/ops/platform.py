"""What the running TensorFlow computes with: facts that decide speed and correctness.

The CPU's model and instruction sets, TensorFlow's CPU kernel library, and
its GPU's name: ``auto``'s tuning cache keys its choices by them, and the
benchmark and the training app report them.
"""

from __future__ import annotations

import functools


@functools.cache
def cpu_kernel_library() -> str:
    """``"oneDNN"`` or ``"Eigen"``: the library behind TensorFlow's CPU
    convolutions in this process.

    TensorFlow turns oneDNN on by default on CPUs with AVX-512 and leaves
    Eigen on the others; ``TF_ENABLE_ONEDNN_OPTS=0``/``1``, set before
    TensorFlow is imported, forces either. The two rank the lowerings
    differently, and some of oneDNN's kernels compute wrong for some shapes
    (see :mod:`keras_tconv.ops.tensorflow.gradients`).
    """
    from tensorflow.python.util import _pywrap_util_port

    return "oneDNN" if _pywrap_util_port.IsMklEnabled() else "Eigen"


# The instruction-set flags that decide which kernels TensorFlow and oneDNN run.
_ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def _cpuinfo_field(name: str) -> str | None:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


@functools.cache
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    import platform

    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


@functools.cache
def cpu_isa_flags() -> tuple[str, ...]:
    """Which of the vector-instruction flags that matter here the CPU has (AVX2, AVX-512, AMX)."""
    flags = set((_cpuinfo_field("flags") or "").split())
    return tuple(flag for flag in _ISA_FLAGS if flag in flags)


def gpu_name(gpu=None) -> str:
    """The name of ``gpu`` (a ``tf.config.PhysicalDevice``; by default the first
    GPU TensorFlow sees) as its driver reports it, such as ``"NVIDIA H100
    80GB HBM3"``, else TensorFlow's name of the device (``/physical_device:GPU:0``)."""
    import tensorflow as tf

    gpu = gpu or tf.config.list_physical_devices("GPU")[0]
    return tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
