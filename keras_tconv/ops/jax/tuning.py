"""Where a JAX layer runs, for ``auto``'s measurements (:mod:`keras_tconv.ops.choosing.tuning`)."""

from __future__ import annotations

import os

import jax
import numpy as np

from keras_tconv.ops.choosing.tuning import Where
from keras_tconv.ops.platform import cpu_model


def default_device() -> jax.Device:
    """The device JAX computes on by default: ``jax_default_device`` (a device
    or a platform name) where set, else the first device."""
    device = jax.config.jax_default_device
    if isinstance(device, str):
        return jax.devices(device)[0]
    return device or jax.devices()[0]


def device_name() -> str:
    """JAX's default device as a cache-key part: the CPU model, or the accelerator's kind."""
    device = default_device()
    if device.platform == "cpu":
        return f"CPU {cpu_model()}"
    return f"{device.platform.upper()} {device.device_kind}"


def _deterministic() -> bool:
    """Whether XLA is asked for deterministic kernels (``--xla_gpu_deterministic_ops``)."""
    return "xla_gpu_deterministic_ops=true" in os.environ.get("XLA_FLAGS", "").lower()


def where() -> Where:
    """The :class:`Where` of a layer traced now. The runners run under
    ``jax.ensure_compile_time_eval()``: on concrete arrays, outside the
    program being traced (JAX would otherwise stage them into it)."""
    return Where(
        device=device_name(),
        versions=f"jax{jax.__version__}",
        deterministic=_deterministic(),
        scope=jax.ensure_compile_time_eval,
    )


def compiled_runner(function, args_by_batch: dict):
    """A runner for :func:`~keras_tconv.ops.choosing.tuning.choose`:
    ``function`` compiled by XLA for each batch's arguments here, so that
    timing leaves compilation out; ``run(n)`` runs it on batch ``n``'s
    arguments and waits for the result."""
    jitted = jax.jit(function)
    compiled = {n: jitted.lower(*args).compile() for n, args in args_by_batch.items()}

    def run(n):
        jax.block_until_ready(compiled[n](*args_by_batch[n]))

    return run


def random_array(shape, dtype, seed: int = 0):
    """A standard-normal array on JAX's default device (NumPy's generator:
    no key to thread, nothing staged into a trace)."""
    return jax.device_put(np.random.default_rng(seed).standard_normal(shape).astype(dtype))
