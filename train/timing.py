"""Wall-clock timing of training steps and epochs."""

from __future__ import annotations

import statistics
import time

import keras


class StepTimer(keras.callbacks.Callback):
    """Records the duration of every training step and epoch of one ``fit``.

    Overriding ``on_train_batch_end`` makes Keras call back synchronously
    after each step's results are fetched, so a step's time covers its whole
    computation. Epoch times include validation.
    """

    def __init__(self) -> None:
        super().__init__()
        self.step_ms: list[float] = []
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
        self.step_ms.append(1000 * (time.perf_counter() - self._step_start))

    def median_step_ms(self) -> float | None:
        """Median step time, leaving out the first step (tracing and
        compilation) when there are others; None if no step ran."""
        steady = self.step_ms[1:] or self.step_ms
        return statistics.median(steady) if steady else None
