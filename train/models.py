"""The autoencoders; the transpose-convolution layer comes from ``layer=...``
and is the only thing that differs between the layer choices."""

from __future__ import annotations

import functools
from collections.abc import Callable

import keras

import keras_tconv
from train.config import LayerConfig, LayerName, ModelConfig

TransposeConvFactory = Callable[..., keras.layers.Layer]


def transpose_conv_factory(layer: LayerConfig) -> TransposeConvFactory:
    """A constructor taking ``keras.layers.Conv2DTranspose``'s arguments."""
    if layer.name is LayerName.keras:
        return keras.layers.Conv2DTranspose
    return functools.partial(keras_tconv.SegregatedConv2DTranspose, implementation=layer.implementation.value)


def build_autoencoder(model: ModelConfig, layer: LayerConfig, image_size: int, channels: int) -> keras.Model:
    """A convolutional autoencoder for ``image_size`` squared images.

    The encoder is one stride-2 ReLU Conv2D per entry of ``model.filters``;
    the decoder mirrors it with stride-2 transpose convolutions, the last of
    which produces the image channels, followed by a float32 sigmoid (kept in
    float32 under mixed precision).
    """
    transpose_conv = transpose_conv_factory(layer)
    inputs = keras.Input((image_size, image_size, channels), name="image")
    x = inputs
    for index, filters in enumerate(model.filters):
        x = keras.layers.Conv2D(
            filters,
            model.kernel_size,
            strides=2,
            padding="same",
            activation="relu",
            name=f"encoder_conv_{index}",
        )(x)
    decoder_filters = [*reversed(model.filters[:-1]), channels]
    for index, filters in enumerate(decoder_filters):
        is_last = index == len(decoder_filters) - 1
        x = transpose_conv(
            filters,
            model.kernel_size,
            strides=2,
            padding="same",
            activation=None if is_last else "relu",
            name=f"decoder_transpose_conv_{index}",
        )(x)
    outputs = keras.layers.Activation("sigmoid", dtype="float32", name="reconstruction")(x)
    return keras.Model(inputs, outputs, name=model.name)


# What keras.layers.Conv2DTranspose runs, called "native" in keras_tconv: the backend's own transposed
# convolution (TensorFlow's Conv2DBackpropInput, JAX's lax.conv_transpose).
KERAS_LOWERING = "native"


def transpose_conv_lowerings(model: keras.Model) -> dict[str, str | None]:
    """The lowering each transposed convolution of ``model`` ran, by layer name.

    A ``SegregatedConv2DTranspose`` reports its own (``chosen_implementation``,
    what ``auto`` picked once the layer has run); None where the layer does
    not say. Keras's layer always runs :data:`KERAS_LOWERING`. Comparing jobs
    needs this: with ``auto`` the segregated layer may run the same kernel as
    Keras's, and then their step times can only tie.
    """
    lowerings = {}
    for layer in model.layers:
        if isinstance(layer, keras_tconv.SegregatedConv2DTranspose):
            chosen = getattr(layer, "chosen_implementation", None)
            lowerings[layer.name] = None if chosen is None else str(chosen)
        elif isinstance(layer, keras.layers.Conv2DTranspose):
            lowerings[layer.name] = KERAS_LOWERING
    return lowerings
