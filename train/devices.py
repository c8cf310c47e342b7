"""Where a job computes: the device kind (``device=``) and the distribution
strategy (``distribute=``)."""

from __future__ import annotations

import os

import tensorflow as tf

from keras_tconv.ops.platform import gpu_name
from train.config import DeviceKind, StrategyName
from train.errors import UserError


class DeviceUnavailableError(UserError, RuntimeError):
    """The configured device cannot be used."""


def no_gpu_error(framework: str) -> DeviceUnavailableError:
    """The error of ``device=gpu`` where ``framework`` (TensorFlow or JAX) sees no GPU."""
    return DeviceUnavailableError(
        f"device=gpu but {framework} sees no GPU; allowed values: auto (a GPU when present), cpu, gpu"
    )


def cpu_description() -> str:
    """The CPU as the metrics describe it: its number of cores."""
    return f"cpu ({os.cpu_count()} cores)"


def _set_visible_gpus(gpus: list) -> None:
    """Makes exactly ``gpus`` visible; TensorFlow only allows this before it
    initialises its devices, so a multirun cannot switch device kinds."""
    if tf.config.get_visible_devices("GPU") == gpus:
        return
    try:
        tf.config.set_visible_devices(gpus, "GPU")
    except RuntimeError as error:
        raise DeviceUnavailableError(
            "the device kind cannot change after TensorFlow initialised its devices "
            "(e.g. a multirun over device=...): run each device choice in its own process"
        ) from error


def select_device(kind: DeviceKind, backend: str) -> str:
    """Applies ``device=kind`` on Keras's ``backend`` and describes the device
    used, for the metrics.

    On JAX, TensorFlow only feeds the data and writes the export: its GPUs
    are hidden, so that it neither takes their memory from JAX nor runs the
    input pipeline there, and JAX's devices are chosen
    (:func:`train.jax_devices.select_jax_device`).
    """
    if backend == "jax":
        from train.jax_devices import select_jax_device  # imports JAX, which a TensorFlow-only install lacks

        _set_visible_gpus([])
        return select_jax_device(kind)
    return _select_tensorflow_device(kind)


def _select_tensorflow_device(kind: DeviceKind) -> str:
    """``auto`` uses the GPUs when TensorFlow sees any, ``cpu`` hides them, and
    ``gpu`` fails when there is none."""
    gpus = tf.config.list_physical_devices("GPU")
    if kind is DeviceKind.gpu and not gpus:
        raise no_gpu_error("TensorFlow")
    _set_visible_gpus([] if kind is DeviceKind.cpu else gpus)
    visible = tf.config.get_visible_devices("GPU")
    if not visible:
        return cpu_description()
    return f"gpu ({len(visible)} x {gpu_name(visible[0])})"


def make_strategy(name: StrategyName) -> tf.distribute.Strategy:
    """The strategy of ``distribute=none`` or ``mirrored``: the default
    (no-op) strategy, or a MirroredStrategy over all local logical GPUs, or
    over all logical CPUs when there is no GPU. (``multi_worker`` joins a
    cluster instead: :func:`train.multi_worker.strategy.join_cluster`.)"""
    if name is StrategyName.none:
        return tf.distribute.get_strategy()
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy(devices=[device.name for device in devices])
