"""Where a TensorFlow layer runs, for ``auto``'s measurements (:mod:`keras_tconv.ops.choosing.tuning`)."""

from __future__ import annotations

import contextlib

import tensorflow as tf
from tensorflow.python.eager import context
from tensorflow.python.framework import config as tf_config
from tensorflow.python.ops import control_flow_util

from keras_tconv.ops.choosing.tuning import Where
from keras_tconv.ops.platform import cpu_kernel_library, cpu_model, gpu_name
from keras_tconv.tf_devices import device_string


def in_xla_context() -> bool:
    """Whether the graph being built is compiled by XLA (``jit_compile=True``)."""
    graph = tf.compat.v1.get_default_graph()
    return control_flow_util.GraphOrParentsInXlaContext(graph)


def placement(x) -> str:
    """Where the layer consuming ``x`` runs, as far as tracing can tell:
    ``x``'s own device, else the ``tf.device`` scope of the call (which a
    ``tf.function`` traced inside such a scope sees only through the eager
    context), else "" (TensorFlow's default)."""
    return x.device or context.context().device_name or ""


def visible_gpus() -> list:
    """The GPUs TensorFlow computes on: the physical ones less those hidden by
    ``tf.config.set_visible_devices`` (as the training application's
    ``device=cpu`` does)."""
    return tf.config.get_visible_devices("GPU")


def device_name(device_hint: str = "") -> str:
    """The device a layer runs on, as a cache-key part: its GPU's name, or
    the CPU model and kernel library. ``device_hint`` is the input tensor's
    device where known (empty while tracing without a device scope, which
    means TensorFlow's default: the first visible GPU if there is one)."""
    gpus = visible_gpus()
    if gpus and "CPU" not in device_hint.upper():
        return f"GPU {gpu_name(gpus[0])}"
    return f"CPU {cpu_model()} {cpu_kernel_library()}"


@contextlib.contextmanager
def _eagerly_on(device: str):
    """Out of the graph being traced, on ``device``."""
    with tf.init_scope(), tf.device(device_string("gpu" if device.startswith("GPU") else "cpu")):
        yield


def key_for_compiler(key: str, xla: bool) -> str:
    """``key`` marked for a layer compiled by XLA: a model run both with and
    without ``jit_compile`` gets a choice for each."""
    return f"{key} XLA" if xla else key


def where(device_hint: str = "") -> Where:
    """The :class:`Where` of a layer traced now, placed as ``device_hint`` says.

    Inside XLA compilation too ``auto`` may measure: the candidates are then
    compiled by XLA on their own, outside the graph being traced."""
    device = device_name(device_hint)
    return Where(
        device=device,
        versions=f"tf{tf.__version__}",
        deterministic=tf_config.is_op_determinism_enabled(),
        scope=lambda: _eagerly_on(device),
    )
