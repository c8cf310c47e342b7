"""The device of ``device=`` on JAX, where Keras computes on JAX's default device."""

from __future__ import annotations

import jax

from train.config import DeviceKind
from train.devices import cpu_description, no_gpu_error


def select_jax_device(kind: DeviceKind) -> str:
    """Makes ``device=kind`` JAX's default device and describes it, for the metrics.

    Keras on JAX (without a ``keras.distribution``) computes on JAX's default
    device: the first of ``jax.devices()``, an accelerator when JAX has one,
    which ``auto`` keeps. ``cpu`` makes JAX's CPU the default device
    (``jax_default_device``, which, unlike TensorFlow's visible devices, may
    change between the jobs of a multirun); ``gpu`` fails when JAX sees no GPU.
    """
    gpus = [device for device in jax.devices() if device.platform == "gpu"]
    if kind is DeviceKind.gpu and not gpus:
        raise no_gpu_error("JAX")
    default = jax.devices("cpu")[0] if kind is DeviceKind.cpu else None
    jax.config.update("jax_default_device", default)
    device = default or jax.devices()[0]
    if device.platform == "cpu":
        return cpu_description()
    return f"{device.platform} (1 x {device.device_kind})"
