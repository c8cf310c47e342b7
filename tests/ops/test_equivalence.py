"""Property-based equivalence with ``keras.layers.Conv2DTranspose``.

Hypothesis draws layer configurations (kernel 1-7 and stride 1-4 per axis plus
strides 8 and 16, both paddings, output_padding, dilation where Keras allows
it, fused and unfused activations, batch and spatial sizes down to 1, both
data formats) and checks, for
every implementation, the forward output and the gradients with respect to
input, kernel and bias against Keras's own layer holding the same weights.

Keras's layer cannot run ``channels_first`` or a dilation rate above 1 on
CPU. For ``channels_first`` the reference is Keras's ``channels_last`` layer
between transposes; for dilation it is Keras's layer with the equivalent
undilated kernel (zeros between the taps), whose kernel gradient at the tap
positions is the dilated kernel's gradient.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from keras_tconv import SegregatedConv2DTranspose

IMPLEMENTATIONS = ("split", "rows", "unified", "native", "zero_insertion", "auto")
STRIDES = st.one_of(st.integers(1, 4), st.sampled_from([8, 16]))


@st.composite
def configs(draw):
    kernel = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    strides = (draw(STRIDES), draw(STRIDES))
    dilation = (1, 1)
    if strides == (1, 1):
        dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.sampled_from(["valid", "same"]))
    output_padding = None
    if draw(st.booleans()):
        output_padding = tuple(draw(st.integers(0, s - 1)) for s in strides)
    if padding == "same" and output_padding is not None:
        # Keras then asks TF for an output whose forward "same" conv is one
        # pixel short, which TF rejects; Keras has no result to compare to.
        k_eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
        assume(all(k % 2 + op >= 1 for k, op in zip(k_eff, output_padding)))
    return dict(
        activation=draw(st.sampled_from([None, "relu", "tanh", "sigmoid"])),
        filters=draw(st.integers(1, 3)),
        kernel_size=kernel,
        strides=strides,
        padding=padding,
        output_padding=output_padding,
        dilation_rate=dilation,
    )


@st.composite
def cases(draw):
    config = draw(configs())
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 6)), draw(st.integers(1, 6)), draw(st.integers(1, 3)))
    return config, shape, draw(st.sampled_from(["channels_last", "channels_first"])), draw(st.integers(0, 2**31 - 1))


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


class KerasReference:
    """Keras's Conv2DTranspose for ``config``, runnable on CPU.

    A dilated kernel is folded into an undilated one with zeros between the
    taps; ``weights_from`` and ``kernel_gradient`` translate between the two.
    """

    def __init__(self, config, dtype="float32"):
        self.dilation = _pair(config.get("dilation_rate", 1))
        kernel = _pair(config["kernel_size"])
        undilated = tuple((k - 1) * d + 1 for k, d in zip(kernel, self.dilation))
        self.layer = keras.layers.Conv2DTranspose(
            **{**config, "kernel_size": undilated, "dilation_rate": 1}, dtype=dtype
        )

    def weights_from(self, kernel, bias):
        dh, dw = self.dilation
        shape = ((kernel.shape[0] - 1) * dh + 1, (kernel.shape[1] - 1) * dw + 1) + kernel.shape[2:]
        undilated = np.zeros(shape, kernel.dtype)
        undilated[::dh, ::dw] = kernel
        self.layer.set_weights([undilated, bias])

    def kernel_gradient(self, gradient):
        return gradient[:: self.dilation[0], :: self.dilation[1]]


def _outputs_and_gradients(layer, x, cotangent):
    """Forward output and d<y, cotangent>/d(input, kernel, bias)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * cotangent)
    dx, dkernel, dbias = tape.gradient(loss, [x, layer.kernel, layer.bias])
    return [y, dx, dkernel, dbias]


def _to_channels_first(t):
    return tf.transpose(t, (0, 3, 1, 2))


def _assert_close(got, want, rtol, what, terms=1):
    """``got == want`` to ``rtol``, with an absolute floor for sums of ``terms``
    unit-size terms: float32 rounding of such a sum grows like ``sqrt(terms)``
    whatever its result (a bias gradient summing 1024 cotangent entries to
    -0.5 differs by 3e-5 between two reduction orders)."""
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


def check_against_keras(config, shape, data_format, seed, implementation, dtype="float32", rtol=1e-5):
    rng = np.random.default_rng(seed)
    x_last = tf.constant(rng.standard_normal(shape), tf.float32)
    ours = SegregatedConv2DTranspose(**config, data_format=data_format, dtype=dtype, implementation=implementation)
    ours.build(shape if data_format == "channels_last" else (shape[0], shape[3], shape[1], shape[2]))
    ours.set_weights([rng.standard_normal(w.shape).astype("float32") for w in ours.weights])
    reference = KerasReference(config, dtype)
    reference.layer.build(x_last.shape)
    reference.weights_from(*ours.get_weights())
    cotangent = tf.constant(rng.standard_normal(reference.layer.compute_output_shape(shape)), tf.float32)
    want = _outputs_and_gradients(reference.layer, x_last, cotangent)
    want[2] = reference.kernel_gradient(want[2])

    x = x_last
    if data_format == "channels_first":
        x, cotangent = _to_channels_first(x_last), _to_channels_first(cotangent)
        want[0] = _to_channels_first(want[0])
        want[1] = _to_channels_first(want[1])
    got = _outputs_and_gradients(ours, x, cotangent)
    terms = _summed_terms(reference.layer.compute_output_shape(shape), ours.kernel.shape)
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
def test_float32_matches_keras(implementation, case):
    check_against_keras(*case, implementation=implementation)


@pytest.mark.parametrize("implementation", ["split", "rows", "unified", "native"])
@pytest.mark.parametrize("policy,rtol", [("mixed_float16", 2e-2), ("mixed_bfloat16", 8e-2)])
@settings(FAST, max_examples=10)
@given(case=cases())
def test_mixed_precision_matches_keras(implementation, policy, rtol, case):
    check_against_keras(*case, implementation=implementation, dtype=policy, rtol=rtol)


@pytest.mark.parametrize(
    "config",
    [
        dict(kernel_size=3, strides=2, padding="same"),
        dict(kernel_size=(4, 2), strides=(2, 3), padding="valid", output_padding=(1, 2)),
        dict(kernel_size=2, strides=5, padding="valid"),
        dict(kernel_size=3, strides=1, padding="same", dilation_rate=2),
    ],
)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_unknown_dims_under_tf_function(config, implementation):
    """One trace serves every batch and spatial size, with Keras's numbers."""
    ours = SegregatedConv2DTranspose(2, **config, implementation=implementation)
    ours.build((None, None, None, 3))
    reference = KerasReference({"filters": 2, **config})
    reference.layer.build((None, None, None, 3))
    reference.weights_from(*ours.get_weights())
    traced = tf.function(ours.call, input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])
    for shape in [(1, 4, 5, 3), (3, 7, 2, 3), (2, 1, 1, 3)]:
        x = tf.random.normal(shape, seed=1)
        _assert_close(traced(x), reference.layer(x), 1e-5, f"{config} {shape}")
    assert traced.experimental_get_tracing_count() == 1


@st.composite
def keras_rejected_cases(draw):
    """"same" with an ``output_padding`` of 0 on an even-kernel axis: TF refuses
    Keras's output shape (no input reaches its last position), so only the
    definition itself, the zero-insertion baseline, can be compared to."""
    strides = (draw(st.integers(2, 4)), draw(st.integers(2, 4)))
    kernel = (2 * draw(st.integers(1, 3)), draw(st.integers(1, 6)))
    output_padding = (0, draw(st.integers(0, strides[1] - 1)))
    config = dict(kernel_size=kernel, strides=strides, padding="same", output_padding=output_padding)
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 5)), draw(st.integers(1, 5)), draw(st.integers(1, 3)))
    return config, shape, draw(st.integers(1, 3)), draw(st.integers(0, 2**31 - 1))


@pytest.mark.parametrize("implementation", ["split", "rows", "unified", "native", "auto"])
@settings(FAST, max_examples=25)
@given(case=keras_rejected_cases())
def test_geometries_keras_rejects_match_zero_insertion(implementation, case):
    config, shape, filters, seed = case
    rng = np.random.default_rng(seed)
    x = tf.constant(rng.standard_normal(shape), tf.float32)
    reference = SegregatedConv2DTranspose(filters, **config, implementation="zero_insertion")
    ours = SegregatedConv2DTranspose(filters, **config, implementation=implementation)
    # An empty output leaves TF's Conv2DBackpropFilter, which the zero-insertion
    # gradient uses, returning uninitialised memory (Keras's layer has the same bug).
    assume(min(reference.compute_output_shape(shape)) > 0)
    for layer in (reference, ours):
        layer.build(shape)
    reference.set_weights([rng.standard_normal(w.shape).astype("float32") for w in reference.weights])
    ours.set_weights(reference.get_weights())
    cotangent = tf.constant(rng.standard_normal(reference.compute_output_shape(shape)), tf.float32)
    want = _outputs_and_gradients(reference, x, cotangent)
    got = _outputs_and_gradients(ours, x, cotangent)
    terms = _summed_terms(cotangent.shape, ours.kernel.shape)
    for name, g, w, n in zip(["output", "input grad", "kernel grad", "bias grad"], got, want, terms):
        _assert_close(g, w, 1e-5, f"{name} ({implementation}, {config}, {shape})", n)


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
