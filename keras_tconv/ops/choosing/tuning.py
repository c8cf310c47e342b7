"""Measured choice of a lowering: time the candidates once per layer geometry, on the device at hand.

Which lowering is fastest depends on the kernel library (oneDNN and Eigen
rank them differently), the device, the dtype and the shapes, so
``implementation="auto"`` measures: the first time a geometry is traced, the
candidates run eagerly (outside the graph being traced, on the same device,
with random inputs of the traced shapes), interleaved in rounds, and the
fastest is kept. TensorFlow's own kernel (``native``, what Keras's layer runs)
is kept unless another is faster beyond the noise (:func:`pick`), so
swapping the class does not make a layer slower than the measurement can
tell.

This module is the backend-free half: the cache, the measurement and the
margin rule. Each backend says where a layer runs and whether it may be
measured there (a :class:`Where`: :func:`keras_tconv.ops.tensorflow.tuning.where`,
:func:`keras_tconv.ops.jax.tuning.where`) and supplies the runners.

Choices are cached in the process and on disk, so a second run starts at once
and builds the same graph: one JSON file per device (with the CPU kernel
library) and backend version (:func:`cache_path`), in
``$KERAS_TCONV_CACHE_DIR`` or else ``$XDG_CACHE_HOME/keras_tconv``
(``~/.cache/keras_tconv``).

No timing happens (the cache, else the static rule of
:mod:`keras_tconv.ops.choosing.rules`) when ``KERAS_TCONV_TUNING=off`` or the
backend runs deterministically (TensorFlow's
``tf.config.experimental.enable_op_determinism()``), so that two runs build the
same graph; where the backend cannot measure (inside TensorFlow's XLA
compilation, Keras's symbolic shape inference on JAX); for the LiteRT
lowering targets; and for spatial sizes that are unknown when tracing. An
unknown batch is measured at :data:`REPRESENTATIVE_BATCH` and at
batch 1 (see :func:`pick`); a layer whose output exceeds
:data:`MAX_MEASURED_OUTPUT` values at a smaller batch. Candidates are warmed
up (traced and run once) in order of promise, TensorFlow's kernel and the
static rule's pick first, and a slow layer measures only those that fit in
the budget.

Under oneDNN, ``auto`` also measures the kernel gradient's two forms
(:data:`keras_tconv.ops.tensorflow.gradients.KERNEL_GRADIENT_FORMS`) the first time a
layer's gradient is built, cached under the geometry's key plus
``kernel-gradient``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from keras_tconv import timing

log = logging.getLogger("keras_tconv")

REPRESENTATIVE_BATCH = 16
# Output values (2**23: 32 MB of float32) above which a layer is measured at a
# smaller batch, so that measuring stays within the budget.
MAX_MEASURED_OUTPUT = 2**23
# Wall-clock budget of one geometry's measurement, tracing included, and for
# candidates that are compiled (by XLA) before their first run.
BUDGET_S = 0.6
COMPILED_BUDGET_S = 1.2
MAX_ROUNDS = 15
# A candidate replaces TensorFlow's kernel only when its median is this much
# faster, or more if the rounds' spread says the noise is larger.
MIN_MARGIN = 0.05

_lock = threading.Lock()
_memory: dict[tuple[str, str], Choice] = {}
_made: list[Choice] = []


@dataclasses.dataclass(frozen=True)
class Choice:
    """One geometry's lowering, how it was decided, and what was measured.

    Attributes:
        key: the cache key (geometry, shapes, dtype).
        implementation: the lowering kept.
        source: ``"measured"``, ``"cache"`` or ``"static rule"``.
        times_ms: per candidate, median milliseconds per call at each
            measured batch (empty unless measured in this or an earlier run).
    """

    key: str
    implementation: str
    source: str
    times_ms: dict = dataclasses.field(default_factory=dict)

    def describe(self) -> str:
        times = "; ".join(
            f"{impl} " + ", ".join(f"{t:.3g}" for t in by_batch.values()) + " ms"
            for impl, by_batch in self.times_ms.items()
        )
        return f"{self.key}: {self.implementation} ({self.source}{'; ' + times if times else ''})"


@dataclasses.dataclass(frozen=True)
class Where:
    """Where a layer runs and whether ``auto`` may time candidates there,
    as its backend reports it.

    Attributes:
        device: the cache-key part naming what computes (a GPU's name, or the
            CPU model with its kernel library).
        versions: the backend and its version (``"tf2.21.0"``, ``"jax0.10.2"``).
        can_measure: False where timing cannot happen now (the call is being
            compiled or shape-inferred).
        deterministic: True when the backend is asked to run deterministically:
            nothing is timed then, so that two runs build the same program.
        scope: a context manager under which the runners run on ``device``,
            outside the program being traced.
    """

    device: str
    versions: str
    can_measure: bool = True
    deterministic: bool = False
    scope: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext


def tuning_enabled(where: Where) -> bool:
    """False when ``KERAS_TCONV_TUNING=off`` or the backend runs deterministically."""
    if os.environ.get("KERAS_TCONV_TUNING", "on").lower() in ("0", "off", "false", "no"):
        return False
    return not where.deterministic


def cache_path(where: Where) -> Path:
    """The cache file for ``where``'s device and backend version."""
    root = os.environ.get("KERAS_TCONV_CACHE_DIR")
    if root is None:
        root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "keras_tconv"
    name = f"{where.device} {where.versions}".replace("/", "_")
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    return Path(root) / f"{safe}.json"


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write(path: Path, key: str, choice: Choice) -> None:
    """Adds one entry to the cache file (read, merge, atomic replace)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        entries = _read(path)
        entries[key] = {"implementation": choice.implementation, "times_ms": choice.times_ms}
        with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as tmp:
            json.dump(entries, tmp, indent=1, sort_keys=True)
        os.replace(tmp.name, path)
    except OSError as error:  # a read-only home must not break a model
        log.warning("keras_tconv: could not write the tuning cache %s: %s", path, error)


def measured_batch(batch: int, output_values: int) -> int:
    """The batch at which to measure a layer run at ``batch``: the largest
    not above it whose output (``output_values`` per example) stays within
    :data:`MAX_MEASURED_OUTPUT`, and at least 1. (Arithmetic is no reason to
    shrink it: where the weights outweigh the activations, a smaller batch
    ranks the lowerings differently.)"""
    return max(1, min(batch, MAX_MEASURED_OUTPUT // max(1, output_values)))


def measurement(
    shape: tuple, dtype: str, filters: int, bias: bool, activation: str | None, plan_h, plan_w
) -> tuple[str, tuple[int, ...]]:
    """The cache key of a layer geometry and the batches to measure it at,
    for an NHWC input of ``shape`` (the batch may be None).

    An unknown batch is measured at :data:`REPRESENTATIVE_BATCH` and at 1; a
    layer with a huge output at a smaller batch (:func:`measured_batch`).
    """
    batch, height, width, channels = shape
    out_h, out_w = plan_h.geometry.output_length(height), plan_w.geometry.output_length(width)
    batches = (batch,) if batch is not None else (REPRESENTATIVE_BATCH, 1)
    batches = tuple(dict.fromkeys(measured_batch(n, out_h * out_w * filters) for n in batches))
    geometry = "x".join(
        f"k{p.geometry.kernel_size}s{p.stride}c{p.geometry.crop}e{p.geometry.extra}" for p in (plan_h, plan_w)
    )
    key = (
        f"{geometry} {channels}->{filters} in {batch or 'any'}x{height}x{width} {dtype}"
        f"{' bias' if bias else ''} {activation or 'linear'}"
    )
    return key, batches


def pick(times: dict, spreads: dict, batches: tuple, baseline: str = "native") -> str:
    """The margin rule: the lowering to keep from per-batch median times.

    ``times[impl][batch]`` are medians, ``spreads[impl][batch]`` the relative
    interquartile ranges of the rounds. A candidate is eligible when, at every
    measured batch, it is not slower than ``baseline`` (the backend's own
    kernel) beyond the margin; the winner is the eligible candidate fastest at
    the first (representative) batch, if it beats ``baseline`` there by more
    than the margin: ``max(MIN_MARGIN, spread of both)``. Otherwise ``baseline``.
    """
    native = times[baseline]
    best, best_time = baseline, native[batches[0]]
    for impl, by_batch in times.items():
        if impl == baseline:
            continue
        margins = {b: max(MIN_MARGIN, spreads[impl][b], spreads[baseline][b]) for b in batches}
        if any(by_batch[b] > native[b] * (1 + margins[b]) for b in batches[1:]):
            continue
        if (
            by_batch[batches[0]] < native[batches[0]] * (1 - margins[batches[0]])
            and by_batch[batches[0]] < best_time
        ):
            best, best_time = impl, by_batch[batches[0]]
    return best


def _measure(factories: dict, batches: tuple, budget_s: float = BUDGET_S) -> tuple[dict, dict]:
    """Interleaved rounds of the candidates at every batch within ``budget_s``
    (ordered, sampled and summarised by :mod:`keras_tconv.timing`); per
    candidate and batch, the median seconds per call and the relative IQR.

    ``factories[impl]()`` builds (and traces) a candidate's runner. Candidates
    are built and run once at each batch (warm-up) in their order until half
    the budget is spent, at least two of them; those not reached by then are
    left out. A warm-up run slower than a quarter of the budget counts as
    that candidate's sample (one-time costs are small beside it) and is not
    repeated once the budget is spent, so that a slow layer costs about one
    run of each candidate measured.
    """
    start = time.perf_counter()
    runners, samples = {}, {}
    for impl, factory in factories.items():
        if len(runners) >= 2 and time.perf_counter() - start > budget_s / 2:
            break
        runners[impl], samples[impl] = factory(), {}
        for b in batches:
            t0 = time.perf_counter()
            runners[impl](b)
            elapsed = time.perf_counter() - t0
            samples[impl][b] = [elapsed] if elapsed > budget_s / 4 else []
    with timing.gc_paused():
        for round_index in range(MAX_ROUNDS):
            spent = time.perf_counter() - start >= budget_s
            order = timing.rotation(list(runners), round_index)
            todo = [(impl, b) for impl in order for b in batches if not (spent and samples[impl][b])]
            if not todo:
                break
            for impl, b in todo:
                t0 = time.perf_counter()
                runners[impl](b)
                samples[impl][b].append(time.perf_counter() - t0)
    summaries = {
        impl: {b: timing.summarize(values) for b, values in by_batch.items()}
        for impl, by_batch in samples.items()
    }
    medians = {impl: {b: t.median_s for b, t in by_batch.items()} for impl, by_batch in summaries.items()}
    spreads = {impl: {b: t.spread for b, t in by_batch.items()} for impl, by_batch in summaries.items()}
    return medians, spreads


def choose(
    key: str,
    candidates: tuple,
    make_runner,
    batches: tuple,
    fallback: str,
    where: Where,
    budget_s: float = BUDGET_S,
) -> Choice:
    """The lowering for ``key``: from the process's memory, the disk cache, a
    measurement, or ``fallback`` (the static rule's pick) where timing is off.

    ``make_runner(impl)`` builds (compiles) candidate ``impl`` and returns a
    callable that runs it once at a given batch size and waits for its
    result; it is only called to measure, under ``where.scope()``, for about
    ``budget_s`` seconds.
    """
    with _lock:
        memory_key = (where.device, where.versions, key)
        if memory_key in _memory:
            return _memory[memory_key]
        path = cache_path(where)
        cached = _read(path).get(key)
        if cached is not None:
            choice = Choice(key, cached["implementation"], "cache", cached.get("times_ms", {}))
        elif not tuning_enabled(where) or not where.can_measure or len(candidates) < 2:
            choice = Choice(key, fallback, "static rule")
        else:
            # The backend's own kernel and the static rule's pick first: a slow layer may measure only those.
            order = dict.fromkeys([candidates[0], fallback, *candidates])
            with where.scope():
                factories = {
                    impl: functools.partial(make_runner, impl) for impl in order if impl in candidates
                }
                medians, spreads = _measure(factories, batches, budget_s)
            times_ms = {
                impl: {str(b): round(t * 1e3, 4) for b, t in by_batch.items()}
                for impl, by_batch in medians.items()
            }
            choice = Choice(
                key, pick(medians, spreads, batches, baseline=candidates[0]), "measured", times_ms
            )
            _write(path, key, choice)
        _memory[memory_key] = choice
        _made.append(choice)
        log.info("keras_tconv auto: %s", choice.describe())
        return choice


def choices() -> list[Choice]:
    """The choices ``auto`` made in this process, in order (one per geometry)."""
    with _lock:
        return list(_made)


def clear_memory() -> None:
    """Forgets the choices made in this process (the disk cache stays)."""
    with _lock:
        _memory.clear()
        _made.clear()
