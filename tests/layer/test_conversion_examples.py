"""convert_model on the keras.io example models that use Conv2DTranspose, at toy sizes.

The DCGAN generator (Sequential), the VAE decoder (Functional) and the
Oxford-pets U-Net (Functional, with residual branches) keep their layer
classes in their configurations, so a ``.keras`` file of a converted model
loads its segregated layers back.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
from conversion_checks import KerasCT, check_round_trip, layers_of, outputs
from keras.layers import (
    Activation,
    BatchNormalization,
    Conv2D,
    Dense,
    Input,
    LeakyReLU,
    MaxPooling2D,
    Reshape,
    SeparableConv2D,
    UpSampling2D,
    add,
)

from keras_tconv import SegregatedConv2DTranspose


def dcgan_generator():
    """keras.io/examples/generative/dcgan_overriding_train_step, 4x4 -> 32x32."""
    return keras.Sequential(
        [
            Input((8,)),
            Dense(4 * 4 * 8),
            Reshape((4, 4, 8)),
            KerasCT(8, 4, strides=2, padding="same"),
            LeakyReLU(negative_slope=0.2),
            KerasCT(8, 4, strides=2, padding="same"),
            LeakyReLU(negative_slope=0.2),
            KerasCT(8, 4, strides=2, padding="same"),
            LeakyReLU(negative_slope=0.2),
            Conv2D(3, 5, padding="same", activation="sigmoid"),
        ],
        name="generator",
    )


def vae_decoder():
    """keras.io/examples/generative/vae, 7x7 -> 28x28."""
    latent = Input((2,))
    x = Dense(7 * 7 * 4, activation="relu")(latent)
    x = Reshape((7, 7, 4))(x)
    x = KerasCT(8, 3, activation="relu", strides=2, padding="same")(x)
    x = KerasCT(4, 3, activation="relu", strides=2, padding="same")(x)
    outputs = KerasCT(1, 3, activation="sigmoid", padding="same")(x)
    return keras.Model(latent, outputs, name="decoder")


def unet():
    """keras.io/examples/vision/oxford_pets_image_segmentation, 16x16 input."""
    inputs = Input((16, 16, 3))
    x = Conv2D(4, 3, strides=2, padding="same")(inputs)
    x = Activation("relu")(BatchNormalization()(x))
    previous = x
    for filters in (4, 8):
        x = Activation("relu")(x)
        x = BatchNormalization()(SeparableConv2D(filters, 3, padding="same")(x))
        x = Activation("relu")(x)
        x = BatchNormalization()(SeparableConv2D(filters, 3, padding="same")(x))
        x = MaxPooling2D(3, strides=2, padding="same")(x)
        x = previous = add([x, Conv2D(filters, 1, strides=2, padding="same")(previous)])
    for filters in (8, 4, 2):
        x = Activation("relu")(x)
        x = BatchNormalization()(KerasCT(filters, 3, padding="same")(x))
        x = Activation("relu")(x)
        x = BatchNormalization()(KerasCT(filters, 3, padding="same")(x))
        x = UpSampling2D(2)(x)
        x = previous = add([x, Conv2D(filters, 1, padding="same")(UpSampling2D(2)(previous))])
    outputs = Conv2D(3, 3, activation="softmax", padding="same")(x)
    return keras.Model(inputs, outputs, name="unet")


EXAMPLES = {
    "dcgan_generator": (dcgan_generator, (2, 8)),
    "vae_decoder": (vae_decoder, (2, 2)),
    "unet": (unet, (2, 16, 16, 3)),
}


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_example_converts_both_ways_and_saves(name, rng, tmp_path):
    build, input_shape = EXAMPLES[name]
    original = build()
    x = rng.standard_normal(input_shape).astype("float32")
    fast, report = check_round_trip(original, x, tmp_path)
    assert [entry.path for entry in report.converted] == [
        layer.name for layer in layers_of(fast, SegregatedConv2DTranspose)
    ]

    fast.save(tmp_path / "fast.keras")
    loaded = keras.saving.load_model(tmp_path / "fast.keras", safe_mode=True)
    assert len(layers_of(loaded, SegregatedConv2DTranspose)) == len(report.converted)
    assert not layers_of(loaded, KerasCT)
    np.testing.assert_array_equal(outputs(loaded, x)[0], outputs(fast, x)[0])
