"""Wall-clock timing of training steps and epochs.

The step-time quartiles are those of the project's one timing engine,
:func:`keras_tconv.timing.summarize` (inclusive quartiles), so a training
job's spread is computed as the benchmark's and the tuner's are.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import keras

from keras_tconv.timing import summarize


@dataclass(frozen=True)
class StepQuartiles:
    """First quartile, median and third quartile of the step times (ms): the
    interquartile range q1..q3 is the spread that tells a speed difference
    between jobs from noise."""

    q1_ms: float
    median_ms: float
    q3_ms: float


class StepTimer(keras.callbacks.Callback):
    """Records the duration of every training step and epoch of one ``fit``.

    Overriding ``on_train_batch_end`` makes Keras call back synchronously
    after each step's results are fetched, so a step's time covers its whole
    computation. Epoch times include validation.
    """

    def __init__(self) -> None:
        super().__init__()
        self.step_seconds: list[float] = []
        self.epoch_seconds: list[float] = []
        self.first_epoch: int | None = None
        self.train_seconds = 0.0

    def on_train_begin(self, logs=None) -> None:
        self._train_start = time.perf_counter()

    def on_train_end(self, logs=None) -> None:
        self.train_seconds = time.perf_counter() - self._train_start

    def on_epoch_begin(self, epoch, logs=None) -> None:
        if self.first_epoch is None:
            self.first_epoch = epoch
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.epoch_seconds.append(time.perf_counter() - self._epoch_start)

    def on_train_batch_begin(self, batch, logs=None) -> None:
        self._step_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None) -> None:
        self.step_seconds.append(time.perf_counter() - self._step_start)

    def step_quartiles(self) -> StepQuartiles | None:
        """Quartiles of the step times, leaving out the first step (tracing
        and compilation) when there are others; None if no step ran."""
        steady = self.step_seconds[1:] or self.step_seconds
        if not steady:
            return None
        timing = summarize(steady)
        return StepQuartiles(1000 * timing.q1_s, 1000 * timing.median_s, 1000 * timing.q3_s)
