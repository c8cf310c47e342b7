"""Running a benchmark: shapes x modes x implementations into result rows.

For every shape and mode, all implementations and the dense-conv ceiling are
built, traced, checked against Keras and then timed together
(:func:`keras_tconv.timing.measure`). Peak memory (optional) is
measured before any timing on CPU, since its subprocesses would disturb the
timings, and right after each shape's timing on GPU. TFLite (optional) runs
last.

The backend's module builds each shape's case: :mod:`~keras_tconv.benchmark.impls`
on TensorFlow, :mod:`~keras_tconv.benchmark.jax_impls` on JAX (imported only
then: the base install may lack JAX). Both cases offer the same fields and
methods, so that the rows are made the same way.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

from keras_tconv.benchmark import impls, memory, tflite
from keras_tconv.benchmark.suites import Shape
from keras_tconv.tf_devices import device_string
from keras_tconv.timing import Timing, measure


@dataclasses.dataclass(frozen=True)
class Options:
    """Everything a run needs besides the shapes; see ``--help`` for each."""

    suite: str
    backend: str
    modes: tuple[str, ...]
    implementations: tuple[str, ...]
    device: str
    rounds: int
    warmup: int
    min_sample_s: float
    memory: bool
    tflite: bool
    tflite_threads: int
    tflite_int8: bool
    seed: int
    jit: bool = False


def _layer_columns(shape: Shape) -> dict:
    out = impls.output_shape(shape)
    return {
        "shape": shape.name,
        "layer": shape.describe(),
        "source": shape.source,
        "batch": shape.batch,
        "height": shape.height,
        "width": shape.width,
        "in_channels": shape.in_channels,
        "filters": shape.filters,
        "kernel_h": shape.kernel[0],
        "kernel_w": shape.kernel[1],
        "stride_h": shape.strides[0],
        "stride_w": shape.strides[1],
        "padding": shape.padding,
        "output_padding": "x".join(map(str, shape.output_padding)) if shape.output_padding else "",
        "out_height": out[1],
        "out_width": out[2],
        "macs": shape.macs,
    }


def _timing_columns(timing: Timing, keras: Timing, macs: int) -> dict:
    return {
        "time_ms": timing.median_s * 1e3,
        "time_q1_ms": timing.q1_s * 1e3,
        "time_q3_ms": timing.q3_s * 1e3,
        "calls_per_sample": timing.calls_per_sample,
        "samples": timing.samples,
        "speedup_vs_keras": keras.median_s / timing.median_s if keras else None,
        "gflops": 2 * macs / timing.median_s / 1e9,
    }


def _build_case(shape: Shape, mode: str, options: Options, device: str):
    """The case of ``shape`` in ``mode`` on the run's backend (``device``: the TensorFlow device string)."""
    if options.backend == "jax":
        from keras_tconv.benchmark import jax_impls

        return jax_impls.build_case(shape, mode, options.implementations, options.device, options.seed)
    return impls.build_case(shape, mode, options.implementations, device, options.seed, options.jit)


def time_shape(shape: Shape, mode: str, options: Options, device: str, cpu_peaks: dict) -> list[dict]:
    """Rows for one shape in one mode: every implementation timed, checked and compared.

    ``cpu_peaks`` holds peak memory measured beforehand in subprocesses, by
    ``(shape name, mode, impl)``; on GPU it is measured here, after timing.
    """
    case = _build_case(shape, mode, options, device)
    outputs = {impl: case.run[impl]() for impl in case.implementations}
    errors = {impl: impls.max_relative_error(outputs[impl], outputs["keras"]) for impl in outputs}
    del outputs
    timings = measure(case.run, case.sync, options.rounds, options.warmup, options.min_sample_s)
    peaks = {
        impl: cpu_peaks[(shape.name, mode, impl)]
        for impl in case.implementations
        if (shape.name, mode, impl) in cpu_peaks
    }
    if options.memory and device.startswith("/GPU"):
        peaks = {
            impl: memory.gpu_peak_bytes(case.run[impl], case.sync, device.strip("/"))
            for impl in case.implementations
        }
    # The training step does three products of the forward's size: forward, input and kernel gradients.
    macs = shape.macs * (3 if mode == "train" else 1)
    ceiling = timings[impls.CEILING]
    common = {
        "suite": options.suite,
        "device": options.device,
        "mode": mode,
        **_layer_columns(shape),
        "auto_picks": case.auto_picks(),
        "ceiling_ms": ceiling.median_s * 1e3,
        "ceiling_gflops": 2 * macs / ceiling.median_s / 1e9,
        "empty_call_ms": timings[impls.EMPTY_CALL].median_s * 1e3,
    }
    rows = []
    for impl in case.implementations:
        rows.append(
            {
                **common,
                **case.columns(impl),
                "impl": impl,
                **_timing_columns(timings[impl], timings["keras"], macs),
                "efficiency": ceiling.median_s / timings[impl].median_s,
                "max_rel_err": errors[impl],
                "first_call_ms": case.first_call_s[impl] * 1e3,
                "peak_mem_mb": peaks[impl] / 2**20 if impl in peaks else None,
            }
        )
    return rows


def tflite_rows(shape: Shape, options: Options, mode: str = "tflite") -> list[dict]:
    """Rows for one shape's batch-1 TFLite models (mode ``tflite``, or ``tflite_int8`` quantized)."""
    results, empty_call = tflite.run_shape(
        shape,
        options.implementations,
        options.tflite_threads,
        options.rounds,
        options.warmup,
        options.min_sample_s,
        options.seed,
        int8=mode == "tflite_int8",
    )
    keras = next((r.timing for r in results if r.impl == "keras"), None)
    batch1 = shape.with_batch(1)
    picks = impls.auto_picks({r.impl: r.ops for r in results if not r.error})
    rows = []
    for result in results:
        row = {
            "suite": options.suite,
            "backend": "tensorflow",
            "device": f"litert-xnnpack-{options.tflite_threads}t",
            "mode": mode,
            **_layer_columns(batch1),
            "auto_picks": picks,
            "empty_call_ms": empty_call.median_s * 1e3,
            "impl": result.impl,
            "max_rel_err": result.max_rel_err,
            "ops": " ".join(result.ops),
            "xnnpack": "yes" if result.delegated else "no",
            "error": result.error,
        }
        if result.timing is not None:
            row.update(_timing_columns(result.timing, keras, batch1.macs))
        rows.append(row)
    return rows


def plan(shapes: tuple[Shape, ...], options: Options) -> list[tuple[str, Callable[[], list[dict]]]]:
    """The run as ``(label, step)`` pairs; calling the steps in order returns all rows."""
    device = device_string(options.device)
    cpu_peaks: dict[tuple[str, str, str], int] = {}
    steps = []
    if options.memory and device == "/CPU:0":

        def measure_memory() -> list[dict]:
            cpu_peaks.update(
                memory.cpu_peak_bytes(
                    options.suite, shapes, options.modes, options.implementations, options.seed
                )
            )
            return []

        steps.append(("memory (subprocesses)", measure_memory))
    for shape in shapes:
        for mode in options.modes:
            step = functools.partial(time_shape, shape, mode, options, device, cpu_peaks)
            steps.append((f"{shape.name} {mode}", step))
    for mode in ("tflite",) * options.tflite + ("tflite_int8",) * options.tflite_int8:
        for shape in shapes:
            steps.append((f"{shape.name} {mode}", functools.partial(tflite_rows, shape, options, mode)))
    return steps
