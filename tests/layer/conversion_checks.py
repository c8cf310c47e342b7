"""What every conversion must keep and change, checked the same way for every kind of model.

The tests find layers as Keras does (:func:`tests.helpers.models.layers_in`,
not the walker under test) and compare weights as Keras's weight files key them: by
the model's structure, not by layer names (a copy's auto-named layers get new
names) or list order.
"""

from __future__ import annotations

import itertools

import h5py
import keras
import numpy as np

from keras_tconv import SegregatedConv2DTranspose, convert_model
from tests.helpers.models import layers_in

KerasCT = keras.layers.Conv2DTranspose
_files = itertools.count()


def layers_of(model, cls) -> list:
    """The layers of exactly class ``cls`` anywhere in ``model``."""
    return [layer for layer in layers_in(model) if type(layer) is cls]


def weights_by_key(model, directory) -> dict[str, np.ndarray]:
    """Every weight of ``model``, keyed by its place in a ``.weights.h5`` file."""
    path = directory / f"weights_{next(_files)}.weights.h5"
    model.save_weights(path)
    weights = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda key, item: weights.update({key: item[()]}) if isinstance(item, h5py.Dataset) else None
        )
    return weights


def assert_same_weights(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        np.testing.assert_array_equal(actual[key], value, err_msg=key)


def outputs(model, x) -> list[np.ndarray]:
    return [np.asarray(y) for y in keras.tree.flatten(model(x, training=False))]


def assert_same_outputs(actual: list, expected: list) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-5)


def classes(model) -> list:
    """Each layer's class (and implementation), in Keras's order: what conversion may change."""
    return [(type(layer), getattr(layer, "implementation", None)) for layer in layers_in(model)]


def check_round_trip(original, x, directory, implementation="auto"):
    """Convert ``original`` to segregated and back, checking both copies; return the segregated
    one and its report.

    Every ``keras.layers.Conv2DTranspose`` becomes a SegregatedConv2DTranspose
    with ``implementation`` (other classes, user subclasses included, stay),
    every weight is kept, the outputs match, the original is untouched and
    shares no variable with the copy, and converting back leaves no
    segregated layer.
    """
    expected = outputs(original, x)
    original_classes = classes(original)
    original_weights = weights_by_key(original, directory)
    count = len(layers_of(original, KerasCT))
    assert count >= 1

    fast, report = convert_model(original, implementation=implementation, return_report=True)

    assert fast is not original and type(fast) is type(original)
    segregated = layers_of(fast, SegregatedConv2DTranspose)
    assert not layers_of(fast, KerasCT)
    assert len(segregated) == count
    assert {layer.implementation for layer in segregated} == {implementation}
    assert {id(entry.layer) for entry in report.converted} == {id(layer) for layer in segregated}
    assert_same_weights(weights_by_key(fast, directory), original_weights)
    assert_same_outputs(outputs(fast, x), expected)
    assert not {id(v) for v in fast.weights} & {id(v) for v in original.weights}
    assert classes(original) == original_classes
    assert_same_weights(weights_by_key(original, directory), original_weights)

    back = convert_model(fast, to="keras")

    assert not layers_of(back, SegregatedConv2DTranspose)
    assert len(layers_of(back, KerasCT)) == count
    assert [cls for cls, _ in classes(back)] == [cls for cls, _ in original_classes]
    assert_same_weights(weights_by_key(back, directory), original_weights)
    assert_same_outputs(outputs(back, x), expected)
    assert len(layers_of(fast, SegregatedConv2DTranspose)) == count
    return fast, report
