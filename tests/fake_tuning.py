"""A fake measurement for the tests of ``auto`` on either backend: decisions
checked against fixed timings, never against the machine's."""

from __future__ import annotations

from keras_tconv.ops.choosing import tuning


def fake_measurement(monkeypatch, cache_dir, times_ms: dict) -> list:
    """Tuning on, a fresh cache directory and process memory, and
    ``tuning._measure`` replaced by one that builds and runs every
    candidate's runner once (so the runners are exercised) and reports
    ``times_ms[candidate]`` at every batch with no spread (``times_ms`` may
    also be a list of such dicts: one per measurement, in order, the last
    for the rest). Returns the list
    the measurements append to: ``(candidates in the order measured, batches)``."""
    monkeypatch.setenv("KERAS_TCONV_TUNING", "on")
    monkeypatch.setenv("KERAS_TCONV_CACHE_DIR", str(cache_dir))
    tuning.clear_memory()
    calls = []

    def fake_measure(factories, batches, budget_s=tuning.BUDGET_S):
        calls.append((list(factories), batches))
        for factory in factories.values():
            factory()(batches[0])
        times = times_ms[min(len(calls), len(times_ms)) - 1] if isinstance(times_ms, list) else times_ms
        medians = {impl: {b: times[impl] for b in batches} for impl in factories}
        return medians, {impl: {b: 0.0 for b in batches} for impl in factories}

    monkeypatch.setattr(tuning, "_measure", fake_measure)
    return calls
