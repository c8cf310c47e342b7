"""Epoch-level fault tolerance of multi-worker training with TensorFlow checkpoints."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import keras
import tensorflow as tf

from train.multi_worker.scratch import in_memory_directory
from train.multi_worker.strategy import from_chief

log = logging.getLogger(__name__)


class WorkerBackup:
    """The model, its optimizer and the number of completed epochs, saved in
    the chief's ``backup/`` after every epoch.

    Every worker takes part in each save, as MultiWorkerMirroredStrategy
    requires (reading some distributed variables is a collective operation);
    the other workers write into in-memory directories (``ram://``) that they
    delete at once, so that none leaves files behind, even when killed in the
    middle of a save. Only the chief's copy is restored, and
    :func:`from_chief` hands its state to the others, so the workers need no
    shared file system.
    """

    def __init__(
        self, model: keras.Model, strategy: tf.distribute.Strategy, directory: Path, is_chief: bool
    ) -> None:
        self.directory = directory
        self.is_chief = is_chief
        self.strategy = strategy
        with strategy.scope():
            # The optimizer's variables exist only once it is built; a
            # checkpoint restores only variables that exist.
            model.optimizer.build(model.trainable_variables)
            self.completed_epochs = tf.Variable(0, dtype=tf.int64, trainable=False, name="completed_epochs")
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=model.optimizer, completed_epochs=self.completed_epochs
        )
        self.variables = [*model.variables, *model.optimizer.variables, self.completed_epochs]
        self.manager = self._manager(directory) if is_chief and directory.exists() else None

    def _manager(self, directory: Path) -> tf.train.CheckpointManager:
        """Saves into ``directory``, keeping the last checkpoint only."""
        return tf.train.CheckpointManager(self.checkpoint, str(directory), max_to_keep=1)

    def restore(self) -> int:
        """Loads the chief's last backup (if any) on every worker and returns
        the number of completed epochs."""
        latest = self.manager.latest_checkpoint if self.manager else None
        if latest:
            log.info("Restoring %s", latest)
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        for variable, value in zip(self.variables, from_chief(self.strategy, self.variables), strict=True):
            variable.assign(value)
        return int(self.completed_epochs.numpy())

    def save(self, completed_epochs: int) -> None:
        """Saves the state after ``completed_epochs`` epochs."""
        self.completed_epochs.assign(completed_epochs)
        if not self.is_chief:
            with in_memory_directory("keras-tconv-worker-backup-") as scratch:
                self.checkpoint.write(f"{scratch}/ckpt")
        elif self.manager:
            # In place: the manager updates its state file last and atomically,
            # so the directory always names a complete checkpoint.
            self.manager.save()
        else:
            # The first backup is written aside and renamed into place, so
            # that backup/ never holds a partial checkpoint.
            staging = self.directory.with_name(f".{self.directory.name}.partial")
            shutil.rmtree(staging, ignore_errors=True)
            self._manager(staging).save()
            os.replace(staging, self.directory)
            self.manager = self._manager(self.directory)
