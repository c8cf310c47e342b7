"""The measured ``auto``: margin rule, cache, switches and fallbacks
(keras_tconv/ops/choosing/tuning.py). No timing assertions: measurements are replaced
by fixed numbers wherever a decision is checked."""

from __future__ import annotations

import importlib
import json
import logging

import pytest
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

import keras_tconv
from keras_tconv import SegregatedConv2DTranspose, lowering_target
from keras_tconv.ops.choosing import tuning
from keras_tconv.ops.choosing.rules import choose_implementation
from keras_tconv.ops.phases import plan_axes
from keras_tconv.ops.platform import cpu_kernel_library
from keras_tconv.ops.tensorflow import tuning as tf_tuning
from tests.fake_tuning import fake_measurement

# The module, not the function that keras_tconv.ops exports under its name.
conv2d_transpose_module = importlib.import_module("keras_tconv.ops.tensorflow.conv2d_transpose")


@pytest.fixture
def measuring(monkeypatch, tmp_path):
    """Tuning on, a fresh cache directory and process memory, and a fake
    measurement returning ``times`` (ms) with no spread; yields the list of
    measured candidate sets."""
    times = {"native": 10.0, "split": 9.0, "rows": 7.0, "unified": 8.0, "explicit": 6.0}
    yield fake_measurement(monkeypatch, tmp_path, times)
    tuning.clear_memory()


def _layer(input_shape=(2, 4, 4, 8), **kwargs):
    layer = SegregatedConv2DTranspose(8, 4, strides=2, padding="same", **kwargs)
    layer.build(input_shape)
    return layer


@pytest.mark.parametrize(
    "times,spreads,expected",
    [
        ({"native": 10, "rows": 9.6}, {}, "native"),  # 4% faster: inside the 5% margin
        ({"native": 10, "rows": 9.0}, {}, "rows"),
        ({"native": 10, "rows": 9.0}, {"rows": 0.15}, "native"),  # beyond 5% but inside its noise
        ({"native": 10, "rows": 9.0, "split": 8.0}, {}, "split"),
        ({"native": 10, "rows": 11.0}, {}, "native"),
    ],
)
def test_margin_rule(times, spreads, expected):
    medians = {impl: {16: t} for impl, t in times.items()}
    spread = {impl: {16: spreads.get(impl, 0.0)} for impl in times}
    assert tuning.pick(medians, spread, (16,)) == expected


def test_margin_rule_with_unknown_batch_never_loses_at_batch_one():
    """A lowering that wins at the representative batch but loses at batch 1 is not kept."""
    medians = {"native": {16: 10.0, 1: 1.0}, "rows": {16: 6.0, 1: 1.5}, "unified": {16: 8.0, 1: 0.9}}
    spreads = {impl: {16: 0.0, 1: 0.0} for impl in medians}
    assert tuning.pick(medians, spreads, (16, 1)) == "unified"
    del medians["unified"], spreads["unified"]
    assert tuning.pick(medians, spreads, (16, 1)) == "native"


def test_measures_once_then_caches_in_process_and_on_disk(measuring, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="keras_tconv"):
        layer = _layer()
        layer(tf.zeros((2, 4, 4, 8)))
        assert layer.chosen_implementation == "rows"
        _layer()(tf.zeros((2, 4, 4, 8)))  # same geometry: remembered
    assert len(measuring) == 1 and measuring[0][1] == (2,)
    assert sum("keras_tconv auto:" in r.message for r in caplog.records) == 1
    [choice] = keras_tconv.tuning_choices()
    assert (
        choice.implementation == "rows"
        and choice.source == "measured"
        and "8->8 in 2x4x4 float32" in choice.key
    )

    [path] = tmp_path.glob("*.json")
    # Keyed by what computes: the GPU where TensorFlow places the layer, else the CPU kernel library.
    computes_on = "GPU" if tf.config.list_physical_devices("GPU") else cpu_kernel_library()
    assert computes_on in path.name and tf.__version__ in path.name
    assert json.loads(path.read_text())[choice.key]["implementation"] == "rows"

    tuning.clear_memory()  # a new process: the disk cache answers, nothing is measured
    layer = _layer()
    layer(tf.zeros((2, 4, 4, 8)))
    assert layer.chosen_implementation == "rows" and len(measuring) == 1
    assert keras_tconv.tuning_choices()[0].source == "cache"


def test_key_separates_shapes_dtypes_and_options(measuring):
    _layer()(tf.zeros((2, 4, 4, 8)))
    _layer()(tf.zeros((3, 4, 4, 8)))  # batch
    _layer((2, 5, 4, 8))(tf.zeros((2, 5, 4, 8)))  # spatial size
    _layer(activation="relu")(tf.zeros((2, 4, 4, 8)))
    _layer(use_bias=False)(tf.zeros((2, 4, 4, 8)))
    _layer(dtype="float64")(tf.zeros((2, 4, 4, 8), tf.float64))
    keys = [c.key for c in keras_tconv.tuning_choices()]
    assert len(keys) == len(set(keys)) == 6 == len(measuring)


def test_unknown_batch_is_measured_at_a_representative_batch_and_at_one(measuring):
    layer = _layer((None, 4, 4, 8))
    tf.function(layer.call, input_signature=[tf.TensorSpec((None, 4, 4, 8))]).get_concrete_function()
    assert measuring[0][1] == (tuning.REPRESENTATIVE_BATCH, 1)


@pytest.mark.parametrize("switch", ["environment", "determinism"])
def test_switches_turn_timing_off(measuring, monkeypatch, switch):
    if switch == "environment":
        monkeypatch.setenv("KERAS_TCONV_TUNING", "off")
    else:
        tf.config.experimental.enable_op_determinism()
    try:
        layer = _layer()
        layer(tf.zeros((2, 4, 4, 8)))
    finally:
        tf_config.disable_op_determinism()
    assert not measuring
    assert keras_tconv.tuning_choices()[0].source == "static rule"
    static = choose_implementation(
        layer.kernel.shape, *plan_axes(layer.kernel.shape, 2, "same", None), 2, 4, 4
    )
    assert layer.chosen_implementation == static


def test_no_timing_for_unknown_spatial_size_or_litert(measuring):
    layer = _layer((None, None, None, 8))
    tf.function(layer.call, input_signature=[tf.TensorSpec((2, None, None, 8))]).get_concrete_function()
    for target in ("litert", "litert_int8"):
        with lowering_target(target):
            _layer()(tf.zeros((2, 4, 4, 8)))
    assert not measuring


def test_corrupt_cache_file_is_ignored(measuring, tmp_path):
    path = tuning.cache_path(tf_tuning.where())
    path.write_text("{not json")
    _layer()(tf.zeros((2, 4, 4, 8)))
    assert len(measuring) == 1 and json.loads(path.read_text())


def test_huge_outputs_are_measured_at_a_smaller_batch(measuring, monkeypatch):
    """The measured batch shrinks until one output fits MAX_MEASURED_OUTPUT (8x8x8 values
    per example here)."""
    monkeypatch.setattr(tuning, "MAX_MEASURED_OUTPUT", 2 * 8 * 8 * 8)
    _layer((6, 4, 4, 8))(tf.zeros((6, 4, 4, 8)))
    assert measuring[0][1] == (2,)
    assert "in 6x4x4" in keras_tconv.tuning_choices()[0].key  # the key keeps the layer's own batch


def _train_step_ops(layer, x):
    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x))
        return tape.gradient(loss, layer.trainable_variables)

    step(x)
    return step.get_concrete_function(x).graph.get_operations()


def test_placement_sees_the_device_scope_of_a_traced_call():
    """A layer traced in a ``tf.function`` called under ``tf.device`` has
    placeholders without a device; the scope still decides where it is tuned."""
    seen = []

    @tf.function
    def call(x):
        seen.append(tf_tuning.placement(x))
        return x

    with tf.device("/CPU:0"):
        call(tf.zeros(3))
    call(tf.zeros(4))
    assert "CPU" in seen[0] and tf_tuning.device_name(seen[0]).startswith("CPU")
    assert seen[1] == ""


def test_kernel_gradient_form_is_measured_under_onednn(measuring, monkeypatch):
    """Under oneDNN the first gradient measures the kernel gradient's two
    forms, and the faster (Eigen's, "explicit", in the fake times) is built;
    an inference-only layer never measures it."""
    monkeypatch.setattr(conv2d_transpose_module, "cpu_kernel_library", lambda: "oneDNN")
    with tf.device("/CPU:0"):  # oneDNN is a CPU library: on a GPU machine too
        _layer()(tf.zeros((2, 4, 4, 8)))
        assert [sorted(candidates) for candidates, _ in measuring] == [["native", "rows", "split", "unified"]]
        ops = _train_step_ops(_layer(), tf.zeros((2, 4, 4, 8)))
    assert [sorted(candidates) for candidates, _ in measuring][1:] == [["explicit", "native"]]
    [filter_grad] = [op for op in ops if op.type == "Conv2DBackpropFilter"]
    assert filter_grad.get_attr("padding") == b"EXPLICIT"
    gradient_choice = keras_tconv.tuning_choices()[-1]
    assert gradient_choice.key.endswith("kernel-gradient") and gradient_choice.implementation == "explicit"


@pytest.mark.parametrize("library", ["Eigen", "oneDNN"])
def test_kernel_gradient_keeps_tensorflows_form_where_there_is_no_choice(measuring, monkeypatch, library):
    """Under Eigen both forms run one kernel: nothing is measured and the
    gradient keeps TensorFlow's "SAME"; with tuning off, likewise."""
    monkeypatch.setattr(conv2d_transpose_module, "cpu_kernel_library", lambda: library)
    if library == "oneDNN":
        monkeypatch.setenv("KERAS_TCONV_TUNING", "off")
    ops = _train_step_ops(_layer(), tf.zeros((2, 4, 4, 8)))
    assert not any(sorted(candidates) == ["explicit", "native"] for candidates, _ in measuring)
    [filter_grad] = [op for op in ops if op.type == "Conv2DBackpropFilter"]
    assert filter_grad.get_attr("padding") == b"SAME"


def test_slow_layers_measure_the_most_promising_candidates_first(monkeypatch):
    """Warm-up stops once half the budget is spent (at least two candidates
    warmed), keeping TensorFlow's kernel and the first ones given; a run
    slower than a quarter of the budget is its candidate's sample, so a slow
    layer costs one run per candidate. A fake clock stands in for the runs."""
    clock = [0.0]
    monkeypatch.setattr(tuning.time, "perf_counter", lambda: clock[0])
    runs = []

    def factory(impl, seconds):
        def run(batch):
            runs.append(impl)
            clock[0] += seconds

        return lambda: run

    slow = {"native": 0.5, "split": 0.2, "rows": 0.2, "unified": 0.2}
    medians, _ = tuning._measure({impl: factory(impl, t) for impl, t in slow.items()}, (16,), budget_s=0.6)
    assert medians == {"native": {16: pytest.approx(0.5)}, "split": {16: pytest.approx(0.2)}}
    assert runs == ["native", "split"]
    runs.clear()
    fast = {impl: factory(impl, 0.01) for impl in slow}
    medians, _ = tuning._measure(fast, (16, 1), budget_s=0.6)
    assert list(medians) == list(slow) and len(runs) > 2 * 4 * 2  # warm-up, then rounds until the budget


def test_measured_choices_compute_keras_numbers(monkeypatch, tmp_path):
    """End to end with real timing (no assertion on it): forward and kernel
    gradient measured (the gradient's forms as under oneDNN), then the step
    gives Keras's layer's output and gradients."""
    import keras
    import numpy as np

    monkeypatch.setenv("KERAS_TCONV_TUNING", "on")
    monkeypatch.setenv("KERAS_TCONV_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tuning, "BUDGET_S", 0.05)
    monkeypatch.setattr(conv2d_transpose_module, "cpu_kernel_library", lambda: "oneDNN")
    tuning.clear_memory()
    with tf.device("/CPU:0"):  # oneDNN is a CPU library: on a GPU machine too
        x = tf.random.normal((2, 5, 6, 3))
        layers = [
            SegregatedConv2DTranspose(4, 3, strides=2, padding="same"),
            keras.layers.Conv2DTranspose(4, 3, 2, "same"),
        ]
        for layer in layers:
            layer.build(x.shape)
        layers[1].set_weights(layers[0].get_weights())
        results = []
        for layer in layers:
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x)
                loss = tf.reduce_sum(y * tf.cos(y))
            results.append([y, *tape.gradient(loss, [x, *layer.trainable_variables])])
    sources = {c.key.endswith("kernel-gradient"): c.source for c in keras_tconv.tuning_choices()}
    assert sources == {False: "measured", True: "measured"}
    for got, want in zip(*results):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    tuning.clear_memory()
