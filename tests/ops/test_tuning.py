"""The measured ``auto``: margin rule, cache, switches and fallbacks
(keras_tconv/ops/tuning.py). No timing assertions: measurements are replaced
by fixed numbers wherever a decision is checked."""

from __future__ import annotations

import json
import logging

import pytest
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

import keras_tconv
from keras_tconv import SegregatedConv2DTranspose, lowering_target
from keras_tconv.ops import tuning
from keras_tconv.ops.auto import choose_implementation
from keras_tconv.ops.conv2d_transpose import plan_axes


@pytest.fixture
def measuring(monkeypatch, tmp_path):
    """Tuning on, a fresh cache directory and process memory, and a fake
    measurement returning ``times`` (ms) with no spread; yields the list of
    measured candidate sets."""
    monkeypatch.setenv("KERAS_TCONV_TUNING", "on")
    monkeypatch.setenv("KERAS_TCONV_CACHE_DIR", str(tmp_path))
    tuning.clear_memory()
    calls = []
    times = {"native": 10.0, "split": 9.0, "rows": 7.0, "unified": 8.0}

    def fake_measure(runners, batches):
        calls.append((sorted(runners), batches))
        for run in runners.values():  # the runners work: each runs its lowering once
            run(batches[0])
        medians = {impl: {b: times[impl] for b in batches} for impl in runners}
        return medians, {impl: {b: 0.0 for b in batches} for impl in runners}

    monkeypatch.setattr(tuning, "_measure", fake_measure)
    yield calls
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
    assert choice.implementation == "rows" and choice.source == "measured" and "8->8 in 2x4x4 float32" in choice.key

    [path] = tmp_path.glob("*.json")
    assert tuning.cpu_kernel_library() in path.name and tf.__version__ in path.name
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
    static = choose_implementation(layer.kernel.shape, *plan_axes(layer.kernel.shape, 2, "same", None), 2, 4, 4)
    assert layer.chosen_implementation == static


def test_no_timing_for_unknown_spatial_size_litert_or_xla(measuring):
    layer = _layer((None, None, None, 8))
    tf.function(layer.call, input_signature=[tf.TensorSpec((2, None, None, 8))]).get_concrete_function()
    with lowering_target("litert"):
        _layer()(tf.zeros((2, 4, 4, 8)))
    tf.function(_layer().call, jit_compile=True)(tf.zeros((2, 4, 4, 8)))
    assert not measuring


def test_corrupt_cache_file_is_ignored(measuring, tmp_path):
    path = tuning.cache_path(tuning.device_name())
    path.write_text("{not json")
    _layer()(tf.zeros((2, 4, 4, 8)))
    assert len(measuring) == 1 and json.loads(path.read_text())


def test_huge_outputs_are_measured_at_a_smaller_batch(measuring, monkeypatch):
    """The measured batch shrinks until one output fits MAX_MEASURED_OUTPUT (8x8x8 values per example here)."""
    monkeypatch.setattr(tuning, "MAX_MEASURED_OUTPUT", 2 * 8 * 8 * 8)
    _layer((6, 4, 4, 8))(tf.zeros((6, 4, 4, 8)))
    assert measuring[0][1] == (2,)
    assert "in 6x4x4" in keras_tconv.tuning_choices()[0].key  # the key keeps the layer's own batch
