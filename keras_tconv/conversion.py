"""Swap Conv2DTranspose layers of a built model between Keras and keras-tconv."""

from __future__ import annotations

import keras
from keras.src.models.functional import Functional  # what clone_model can rebuild

from keras_tconv.layers import SegregatedConv2DTranspose

TARGETS = ("segregated", "keras")


def _replacement(layer, to: str, implementation: str):
    """The layer's clone in the target class, or None to clone it unchanged."""
    if to == "segregated" and type(layer) in (keras.layers.Conv2DTranspose, SegregatedConv2DTranspose):
        return SegregatedConv2DTranspose.from_config({**layer.get_config(), "implementation": implementation})
    if to == "keras" and isinstance(layer, SegregatedConv2DTranspose):
        config = layer.get_config()
        config.pop("implementation")
        return keras.layers.Conv2DTranspose.from_config(config)
    return None


def convert_model(model: keras.Model, to: str = "segregated", implementation: str = "auto") -> keras.Model:
    """A copy of ``model`` with every 2-D transposed convolution swapped.

    ``to="segregated"`` replaces each ``keras.layers.Conv2DTranspose`` (also
    inside nested Sequential and Functional models) by a
    :class:`SegregatedConv2DTranspose` with the same configuration and the
    given ``implementation``; ``to="keras"`` converts back. Every layer keeps
    its weights (both classes hold the same variables in the same order), so
    the new model computes the same outputs. The original model is untouched.

    Only Sequential and Functional models can be rebuilt (through
    ``keras.models.clone_model``); for a subclassed model, construct it with
    the other class instead.
    """
    if to not in TARGETS:
        raise ValueError(f"Invalid value for argument `to`. Expected one of {TARGETS}. Received: to={to}")
    if not isinstance(model, (keras.Sequential, Functional)):
        raise ValueError(
            "convert_model needs a Sequential or Functional model; "
            f"received a subclassed model of type {type(model).__name__}. "
            "Build it with SegregatedConv2DTranspose directly instead."
        )
    if not model.built:
        raise ValueError("convert_model needs a built model (call it on data or build it first).")

    def clone(layer):
        new = _replacement(layer, to, implementation)
        return new if new is not None else layer.__class__.from_config(layer.get_config())

    converted = keras.models.clone_model(model, clone_function=clone, recursive=True)
    converted.set_weights(model.get_weights())
    return converted

