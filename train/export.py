"""Saving the trained model for Keras and for TensorFlow serving."""

from __future__ import annotations

import keras

from train.run_dir import RunDir


def save_model(model: keras.Model, run_dir: RunDir) -> None:
    """Writes ``model.keras`` and a SavedModel in ``export/``.

    ``model.export`` gives the SavedModel a ``serving_default`` signature
    whose batch dimension is dynamic; plain ``tf.saved_model.load`` serves it
    without this project's code.
    """
    model.save(run_dir.model)
    model.export(str(run_dir.export), format="tf_saved_model", verbose=False)
