"""Small models with transposed convolutions, and the layers Keras tracks in a model.

Each builder takes the transposed-convolution class
(``keras.layers.Conv2DTranspose`` or ``SegregatedConv2DTranspose``) and
further arguments for every layer of that class (``implementation=...``), so
that a test builds the same architecture with either class: a Sequential,
a Functional and a nested model (a Sequential inside a Functional), on
inputs of :data:`INPUT_SHAPE`, with Conv2D, BatchNormalization, UpSampling2D
and Concatenate layers beside the transposed convolutions. Models, inputs
and layers are named, so that copies can be compared by name.
"""

from __future__ import annotations

import keras

# (height, width, channels) of every builder's input, named "image".
INPUT_SHAPE = (6, 5, 2)


def sequential(layer_cls, **extra) -> keras.Sequential:
    """Conv2D, BatchNormalization, then two transposed convolutions ("up1" with
    a random bias and relu, "up2" with output padding and no bias)."""
    return keras.Sequential(
        [
            keras.Input(shape=INPUT_SHAPE, name="image"),
            keras.layers.Conv2D(3, 3, padding="same", name="enc"),
            keras.layers.BatchNormalization(name="bn"),
            layer_cls(
                4,
                3,
                strides=2,
                padding="same",
                activation="relu",
                bias_initializer="random_normal",
                name="up1",
                **extra,
            ),
            layer_cls(2, (2, 3), strides=(2, 1), output_padding=(1, 0), use_bias=False, name="up2", **extra),
        ],
        name="seq",
    )


def functional(layer_cls, **extra) -> keras.Model:
    """A Conv2D feeding two transposed convolutions and an UpSampling2D, concatenated."""
    inputs = keras.Input(shape=INPUT_SHAPE, name="image")
    h = keras.layers.Conv2D(3, 1, name="enc")(inputs)
    a = layer_cls(2, 3, strides=2, padding="same", name="up_a", **extra)(h)
    b = layer_cls(2, 2, strides=2, padding="valid", bias_initializer="random_normal", name="up_b", **extra)(h)
    c = keras.layers.UpSampling2D(2, name="up_plain")(h)
    outputs = keras.layers.Concatenate(name="cat")([a, b, c])
    return keras.Model(inputs, outputs, name="func")


def nested(layer_cls, **extra) -> keras.Model:
    """A Functional model holding a Sequential one ("inner", a transposed
    convolution and BatchNormalization) between a Conv2D and a transposed convolution."""
    inner = keras.Sequential(
        [
            keras.Input(shape=(6, 5, 3)),
            layer_cls(
                3, 3, strides=2, padding="same", bias_initializer="random_normal", name="inner_up", **extra
            ),
            keras.layers.BatchNormalization(name="inner_bn"),
        ],
        name="inner",
    )
    inputs = keras.Input(shape=INPUT_SHAPE, name="image")
    h = keras.layers.Conv2D(3, 1, name="enc")(inputs)
    h = inner(h)
    outputs = layer_cls(1, 3, strides=1, padding="same", name="outer_up", **extra)(h)
    return keras.Model(inputs, outputs, name="outer")


BUILDERS = {"sequential": sequential, "functional": functional, "nested": nested}


def layers_in(model: keras.layers.Layer) -> list[keras.layers.Layer]:
    """Every layer Keras tracks under ``model``, at any depth, in Keras's own
    order (``Layer._flatten_layers``): the tests find layers as Keras does,
    not with the library's walker that they test
    (:mod:`keras_tconv.conversion.tracking`)."""
    return model._flatten_layers(include_self=False)
