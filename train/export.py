"""Saving the trained model for Keras and for TensorFlow serving, with a note
on how to load each."""

from __future__ import annotations

import keras
from absl import logging as absl_logging

import keras_tconv
from train.quiet import absl_verbosity
from train.run_dir import RunDir

# The platforms a SavedModel exported from JAX runs on: those that TensorFlow
# serves on (jax2tf lowers the model once for each), wherever JAX trained it.
JAX_EXPORT_PLATFORMS = ("cpu", "cuda")


def _export_options() -> dict:
    """``model.export``'s backend-specific arguments: on JAX, the platforms
    for jax2tf, whose default is JAX's current platform only (a model
    trained on a GPU would not serve on a CPU)."""
    if keras.backend.backend() == "jax":
        return {"jax2tf_kwargs": {"native_serialization_platforms": JAX_EXPORT_PLATFORMS}}
    return {}


def loading_note(model: keras.Model) -> str:
    """The text of the run directory's README.txt: how to load ``model.keras``
    and ``export/``."""
    imports = "    import keras\n"
    caveat = ""
    if any(isinstance(layer, keras_tconv.SegregatedConv2DTranspose) for layer in model.layers):
        imports += "    import keras_tconv  # registers SegregatedConv2DTranspose, which this model uses\n"
        caveat = (
            "\nWithout `import keras_tconv` first, loading fails with Keras's error\n"
            "\"Could not locate class 'Conv2DTranspose'\".\n"
        )
    return (
        f"model.keras, the trained Keras model, loads with\n\n{imports}"
        f'    model = keras.saving.load_model("model.keras")\n{caveat}\n'
        "export/ is a SavedModel (signature serving_default, any batch size) that runs\n"
        "with TensorFlow alone, e.g. in TensorFlow Serving or with\n\n"
        "    import tensorflow as tf\n"
        '    serve = tf.saved_model.load("export").signatures["serving_default"]\n'
        f"{_jax_export_note()}"
    )


def _jax_export_note() -> str:
    """What differs in a SavedModel exported from JAX; empty on TensorFlow."""
    if keras.backend.backend() != "jax":
        return ""
    return (
        f"\nTrained on JAX, the model was converted with jax2tf, for {' and '.join(JAX_EXPORT_PLATFORMS)} "
        "devices\n"
        "(TensorFlow's XlaCallModule op). The warning TensorFlow prints when loading it,\n"
        '"Importing a function ... with ops with unsaved custom gradients", concerns\n'
        "gradients only, which serving does not take.\n"
    )


def save_model(model: keras.Model, run_dir: RunDir) -> None:
    """Writes ``model.keras``, a SavedModel in ``export/`` and ``README.txt``.

    ``model.export`` gives the SavedModel a ``serving_default`` signature
    whose batch dimension is dynamic; plain ``tf.saved_model.load`` serves it
    without this project's code. ``model.keras`` needs ``import keras_tconv``
    before loading when it holds the segregated layer, which Keras's error
    would not say; README.txt does. On JAX, ``model.export`` converts the
    model with jax2tf (:data:`JAX_EXPORT_PLATFORMS`), which logs an absl
    notice for every variable it renames in the SavedModel ("input name(s)
    ... with unsupported characters"): hidden, as nothing is to be done.
    """
    model.save(run_dir.model)
    with absl_verbosity(absl_logging.WARNING):
        model.export(str(run_dir.export), format="tf_saved_model", verbose=False, **_export_options())
    run_dir.readme.write_text(loading_note(model))
