"""One training job, from validated config to a complete run directory.

:func:`run_job` trains in one process (``distribute=none`` or ``mirrored``);
the pieces around training are shared with the workers of
``distribute=multi_worker`` (:mod:`train.multi_worker.job`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import keras
import tensorflow as tf

from train.config import TrainConfig, require_even_split
from train.data import ImageSplits, autoencoder_batches, load_image_splits
from train.devices import make_strategy, select_device
from train.export import save_model
from train.metrics import Metrics
from train.models import build_autoencoder, transpose_conv_lowerings
from train.reconstructions import plot_reconstructions
from train.run_dir import RunDir
from train.session import reset_global_state
from train.training import TrainingResult, compile_model, fit_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobData:
    """The loaded images and their training and validation batches."""

    splits: ImageSplits
    train: tf.data.Dataset
    validation: tf.data.Dataset


def run_job(config: TrainConfig, run_dir: RunDir) -> Metrics:
    """Trains the configured autoencoder and writes the run directory.

    The device is checked before any data is loaded, so a missing GPU fails
    fast. Returns the metrics written to ``metrics.json``.
    """
    device = select_device(config.device.kind, config.backend)
    completed = run_dir.completed_metrics(config.trainer.epochs)
    if completed is not None:
        log.info(
            "%s already holds a finished run of %d epochs; nothing to do", run_dir.root, config.trainer.epochs
        )
        return completed
    reset_global_state(config.trainer)
    strategy = make_strategy(config.distribute.strategy)
    log.info("Device: %s, %d replica(s)", device, strategy.num_replicas_in_sync)
    check_replica_split(config, strategy)

    data = load_batches(config)
    model = build_compiled_model(config, strategy)
    result = fit_model(model, data.train, data.validation, config.trainer, run_dir)
    metrics = job_metrics(config, data.splits, device, strategy.num_replicas_in_sync, 1, model, result)
    write_outputs(config, run_dir, model, data.validation, metrics)
    return metrics


def check_replica_split(config: TrainConfig, strategy: tf.distribute.Strategy) -> None:
    """Checks that the global batch splits evenly across ``strategy``'s replicas."""
    require_even_split(
        config.data.batch_size,
        strategy.num_replicas_in_sync,
        f"replicas of distribute={config.distribute.strategy.value}",
    )


def load_batches(config: TrainConfig) -> JobData:
    """Loads the configured images and batches them with the global batch size."""
    data = config.data
    splits = load_image_splits(data, config.trainer.seed)
    log.info("Data: %s", splits.source)
    train = autoencoder_batches(
        splits.train,
        data.image_size,
        data.channels,
        data.batch_size,
        shuffle_seed=config.trainer.seed,
        repeat=config.trainer.steps_per_epoch is not None,
    )
    validation = autoencoder_batches(splits.validation, data.image_size, data.channels, data.batch_size)
    return JobData(splits, train, validation)


def build_compiled_model(config: TrainConfig, strategy: tf.distribute.Strategy) -> keras.Model:
    """The configured autoencoder, built and compiled in ``strategy``'s scope."""
    with strategy.scope():
        model = build_autoencoder(config.model, config.layer, config.data.image_size, config.data.channels)
        compile_model(model, config.trainer)
    model.summary(print_fn=log.info)
    return model


def write_outputs(
    config: TrainConfig,
    run_dir: RunDir,
    model: keras.Model,
    validation_batches: tf.data.Dataset,
    metrics: Metrics,
) -> None:
    """Writes the trained model, its export, the reconstruction grid and
    ``metrics.json`` into ``run_dir``."""
    save_model(model, run_dir)
    inputs, _ = next(validation_batches.unbatch().batch(config.reconstructions).as_numpy_iterator())
    plot_reconstructions(model, inputs, run_dir.reconstructions)
    metrics.write(run_dir.metrics)
    log.info(
        "Final loss %.5f, val_loss %.5f, median step %.2f ms; outputs in %s",
        metrics.loss[-1],
        metrics.val_loss[-1],
        metrics.median_step_ms or float("nan"),
        run_dir.root,
    )


def job_metrics(
    config: TrainConfig,
    splits: ImageSplits,
    device: str,
    replicas: int,
    workers: int,
    model: keras.Model,
    result: TrainingResult,
) -> Metrics:
    """The job's :class:`Metrics`, for ``metrics.json``.

    ``replicas`` counts all replicas of all ``workers``; the throughput is
    that of full (global) batches at the median step time.
    """
    data, trainer, layer = config.data, config.trainer, config.layer
    step_ms = result.step_ms
    median_step_ms = step_ms.median_ms if step_ms else None
    return Metrics(
        model=config.model.name,
        layer=layer.name.value,
        implementation=layer.implementation.value if layer.implementation else None,
        lowerings=transpose_conv_lowerings(model),
        data=data.name.value,
        data_source=splits.source,
        skipped_files=splits.skipped_files,
        image_size=data.image_size,
        batch_size=data.batch_size,
        backend=keras.backend.backend(),
        jit_compile=model.jit_compile,
        device=device,
        workers=workers,
        replicas=replicas,
        precision=keras.config.dtype_policy().name,
        epochs=trainer.epochs,
        steps_per_epoch=trainer.steps_per_epoch,
        parameters=model.count_params(),
        loss=result.loss,
        val_loss=result.val_loss,
        epoch_seconds=result.epoch_seconds,
        median_step_ms=median_step_ms,
        step_ms_q1=step_ms.q1_ms if step_ms else None,
        step_ms_q3=step_ms.q3_ms if step_ms else None,
        images_per_second=data.batch_size * 1000 / median_step_ms if median_step_ms else None,
        train_seconds=result.train_seconds,
        resumed_from_epoch=result.resumed_from_epoch,
    )
