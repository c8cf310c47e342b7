"""An independent copy of a Keras model, made with Keras's own saving."""

from __future__ import annotations

import os
import tempfile

import keras
import numpy as np

from keras_tconv.conversion.swap import CONVERTIBLE, swap_class
from keras_tconv.conversion.tracking import tracked_layers


def copy_model(model: keras.Model) -> keras.Model:
    """A copy of ``model`` with its own variables, as a ``.keras`` round trip makes it.

    The model is saved with ``model.save`` and loaded back with
    ``keras.saving.load_model``: Keras rebuilds it from its configuration (so
    subclassed models and layers, keras-hub backbones and task models
    included, are constructed by their own code) and loads every variable,
    asset and the compile and optimizer state by the model's structure, not by
    layer names or list order. Every layer's variables are then compared
    with the original's, so the copy holds the same weights and computes the
    same outputs, or this raises.

    A configuration records the class of each layer of a Sequential or
    Functional graph, but not of the layers a subclassed layer creates in its
    ``__init__``: those come back as the class the code names. Where the
    original's layer has since been converted, the copy's is converted the
    same way, so the copy has the original's classes and implementations.

    The classes of the model's layers are passed to the loader, so layers
    not registered with ``keras.saving.register_keras_serializable`` load
    too, and the file is loaded with ``safe_mode=False`` (it was written from
    this live model a moment earlier, so its ``Lambda`` layers are the
    model's own). Other custom objects (functions, initializers, losses) must
    be registered for the copy to load.
    """
    custom_objects = {
        keras.saving.get_registered_name(type(layer)): type(layer)
        for layer in model._flatten_layers(include_self=True, recursive=True)
    }
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.keras")
        try:
            model.save(path)
            copy = keras.saving.load_model(path, custom_objects=custom_objects, safe_mode=False)
        except (NotImplementedError, TypeError, ValueError) as error:
            raise ValueError(
                f"convert_model could not copy model '{model.name}' ({type(model).__name__}) "
                "through a .keras round trip: Keras cannot save and load it as it is. Make "
                "it serializable (get_config, keras.saving.register_keras_serializable) or "
                "convert it in place with convert_model(model, inplace=True). "
                f"Keras said: {error}"
            ) from error
    _match_copy(model, copy)
    return copy


def _match_copy(model: keras.Model, copy: keras.Model) -> None:
    """Check that ``copy`` is ``model``'s, weights included, and give its layers the original's classes.

    The copy is built by the same code as the original, so Keras tracks the
    same layers in the same order in both. That is checked, with each layer's
    own variables: Keras loads a model it cannot rebuild (a subclassed model
    whose ``call`` takes two positional inputs, for one) with only a warning,
    and without its weights. A different number of layers, or a pair that
    differs in class (beyond the two convertible ones), configuration of a
    transposed convolution, or variables, raises.
    """
    layers, copied_layers = list(tracked_layers(model)), list(tracked_layers(copy))
    mismatch = len(layers) != len(copied_layers)
    for (path, layer), (_, copied) in zip(layers, copied_layers):
        if mismatch or not _counterparts(layer, copied):
            raise ValueError(
                f"convert_model could not copy model '{model.name}': Keras reloads it with "
                f"other layers or weights (first difference at '{path}'). Convert it in place "
                "with convert_model(model, inplace=True)."
            )
        if type(copied) is not type(layer):
            swap_class(copied, type(layer), getattr(layer, "implementation", None))


def _counterparts(layer: keras.layers.Layer, copied: keras.layers.Layer) -> bool:
    """Whether ``copied`` is a copy of ``layer``: same class (or the same transposed convolution), same
    variables."""
    if type(layer) in CONVERTIBLE and type(copied) in CONVERTIBLE:
        same_kind = _geometry(layer) == _geometry(copied)
    else:
        same_kind = type(layer) is type(copied)
    return same_kind and _same_variables(layer, copied)


def _geometry(layer: keras.layers.Conv2DTranspose) -> dict:
    """The configuration of a transposed convolution, less what differs between copies and classes."""
    return {k: v for k, v in layer.get_config().items() if k not in ("name", "implementation")}


def _same_variables(layer: keras.layers.Layer, copied: keras.layers.Layer) -> bool:
    """Whether the two layers' own variables (what Keras saves for each layer) are equal."""
    own, copied_own = {}, {}
    layer.save_own_variables(own)
    copied.save_own_variables(copied_own)
    return own.keys() == copied_own.keys() and all(
        np.array_equal(np.asarray(own[key]), np.asarray(copied_own[key])) for key in own
    )
