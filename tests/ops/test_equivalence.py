"""Every implementation against an independent float64 definition.

Hypothesis draws layer configurations (kernel 1-7 and stride 1-4 per axis plus
strides 8 and 16, dilation 1-3 with any stride, both paddings,
output_padding, fused and unfused activations, batch and spatial sizes down to
1, 1-3 channels, both data formats) and checks, for every implementation,
the forward output and the gradients with respect to input, kernel and bias
against :class:`tests.ops.reference.Reference`, a NumPy float64 transposed
convolution written from the definition. No TensorFlow kernel computes the
expected values, so the checks hold under Eigen and oneDNN alike, also where
one of them computes wrong (Keras's own layer does, under oneDNN: its input
gradient runs a strided ``conv2d`` that oneDNN gets wrong for some shapes).

Keras's layer remains the contract for what is Keras's to define: its output
shape is checked wherever Keras accepts the configuration, and
``test_empty_inputs_match_keras`` compares forward outputs and errors.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf
from cases import SMOOTH_ACTIVATIONS, assert_close, cases, keras_accepts, layer_accepts, materialize, nchw
from hypothesis import HealthCheck, given, settings
from reference import Reference

from keras_tconv import SegregatedConv2DTranspose
from keras_tconv.ops import conv2d_transpose
from keras_tconv.ops.registry import FUSED_ACTIVATIONS

IMPLEMENTATIONS = ("split", "rows", "unified", "native", "zero_insertion", "auto")


def _outputs_and_gradients(layer, x, cotangent):
    """Forward output and d<y, cotangent>/d(input, kernel, bias)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * cotangent)
    dx, dkernel, dbias = tape.gradient(loss, [x, layer.kernel, layer.bias])
    return [y, dx, dkernel, dbias]


class OpLayer:
    """``keras_tconv.ops.tensorflow.conv2d_transpose`` with a kernel and bias, for the
    geometries the layer refuses with Keras's message (dilation together
    with a stride, and the ``output_padding`` that a dilation larger than the
    stride allows), where the op defines the natural extension."""

    def __init__(self, config, data_format, dtype, implementation, weights):
        self.config, self.data_format, self.implementation = config, data_format, implementation
        self.compute_dtype = keras.mixed_precision.Policy(dtype).compute_dtype
        self.kernel, self.bias = (tf.Variable(w) for w in weights)

    def __call__(self, x):
        config, activation = dict(self.config), self.config["activation"]
        fused = activation if activation in FUSED_ACTIVATIONS else None
        y = conv2d_transpose(
            tf.cast(x, self.compute_dtype),
            tf.cast(self.kernel, self.compute_dtype),
            config["strides"],
            config["padding"],
            config["output_padding"],
            self.data_format,
            config["dilation_rate"],
            self.implementation,
            bias=tf.cast(self.bias, self.compute_dtype),
            activation=fused,
        )
        return y if fused or activation is None else keras.activations.get(activation)(y)


def check_against_reference(
    config, shape, data_format, seed, implementation, dtype="float32", rtol=1e-5, traced=False
):
    """Our layer's output and gradients for ``config`` on an input of ``shape``
    (channels last) against the float64 definition, with inputs, weights and
    cotangent rounded to the layer's compute dtype; ``traced``: in a
    ``tf.function`` that knows only the channels, so that the shape-dependent
    forms are chosen at run time."""
    case = materialize(config, shape, seed, dtype)
    weights, x, cotangent, out_shape = case.weights, case.x, case.cotangent, case.out_shape
    if keras_accepts(config):
        keras_layer = keras.layers.Conv2DTranspose(**config)
        assert tuple(keras_layer.compute_output_shape(shape)) == out_shape, (
            "output shape differs from Keras's"
        )
    if not layer_accepts(config):
        ours = OpLayer(config, data_format, dtype, implementation, weights)
    else:
        ours = SegregatedConv2DTranspose(
            **config, data_format=data_format, dtype=dtype, implementation=implementation
        )
        ours.build(nchw(np.empty(shape), data_format).shape)
        ours.set_weights(weights)
    run = functools.partial(_outputs_and_gradients, ours)
    if traced:
        channels_axis = 1 if data_format == "channels_first" else 3
        spec = [
            tf.TensorSpec(
                [
                    size if a == channels_axis else None
                    for a, size in enumerate(nchw(np.empty(s), data_format).shape)
                ]
            )
            for s in (shape, out_shape)
        ]
        run = tf.function(run, input_signature=spec)
    got = run(
        tf.constant(nchw(x, data_format), tf.float32), tf.constant(nchw(cotangent, data_format), tf.float32)
    )
    case.check(got, implementation, data_format, rtol)


FAST = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=True,
)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@FAST
@given(case=cases())
def test_float32_matches_definition(implementation, case):
    check_against_reference(*case, implementation=implementation)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@settings(FAST, max_examples=25)
@given(case=cases())
def test_traced_with_unknown_shapes_matches_definition(implementation, case):
    check_against_reference(*case, implementation=implementation, traced=True)


@pytest.mark.parametrize("implementation", ["split", "rows", "unified", "native"])
@pytest.mark.parametrize("policy,rtol", [("mixed_float16", 1e-2), ("mixed_bfloat16", 4e-2)])
@settings(FAST, max_examples=10)
@given(case=cases(SMOOTH_ACTIVATIONS))
def test_mixed_precision_matches_definition(implementation, policy, rtol, case):
    check_against_reference(*case, implementation=implementation, dtype=policy, rtol=rtol)


@pytest.mark.parametrize(
    "config",
    [
        dict(kernel_size=3, strides=2, padding="same"),
        dict(kernel_size=(4, 2), strides=(2, 3), padding="valid", output_padding=(1, 2)),
        dict(kernel_size=2, strides=5, padding="valid"),
        dict(kernel_size=3, strides=1, padding="same", dilation_rate=2),
        dict(kernel_size=(1, 3), strides=(3, 2), padding="same"),
    ],
)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_unknown_dims_under_tf_function(config, implementation):
    """One trace serves every batch and spatial size, forward and gradients,
    including inputs one pixel wide on a strided axis."""
    ours = SegregatedConv2DTranspose(1, **config, implementation=implementation)
    ours.build((None, None, None, 3))
    kernel, bias = ours.get_weights()
    reference = Reference(**config)

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 3)), tf.TensorSpec((None, None, None, 1))])
    def traced(x, cotangent):
        return _outputs_and_gradients(ours, x, cotangent)

    for shape in [(1, 4, 5, 3), (3, 7, 2, 3), (2, 1, 1, 3), (2, 3, 1, 3)]:
        x = np.random.default_rng(1).standard_normal(shape).astype("float32")
        cotangent = (
            np.random.default_rng(2).standard_normal(reference.output_shape(shape, 1)).astype("float32")
        )
        want = [reference.forward(x, kernel, bias), *reference.gradients(x, kernel, bias, cotangent)]
        for got, w, what in zip(
            traced(x, cotangent), want, ["output", "input grad", "kernel grad", "bias grad"]
        ):
            assert_close(got, w, 1e-5, f"{what}: {config} {shape}", terms=100)
    assert traced.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("shape", [(0, 3, 4, 3), (2, 0, 4, 3), (2, 3, 0, 3), (2, 0, 0, 3)])
@pytest.mark.parametrize(
    "config",
    [
        dict(kernel_size=4, strides=2, padding="same"),
        dict(kernel_size=3, strides=2, padding="same", activation="relu"),
        dict(kernel_size=2, strides=3, padding="valid"),
        dict(kernel_size=3, strides=2, padding="valid"),
    ],
)
def test_empty_inputs_match_keras(config, shape, implementation):
    """An input of a known empty batch or spatial size gives Keras's output:
    Keras's shape, possibly not empty (the bias where no input pixel
    reaches), or Keras's error. Forward only: for an empty spatial size
    TensorFlow's gradient kernels return uninitialised memory or crash the
    process, in Keras's layer as in this one."""
    ours = SegregatedConv2DTranspose(2, **config, implementation=implementation)
    ours.build((None, None, None, 3))
    ours.set_weights(
        [np.random.default_rng(0).standard_normal(w.shape).astype("float32") for w in ours.weights]
    )
    reference = keras.layers.Conv2DTranspose(2, **config)
    reference.build((None, None, None, 3))
    reference.set_weights(ours.get_weights())
    x = tf.zeros(shape)
    try:
        want = reference(x)
    except ValueError as error:
        with pytest.raises(ValueError, match="Negative dimension size"):
            ours(x)
        assert "Negative dimension size" in str(error)
        return
    assert_close(ours(x), want, 1e-6, f"{implementation}, {config}, {shape}")


EMPTY_OUTPUT_CONFIGS = [
    # "same", an even kernel and output_padding 0: an input of length 1 has an output of length 0.
    dict(kernel_size=(1, 2), strides=1, padding="same", output_padding=0),
    dict(kernel_size=4, strides=(2, 3), padding="same", output_padding=0, activation="tanh"),
]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("config", EMPTY_OUTPUT_CONFIGS)
@pytest.mark.parametrize("mode", ["eager", "static", "unknown"])
def test_empty_outputs(config, implementation, mode):
    """An output of length 0 (a geometry Keras rejects) is an empty tensor of
    the definition's shape with zero gradients, eagerly and traced with known
    or unknown shapes."""
    ours = SegregatedConv2DTranspose(4, **config, implementation=implementation)
    shape = (1, 3, 1, 2)
    ours.build((None, None, None, 2))
    want_shape = Reference(**config).output_shape(shape, 4)
    assert 0 in want_shape
    x, cotangent = tf.random.normal(shape), tf.zeros(want_shape)
    run = lambda x: _outputs_and_gradients(ours, x, cotangent)  # noqa: E731
    if mode != "eager":
        spec = shape if mode == "static" else (None, None, None, 2)
        run = tf.function(run, input_signature=[tf.TensorSpec(spec)])
    y, dx, dkernel, dbias = run(x)
    assert tuple(y.shape) == want_shape
    for name, gradient, variable in [
        ("input", dx, x),
        ("kernel", dkernel, ours.kernel),
        ("bias", dbias, ours.bias),
    ]:
        assert gradient is not None, name
        np.testing.assert_array_equal(gradient, np.zeros(variable.shape), err_msg=name)
