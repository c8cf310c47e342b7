"""SegregatedConv2DTranspose behaves as keras.layers.Conv2DTranspose does, as a Keras layer.

Weights, shapes, configs, saving and loading (both file formats, both
directions), the three model-building styles, tf.function with unknown
dimensions, mixed precision, a distribution strategy, channels_first on CPU
and training. Numerics of the op itself over many shapes are the business of
tests/ops; here a few representative configurations suffice.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_tconv import SegregatedConv2DTranspose
from keras_tconv.ops import IMPLEMENTATIONS
from tests.helpers.models import INPUT_SHAPE, functional, layers_in, sequential

# Representative layer configurations (channels_last), each with an input shape.
CONFIGS = {
    "s2_same": (dict(filters=3, kernel_size=3, strides=2, padding="same"), (2, 5, 6, 4)),
    "s23_valid_outpad": (
        dict(filters=2, kernel_size=(3, 2), strides=(2, 3), padding="valid", output_padding=(1, 2)),
        (2, 4, 3, 3),
    ),
    "s1_dilated": (dict(filters=4, kernel_size=3, strides=1, padding="same", dilation_rate=2), (1, 6, 5, 2)),
    "s3_k2_nobias_relu": (
        dict(filters=2, kernel_size=2, strides=3, padding="same", use_bias=False, activation="relu"),
        (2, 3, 4, 3),
    ),
}
CONFIG_IDS = list(CONFIGS)

ATOL = 1e-5


def _pair(config_id, implementation="auto"):
    """A built Keras layer and a built segregated layer with the same weights (nonzero bias).

    The Keras layer cannot run a dilated configuration on CPU; use
    :func:`_keras_forward_and_grads` for reference numbers.
    """
    kwargs, input_shape = CONFIGS[config_id]
    ref = keras.layers.Conv2DTranspose(**kwargs, bias_initializer="random_normal")
    ref.build(input_shape)
    ours = SegregatedConv2DTranspose(**kwargs, implementation=implementation)
    ours.build(input_shape)
    ours.set_weights(ref.get_weights())
    return ref, ours, input_shape


def _keras_equivalent(layer):
    """Keras's channels_last Conv2DTranspose computing what ``layer`` computes, runnable on CPU.

    Keras's CPU kernel rejects dilation > 1, so a dilated kernel is expanded
    into its undilated equivalent (zeros between the taps), which Keras's own
    output-shape and padding arithmetic treat identically. Returns the layer
    and the index that maps its kernel (or kernel gradient) back to ``layer``'s.
    """
    config = {k: v for k, v in layer.get_config().items() if k not in ("implementation", "name")}
    config["data_format"] = "channels_last"
    weights = layer.get_weights()
    dh, dw = layer.dilation_rate
    taps = (slice(None, None, dh), slice(None, None, dw))
    if (dh, dw) != (1, 1):
        kh, kw, filters, channels = weights[0].shape
        big = np.zeros(((kh - 1) * dh + 1, (kw - 1) * dw + 1, filters, channels), weights[0].dtype)
        big[taps] = weights[0]
        weights = [big, *weights[1:]]
        config.update(kernel_size=big.shape[:2], dilation_rate=(1, 1))
    ref = keras.layers.Conv2DTranspose.from_config(config)
    ref.build((None, None, None, weights[0].shape[-1]))
    ref.set_weights(weights)
    return ref, taps


def _keras_forward_and_grads(layer, x):
    """Keras's output, input gradient and kernel gradient of ``sum(y**2)`` for ``layer``'s config and weights.

    ``x`` is channels_last; so are the returned output and input gradient.
    """
    ref, taps = _keras_equivalent(layer)
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = ref(x)
        loss = tf.reduce_sum(y * y)
    dx, dk = tape.gradient(loss, [x, ref.kernel])
    return y, dx, tf.convert_to_tensor(dk)[taps]


def _keras_forward(layer, x):
    return _keras_equivalent(layer)[0](x)


def _x(rng, shape):
    return rng.standard_normal(shape).astype("float32")


def _close(a, b, atol=ATOL):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=atol)


def test_keras_equivalent_of_dilated_layer_is_not_a_tautology(rng):
    """The expanded-kernel reference differs from ignoring dilation (so it tests something)."""
    _, ours, input_shape = _pair("s1_dilated")
    x = _x(rng, input_shape)
    undilated = keras.layers.Conv2DTranspose.from_config(
        {**{k: v for k, v in ours.get_config().items() if k != "implementation"}, "dilation_rate": 1}
    )
    undilated.build(input_shape)
    undilated.set_weights(ours.get_weights())
    assert _keras_forward(ours, x).shape != undilated(x).shape or not np.allclose(
        _keras_forward(ours, x), undilated(x), atol=1e-3
    )


# --------------------------------------------------------------------------- weights


@pytest.mark.parametrize("config_id", CONFIG_IDS)
def test_same_variables_as_keras(config_id):
    kwargs, input_shape = CONFIGS[config_id]
    ref = keras.layers.Conv2DTranspose(**kwargs)
    ours = SegregatedConv2DTranspose(**kwargs)
    ref.build(input_shape)
    ours.build(input_shape)

    def describe(layer):
        return [(v.name, tuple(v.shape), v.dtype, v.trainable) for v in layer.weights]

    assert describe(ours) == describe(ref)
    assert [v.name for v in ours.weights] == (["kernel", "bias"] if ours.use_bias else ["kernel"])
    kh, kw = ref.kernel_size
    assert tuple(ours.kernel.shape) == (kh, kw, kwargs["filters"], input_shape[-1])
    assert [v.path.split("/")[-1] for v in ours.weights] == [v.path.split("/")[-1] for v in ref.weights]
    assert len(ours.trainable_weights) == len(ref.trainable_weights)
    assert not ours.non_trainable_weights


@pytest.mark.parametrize("config_id", CONFIG_IDS)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_weights_copy_both_ways_with_identical_outputs(config_id, implementation, rng):
    kwargs, input_shape = CONFIGS[config_id]
    x = _x(rng, input_shape)
    # Keras -> ours
    ref, ours, _ = _pair(config_id, implementation)
    for a, b in zip(ref.get_weights(), ours.get_weights()):
        np.testing.assert_array_equal(a, b)
    expected = _keras_forward(ref, x)
    if max(ref.dilation_rate) == 1:  # Keras's CPU kernel runs only undilated layers
        _close(ref(x), expected)
    _close(ours(x), expected)
    # ours -> Keras, with weights ours got independently initialised
    ours2 = SegregatedConv2DTranspose(
        **kwargs, implementation=implementation, bias_initializer="random_normal"
    )
    ours2.build(input_shape)
    ref2 = keras.layers.Conv2DTranspose(**kwargs)
    ref2.build(input_shape)
    ref2.set_weights(ours2.get_weights())
    for a, b in zip(ref2.get_weights(), ours2.get_weights()):
        np.testing.assert_array_equal(a, b)
    _close(ours2(x), _keras_forward(ref2, x))
    # and the test can fail: other weights give other outputs
    assert not np.allclose(ours2(x), ours(x), atol=1e-3)


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("config_id", CONFIG_IDS)
@pytest.mark.parametrize(
    "input_shape", [(None, 5, 6, None), (3, None, 7, None), (None, None, None, None), (1, 1, 1, None)]
)
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_compute_output_shape_equals_keras(config_id, input_shape, data_format):
    kwargs, real_shape = CONFIGS[config_id]
    channels = real_shape[-1]
    if data_format == "channels_last":
        shape = input_shape[:3] + (channels,)
    else:
        shape = (input_shape[0], channels) + input_shape[1:3]
    ref = keras.layers.Conv2DTranspose(**kwargs, data_format=data_format)
    ours = SegregatedConv2DTranspose(**kwargs, data_format=data_format)
    assert ours.compute_output_shape(shape) == ref.compute_output_shape(shape)
    # symbolic call agrees too
    assert ours(keras.Input(batch_shape=shape)).shape == ref(keras.Input(batch_shape=shape)).shape


@pytest.mark.parametrize("config_id", CONFIG_IDS)
def test_eager_output_shape_matches_compute_output_shape(config_id, rng):
    _, ours, input_shape = _pair(config_id)
    assert tuple(ours(_x(rng, input_shape)).shape) == tuple(ours.compute_output_shape(input_shape))


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("config_id", CONFIG_IDS)
def test_config_round_trip(config_id, implementation):
    kwargs, _ = CONFIGS[config_id]
    ours = SegregatedConv2DTranspose(**kwargs, implementation=implementation, name="up")
    config = ours.get_config()
    assert config["implementation"] == implementation
    revived = SegregatedConv2DTranspose.from_config(config)
    assert type(revived) is SegregatedConv2DTranspose
    assert revived.implementation == implementation
    assert revived.get_config() == config
    # Everything but `implementation` is Keras's config for the same arguments.
    ref_config = keras.layers.Conv2DTranspose(**kwargs, name="up").get_config()
    assert {k: v for k, v in config.items() if k != "implementation"} == ref_config
    # Generic (de)serialization finds the registered class.
    serialized = keras.layers.serialize(ours)
    assert serialized["registered_name"] == "keras_tconv>SegregatedConv2DTranspose"
    again = keras.layers.deserialize(serialized)
    assert type(again) is SegregatedConv2DTranspose and again.get_config() == config


def test_default_implementation_is_auto():
    assert SegregatedConv2DTranspose(2, 3).get_config()["implementation"] == "auto"


# --------------------------------------------------------------------------- saving


@pytest.mark.parametrize("implementation", ["split", "unified", "zero_insertion"])
def test_keras_file_save_and_safe_load(tmp_path, implementation, rng):
    model = sequential(SegregatedConv2DTranspose, implementation=implementation)
    x = _x(rng, (3, *INPUT_SHAPE))
    expected = model(x)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    for name in ("up1", "up2"):
        layer = loaded.get_layer(name)
        assert type(layer) is SegregatedConv2DTranspose
        assert layer.implementation == implementation
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(expected))


@pytest.mark.parametrize("direction", ["keras_to_ours", "ours_to_keras"])
def test_weights_h5_between_classes(tmp_path, direction, rng):
    source_cls, target_cls = keras.layers.Conv2DTranspose, SegregatedConv2DTranspose
    if direction == "ours_to_keras":
        source_cls, target_cls = target_cls, source_cls
    source = sequential(source_cls)
    target = sequential(target_cls)
    x = _x(rng, (2, *INPUT_SHAPE))
    assert not np.allclose(source(x), target(x), atol=1e-3)  # different random weights before loading
    path = tmp_path / "model.weights.h5"
    source.save_weights(path)
    target.load_weights(path)
    for a, b in zip(source.get_weights(), target.get_weights()):
        np.testing.assert_array_equal(a, b)
    _close(target(x), source(x))


# --------------------------------------------------------------------------- model styles


class SubclassedUpsampler(keras.Model):
    def __init__(self, layer_cls, **kwargs):
        super().__init__(**kwargs)
        self.pre = keras.layers.Conv2D(3, 1)
        self.up = layer_cls(2, 3, strides=2, padding="same", bias_initializer="random_normal")

    def call(self, x):
        return self.up(keras.activations.relu(self.pre(x)))


@pytest.mark.parametrize("style", ["sequential", "functional", "subclassed"])
def test_model_styles_match_keras(style, rng):
    build = {
        "sequential": sequential,
        "functional": functional,
        "subclassed": SubclassedUpsampler,
    }[style]
    x = _x(rng, (2, *INPUT_SHAPE))
    ref, ours = build(keras.layers.Conv2DTranspose), build(SegregatedConv2DTranspose)
    ref(x), ours(x)  # build subclassed models
    assert sum(isinstance(layer, SegregatedConv2DTranspose) for layer in layers_in(ours)) >= 1
    ours.set_weights(ref.get_weights())
    _close(ours(x), ref(x))
    _close(ours.predict(x, verbose=0), ref.predict(x, verbose=0))


# --------------------------------------------------------------------------- tf.function


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("config_id", ["s2_same", "s23_valid_outpad", "s1_dilated"])
def test_tf_function_unknown_dims_no_retracing(config_id, implementation, rng):
    ref, ours, input_shape = _pair(config_id, implementation)
    channels = input_shape[-1]
    spec = tf.TensorSpec([None, None, None, channels], tf.float32)

    @tf.function(input_signature=[spec])
    def forward_and_grads(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = ours(x)
            loss = tf.reduce_sum(y * y)
        dx, dk = tape.gradient(loss, [x, ours.kernel])
        return y, dx, dk

    out = forward_and_grads.get_concrete_function().structured_outputs
    assert out[0].shape.as_list() == [None, None, None, ours.filters]
    for shape in [input_shape, (1, 3, 4, channels), (3, 7, 2, channels), (1, 1, 1, channels)]:
        x = _x(rng, shape)
        y, dx, dk = forward_and_grads(tf.constant(x))
        y_ref, dx_ref, dk_ref = _keras_forward_and_grads(ref, x)
        assert tuple(y.shape) == tuple(ref.compute_output_shape(shape))
        _close(y, y_ref)
        _close(dx, dx_ref, atol=1e-4)
        _close(dk, dk_ref, atol=1e-4)
    assert forward_and_grads.experimental_get_tracing_count() == 1


def test_tf_function_without_signature_retraces_only_on_new_shapes(rng):
    """Sanity of the trace counter itself: without a signature, new shapes do retrace."""
    _, ours, input_shape = _pair("s2_same")
    f = tf.function(ours, reduce_retracing=False)
    f(tf.constant(_x(rng, input_shape)))
    f(tf.constant(_x(rng, input_shape)))
    assert f.experimental_get_tracing_count() == 1
    f(tf.constant(_x(rng, (1, 3, 3, input_shape[-1]))))
    assert f.experimental_get_tracing_count() == 2


# --------------------------------------------------------------------------- mixed precision


@pytest.fixture(params=["mixed_float16", "mixed_bfloat16"])
def mixed_policy(request):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(request.param)
    yield request.param
    keras.config.set_dtype_policy(previous)


@pytest.mark.parametrize("implementation", ["auto", "split", "unified"])
def test_mixed_precision(mixed_policy, implementation, rng):
    compute = {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}[mixed_policy]
    kwargs, input_shape = CONFIGS["s23_valid_outpad"]
    ours = SegregatedConv2DTranspose(
        **kwargs, implementation=implementation, bias_initializer="random_normal"
    )
    ref = keras.layers.Conv2DTranspose(**kwargs)
    ours.build(input_shape)
    ref.build(input_shape)
    ref.set_weights(ours.get_weights())
    assert ours.compute_dtype == compute
    assert ours.kernel.dtype == "float32" and ours.bias.dtype == "float32"
    x = tf.constant(_x(rng, input_shape))
    with tf.GradientTape() as tape:
        y = ours(x)
        loss = tf.reduce_sum(tf.cast(y, "float32") ** 2)
    grads = tape.gradient(loss, ours.trainable_variables)
    assert y.dtype == compute
    assert [g.dtype for g in grads] == ["float32", "float32"]
    assert all(np.all(np.isfinite(g.numpy())) and np.any(g.numpy() != 0) for g in grads)
    # Same rounding regime as Keras's own layer under the same policy.
    y_ref = ref(x)
    assert y_ref.dtype == compute
    tol = 2e-2 if compute == "float16" else 1.5e-1
    np.testing.assert_allclose(np.asarray(y, "float32"), np.asarray(y_ref, "float32"), atol=tol, rtol=tol)


def test_mixed_precision_model_fit(mixed_policy, rng):
    model = sequential(SegregatedConv2DTranspose)
    model.compile(optimizer="adam", loss="mse")
    x = _x(rng, (4, *INPUT_SHAPE))
    y = _x(rng, (4, *model.output_shape[1:]))
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert all(w.dtype == "float32" for w in model.weights)
    assert model(x).dtype == {"mixed_float16": "float16", "mixed_bfloat16": "bfloat16"}[mixed_policy]


# --------------------------------------------------------------------------- distribution


def test_mirrored_strategy_compile_and_fit(rng):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model = sequential(SegregatedConv2DTranspose)
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    x = _x(rng, (4, *INPUT_SHAPE))
    y = _x(rng, (4, *model.output_shape[1:]))
    assert strategy.num_replicas_in_sync == 1
    ref = sequential(keras.layers.Conv2DTranspose)
    ref.set_weights(model.get_weights())
    ref.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    ref_history = ref.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])
    np.testing.assert_allclose(history.history["loss"], ref_history.history["loss"], rtol=1e-5)
    for a, b, w0 in zip(model.get_weights(), ref.get_weights(), before):
        assert not np.array_equal(a, w0)
        _close(a, b)


# --------------------------------------------------------------------------- channels_first


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("config_id", CONFIG_IDS)
def test_channels_first_on_cpu(config_id, implementation, rng):
    """channels_first (which Keras's own layer cannot run on CPU) equals channels_last, transposed."""
    kwargs, input_shape = CONFIGS[config_id]
    first = SegregatedConv2DTranspose(
        **kwargs,
        data_format="channels_first",
        implementation=implementation,
        bias_initializer="random_normal",
    )
    nchw_shape = (input_shape[0], input_shape[3], input_shape[1], input_shape[2])
    first.build(nchw_shape)
    assert tuple(first.kernel.shape) == tuple(first.kernel_size) + (kwargs["filters"], input_shape[-1])
    x = _x(rng, input_shape)
    x_nchw = tf.constant(np.transpose(x, (0, 3, 1, 2)))
    with tf.GradientTape() as tape:
        tape.watch(x_nchw)
        y_first = first(x_nchw)
        loss = tf.reduce_sum(y_first**2)
    dx_first, dk_first = tape.gradient(loss, [x_nchw, first.kernel])
    y_ref, dx_ref, dk_ref = _keras_forward_and_grads(first, x)
    assert tuple(y_first.shape) == tuple(first.compute_output_shape(nchw_shape))
    _close(tf.transpose(y_first, (0, 2, 3, 1)), y_ref)
    _close(tf.transpose(dx_first, (0, 2, 3, 1)), dx_ref, atol=1e-4)
    _close(dk_first, dk_ref, atol=1e-4)


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("implementation", ["split", "unified"])
def test_fit_reduces_loss(implementation, rng):
    """Learn a fixed random upsampler from its input/output pairs (both custom-gradient lowerings)."""
    teacher = keras.layers.Conv2DTranspose(2, 3, strides=2, padding="same", bias_initializer="random_normal")
    x = _x(rng, (16, 4, 4, 3))
    y = np.asarray(teacher(x))
    student = SegregatedConv2DTranspose(2, 3, strides=2, padding="same", implementation=implementation)
    model = keras.Sequential([keras.Input(shape=(4, 4, 3)), student])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")

    def mse():
        return float(np.mean((np.asarray(model(x)) - y) ** 2))

    initial = mse()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat()
    history = model.fit(dataset, epochs=2, steps_per_epoch=20, verbose=0, shuffle=False)
    final = mse()
    assert history.history["loss"][1] < history.history["loss"][0]
    assert final < 0.1 * initial, (initial, final)
