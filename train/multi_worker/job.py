"""One worker's part of a ``distribute=multi_worker`` job."""

from __future__ import annotations

import logging

import keras
import tensorflow as tf

from train.config import TrainConfig
from train.devices import select_device
from train.job import build_compiled_model, check_replica_split, job_metrics, load_batches, write_outputs
from train.metrics import Metrics
from train.multi_worker.cluster import ClusterTask
from train.multi_worker.loop import fit_across_workers
from train.multi_worker.scratch import in_memory_directory
from train.multi_worker.strategy import barrier, from_chief, join_cluster, peers_lost_as_error
from train.run_dir import RunDir
from train.session import reset_global_state
from train.training import training_result

log = logging.getLogger(__name__)


def undistributed_copy(model: keras.Model) -> keras.Model:
    """``model`` with its weights and optimizer state, outside any strategy.

    The chief writes its outputs alone, but a model built in
    MultiWorkerMirroredStrategy's scope predicts across all workers; a round
    trip through Keras's own format (in memory) gives a plain copy.
    """
    with in_memory_directory("keras-tconv-chief-") as scratch:
        path = f"{scratch}/model.keras"
        model.save(path)
        return keras.saving.load_model(path)


def run_worker_job(config: TrainConfig, run_dir: RunDir, cluster: ClusterTask) -> Metrics | None:
    """Trains with the other workers of ``cluster``; the chief then writes the
    run directory and returns its metrics, the other workers return None.

    The other workers write nothing but their own logs into their own
    ``run_dir``, and wait for the chief's outputs before they leave the
    cluster.
    """
    device = select_device(config.device.kind, config.backend)
    reset_global_state(config.trainer)
    strategy = join_cluster(cluster, config.distribute.peer_timeout_s)
    log.info(
        "Device: %s; this is %s, one of %d workers (the chief is %s), %d replica(s) in all",
        device,
        cluster.me,
        cluster.workers,
        cluster.tasks[0],
        strategy.num_replicas_in_sync,
    )
    check_replica_split(config, strategy)
    epochs = config.trainer.epochs
    with peers_lost_as_error(cluster, config.distribute.peer_timeout_s):
        # The chief decides for all whether its run directory is finished.
        completed = run_dir.completed_metrics(epochs) if cluster.is_chief else None
        (finished,) = from_chief(strategy, [tf.constant(completed is not None)])
        if finished:
            log.info(
                "The chief's run directory already holds a finished run of %d epochs; nothing to do", epochs
            )
            return completed

        data = load_batches(config)
        model = build_compiled_model(config, strategy)
        timer = fit_across_workers(
            model, data.train, data.validation, config.trainer, run_dir, strategy, cluster.is_chief
        )
        metrics = None
        if cluster.is_chief:
            result = training_result(timer, run_dir, epochs)
            metrics = job_metrics(
                config, data.splits, device, strategy.num_replicas_in_sync, cluster.workers, model, result
            )
            write_outputs(config, run_dir, undistributed_copy(model), data.validation, metrics)
        barrier(strategy)
    return metrics
