"""convert_model reaches Conv2DTranspose layers that subclassed layers and models hold.

The classes below are not registered with Keras, as in most hand-written
code: the copy convert_model makes must still load them.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from conversion_checks import (
    KerasCT,
    assert_same_outputs,
    check_round_trip,
    layers_of,
)

from keras_tconv import SegregatedConv2DTranspose, convert_model


class Up(keras.layers.Layer):
    """The issue's example: a Conv2DTranspose held as an attribute."""

    def __init__(self, filters=4, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.t = KerasCT(filters, 3, strides=2, padding="same", bias_initializer="random_normal")

    def build(self, input_shape):
        self.t.build(input_shape)

    def call(self, x):
        return self.t(x)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}


class Pyramid(keras.layers.Layer):
    """Conv2DTranspose layers in a list, in a dict (one inside a Sequential), and in a nested block."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.ups = [KerasCT(3, 2, strides=2), KerasCT(3, 3, padding="same", bias_initializer="random_normal")]
        self.heads = {
            "a": KerasCT(2, 3, strides=2, padding="same"),
            "b": keras.Sequential([KerasCT(2, 2, strides=2, activation="relu", bias_initializer="ones")]),
        }
        self.inner = Up(filters=2)

    def call(self, x):
        h = self.ups[1](self.ups[0](x))
        return keras.ops.concatenate([self.heads["a"](h), self.heads["b"](h), self.inner(h)], axis=-1)


class OwnCall(KerasCT):
    """A user subclass with its own call: left alone."""

    def call(self, inputs):
        return super().call(inputs) * 2.0


class Defaults(KerasCT):
    """A user subclass that only sets defaults: left alone too (replacing it would drop the class)."""

    def __init__(self, filters=2, kernel_size=3, **kwargs):
        super().__init__(filters=filters, kernel_size=kernel_size, **kwargs)


class Decoder(keras.Model):
    """A subclassed model: attributes, nested blocks, a layer tracked twice, and two user subclasses."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.stem = keras.layers.Conv2D(4, 1)
        self.pyramid = Pyramid()
        self.out = KerasCT(2, 3, padding="same")
        self.again = [self.out]
        self.custom = OwnCall(2, 3, padding="same")
        self.defaults = Defaults(padding="same")

    def call(self, x):
        h = self.out(self.pyramid(self.stem(x)))
        return self.custom(h) + self.defaults(h)


@pytest.fixture
def x(rng):
    return rng.standard_normal((2, 4, 4, 3)).astype("float32")


def _decoder(x):
    model = Decoder()
    model(x)
    return model


def test_issue_example_attribute_of_a_subclassed_layer(x, tmp_path):
    inputs = keras.Input((4, 4, 3))
    original = keras.Model(inputs, Up()(inputs))
    fast, report = check_round_trip(original, x, tmp_path)
    # Paths name the layers of the converted copy (its auto-named layers get fresh names, as on loading).
    assert [entry.path for entry in report.converted] == [f"{fast.layers[1].name}/{fast.layers[1].t.name}"]


@pytest.mark.parametrize("implementation", ["auto", "rows"])
def test_subclassed_model_with_lists_dicts_and_nesting(x, tmp_path, implementation):
    original = _decoder(x)
    fast, report = check_round_trip(original, x, tmp_path, implementation)
    assert len(report.converted) == 6
    assert {entry.layer.name for entry in report.converted} == {
        layer.name for layer in layers_of(fast, SegregatedConv2DTranspose)
    }
    assert [(entry.path, entry.reason) for entry in report.skipped] == [
        (fast.custom.name, "subclass with its own call"),
        (fast.defaults.name, "subclass (replacing it would drop its class)"),
    ]
    assert type(fast.custom) is OwnCall and type(fast.defaults) is Defaults


def test_in_place_converts_the_layers_themselves_and_retraces(x, monkeypatch):
    model = _decoder(x)
    model.compile(loss="mse")
    expected = model.predict(x, verbose=0)  # traces predict_function with Keras's layers
    variables = [id(v) for v in model.weights]
    layers = layers_of(model, KerasCT)
    calls = []
    segregated_call = SegregatedConv2DTranspose.call

    def counting_call(layer, inputs):
        calls.append(layer.name)
        return segregated_call(layer, inputs)

    monkeypatch.setattr(SegregatedConv2DTranspose, "call", counting_call)

    same = convert_model(model, implementation="split", inplace=True)

    assert same is model
    assert [id(v) for v in model.weights] == variables
    assert all(type(layer) is SegregatedConv2DTranspose for layer in layers)
    assert {layer.implementation for layer in layers} == {"split"}
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
    assert set(calls) == {layer.name for layer in layers}

    convert_model(model, to="keras", inplace=True)

    assert all(type(layer) is KerasCT for layer in layers)
    assert not any(hasattr(layer, "implementation") for layer in layers)
    calls.clear()
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
    assert not calls


def test_in_place_conversion_matches_a_constructed_layer(x):
    """A swapped layer has the state the target class gives a layer constructed and built as one."""
    for source_cls, to, target_cls in [
        (KerasCT, "segregated", SegregatedConv2DTranspose),
        (SegregatedConv2DTranspose, "keras", KerasCT),
    ]:
        inputs = keras.Input((4, 4, 3))
        model = keras.Model(inputs, source_cls(2, 3, strides=2, padding="same")(inputs))
        model(x)
        convert_model(model, to=to, inplace=True)
        swapped = model.layers[1]
        fresh = target_cls.from_config(swapped.get_config())
        fresh.build((None, 4, 4, 3))
        fresh.set_weights(swapped.get_weights())
        for layer in (swapped, fresh):
            layer(x)
        assert type(swapped) is target_cls
        assert swapped.get_config() == fresh.get_config()
        assert swapped.input_spec.get_config() == fresh.input_spec.get_config()
        assert vars(swapped).keys() == vars(fresh).keys()
        assert_same_outputs([np.asarray(swapped(x))], [np.asarray(fresh(x))])


class Scaled(keras.Model):
    """Takes a function, which Keras cannot serialize: saving fails."""

    def __init__(self, scale, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale
        self.up = Up()

    def call(self, inputs):
        return self.scale(self.up(inputs))


class TwoInputs(keras.Model):
    """Takes two positional inputs: Keras saves it but reloads it unbuilt, without its weights
    (and only warns)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.a = Up()
        self.b = KerasCT(4, 3, strides=2, padding="same")

    def call(self, x, y):
        return self.a(x) + self.b(y)


class Shrink(keras.regularizers.Regularizer):
    """A regularizer without get_config: its layer cannot be serialized."""

    def __call__(self, weights):
        return 0.01 * keras.ops.sum(weights * weights)


def _regularized():
    inputs = keras.Input((4, 4, 3))
    up = KerasCT(2, 3, strides=2, activation=tf.nn.leaky_relu, kernel_regularizer=Shrink())
    return keras.Model(inputs, up(inputs))


CANNOT_COPY = {
    "unserializable_argument": lambda x: (Scaled(lambda t: 2 * t), (x,)),
    "unserializable_regularizer": lambda x: (_regularized(), (x,)),
    "two_positional_inputs": lambda x: (TwoInputs(), (x, x)),
}


@pytest.mark.parametrize("kind", list(CANNOT_COPY))
@pytest.mark.filterwarnings("ignore:Model '.*' had a build config")
def test_model_keras_cannot_copy_converts_in_place(kind, x):
    model, inputs = CANNOT_COPY[kind](x)
    expected = np.asarray(model(*inputs))
    with pytest.raises(ValueError, match=r"could not copy model .*inplace=True"):
        convert_model(model)
    assert not layers_of(model, SegregatedConv2DTranspose)

    convert_model(model, inplace=True)

    assert len(layers_of(model, SegregatedConv2DTranspose)) == len(model.weights) // 2
    np.testing.assert_allclose(np.asarray(model(*inputs)), expected, rtol=1e-5, atol=1e-5)


def test_copy_keeps_converted_layers_that_code_creates(x):
    """Converting a converted model again starts from its segregated layers, not from what
    its code creates."""
    fast = convert_model(_decoder(x), implementation="rows")
    again = convert_model(fast, implementation="split")
    assert {layer.implementation for layer in layers_of(again, SegregatedConv2DTranspose)} == {"split"}
    back, report = convert_model(fast, to="keras", return_report=True)
    assert len(report.converted) == 6
    assert {entry.before for entry in report.converted} == {"SegregatedConv2DTranspose(rows)"}
