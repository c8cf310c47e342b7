"""Compiling and fitting a model with resumable, logged, timed epochs."""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass

import keras
import tensorflow as tf

from train.config import TrainerConfig
from train.run_dir import RunDir
from train.timing import StepQuartiles, StepTimer

log = logging.getLogger(__name__)


def jit_compile(trainer: TrainerConfig) -> bool:
    """``trainer.jit_compile``; when null, XLA on JAX (``jax.jit``, without
    which each op runs eagerly) and not on TensorFlow (a tf.function graph:
    Keras's own ``"auto"`` would turn XLA on where TensorFlow sees a GPU)."""
    if trainer.jit_compile is None:
        return keras.backend.backend() == "jax"
    return trainer.jit_compile


def compile_model(model: keras.Model, trainer: TrainerConfig) -> None:
    """Compiles with the configured optimizer, learning rate, loss and XLA
    setting (Keras adds loss scaling itself under mixed_float16)."""
    optimizer = keras.optimizers.get(
        {"class_name": trainer.optimizer.value, "config": {"learning_rate": trainer.learning_rate}}
    )
    model.compile(optimizer=optimizer, loss=trainer.loss.value, jit_compile=jit_compile(trainer))


@dataclass(frozen=True)
class TrainingResult:
    """Per-epoch losses over the whole run, resumes included, and this
    process's timings."""

    loss: list[float]
    val_loss: list[float]
    epoch_seconds: list[float]
    step_ms: StepQuartiles | None
    train_seconds: float
    resumed_from_epoch: int | None


def read_history(path, epochs: int) -> tuple[list[float], list[float]]:
    """Per-epoch ``(loss, val_loss)`` from the CSV log.

    An epoch logged just before a crash, but not yet backed up, is trained
    and logged again after the resume: the last row of each epoch wins.
    """
    rows = {}
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            rows[int(row["epoch"])] = row
    ordered = [rows[epoch] for epoch in sorted(rows) if epoch < epochs]
    return [float(row["loss"]) for row in ordered], [float(row["val_loss"]) for row in ordered]


def epoch_log_callbacks(run_dir: RunDir, resuming: bool) -> list[keras.callbacks.Callback]:
    """The per-epoch logs of a run directory: the CSV history (appended to
    when resuming) and TensorBoard."""
    return [
        keras.callbacks.CSVLogger(str(run_dir.history), append=resuming),
        keras.callbacks.TensorBoard(str(run_dir.tensorboard)),
    ]


def training_result(timer: StepTimer, run_dir: RunDir, epochs: int) -> TrainingResult:
    """The whole run's losses from the CSV history, and this process's
    timings, after training to ``epochs`` epochs."""
    # No epoch ran: the backup already held all epochs.
    start_epoch = epochs if timer.first_epoch is None else timer.first_epoch
    if start_epoch:
        log.info("Resumed from epoch %d", start_epoch)
    loss, val_loss = read_history(run_dir.history, epochs)
    return TrainingResult(
        loss=loss,
        val_loss=val_loss,
        epoch_seconds=timer.epoch_seconds,
        step_ms=timer.step_quartiles(),
        train_seconds=timer.train_seconds,
        resumed_from_epoch=start_epoch or None,
    )


def fit_model(
    model: keras.Model,
    train_batches: tf.data.Dataset,
    validation_batches: tf.data.Dataset,
    trainer: TrainerConfig,
    run_dir: RunDir,
) -> TrainingResult:
    """Fits ``model``, resuming from ``run_dir.backup`` when a previous run of
    the same directory was interrupted.

    The CSV log is written before the backup at each epoch end, so the log
    never misses a backed-up epoch; it is appended to when resuming.
    """
    timer = StepTimer()
    callbacks = [
        timer,
        *epoch_log_callbacks(run_dir, resuming=run_dir.backup.exists()),
        keras.callbacks.BackupAndRestore(str(run_dir.backup), delete_checkpoint=False),
    ]
    model.fit(
        train_batches,
        validation_data=validation_batches,
        epochs=trainer.epochs,
        steps_per_epoch=trainer.steps_per_epoch,
        callbacks=callbacks,
        shuffle=False,  # the tf.data pipeline shuffles
    )
    return training_result(timer, run_dir, trainer.epochs)
