"""Keras's own 2-D Conv2DTranspose tests, run with SegregatedConv2DTranspose standing in.

How: Keras ships ``keras/src/layers/convolutional/conv_transpose_test.py``
(located through ``keras.src.layers.convolutional.__file__``, so it is the
file of the Keras version installed). It is loaded here as a *fresh* module
(its own name, never the one Keras's test suite would use):

* while it executes, ``keras.src.layers.Conv2DTranspose`` is patched to
  :class:`SegregatedConv2DTranspose`, because ``@parameterized.parameters``
  decorators evaluate ``layers.Conv2DTranspose`` at import time
  (``test_output_padding_serialization``); the original is restored right
  after, in a ``finally``;
* the loaded module's global ``layers`` is then replaced by a proxy of
  ``keras.src.layers`` whose only difference is ``Conv2DTranspose``, because
  the test bodies look ``layers.Conv2DTranspose`` up at run time. Every other
  name (``Conv1DTranspose``, ``Input``, ...) is Keras's own.

Which shipped tests are kept (decided test by test; every test method name of
the file must be classified in ``_SELECTION`` below, so a Keras upgrade that
adds a test makes ``test_every_shipped_test_is_classified`` fail until someone
looks at it):

* ``test_conv2d_transpose_basic`` (``run_layer_test``: shapes, weights,
  serialization, a training step, mixed precision) and
  ``test_conv2d_transpose`` (numerics against Keras's NumPy reference):
  kept, all cases. The ``channels_first`` case of the former skips itself on
  the TensorFlow backend ("channels_first unsupported on CPU with TF"), which
  is Keras's own limitation (Conv2DBackpropInput is NHWC-only on CPU), not
  ours; ``test_shipped_channels_first_case_with_our_layer`` below runs that
  very case through ``run_layer_test`` with our layer, which does support it.
* ``test_shape_inference_static_unknown_shape``: kept, all cases; its name
  does not say 2-D but it only builds ``layers.Conv2DTranspose`` on
  ``(None, None, 3)`` inputs.
* ``test_output_padding_serialization``: parameterized over layer classes;
  only the case whose ``layer_cls`` is the 2-D class (ours, as captured at
  import time) is kept; the 1-D and 3-D cases are dropped.
* ``test_bad_init_args``: kept. Its 2-D assertions construct our class (via
  the proxy) and check Keras's error messages; its 1-D/3-D assertions
  construct Keras's own Conv1DTranspose/Conv3DTranspose and pass unchanged.
* ``test_conv1d_*``, ``test_conv3d_*``: dropped (other ranks; not our layer).
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
import types
import unittest

import keras
import keras.src.layers
import keras.src.layers.convolutional
import pytest

import keras_tconv.layers
from keras_tconv import SegregatedConv2DTranspose
from keras_tconv.ops.platform import cpu_kernel_library

_KERAS_CONV2D_TRANSPOSE = keras.src.layers.Conv2DTranspose
_SHIPPED_PATH = os.path.join(
    os.path.dirname(keras.src.layers.convolutional.__file__), "conv_transpose_test.py"
)
_MODULE_NAME = "keras_tconv_tests_shipped_conv_transpose_test"


class _LayersProxy(types.ModuleType):
    """``keras.src.layers`` with ``Conv2DTranspose`` replaced by ours."""

    Conv2DTranspose = SegregatedConv2DTranspose

    def __getattr__(self, name):
        return getattr(keras.src.layers, name)


def _load_shipped_module():
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, _SHIPPED_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE_NAME] = module
    keras.src.layers.Conv2DTranspose = SegregatedConv2DTranspose
    try:
        spec.loader.exec_module(module)
    finally:
        keras.src.layers.Conv2DTranspose = _KERAS_CONV2D_TRANSPOSE
    module.layers = _LayersProxy("keras.src.layers (Conv2DTranspose -> SegregatedConv2DTranspose)")
    return module


def _params(method):
    """(base test name, parameters or None) of a possibly absl-parameterized method."""
    closure = inspect.getclosurevars(method).nonlocals
    if "test_method" in closure and "testcase_params" in closure:
        return closure["test_method"].__name__, closure["testcase_params"]
    return method.__name__, None


def _keep_only_2d_layer_cls(params):
    return params["layer_cls"] is SegregatedConv2DTranspose


# Base test name -> True (keep all cases), False (drop), or a predicate on the case's parameters.
_SELECTION = {
    "test_conv1d_transpose_basic": False,
    "test_conv2d_transpose_basic": True,
    "test_conv3d_transpose_basic": False,
    "test_output_padding_serialization": _keep_only_2d_layer_cls,
    "test_bad_init_args": True,
    "test_conv1d_transpose": False,
    "test_conv2d_transpose": True,
    "test_conv3d_transpose": False,
    "test_conv1d_transpose_consistency": False,
    "test_shape_inference_static_unknown_shape": True,
}

shipped = _load_shipped_module()

_UNCLASSIFIED: list[str] = []
_KEPT: dict[str, list[str]] = {}
_SHIPPED_CLASSES = [
    obj
    for obj in vars(shipped).values()
    if isinstance(obj, type) and issubclass(obj, unittest.TestCase) and obj.__module__ == _MODULE_NAME
]
for _cls in _SHIPPED_CLASSES:
    _KEPT[_cls.__name__] = []
    for _name in [n for n in dir(_cls) if n.startswith("test")]:
        _base, _case = _params(getattr(_cls, _name))
        _rule = _SELECTION.get(_base)
        if _rule is None:
            _UNCLASSIFIED.append(f"{_cls.__name__}.{_name} ({_base})")
            _keep = False
        elif callable(_rule):
            _keep = _rule(_case)
        else:
            _keep = _rule
        if _keep:
            _KEPT[_cls.__name__].append(_name)
        else:
            delattr(_cls, _name)  # the class belongs to our private copy of the module
    # Expose for collection under a distinct name (pytest collects unittest.TestCase subclasses).
    globals()[f"TestShipped{_cls.__name__}"] = _cls
del _cls, _name, _base, _case, _rule, _keep


def test_selection_is_nonempty_and_has_the_expected_tests():
    kept = {name for names in _KEPT.values() for name in names}
    bases = {
        _params(getattr(shipped.ConvTransposeCorrectnessTest, n))[0]
        for n in _KEPT["ConvTransposeCorrectnessTest"]
    }
    bases |= {_params(getattr(shipped.ConvTransposeBasicTest, n))[0] for n in _KEPT["ConvTransposeBasicTest"]}
    assert bases == {name for name, rule in _SELECTION.items() if rule is not False}
    assert not any("conv1d" in n or "conv3d" in n for n in kept)
    assert [
        n for n in _KEPT["ConvTransposeBasicTest"] if n.startswith("test_output_padding_serialization")
    ] == ["test_output_padding_serialization1"]
    assert len(kept) >= 10


def test_every_shipped_test_is_classified():
    assert not _UNCLASSIFIED, f"shipped tests not yet reviewed for 2-D relevance: {_UNCLASSIFIED}"


def test_stand_in_is_ours_and_keras_is_restored():
    assert shipped.layers.Conv2DTranspose is SegregatedConv2DTranspose
    assert shipped.layers.Conv1DTranspose is keras.src.layers.Conv1DTranspose
    assert keras.src.layers.Conv2DTranspose is _KERAS_CONV2D_TRANSPOSE
    assert keras.layers.Conv2DTranspose is _KERAS_CONV2D_TRANSPOSE
    assert SegregatedConv2DTranspose is not _KERAS_CONV2D_TRANSPOSE
    # The import-time parameterization captured our class, not Keras's.
    _, case = _params(shipped.ConvTransposeBasicTest.test_output_padding_serialization1)
    assert case["layer_cls"] is SegregatedConv2DTranspose


def _run_shipped(test_case_cls, name):
    result = unittest.TestResult()
    test_case_cls(name).run(result)
    return result


def test_shipped_test_body_really_computes_with_our_op(monkeypatch):
    """A kept numerics test passes and goes through keras_tconv's op (not Keras's kernel)."""
    calls = []
    original = keras_tconv.layers.conv2d_transpose

    def counting(*args, **kwargs):
        calls.append(kwargs.get("implementation"))
        return original(*args, **kwargs)

    monkeypatch.setattr(keras_tconv.layers, "conv2d_transpose", counting)
    result = _run_shipped(shipped.ConvTransposeCorrectnessTest, "test_conv2d_transpose0")
    assert result.wasSuccessful(), result.failures + result.errors
    assert result.testsRun == 1 and not result.skipped
    assert calls == ["auto"]


def test_shipped_tests_fail_on_a_wrong_layer(monkeypatch):
    """The shipped numerics test can fail: a stand-in whose output is off by 1% is caught."""

    class OffByOnePercent(SegregatedConv2DTranspose):
        def call(self, inputs):
            return super().call(inputs) * 1.01

    monkeypatch.setattr(_LayersProxy, "Conv2DTranspose", OffByOnePercent)
    result = _run_shipped(shipped.ConvTransposeCorrectnessTest, "test_conv2d_transpose0")
    assert result.testsRun == 1 and len(result.failures) == 1


def test_shipped_channels_first_case_with_our_layer():
    """The shipped channels_first case, which Keras skips on TF/CPU, passes with our layer."""
    case = dict(_params(shipped.ConvTransposeBasicTest.test_conv2d_transpose_basic2)[1])
    assert case["data_format"] == "channels_first"
    output_shape = case.pop("output_shape")
    input_shape = case.pop("input_shape")

    class ChannelsFirst(shipped.testing.TestCase):
        def runTest(self):
            self.run_layer_test(
                SegregatedConv2DTranspose,
                init_kwargs=case,
                input_shape=input_shape,
                expected_output_shape=output_shape,
                expected_num_trainable_weights=2,
                expected_num_non_trainable_weights=0,
                expected_num_losses=0,
                supports_masking=False,
            )

    result = unittest.TestResult()
    ChannelsFirst().run(result)
    assert result.wasSuccessful(), result.failures + result.errors
    assert result.testsRun == 1 and not result.skipped


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow" or cpu_kernel_library() != "Eigen",
    reason="a TensorFlow limitation, of its Eigen kernels (oneDNN's Conv2DBackpropInput runs NCHW on CPU)",
)
def test_channels_first_case_is_keras_own_limitation():
    """Keras's own class fails that case on CPU with Eigen kernels: why the
    shipped test skips it on TF. (Under oneDNN, Keras's layer runs it.)"""
    x = keras.random.normal((2, 4, 8, 8))
    layer = _KERAS_CONV2D_TRANSPOSE(6, (2, 3), strides=(2, 1), data_format="channels_first")
    with pytest.raises(Exception, match="only supports NHWC"):
        layer(x)
