"""The layer on Keras's JAX backend as model authors use it: ``fit``,
``predict``, ``jax.jit``, unknown batch sizes, ``channels_first``,
conversion, saving across backends, and no TensorFlow import."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest

import keras_tconv
from keras_tconv import SegregatedConv2DTranspose, convert_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _decoder(layer_class, data_format="channels_last", **kwargs):
    """A small decoder with two transposed convolutions and an unknown batch."""
    shape = (6, 5, 3) if data_format == "channels_last" else (3, 6, 5)
    return keras.Sequential(
        [
            keras.Input(shape),
            layer_class(
                8, 3, strides=2, padding="same", activation="relu", data_format=data_format, **kwargs
            ),
            layer_class(
                2,
                (4, 5),
                strides=(2, 3),
                padding="valid",
                output_padding=(1, 2),
                data_format=data_format,
                **kwargs,
            ),
        ]
    )


def _pair(data_format="channels_last"):
    keras.utils.set_random_seed(1)
    ours = _decoder(SegregatedConv2DTranspose, data_format)
    theirs = _decoder(keras.layers.Conv2DTranspose, data_format)
    theirs.set_weights(ours.get_weights())
    return ours, theirs


def _data(model, n=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *model.input_shape[1:])).astype("float32")
    y = rng.standard_normal((n, *model.output_shape[1:])).astype("float32")
    return x, y


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_fit_and_predict_match_keras(data_format):
    ours, theirs = _pair(data_format)
    x, y = _data(ours)
    for batch in (5, 12):  # an unknown batch: two sizes, one with a partial last batch
        np.testing.assert_allclose(
            ours.predict(x, batch_size=batch, verbose=0),
            theirs.predict(x, batch_size=batch, verbose=0),
            rtol=1e-5,
            atol=1e-5,
        )
    histories = []
    for model in (ours, theirs):
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
        histories.append(model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history["loss"])
    np.testing.assert_allclose(*histories, rtol=1e-5)
    for got, want in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_jit_and_grad_match_keras():
    ours, theirs = _pair()
    x, y = _data(ours, n=3)

    def loss(model):
        def value(variables, x):
            out, _ = model.stateless_call(variables, [], x)
            return jnp.mean((out - y) ** 2)

        return jax.jit(jax.value_and_grad(value, argnums=(0, 1)))

    results = [loss(model)([v.value for v in model.trainable_variables], x) for model in (ours, theirs)]
    for got, want in zip(jax.tree_util.tree_leaves(results[0]), jax.tree_util.tree_leaves(results[1])):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_layer_returns_jax_arrays_and_reports_its_choice():
    layer = SegregatedConv2DTranspose(4, 3, strides=2, padding="same")
    y = layer(np.zeros((2, 5, 5, 3), "float32"))
    assert isinstance(y, jax.Array) and y.shape == (2, 10, 10, 4)
    assert layer.chosen_implementation in keras_tconv.ops.IMPLEMENTATIONS


def test_convert_model_on_jax():
    keras.utils.set_random_seed(2)
    original = _decoder(keras.layers.Conv2DTranspose)
    x, _ = _data(original, n=2)
    fast, report = convert_model(original, return_report=True)
    assert len(report.converted) == 2
    assert all(isinstance(layer, SegregatedConv2DTranspose) for layer in fast.layers)
    np.testing.assert_allclose(
        fast.predict(x, verbose=0), original.predict(x, verbose=0), rtol=1e-5, atol=1e-5
    )


def _run_tensorflow(script: str, cwd) -> None:
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}
    subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=cwd, env=env, check=True, timeout=300)


def test_saved_files_move_between_backends(tmp_path):
    """A ``.keras`` file and a ``.weights.h5`` saved under TensorFlow load
    here with equal outputs, and ours saved here load under TensorFlow."""
    ours, _ = _pair()
    x, _ = _data(ours, n=2)
    np.save(tmp_path / "x.npy", x)
    ours.save(tmp_path / "jax.keras")
    ours.save_weights(tmp_path / "jax.weights.h5")
    np.save(tmp_path / "jax_out.npy", ours.predict(x, verbose=0))
    _run_tensorflow(
        """
        import keras, numpy as np
        import keras_tconv
        from tests.jax.test_layer_jax import _decoder
        x, want = np.load("x.npy"), np.load("jax_out.npy")
        loaded = keras.saving.load_model("jax.keras")
        np.testing.assert_allclose(loaded.predict(x, verbose=0), want, rtol=1e-5, atol=1e-5)
        fresh = _decoder(keras_tconv.SegregatedConv2DTranspose)
        fresh.load_weights("jax.weights.h5")
        np.testing.assert_allclose(fresh.predict(x, verbose=0), want, rtol=1e-5, atol=1e-5)
        keras.utils.set_random_seed(3)
        model = _decoder(keras_tconv.SegregatedConv2DTranspose)
        model.save("tf.keras")
        model.save_weights("tf.weights.h5")
        np.save("tf_out.npy", model.predict(x, verbose=0))
    """,
        tmp_path,
    )
    want = np.load(tmp_path / "tf_out.npy")
    loaded = keras.saving.load_model(tmp_path / "tf.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), want, rtol=1e-5, atol=1e-5)
    fresh = _decoder(SegregatedConv2DTranspose)
    fresh.load_weights(tmp_path / "tf.weights.h5")
    np.testing.assert_allclose(fresh.predict(x, verbose=0), want, rtol=1e-5, atol=1e-5)


def test_import_and_training_do_not_load_tensorflow():
    script = """
        import sys, json
        import numpy as np, keras, keras_tconv
        model = keras.Sequential(
            [keras.Input((4, 4, 3)), keras_tconv.SegregatedConv2DTranspose(2, 3, strides=2)]
        )
        model.compile("sgd", "mse")
        model.fit(np.zeros((4, 4, 4, 3)), np.zeros((4, 9, 9, 2)), verbose=0)
        print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "tf_keras"})))
    """
    env = {**os.environ, "KERAS_BACKEND": "jax", "KERAS_TCONV_TUNING": "on"}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_other_backends_run_keras_computation_and_say_so_once(monkeypatch, caplog):
    """On a backend without segregation (PyTorch, OpenVINO) the layer runs
    Keras's own ``Conv2DTranspose`` computation and logs that once."""
    from keras_tconv import layers as layers_module

    monkeypatch.setattr(layers_module, "SEGREGATING_BACKENDS", ())
    monkeypatch.setattr(layers_module, "_said_unsegregated", set())
    ours, theirs = _pair()
    x, _ = _data(ours, n=2)
    with caplog.at_level(logging.WARNING, logger="keras_tconv"):
        got = [ours(x), ours(x)]
    assert (
        sum("kernel segregation runs on the TensorFlow and JAX backends" in r.message for r in caplog.records)
        == 1
    )
    for y in got:
        np.testing.assert_array_equal(y, theirs(x))
    assert ours.layers[0].chosen_implementation == "native"
