"""Bad arguments and bad inputs give the errors Keras users know, naming the layer.

Constructor arguments are validated by Keras's own code: for every bad
argument the message must be *exactly* Keras's message for the same
arguments (computed here by constructing keras.layers.Conv2DTranspose, not
copied, so a Keras upgrade that rewords a message cannot break or fool the
test). Input checks are stricter than Keras's (which accepts any rank >= 4
before build and then fails obscurely on 5-D input): ndim 4 is required and
the message names the layer and the expected ndim / channel count.
"""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from keras_tconv import SegregatedConv2DTranspose
from keras_tconv.ops import IMPLEMENTATIONS

BAD_ARGS = {
    "filters_zero": dict(filters=0, kernel_size=1),
    "filters_negative": dict(filters=-2, kernel_size=3),
    "kernel_size_has_zero": dict(filters=2, kernel_size=(1, 0)),
    "kernel_size_zero": dict(filters=2, kernel_size=0),
    "kernel_size_three_values": dict(filters=2, kernel_size=(1, 2, 3)),
    "strides_has_zero": dict(filters=2, kernel_size=(2, 2), strides=(1, 0)),
    "strides_zero": dict(filters=2, kernel_size=2, strides=0),
    "output_padding_equals_strides": dict(filters=2, kernel_size=3, strides=2, output_padding=2),
    "output_padding_exceeds_strides": dict(filters=2, kernel_size=3, strides=2, output_padding=3),
    "output_padding_second_axis": dict(filters=2, kernel_size=3, strides=(2, 3), output_padding=(1, 3)),
    "output_padding_with_unit_stride": dict(filters=16, kernel_size=3, strides=[1, 1], output_padding=1),
    "output_padding_negative": dict(filters=2, kernel_size=2, strides=2, output_padding=-1),
    "strides_with_dilation": dict(filters=2, kernel_size=(2, 2), strides=2, dilation_rate=(2, 1)),
    "dilation_zero": dict(filters=2, kernel_size=2, dilation_rate=0),
    "padding_full": dict(filters=2, kernel_size=2, padding="full"),
    "padding_causal": dict(filters=2, kernel_size=2, padding="causal"),
    "data_format_nchw": dict(filters=2, kernel_size=2, data_format="nchw"),
    "activation_unknown": dict(filters=2, kernel_size=2, activation="nope"),
}


def _keras_message(kwargs):
    with pytest.raises(ValueError) as info:
        keras.layers.Conv2DTranspose(**kwargs)
    return str(info.value)


@pytest.mark.parametrize("implementation", [None, "split"])
@pytest.mark.parametrize("case", list(BAD_ARGS))
def test_bad_argument_message_equals_keras(case, implementation):
    kwargs = BAD_ARGS[case]
    expected = _keras_message(kwargs)
    assert expected  # Keras does reject it
    extra = {} if implementation is None else {"implementation": implementation}
    with pytest.raises(ValueError, match=re.escape(expected)) as info:
        SegregatedConv2DTranspose(**kwargs, **extra)
    assert str(info.value) == expected


def test_keras_messages_are_the_documented_ones():
    """Spot-check that the cases hit the intended checks (not some unrelated error)."""
    assert "Expected a strictly positive value. Received filters=0" in _keras_message(
        BAD_ARGS["filters_zero"]
    )
    assert "`kernel_size`" in _keras_message(BAD_ARGS["kernel_size_has_zero"])
    assert "`strides`" in _keras_message(BAD_ARGS["strides_has_zero"])
    assert "strictly less than `strides`" in _keras_message(BAD_ARGS["output_padding_equals_strides"])
    assert "`dilation_rate > 1`" in _keras_message(BAD_ARGS["strides_with_dilation"])
    assert "`padding` argument" in _keras_message(BAD_ARGS["padding_full"])


@pytest.mark.parametrize("bad", ["fast", "AUTO", None, "", 1])
def test_bad_implementation(bad):
    with pytest.raises(ValueError) as info:
        SegregatedConv2DTranspose(2, 3, implementation=bad)
    message = str(info.value)
    assert "`implementation`" in message
    assert f"implementation={bad}" in message
    for valid in IMPLEMENTATIONS:
        assert valid in message


@pytest.mark.parametrize("good", IMPLEMENTATIONS)
def test_good_implementations_accepted(good):
    assert SegregatedConv2DTranspose(2, 3, implementation=good).implementation == good


# --------------------------------------------------------------------------- input rank


@pytest.mark.parametrize("shape", [(2, 5, 3), (2, 5, 5, 5, 3)], ids=["3d", "5d"])
@pytest.mark.parametrize("symbolic", [False, True], ids=["eager", "symbolic"])
@pytest.mark.parametrize("built", [False, True], ids=["fresh", "built"])
def test_wrong_rank(shape, symbolic, built):
    layer = SegregatedConv2DTranspose(2, 3, name="up_layer")
    if built:
        layer(np.zeros((1, 4, 4, 3), "float32"))
    x = keras.Input(batch_shape=shape) if symbolic else np.zeros(shape, "float32")
    with pytest.raises(ValueError) as info:
        layer(x)
    message = str(info.value)
    assert "'up_layer'" in message
    assert "expected ndim=4" in message
    assert f"found ndim={len(shape)}" in message


# --------------------------------------------------------------------------- channels


@pytest.mark.parametrize(
    "data_format, built_shape, bad_shape, axis",
    [
        ("channels_last", (1, 4, 4, 3), (1, 4, 4, 5), -1),
        ("channels_first", (1, 3, 4, 4), (1, 5, 4, 4), 1),
    ],
)
@pytest.mark.parametrize("symbolic", [False, True], ids=["eager", "symbolic"])
def test_wrong_channel_count_after_build(data_format, built_shape, bad_shape, axis, symbolic):
    layer = SegregatedConv2DTranspose(2, 3, data_format=data_format, name="up_layer")
    layer(np.zeros(built_shape, "float32"))
    x = keras.Input(batch_shape=bad_shape) if symbolic else np.zeros(bad_shape, "float32")
    with pytest.raises(ValueError) as info:
        layer(x)
    message = str(info.value)
    assert "'up_layer'" in message
    assert f"expected axis {axis} of input shape to have value 3" in message
    assert str(bad_shape) in message


def test_wrong_channel_count_message_matches_keras():
    messages = []
    for cls in (keras.layers.Conv2DTranspose, SegregatedConv2DTranspose):
        layer = cls(2, 3, name="up_layer")
        layer(np.zeros((1, 4, 4, 3), "float32"))
        with pytest.raises(ValueError) as info:
            layer(np.zeros((1, 4, 4, 5), "float32"))
        messages.append(str(info.value))
    assert messages[0] == messages[1]


@pytest.mark.parametrize(
    "data_format, shape, expected_layout",
    [
        ("channels_last", (None, None, None, None), "(batch, height, width, channels)"),
        ("channels_first", (None, None, 8, 8), "(batch, channels, height, width)"),
    ],
)
def test_unknown_channel_dimension(data_format, shape, expected_layout):
    layer = SegregatedConv2DTranspose(2, 3, data_format=data_format, name="up_layer")
    with pytest.raises(ValueError) as info:
        layer(keras.Input(batch_shape=shape))
    message = str(info.value)
    assert "'up_layer'" in message
    assert "channel dimension" in message and "known" in message
    assert expected_layout in message
    assert f"data_format='{data_format}'" in message
    assert not layer.built


def test_known_channels_with_unknown_everything_else_is_fine():
    y = SegregatedConv2DTranspose(2, 3, strides=2)(keras.Input(batch_shape=(None, None, None, 3)))
    assert tuple(y.shape) == (None, None, None, 2)
