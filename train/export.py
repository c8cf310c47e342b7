"""Saving the trained model for Keras and for TensorFlow serving, with a note
on how to load each."""

from __future__ import annotations

import keras

import keras_tconv
from train.run_dir import RunDir

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
    )


def save_model(model: keras.Model, run_dir: RunDir) -> None:
    """Writes ``model.keras``, a SavedModel in ``export/`` and ``README.txt``.

    ``model.export`` gives the SavedModel a ``serving_default`` signature
    whose batch dimension is dynamic; plain ``tf.saved_model.load`` serves it
    without this project's code. ``model.keras`` needs ``import keras_tconv``
    before loading when it holds the segregated layer, which Keras's error
    would not say; README.txt does.
    """
    model.save(run_dir.model)
    model.export(str(run_dir.export), format="tf_saved_model", verbose=False)
    run_dir.readme.write_text(loading_note(model))
