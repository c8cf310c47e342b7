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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keras_tconv import SegregatedConv2DTranspose
from keras_tconv.ops import conv2d_transpose
from keras_tconv.ops.conv2d_transpose import FUSED_ACTIVATIONS
from reference import Reference

IMPLEMENTATIONS = ("split", "rows", "unified", "native", "zero_insertion", "auto")
STRIDES = st.one_of(st.integers(1, 4), st.sampled_from([8, 16]))


def layer_accepts(config) -> bool:
    """Whether Keras's constructor (and so the layer's) takes these arguments:
    no dilation with a stride, ``output_padding`` below the stride."""
    strides, dilation = _pair(config["strides"]), _pair(config.get("dilation_rate", 1))
    if strides != (1, 1) and dilation != (1, 1):
        return False
    output_padding = config.get("output_padding")
    return output_padding is None or all(op < s for op, s in zip(_pair(output_padding), strides))


def keras_accepts(config) -> bool:
    """Whether Keras (and TensorFlow's kernel) define this geometry: the
    layer takes it, and for "same" with ``output_padding`` a last output
    position that some input pixel reaches (``k_eff % 2 + op >= 1``)."""
    if not layer_accepts(config):
        return False
    dilation = _pair(config.get("dilation_rate", 1))
    if config["padding"] == "same" and config.get("output_padding") is not None:
        k_eff = [(k - 1) * d + 1 for k, d in zip(_pair(config["kernel_size"]), dilation)]
        return all(k % 2 + op >= 1 for k, op in zip(k_eff, _pair(config["output_padding"])))
    return True


ACTIVATIONS = [None, "relu", "tanh", "sigmoid"]
# relu's derivative jumps at 0, where half-precision rounding of the output can
# put an element on either side: the mixed-precision tests draw smooth ones.
SMOOTH_ACTIVATIONS = [None, "tanh", "sigmoid"]


# 1-tap kernel axes and inputs of length 1 are where the gradient's rewrites
# (keras_tconv/ops/gradients.py) apply: draw them often.
KERNEL_SIZES = st.one_of(st.just(1), st.integers(1, 7))
LENGTHS = st.one_of(st.just(1), st.integers(1, 6))


@st.composite
def configs(draw, activations=ACTIVATIONS):
    kernel = (draw(KERNEL_SIZES), draw(KERNEL_SIZES))
    strides = (draw(STRIDES), draw(STRIDES))
    dilation = (1, 1)
    if draw(st.booleans()):
        dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    output_padding = None
    if draw(st.booleans()):
        # Below the stride, or below the dilation where that is larger (the op's extension).
        output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(strides, dilation))
    return dict(
        activation=draw(st.sampled_from(activations)),
        filters=draw(st.integers(1, 3)),
        kernel_size=kernel,
        strides=strides,
        padding=draw(st.sampled_from(["valid", "same"])),
        output_padding=output_padding,
        dilation_rate=dilation,
    )


@st.composite
def cases(draw, activations=ACTIVATIONS):
    config = draw(configs(activations))
    shape = (draw(st.integers(1, 3)), draw(LENGTHS), draw(LENGTHS), draw(st.integers(1, 3)))
    return config, shape, draw(st.sampled_from(["channels_last", "channels_first"])), draw(st.integers(0, 2**31 - 1))


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def _outputs_and_gradients(layer, x, cotangent):
    """Forward output and d<y, cotangent>/d(input, kernel, bias)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * cotangent)
    dx, dkernel, dbias = tape.gradient(loss, [x, layer.kernel, layer.bias])
    return [y, dx, dkernel, dbias]


class OpLayer:
    """``keras_tconv.ops.conv2d_transpose`` with a kernel and bias, for the
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


def _assert_close(got, want, rtol, what, terms=1):
    """``got == want`` to ``rtol``, with an absolute floor for sums of ``terms``
    unit-size terms: rounding of such a sum grows like ``sqrt(terms)``
    whatever its result."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = max(1.0, float(np.abs(want).max(initial=0.0)), float(np.sqrt(terms)))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale, err_msg=what)


def _summed_terms(output_shape, kernel_shape):
    """Terms summed per element of the output and of the input, kernel and bias
    gradients (upper bounds; channels last)."""
    batch, out_h, out_w, filters = output_shape
    kh, kw, _, channels = kernel_shape
    return [kh * kw * channels, kh * kw * filters, batch * out_h * out_w, batch * out_h * out_w]


def _rounded(array, dtype):
    """``array`` rounded to ``dtype`` (what the layer computes with), as float64."""
    return tf.cast(tf.cast(array, dtype), tf.float64).numpy()


def _nhwc(array, data_format):
    return np.transpose(array, (0, 2, 3, 1)) if data_format == "channels_first" else array


def _nchw(array, data_format):
    return np.transpose(array, (0, 3, 1, 2)) if data_format == "channels_first" else array


def check_against_reference(
    config, shape, data_format, seed, implementation, dtype="float32", rtol=1e-5, traced=False
):
    """Our layer's output and gradients for ``config`` on an input of ``shape``
    (channels last) against the float64 definition, with inputs, weights and
    cotangent rounded to the layer's compute dtype; ``traced``: in a
    ``tf.function`` that knows only the channels, so that the shape-dependent
    forms are chosen at run time."""
    rng = np.random.default_rng(seed)
    reference = Reference(**config)
    out_shape = reference.output_shape(shape, config["filters"])
    if keras_accepts(config):
        keras_layer = keras.layers.Conv2DTranspose(**config)
        assert tuple(keras_layer.compute_output_shape(shape)) == out_shape, "output shape differs from Keras's"
    kernel_shape = _pair(config["kernel_size"]) + (config["filters"], shape[-1])
    weights = [rng.standard_normal(kernel_shape).astype("float32"), rng.standard_normal(config["filters"]).astype("float32")]
    if not layer_accepts(config):
        ours = OpLayer(config, data_format, dtype, implementation, weights)
    else:
        ours = SegregatedConv2DTranspose(**config, data_format=data_format, dtype=dtype, implementation=implementation)
        ours.build(_nchw(np.empty(shape), data_format).shape)
        ours.set_weights(weights)
    compute = keras.mixed_precision.Policy(dtype).compute_dtype
    x = _rounded(rng.standard_normal(shape), compute)
    cotangent = _rounded(rng.standard_normal(out_shape), compute)
    kernel, bias = (_rounded(w, compute) for w in weights)
    want = [reference.forward(x, kernel, bias), *reference.gradients(x, kernel, bias, cotangent)]

    run = functools.partial(_outputs_and_gradients, ours)
    if traced:
        channels_axis = 1 if data_format == "channels_first" else 3
        spec = [tf.TensorSpec([size if a == channels_axis else None for a, size in enumerate(_nchw(np.empty(s), data_format).shape)])
                for s in (shape, out_shape)]
        run = tf.function(run, input_signature=spec)
    got = run(tf.constant(_nchw(x, data_format), tf.float32), tf.constant(_nchw(cotangent, data_format), tf.float32))
    got = list(got)
    got[0], got[1] = _nhwc(np.asarray(got[0]), data_format), _nhwc(np.asarray(got[1]), data_format)
    terms = _summed_terms(out_shape, kernel.shape)
    names = ["output", "input grad", "kernel grad", "bias grad"]
    for name, g, w, n in zip(names, got, want, terms):
        _assert_close(g, w, rtol, f"{name} ({implementation}, {config}, {shape}, {data_format})", n)


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
        cotangent = np.random.default_rng(2).standard_normal(reference.output_shape(shape, 1)).astype("float32")
        want = [reference.forward(x, kernel, bias), *reference.gradients(x, kernel, bias, cotangent)]
        for got, w, what in zip(traced(x, cotangent), want, ["output", "input grad", "kernel grad", "bias grad"]):
            _assert_close(got, w, 1e-5, f"{what}: {config} {shape}", terms=100)
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
    ours.set_weights([np.random.default_rng(0).standard_normal(w.shape).astype("float32") for w in ours.weights])
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
    _assert_close(ours(x), want, 1e-6, f"{implementation}, {config}, {shape}")


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
    for name, gradient, variable in [("input", dx, x), ("kernel", dkernel, ours.kernel), ("bias", dbias, ours.bias)]:
        assert gradient is not None, name
        np.testing.assert_array_equal(gradient, np.zeros(variable.shape), err_msg=name)
