"""Interleaved wall-clock timing of several callables that do the same job.

The one timing engine of the project: the benchmark times with
:func:`measure`; ``auto``'s tuner (:mod:`keras_tconv.ops.choosing.tuning`)
runs its budgeted rounds with :func:`rotation`, :func:`gc_paused` and
:func:`summarize`, so that both order, sample and summarise alike.

All candidates of one shape are timed in the same process, in rounds: every
round times each candidate once, in an order that rotates (and reverses on
odd rounds) from round to round, so slow drifts of the machine (frequency,
other load) spread evenly over the candidates instead of favouring whichever
ran first. A sample is ``calls`` back-to-back calls, with ``calls`` chosen
per candidate after warm-up so that one sample lasts at least
``min_sample_s``; a candidate's time is the median over rounds of
sample time / calls. Python's garbage collector is off while samples run.
Quartiles are the inclusive (linear) ones.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import statistics
import time
from collections.abc import Callable, Iterator


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds per call: median and quartiles over the rounds."""

    median_s: float
    q1_s: float
    q3_s: float
    calls_per_sample: int
    samples: int

    @property
    def spread(self) -> float:
        """The interquartile range relative to the median (0 for one sample)."""
        return (self.q3_s - self.q1_s) / self.median_s if self.median_s else 0.0


def summarize(values: list[float], calls_per_sample: int = 1) -> Timing:
    """The :class:`Timing` of per-call ``values`` (seconds), one per sample."""
    median = statistics.median(values)
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else (median,) * 3
    return Timing(median, q1, q3, calls_per_sample, len(values))


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's garbage collector off, as timeit does: a collection inside one
    sample would bill one candidate for all."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _time_sample(call: Callable[[], object], sync: Callable[[object], None], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        result = call()
    sync(result)
    return (time.perf_counter() - start) / calls


def rotation(names: list[str], round_index: int) -> list[str]:
    """The order of ``names`` in round ``round_index``: rotated, reversed on odd rounds."""
    shift = round_index % len(names)
    order = names[shift:] + names[:shift]
    return order[::-1] if round_index % 2 else order


def measure(
    candidates: dict[str, Callable[[], object]],
    sync: Callable[[object], None],
    rounds: int,
    warmup: int,
    min_sample_s: float,
    max_calls: int = 10_000,
) -> dict[str, Timing]:
    """Time every candidate; see the module docstring for the method.

    Args:
        candidates: name -> callable doing one call and returning its result.
        sync: waits until a result is computed (a no-op where calls are
            synchronous); called once per sample, on the sample's last result.
        rounds: samples per candidate (at least 1).
        warmup: untimed calls per candidate before calibration.
        min_sample_s: minimum duration of one sample.
        max_calls: cap on calls per sample, for very fast candidates.
    """
    names = list(candidates)
    calls = {}
    for name in names:
        call = candidates[name]
        for _ in range(warmup):
            sync(call())
        one_call = min(_time_sample(call, sync, 1) for _ in range(3))
        calls[name] = int(min(max_calls, max(1, math.ceil(min_sample_s / max(one_call, 1e-9)))))
    samples: dict[str, list[float]] = {name: [] for name in names}
    with gc_paused():
        for round_index in range(max(1, rounds)):
            for name in rotation(names, round_index):
                samples[name].append(_time_sample(candidates[name], sync, calls[name]))
    return {name: summarize(values, calls[name]) for name, values in samples.items()}
