"""The training loop of ``distribute=multi_worker``.

Keras 3's ``fit`` fails under MultiWorkerMirroredStrategy, so each worker
runs this loop instead: ``strategy.run`` of a step whose per-replica loss is
scaled to the global batch, the compiled optimizer applied in replica
context (it all-reduces the gradients), ``strategy.reduce`` of the losses,
and the same Keras callbacks as ``fit`` (step timer, CSV history,
TensorBoard) driven by a ``keras.callbacks.CallbackList``.
"""

from __future__ import annotations

import logging

import keras
import tensorflow as tf

from train.config import TrainerConfig
from train.multi_worker.backup import WorkerBackup
from train.run_dir import RunDir
from train.timing import StepTimer
from train.training import epoch_log_callbacks

log = logging.getLogger(__name__)

SUM = tf.distribute.ReduceOp.SUM


def distribute_batches(
    strategy: tf.distribute.Strategy, batches: tf.data.Dataset
) -> tf.distribute.DistributedDataset:
    """Splits every global batch of ``batches`` across all replicas.

    Every worker builds the whole pipeline (with the same shuffle seed), and
    the DATA auto-shard policy keeps each replica's consecutive slice of each
    batch: a step sees exactly the batch that a single process would. (The
    default policy would try to shard by files, which in-memory and TFDS
    pipelines here do not have.)
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(batches.with_options(options))


class DistributedSteps:
    """The compiled train and validation steps of ``model`` under ``strategy``.

    Each returns ``[sum of per-image losses, images]`` over the global batch,
    so that epoch losses are exact means over images, as ``fit`` reports them.
    """

    def __init__(self, model: keras.Model, strategy: tf.distribute.Strategy) -> None:
        self.model = model
        self.strategy = strategy
        self.loss_fn = keras.losses.get(model.loss)
        # Under mixed_float16, compile wraps the optimizer in a
        # LossScaleOptimizer, which skips a step whose gradients overflowed.
        # It judges each worker's own gradients, and only the workers that
        # apply the step all-reduce them: when one half-batch overflows and
        # another does not, the workers fall out of step. Summed first,
        # the gradients are the same everywhere, and so is the judgement.
        self.agree_on_overflow = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        # XLA compiles the replica's forward and backward pass, as fit does;
        # collectives and the optimizer stay outside.
        self.loss_and_gradients = tf.function(self._loss_and_gradients, jit_compile=model.jit_compile)
        self.train_step = tf.function(self._train_step)
        self.validation_step = tf.function(self._validation_step)

    def per_image_loss(self, images: tf.Tensor, targets: tf.Tensor, training: bool) -> tf.Tensor:
        """The compiled loss of each image: the mean over its pixels."""
        values = self.loss_fn(targets, self.model(images, training=training))
        return tf.reduce_mean(values, axis=list(range(1, values.shape.rank)))

    def _loss_and_gradients(self, images: tf.Tensor, targets: tf.Tensor, global_batch: tf.Tensor):
        with tf.GradientTape() as tape:
            per_image = self.per_image_loss(images, targets, training=True)
            # This replica's share of the global batch's mean: summed over the
            # replicas (as the optimizer sums their gradients) it is the mean.
            loss = tf.nn.compute_average_loss(per_image, global_batch_size=global_batch)
            scaled = self.model.optimizer.scale_loss(loss)  # loss scaling under mixed_float16
        return tf.reduce_sum(per_image), tape.gradient(scaled, self.model.trainable_variables)

    def _replica_train_step(self, images: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        context = tf.distribute.get_replica_context()
        images_here = tf.shape(images)[0]
        # The true global batch, also for a last, partial batch of an epoch.
        global_batch = context.all_reduce(SUM, images_here)
        loss_sum, gradients = self.loss_and_gradients(images, targets, global_batch)
        if self.agree_on_overflow:
            # The optimizer sums the replicas' gradients again: each passes
            # its equal share of the sum.
            replicas = self.strategy.num_replicas_in_sync
            gradients = [gradient / replicas for gradient in context.all_reduce(SUM, gradients)]
        self.model.optimizer.apply(gradients, self.model.trainable_variables)
        return tf.stack([loss_sum, tf.cast(images_here, loss_sum.dtype)])

    def _train_step(self, iterator) -> tf.Tensor:
        images, targets = next(iterator)
        return self.strategy.reduce(
            SUM, self.strategy.run(self._replica_train_step, args=(images, targets)), axis=None
        )

    def _replica_validation_step(self, images: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        per_image = self.per_image_loss(images, targets, training=False)
        return tf.stack([tf.reduce_sum(per_image), tf.cast(tf.shape(images)[0], per_image.dtype)])

    def _validation_step(self, images, targets) -> tf.Tensor:
        return self.strategy.reduce(
            SUM, self.strategy.run(self._replica_validation_step, args=(images, targets)), axis=None
        )

    def validation_loss(self, batches: tf.distribute.DistributedDataset) -> float:
        """The mean loss over all images of ``batches``."""
        totals = tf.zeros(2)
        for images, targets in batches:
            totals += self.validation_step(images, targets)
        return float(totals[0] / totals[1])


def fit_across_workers(
    model: keras.Model,
    train_batches: tf.data.Dataset,
    validation_batches: tf.data.Dataset,
    trainer: TrainerConfig,
    run_dir: RunDir,
    strategy: tf.distribute.Strategy,
    is_chief: bool,
) -> StepTimer:
    """Trains ``model`` (built and compiled in ``strategy``'s scope) to
    ``trainer.epochs`` epochs on this worker, resuming from the chief's
    backup, and returns this worker's timer.

    Only the chief writes into ``run_dir``: the CSV history (before the
    backup at each epoch end, so the history never misses a backed-up epoch),
    TensorBoard and ``backup/``.
    """
    resuming = is_chief and run_dir.backup.exists()
    backup = WorkerBackup(model, strategy, run_dir.backup, is_chief)
    start_epoch = backup.restore()
    if start_epoch:
        log.info("Resuming after epoch %d from the chief's backup", start_epoch)
    steps = DistributedSteps(model, strategy)
    train = distribute_batches(strategy, train_batches)
    validation = distribute_batches(strategy, validation_batches)
    # Steps per epoch: the fixed count over the endless dataset (one
    # iterator for the whole run, as fit keeps it), or one pass.
    steps_per_epoch = trainer.steps_per_epoch or int(train.cardinality)
    iterator = iter(train)
    timer = StepTimer()
    callbacks = keras.callbacks.CallbackList(
        [timer, *(epoch_log_callbacks(run_dir, resuming) if is_chief else [])],
        model=model,
        epochs=trainer.epochs,
        steps=steps_per_epoch,
    )

    callbacks.on_train_begin()
    for epoch in range(start_epoch, trainer.epochs):
        callbacks.on_epoch_begin(epoch)
        if trainer.steps_per_epoch is None and epoch > start_epoch:
            iterator = iter(train)  # a new pass, reshuffled
        totals = tf.zeros(2)
        for step in range(steps_per_epoch):
            callbacks.on_train_batch_begin(step)
            totals += steps.train_step(iterator)
            callbacks.on_train_batch_end(step)
        logs = {"loss": float(totals[0] / totals[1]), "val_loss": steps.validation_loss(validation)}
        log.info(
            "Epoch %d/%d: loss %.5f, val_loss %.5f", epoch + 1, trainer.epochs, logs["loss"], logs["val_loss"]
        )
        callbacks.on_epoch_end(epoch, logs)
        backup.save(epoch + 1)
    callbacks.on_train_end()
    return timer
