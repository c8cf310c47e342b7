"""Exported models need no keras_tconv, and TFLite gets convolutions, not TRANSPOSE_CONV.

* SavedModel: ``model.export(path)``; a separate Python process that imports
  only TensorFlow (keras_tconv is made unimportable there,
  :mod:`tests.helpers.serving`) loads it with ``tf.saved_model.load`` and
  serves batches of 1 and 3 through ``signatures["serving_default"]``,
  matching the in-process outputs.
* TFLite: the model exported under ``lowering_target("litert")`` (dynamic
  batch), and a batch-1 export per segregated lowering, is
  converted with ``tf.lite.TFLiteConverter.from_saved_model``; its ops, read
  from every subgraph of the flatbuffer (``IF`` branches included), must
  contain no TRANSPOSE_CONV and only ops from ``ALLOWED_OPS`` (what the lowerings produce: convolutions,
  depth_to_space interleaves, pads, reshapes/transposes, slices, and the
  shape arithmetic a dynamic batch needs), and its outputs match Keras's.
  The same architecture built with keras.layers.Conv2DTranspose does produce
  TRANSPOSE_CONV, so the op check can fail. A layer for which ``auto`` runs
  TensorFlow's own kernel converts without TRANSPOSE_CONV under
  ``keras_tconv.lowering_target("litert")``.
"""

from __future__ import annotations

import types

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

import keras_tconv
from keras_tconv import SegregatedConv2DTranspose
from keras_tconv.benchmark.tflite import model_ops, subgraph_ops
from keras_tconv.ops.choosing import rules as auto
from tests.helpers.serving import serve_without_the_project

INPUT_SHAPE = (6, 5, 3)

# Observed with TF 2.21 for the model below (auto, split and unified lowerings; batch 1 and dynamic
# batch). SHAPE/PACK/UNPACK/MUL/STRIDED_SLICE carry the dynamic batch size into reshapes;
# FULLY_CONNECTED is what the converter makes of a 1x1 (per-phase) convolution at batch 1.
ALLOWED_OPS = {
    "CONV_2D",
    "DEPTH_TO_SPACE",
    "PAD",
    "CONCATENATION",
    "RESHAPE",
    "TRANSPOSE",
    "STRIDED_SLICE",
    "SLICE",
    "ADD",
    "RELU",
    "FULLY_CONNECTED",
    "SHAPE",
    "PACK",
    "UNPACK",
    "MUL",
}


def _build(layer_cls, **extra):
    inputs = keras.Input(shape=INPUT_SHAPE, name="image")
    h = layer_cls(
        4, 3, strides=2, padding="same", activation="relu", bias_initializer="random_normal", **extra
    )(inputs)
    h = layer_cls(
        3, (2, 3), strides=(2, 1), output_padding=(1, 0), bias_initializer="random_normal", **extra
    )(h)
    h = layer_cls(2, 3, strides=3, padding="same", **extra)(h)
    h = layer_cls(2, 4, strides=2, padding="same", bias_initializer="random_normal", **extra)(h)
    return keras.Model(inputs, h)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The model (auto lowering), its inputs and outputs at batch 1 and 3, and its SavedModel."""
    keras.utils.set_random_seed(1)
    root = tmp_path_factory.mktemp("export")
    model = _build(SegregatedConv2DTranspose)
    rng = np.random.default_rng(1)
    data = {}
    for batch in (1, 3):
        x = rng.standard_normal((batch, *INPUT_SHAPE)).astype("float32")
        data[batch] = (x, np.asarray(model(x)))
    model.export(str(root / "saved_model"), verbose=False)
    return types.SimpleNamespace(model=model, path=str(root / "saved_model"), data=data)


@pytest.mark.slow
def test_saved_model_serves_in_plain_tensorflow_process(exported, tmp_path):
    batches = [x for x, _ in exported.data.values()]
    (served,) = serve_without_the_project([(exported.path, batches)], tmp_path)
    assert (served.input_name, served.input_shape) == ("image", [None, *INPUT_SHAPE])
    for output, (_, expected) in zip(served.outputs, exported.data.values(), strict=True):
        assert output.shape == expected.shape
        np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-5)
        with pytest.raises(AssertionError):  # the comparison can fail: perturbed expectations are rejected
            np.testing.assert_allclose(output, expected + 1e-3, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- TFLite


def _tflite(saved_model_path):
    return tf.lite.TFLiteConverter.from_saved_model(saved_model_path).convert()


def _run_tflite(flatbuffer, x):
    interpreter = Interpreter(model_content=flatbuffer)
    (inp,) = interpreter.get_input_details()
    if tuple(inp["shape"]) != x.shape:
        interpreter.resize_tensor_input(inp["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    (out,) = interpreter.get_output_details()
    return interpreter.get_tensor(out["index"])


def _check_ops(ops):
    assert "TRANSPOSE_CONV" not in ops
    assert "CONV_2D" in ops or "FULLY_CONNECTED" in ops
    unexpected = set(ops) - ALLOWED_OPS
    assert not unexpected, f"unexpected TFLite ops {sorted(unexpected)}; all ops: {sorted(set(ops))}"


def test_tflite_dynamic_batch(exported, tmp_path):
    """The dynamic-batch model, exported under the LiteRT target: no TRANSPOSE_CONV
    whatever ``auto`` chose for TensorFlow's runtime."""
    with keras_tconv.lowering_target("litert"):
        exported.model.export(str(tmp_path / "litert"), verbose=False)
    flatbuffer = _tflite(str(tmp_path / "litert"))
    ops = model_ops(flatbuffer)
    print("TFLite ops (dynamic batch):", sorted(set(ops)))
    _check_ops(ops)
    for _batch, (x, y) in exported.data.items():
        np.testing.assert_allclose(_run_tflite(flatbuffer, x), y, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "implementation", ["split", "rows", "unified"]
)  # "auto" mixes them; dynamic test uses it
def test_tflite_batch_one(exported, implementation, tmp_path):
    model = _build(SegregatedConv2DTranspose, implementation=implementation)
    model.set_weights(exported.model.get_weights())
    path = str(tmp_path / "b1")
    model.export(
        path, verbose=False, input_signature=[tf.TensorSpec((1, *INPUT_SHAPE), tf.float32, name="image")]
    )
    flatbuffer = _tflite(path)
    ops = model_ops(flatbuffer)
    print(f"TFLite ops (batch 1, {implementation}):", sorted(set(ops)))
    _check_ops(ops)
    assert "SHAPE" not in ops  # a static batch needs no shape arithmetic
    x, y = exported.data[1]
    np.testing.assert_allclose(_run_tflite(flatbuffer, x), y, rtol=1e-4, atol=1e-4)


def test_litert_target_keeps_auto_off_tensorflows_kernel(tmp_path, monkeypatch):
    """A 64 -> 1 layer, where ``auto`` runs TensorFlow's own kernel in TensorFlow
    (a static rule that picks it everywhere, whatever the fitted rule of this
    kernel library says), converts without TRANSPOSE_CONV when exported under
    ``lowering_target("litert")``."""
    picks = dict.fromkeys(("exact_wide_pick", "exact_narrow_pick", "many_taps_pick", "rest_pick"), "native")
    rule = auto.StaticRule(min_channels=16, wide_channels=256, min_work=0, **picks)
    monkeypatch.setitem(auto.RULES, auto.cpu_kernel_library(), rule)
    model = keras.Sequential(
        [keras.Input((5, 4, 64)), SegregatedConv2DTranspose(1, 5, strides=2, padding="same")]
    )
    x = np.random.default_rng(2).standard_normal((1, 5, 4, 64)).astype("float32")
    y = np.asarray(model(x))
    signature = [tf.TensorSpec((1, 5, 4, 64), tf.float32)]
    model.export(str(tmp_path / "default"), verbose=False, input_signature=signature)
    assert "TRANSPOSE_CONV" in model_ops(_tflite(str(tmp_path / "default")))
    with keras_tconv.lowering_target("litert"):
        model.export(str(tmp_path / "litert"), verbose=False, input_signature=signature)
    flatbuffer = _tflite(str(tmp_path / "litert"))
    _check_ops(model_ops(flatbuffer))
    np.testing.assert_allclose(_run_tflite(flatbuffer, x), y, rtol=1e-4, atol=1e-4)


def test_plain_conversion_has_no_control_flow(tmp_path):
    """Without the LiteRT target, a wide layer with a dynamic batch converts
    without IF or WHILE in any subgraph (``auto`` decides while tracing, never
    by a runtime branch), with builtin ops only and Keras's numbers at any batch."""
    model = keras.Sequential(
        [keras.Input((4, 4, 64)), SegregatedConv2DTranspose(32, 4, strides=2, padding="same")]
    )
    model.export(str(tmp_path / "dynamic"), verbose=False)
    flatbuffer = _tflite(str(tmp_path / "dynamic"))
    assert len(subgraph_ops(flatbuffer)) == 1
    assert {"IF", "WHILE"}.isdisjoint(model_ops(flatbuffer))
    for batch in (1, 80):
        x = np.random.default_rng(batch).standard_normal((batch, 4, 4, 64)).astype("float32")
        np.testing.assert_allclose(_run_tflite(flatbuffer, x), np.asarray(model(x)), rtol=1e-4, atol=1e-4)


def test_op_listing_reads_every_subgraph():
    """An IF's branches are subgraphs of their own, which the interpreter's op
    listing does not show: the op check reads them from the flatbuffer."""
    layer = keras.layers.Conv2DTranspose(8, 4, strides=2, padding="same")
    layer.build((None, 4, 4, 16))

    @tf.function(input_signature=[tf.TensorSpec((None, 4, 4, 16), tf.float32)])
    def branching(x):
        return tf.cond(tf.shape(x)[0] > 1, lambda: layer(x), lambda: tf.zeros_like(layer(x)) + 1.0)

    flatbuffer = tf.lite.TFLiteConverter.from_concrete_functions(
        [branching.get_concrete_function()], layer
    ).convert()
    main, *branches = subgraph_ops(flatbuffer)
    assert "IF" in main and "TRANSPOSE_CONV" not in main
    assert any("TRANSPOSE_CONV" in ops for ops in branches)
    assert "TRANSPOSE_CONV" not in [
        op["op_name"] for op in Interpreter(model_content=flatbuffer)._get_ops_details()
    ]
    assert model_ops(flatbuffer) == tuple(op for ops in (main, *branches) for op in ops)


def test_keras_conv2d_transpose_does_produce_transpose_conv(exported, tmp_path):
    """The op check can fail: the same model with Keras's layer lowers to TRANSPOSE_CONV."""
    model = _build(keras.layers.Conv2DTranspose)
    model.set_weights(exported.model.get_weights())
    x, y = exported.data[1]
    np.testing.assert_allclose(np.asarray(model(x)), y, rtol=1e-5, atol=1e-5)
    path = str(tmp_path / "keras_b1")
    model.export(
        path, verbose=False, input_signature=[tf.TensorSpec((1, *INPUT_SHAPE), tf.float32, name="image")]
    )
    flatbuffer = _tflite(path)
    ops = model_ops(flatbuffer)
    assert ops.count("TRANSPOSE_CONV") == 4
    with pytest.raises(AssertionError):
        _check_ops(ops)
    np.testing.assert_allclose(_run_tflite(flatbuffer, x), y, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("target", ["litert", "litert_int8"])
def test_full_integer_conversion_under_litert_targets(tmp_path, target):
    """Full-integer (int8) conversion with a representative dataset works under
    both LiteRT targets: every tensor between the model's QUANTIZE and
    DEQUANTIZE int8, outputs within int8 error of the float model (a few steps
    of its output range). Under "litert" no TRANSPOSE_CONV is left in any
    subgraph; "litert_int8" keeps it for the k=3 layer, whose int8
    TRANSPOSE_CONV is faster, and not for the k=4 one."""
    model = keras.Sequential(
        [
            keras.Input((6, 5, 8), batch_size=1),
            SegregatedConv2DTranspose(8, 3, strides=2, padding="same", activation="relu"),
            SegregatedConv2DTranspose(3, 4, strides=2, padding="same"),
        ]
    )
    rng = np.random.default_rng(0)
    calibration = rng.standard_normal((32, 1, 6, 5, 8)).astype("float32")
    with keras_tconv.lowering_target(target):
        model.export(str(tmp_path / "int8"), verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "int8"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([sample] for sample in calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    flatbuffer = converter.convert()
    ops = model_ops(flatbuffer)
    assert ops.count("TRANSPOSE_CONV") == (0 if target == "litert" else 1)
    assert ops[0] == "QUANTIZE" and ops[-1] == "DEQUANTIZE"
    interpreter = Interpreter(model_content=flatbuffer)
    inner = [t for t in interpreter.get_tensor_details() if t["dtype"] not in (np.float32,)]
    assert inner and all(t["dtype"] in (np.int8, np.int32) for t in inner)  # int32: biases
    for x in calibration[:4]:
        want = np.asarray(model(x))
        step = (want.max() - want.min()) / 255
        np.testing.assert_allclose(_run_tflite(flatbuffer, x), want, atol=6 * step)
