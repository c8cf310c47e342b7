"""The measured ``auto`` on the JAX backend: what it measures and when, its
cache, its switches, and the gradient's own choice. Measurements are
replaced by fixed numbers wherever a decision is checked."""

from __future__ import annotations

import json
import logging

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest

import keras_tconv
from keras_tconv import SegregatedConv2DTranspose
from keras_tconv.ops.choosing import tuning
from keras_tconv.ops.choosing.rules import jax_rule, xla_gradient_rule
from keras_tconv.ops.phases import plan_axes
from tests.fake_tuning import fake_measurement

TIMES_MS = {"native": 10.0, "split": 9.0, "rows": 7.0, "unified": 8.0}


@pytest.fixture
def measuring(monkeypatch, tmp_path):
    """Tuning on, a fresh cache and memory, and a fake measurement returning
    :data:`TIMES_MS`; yields the measured candidate lists with their batches."""
    yield fake_measurement(monkeypatch, tmp_path, TIMES_MS)
    tuning.clear_memory()


def _layer(input_shape=(2, 4, 4, 8)):
    layer = SegregatedConv2DTranspose(8, 4, strides=2, padding="same")
    layer.build(input_shape)
    return layer


def _step(layer):
    def loss(variables, x):
        y, _ = layer.stateless_call(variables, [], x)
        return jnp.sum(y * y)

    return jax.jit(jax.grad(loss, argnums=(0, 1)))


def test_forward_measured_once_cached_on_disk_and_logged_once(measuring, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="keras_tconv"):
        layer = _layer()
        layer(np.zeros((2, 4, 4, 8), "float32"))
        _layer()(np.zeros((2, 4, 4, 8), "float32"))
    assert [names for names, _ in measuring] == [["native", "unified", "split", "rows"]]
    assert measuring[0][1] == (2,)
    assert layer.chosen_implementation == "rows"
    assert sum("keras_tconv auto:" in r.message for r in caplog.records) == 1
    [choice] = keras_tconv.tuning_choices()
    assert choice.source == "measured" and "8->8 in 2x4x4 float32" in choice.key
    [path] = tmp_path.glob("*.json")
    assert "jax" in path.name and jax.__version__ in path.name
    assert json.loads(path.read_text())[choice.key]["implementation"] == "rows"

    tuning.clear_memory()  # a new process: the cache answers
    layer = _layer()
    layer(np.zeros((2, 4, 4, 8), "float32"))
    assert layer.chosen_implementation == "rows" and len(measuring) == 1
    assert keras_tconv.tuning_choices()[0].source == "cache"


def test_gradient_is_measured_only_when_differentiated_against_the_static_pick(measuring):
    layer = _layer()
    variables = [v.value for v in layer.trainable_variables]
    _step(layer)(variables, jnp.ones((2, 4, 4, 8)))
    forward, gradient = keras_tconv.tuning_choices()
    assert gradient.key == f"{forward.key} gradient"
    # The gradient rule's segregated pick is the margin's baseline, Keras's own gradient (native) next.
    static = xla_gradient_rule(*plan_axes(layer.kernel.shape, 2, "same", None))
    assert measuring[1][0][:2] == [static, "native"] and len(measuring[1][0]) == 4
    assert gradient.implementation == "rows"


def test_unknown_batch_and_symbolic_shapes(measuring):
    """Keras's symbolic shape inference is not measured; an unknown batch in
    a model is met with concrete batches when the model runs."""
    model = keras.Sequential(
        [keras.Input((4, 4, 8)), SegregatedConv2DTranspose(8, 4, strides=2, padding="same")]
    )
    assert not measuring
    model.predict(np.zeros((3, 4, 4, 8), "float32"), verbose=0)
    assert [batches for _, batches in measuring] == [(3,)]


@pytest.mark.parametrize("switch", ["environment", "determinism"])
def test_switches_turn_timing_off(measuring, monkeypatch, switch):
    if switch == "environment":
        monkeypatch.setenv("KERAS_TCONV_TUNING", "off")
    else:
        monkeypatch.setenv("XLA_FLAGS", "--xla_gpu_deterministic_ops=true")
    layer = _layer()
    _step(layer)([v.value for v in layer.trainable_variables], jnp.ones((2, 4, 4, 8)))
    assert not measuring
    static = jax_rule(*plan_axes(layer.kernel.shape, 2, "same", None))
    assert {c.source for c in keras_tconv.tuning_choices()} == {"static rule"}
    assert layer.chosen_implementation == static


def test_measured_choices_compute_keras_numbers(monkeypatch, tmp_path):
    """End to end with real timing (no assertion on it): forward and gradient
    measured, then the step gives Keras's layer's output and gradients."""
    monkeypatch.setenv("KERAS_TCONV_TUNING", "on")
    monkeypatch.setenv("KERAS_TCONV_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tuning, "BUDGET_S", 0.05)
    tuning.clear_memory()
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 5, 6, 3)), jnp.float32)
    layers = [
        SegregatedConv2DTranspose(4, 3, strides=2, padding="same"),
        keras.layers.Conv2DTranspose(4, 3, 2, "same"),
    ]
    for layer in layers:
        layer.build(x.shape)
    layers[1].set_weights(layers[0].get_weights())
    results = []
    for layer in layers:

        def loss(variables, x, layer=layer):
            y, _ = layer.stateless_call(variables, [], x)
            return jnp.sum(y * jnp.cos(y)), y

        results.append(
            jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
                [v.value for v in layer.trainable_variables], x
            )
        )
    assert [c.source for c in keras_tconv.tuning_choices()] == ["measured", "measured"]
    for got, want in zip(jax.tree_util.tree_leaves(results[0]), jax.tree_util.tree_leaves(results[1])):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    tuning.clear_memory()


def test_cache_key_names_jax_default_device():
    """The key names the device JAX computes on: ``jax_default_device`` where set."""
    from keras_tconv.ops.jax import tuning as jax_tuning

    cpu = jax.devices("cpu")[0]
    for device in (cpu, "cpu"):
        with jax.default_device(device):
            assert jax_tuning.default_device() == cpu
            assert jax_tuning.device_name().startswith("CPU ")
