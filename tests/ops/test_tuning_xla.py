"""``auto`` under TensorFlow's XLA compilation (``jit_compile=True``) and on a
GPU: what is measured, how it is keyed, the gradient's choice and the GPU's
static rule. Measurements are replaced by fixed numbers
(:func:`tests.fake_tuning.fake_measurement`); no timing assertions."""

from __future__ import annotations

import importlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from reference import Reference

import keras_tconv
from keras_tconv import SegregatedConv2DTranspose
from keras_tconv.ops.choosing import tuning
from keras_tconv.ops.choosing.rules import RULES, choose_implementation
from keras_tconv.ops.phases import plan_axes
from keras_tconv.ops.platform import cpu_kernel_library
from keras_tconv.ops.tensorflow import tuning as tf_tuning
from tests.fake_tuning import fake_measurement

conv2d_transpose_module = importlib.import_module("keras_tconv.ops.tensorflow.conv2d_transpose")

FORWARD_TIMES = {"native": 10.0, "split": 9.0, "rows": 7.0, "unified": 8.0}


def _times(fastest: str) -> dict:
    """Times with ``fastest`` fastest (and, for the kernel gradient's forms
    under oneDNN, TensorFlow's own form)."""
    return {**{impl: 5.0 if impl == fastest else 10.0 for impl in FORWARD_TIMES}, "explicit": 20.0}


@pytest.fixture
def compiled_runners(monkeypatch):
    """Records, per runner built for a measurement, whether XLA compiles it."""
    flags = []
    original = conv2d_transpose_module._traced_runner

    def recording(function, args_by_batch, xla=False):
        flags.append(xla)
        return original(function, args_by_batch, xla)

    monkeypatch.setattr(conv2d_transpose_module, "_traced_runner", recording)
    return flags


def _layer(filters=8, kernel_size=4, strides=2, input_shape=(2, 4, 4, 8), **kwargs):
    layer = SegregatedConv2DTranspose(filters, kernel_size, strides=strides, padding="same", **kwargs)
    layer.build(input_shape)
    return layer


def _step(layer, jit_compile: bool):
    """A training step's gradients (input, kernel, bias) of ``layer``."""

    def step(x, cotangent):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x) * cotangent)
        return tape.gradient(loss, [x, *layer.trainable_variables])

    return tf.function(step, jit_compile=jit_compile)


def _strided_ops(function, *args) -> list[str]:
    """The types of the ops with a stride above 1 in ``function``'s graph."""
    ops = function.get_concrete_function(*args).graph.get_operations()
    return sorted(op.type for op in ops if "strides" in op.node_def.attr and max(op.get_attr("strides")) > 1)


def test_xla_measures_candidates_compiled_by_xla_under_its_own_key(monkeypatch, tmp_path, compiled_runners):
    measuring = fake_measurement(monkeypatch, tmp_path, FORWARD_TIMES)
    x = tf.zeros((2, 4, 4, 8))
    layer = _layer()
    layer(x)
    assert compiled_runners and not any(compiled_runners)
    compiled_runners.clear()
    tf.function(layer.call, jit_compile=True)(x)
    assert compiled_runners and all(compiled_runners)
    plain, xla = keras_tconv.tuning_choices()
    assert xla.key == f"{plain.key} XLA" and xla.source == "measured" and len(measuring) == 2
    assert layer.chosen_implementation == "rows"

    tuning.clear_memory()  # a new process: both choices come from the disk cache
    tf.function(_layer().call, jit_compile=True)(x)
    _layer()(x)
    assert [c.source for c in keras_tconv.tuning_choices()] == ["cache", "cache"] and len(measuring) == 2


def test_keras_jit_compile_fit_measures_under_xla(monkeypatch, tmp_path):
    """Keras's ``jit_compile=True`` traces the train step inside XLA: ``auto``
    measures there, the forward and, for the differentiated layer, the gradient."""
    fake_measurement(monkeypatch, tmp_path, FORWARD_TIMES)
    model = keras.Sequential(
        [keras.Input((4, 4, 8)), SegregatedConv2DTranspose(3, 3, strides=2, padding="same")]
    )
    model.compile("sgd", "mse", jit_compile=True)
    model.fit(np.zeros((4, 4, 4, 8), "float32"), np.zeros((4, 8, 8, 3), "float32"), batch_size=4, verbose=0)
    keys = [c.key for c in keras_tconv.tuning_choices()]
    assert any(key.endswith(" XLA") for key in keys) and any(key.endswith(" XLA gradient") for key in keys)


@pytest.mark.parametrize("forward", ["native", "split", "rows", "unified"])
@pytest.mark.parametrize("gradient_wins", [False, True])
def test_xla_gradient_is_measured_against_one_segregated_lowering(
    monkeypatch, tmp_path, forward, gradient_wins
):
    """The gradient's lowering is measured after the forward's: ``native``
    (TensorFlow's strided kernels) against the XLA gradient rule's segregated
    pick, whatever the forward's; the derivative of a segregated lowering runs
    stride-1 correlations only."""
    segregated = "unified"  # the XLA gradient rule for k=4, s=2
    gradient = segregated if gradient_wins else "native"
    measuring = fake_measurement(monkeypatch, tmp_path, [_times(forward), _times(gradient)])
    layer = _layer()
    x, cotangent = tf.zeros((2, 4, 4, 8)), tf.zeros((2, 8, 8, 8))
    strided = _strided_ops(_step(layer, jit_compile=True), x, cotangent)
    assert [sorted(candidates) for candidates, _ in measuring] == [
        sorted(FORWARD_TIMES),
        sorted({"native", segregated}),
    ]
    first, second = keras_tconv.tuning_choices()
    assert first.implementation == forward and second.key == f"{first.key} gradient"
    assert second.implementation == gradient
    forward_strided = ["Conv2DBackpropInput"] if forward == "native" else []
    assert strided == sorted(forward_strided + ([] if gradient_wins else ["Conv2D", "Conv2DBackpropFilter"]))


def test_without_xla_the_gradient_stays_the_adjoint(monkeypatch, tmp_path):
    measuring = fake_measurement(monkeypatch, tmp_path, [FORWARD_TIMES, _times("rows")])
    layer = _layer()
    strided = _strided_ops(_step(layer, jit_compile=False), tf.zeros((2, 4, 4, 8)), tf.zeros((2, 8, 8, 8)))
    assert "Conv2DBackpropFilter" in strided
    assert not any(c.key.endswith("gradient") and "XLA" in c.key for c in keras_tconv.tuning_choices())
    assert all(sorted(candidates) != sorted(FORWARD_TIMES) for candidates, _ in measuring[1:])


@pytest.mark.parametrize("gradient", ["native", "split", "rows", "unified"])
@pytest.mark.parametrize(
    "config",
    [
        dict(filters=3, kernel_size=3, strides=2, activation="relu"),
        dict(filters=4, kernel_size=(5, 2), strides=(2, 3), output_padding=(1, 0)),
        dict(filters=2, kernel_size=4, strides=2, use_bias=False, activation="tanh"),
        dict(filters=3, kernel_size=1, strides=3, output_padding=2),
    ],
)
def test_every_xla_gradient_computes_the_definitions_numbers(monkeypatch, tmp_path, gradient, config):
    """Each gradient lowering, under XLA, gives the float64 definition's
    output and gradients (input, kernel, bias). (Keras's own layer is no
    reference here: its kernel gradient fails under oneDNN for some of these
    geometries.)"""
    fake_measurement(monkeypatch, tmp_path, _times(gradient))
    # The gradient rule picks the segregated candidate: here each in turn.
    segregated = gradient if gradient != "native" else "unified"
    monkeypatch.setattr(conv2d_transpose_module, "xla_gradient_rule", lambda *plans: segregated)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 6, 3))
    layer = SegregatedConv2DTranspose(**config, padding="same")
    layer.build(x.shape)
    layer.set_weights([rng.standard_normal(w.shape).astype("float32") for w in layer.get_weights()])
    kernel, *bias = layer.get_weights()
    reference = Reference(**config, padding="same")
    cotangent = rng.standard_normal(reference.output_shape(x.shape, kernel.shape[2]))
    bias = bias[0] if bias else np.zeros(kernel.shape[2])
    got = _step(layer, jit_compile=True)(tf.constant(x, tf.float32), tf.constant(cotangent, tf.float32))
    want = reference.gradients(x, kernel, bias, cotangent)
    assert keras_tconv.tuning_choices()[-1].implementation == gradient
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * float(np.max(np.abs(w))))


def test_gpu_static_rule_is_native_and_cpu_rules_do_not_decide_for_it():
    shapes = [((4, 4, 64, 128), 2), ((3, 3, 32, 64), 2), ((5, 5, 3, 16), 2), ((2, 2, 256, 512), 2)]
    cpu = f"CPU model {cpu_kernel_library()}"
    for kernel_shape, stride in shapes:
        plans = plan_axes(kernel_shape, stride, "same", None)
        assert choose_implementation(kernel_shape, *plans, 16, 8, 8, device="GPU NVIDIA H200") == "native"
        assert choose_implementation(kernel_shape, *plans, 16, 8, 8, device=cpu) == RULES[
            cpu_kernel_library()
        ].choose(kernel_shape, *plans, 16 * 8 * 8)


def test_a_hidden_gpu_does_not_name_the_device(monkeypatch):
    """A GPU hidden by ``tf.config.set_visible_devices`` computes nothing: the
    layer runs, is keyed and follows the rules as on the CPU."""
    fake_gpu = tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [fake_gpu])
    monkeypatch.setattr(tf.config, "get_visible_devices", lambda kind=None: [])
    assert tf_tuning.device_name().startswith("CPU ")
    monkeypatch.setattr(tf.config, "get_visible_devices", lambda kind=None: [fake_gpu])
    monkeypatch.setattr(
        tf.config.experimental, "get_device_details", lambda gpu: {"device_name": "Fake Card"}
    )
    assert tf_tuning.device_name() == "GPU Fake Card"
    assert tf_tuning.device_name("/job:localhost/replica:0/task:0/device:CPU:0").startswith("CPU ")


def test_on_a_gpu_auto_runs_native_unless_a_gpu_measurement_says_otherwise(monkeypatch, tmp_path):
    monkeypatch.setattr(tf_tuning, "device_name", lambda hint="": "GPU Fake Card")
    monkeypatch.setattr(
        conv2d_transpose_module, "choose_implementation", _forbid_cpu_rules(choose_implementation)
    )
    measuring = fake_measurement(monkeypatch, tmp_path, FORWARD_TIMES)
    monkeypatch.setenv("KERAS_TCONV_TUNING", "off")
    for jit_compile in (False, True):
        layer = _layer()
        tf.function(layer.call, jit_compile=jit_compile)(tf.zeros((2, 4, 4, 8)))
        assert layer.chosen_implementation == "native"
    monkeypatch.setenv("KERAS_TCONV_TUNING", "on")
    tuning.clear_memory()
    _layer()(tf.zeros((2, 4, 4, 8)))  # measured on the (fake) GPU: rows
    assert measuring and "GPU_Fake_Card" in tuning.cache_path(tf_tuning.where()).name
    monkeypatch.setenv("KERAS_TCONV_TUNING", "off")
    tuning.clear_memory()
    layer = _layer()
    layer(tf.zeros((2, 4, 4, 8)))
    assert layer.chosen_implementation == "rows" and keras_tconv.tuning_choices()[0].source == "cache"


def _forbid_cpu_rules(rule):
    """``rule`` checked to be asked with the GPU's device name."""

    def checked(*args, **kwargs):
        assert kwargs.get("device", "").startswith("GPU"), kwargs
        return rule(*args, **kwargs)

    return checked


def test_layer_supports_jit():
    """Keras turns XLA off for a whole model if one layer refuses it."""
    assert SegregatedConv2DTranspose(2, 3).supports_jit
