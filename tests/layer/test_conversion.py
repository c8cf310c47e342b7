"""Sequential and Functional models: convert_model swaps their Conv2DTranspose layers
both ways, nothing else."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_tconv import SegregatedConv2DTranspose, convert_model
from tests.helpers.models import BUILDERS, INPUT_SHAPE, layers_in, nested, sequential

KerasCT = keras.layers.Conv2DTranspose


def _randomize(model, rng):
    """Nonzero, distinct weights everywhere (incl. BatchNormalization statistics)."""
    model.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(w.dtype) for w in model.get_weights()])


def _config_without_implementation(layer):
    return {k: v for k, v in layer.get_config().items() if k != "implementation"}


@pytest.fixture
def x(rng):
    return rng.standard_normal((2, *INPUT_SHAPE)).astype("float32")


@pytest.mark.parametrize("kind", list(BUILDERS))
@pytest.mark.parametrize(
    "direction, implementation",
    [
        ("to_segregated", "auto"),
        ("to_segregated", "split"),
        ("to_segregated", "unified"),
        ("to_keras", "auto"),
    ],
)
def test_convert(kind, direction, implementation, x, rng):
    source_cls, target_cls, to = KerasCT, SegregatedConv2DTranspose, "segregated"
    if direction == "to_keras":
        source_cls, target_cls, to = SegregatedConv2DTranspose, KerasCT, "keras"
    original = BUILDERS[kind](source_cls)
    _randomize(original, rng)
    weights_before = [w.copy() for w in original.get_weights()]
    types_before = [type(layer) for layer in layers_in(original)]
    configs_before = [layer.get_config() for layer in layers_in(original)]
    expected = np.asarray(original(x, training=False))

    converted = convert_model(original, to=to, implementation=implementation)

    assert converted is not original
    assert type(converted) is type(original)
    assert converted.name == original.name
    assert [t.name for t in converted.inputs] == [t.name for t in original.inputs] == ["image"]
    pairs = list(zip(layers_in(original), layers_in(converted), strict=True))
    swapped = 0
    for old, new in pairs:
        assert new is not old
        if type(old) is source_cls:
            assert type(new) is target_cls
            assert _config_without_implementation(new) == _config_without_implementation(old)
            if to == "segregated":
                assert new.implementation == implementation
            else:
                assert "implementation" not in new.get_config()
            swapped += 1
        else:
            assert type(new) is type(old)
            if not isinstance(old, keras.Model):
                assert new.get_config() == old.get_config()
        assert [v.name for v in new.weights] == [v.name for v in old.weights]
        for a, b in zip(old.get_weights(), new.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    assert swapped == sum(t is source_cls for t in types_before) >= 2
    assert not any(type(layer) is source_cls for layer in layers_in(converted))

    np.testing.assert_allclose(np.asarray(converted(x, training=False)), expected, rtol=1e-5, atol=1e-5)

    # The original is untouched ...
    assert [type(layer) for layer in layers_in(original)] == types_before
    assert [layer.get_config() for layer in layers_in(original)] == configs_before
    for a, b in zip(original.get_weights(), weights_before, strict=True):
        np.testing.assert_array_equal(a, b)
    # ... and shares no variables with the copy.
    converted.set_weights([w + 1 for w in converted.get_weights()])
    for a, b in zip(original.get_weights(), weights_before, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.asarray(original(x, training=False)), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_round_trip_restores_keras_configs(kind, x, rng):
    original = BUILDERS[kind](KerasCT)
    _randomize(original, rng)
    back = convert_model(convert_model(original, to="segregated", implementation="split"), to="keras")
    for old, new in zip(layers_in(original), layers_in(back), strict=True):
        assert type(new) is type(old)
        if not isinstance(old, keras.Model):
            assert new.get_config() == old.get_config()
    np.testing.assert_allclose(
        np.asarray(back(x, training=False)), np.asarray(original(x, training=False)), rtol=1e-5, atol=1e-5
    )


def test_segregated_to_segregated_changes_implementation(x, rng):
    original = sequential(SegregatedConv2DTranspose)
    _randomize(original, rng)
    converted = convert_model(original, to="segregated", implementation="zero_insertion")
    layers = [layer for layer in layers_in(converted) if isinstance(layer, KerasCT)]
    assert [layer.implementation for layer in layers] == ["zero_insertion"] * 2
    assert [layer.implementation for layer in layers_in(original) if isinstance(layer, KerasCT)] == [
        "auto"
    ] * 2
    np.testing.assert_allclose(
        np.asarray(converted(x, training=False)),
        np.asarray(original(x, training=False)),
        rtol=1e-5,
        atol=1e-5,
    )


def test_converted_model_trains_and_saves(tmp_path, x, rng):
    converted = convert_model(nested(KerasCT), to="segregated")
    converted.compile(optimizer="sgd", loss="mse")
    y = np.asarray(converted(x))
    converted.fit(x, y + 1, epochs=1, verbose=0)
    path = tmp_path / "converted.keras"
    converted.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert sum(type(layer) is SegregatedConv2DTranspose for layer in layers_in(loaded)) == 2
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(converted(x)))


def test_copy_keeps_compile_and_optimizer_state(x, rng):
    original = nested(KerasCT)
    original.compile(optimizer="adam", loss="mse")
    original.fit(x, rng.standard_normal(original(x).shape), epochs=1, verbose=0)
    converted = convert_model(original)
    assert converted.compiled and converted.loss == "mse"
    assert int(converted.optimizer.iterations) == 1
    for a, b in zip(original.optimizer.variables, converted.optimizer.variables, strict=True):
        np.testing.assert_array_equal(a, b)
    converted.fit(x, np.asarray(converted(x)), epochs=1, verbose=0)


def test_bad_target_is_rejected():
    with pytest.raises(ValueError, match="`to`"):
        convert_model(sequential(KerasCT), to="tflite")


def test_bad_implementation_is_rejected():
    with pytest.raises(ValueError, match="`implementation`"):
        convert_model(sequential(KerasCT), implementation="fast")


def test_unbuilt_model_is_rejected():
    model = keras.Sequential([KerasCT(2, 3)])
    with pytest.raises(ValueError, match="built"):
        convert_model(model)
