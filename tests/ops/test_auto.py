"""``implementation="auto"``: the rule documented in keras_tconv/ops/choosing/rules.py, per lowering target,
and its switch to TensorFlow's kernel for few rows of work."""

from __future__ import annotations

import dataclasses
import threading

import pytest
import tensorflow as tf

from keras_tconv import SegregatedConv2DTranspose, lowering_target
from keras_tconv.ops.choosing import rules as auto
from keras_tconv.ops.choosing.rules import StaticRule, choose_implementation
from keras_tconv.ops.phases import plan_axes

# (kernel, stride, padding, filters, in_channels) -> choice for TensorFlow, choice for LiteRT.
# The layers are those of the benchmark's models and paper suites that the rule's docstring cites.
CASES = [
    ((5, 5), 2, "same", 1, 64, "unified", "unified"),  # TF DCGAN 64 -> 1
    ((4, 4), 2, "same", 3, 64, "unified", "unified"),  # DCGAN to RGB
    ((4, 4), 2, "same", 256, 512, "rows", "unified"),  # DCGAN 512 -> 256
    ((2, 2), 2, "same", 32, 64, "rows", "unified"),  # U-Net k=2
    ((4, 4), 2, "same", 3, 3, "unified", "unified"),  # RGB 3 -> 3, no wasted tap
    ((3, 3), 2, "same", 32, 1, "rows", "unified"),  # the paper's MNIST layer
    ((5, 5), 2, "same", 3, 3, "unified", "unified"),  # RGB k=5
    ((5, 5), 2, "same", 64, 128, "split", "split"),  # TF DCGAN 128 -> 64: every phase >= 2 taps
    ((3, 3), 2, "same", 256, 256, "split", "split"),  # SRDenseNet: wide
    ((3, 3), 2, "same", 32, 64, "native", "split"),  # VAE / CIFAR decoders: 1-tap phases
    ((3, 3), 2, "valid", 64, 128, "native", "split"),
    ((3, 3), 1, "same", 8, 8, "unified", "unified"),  # stride 1: a plain convolution
    ((2, 2), 5, "valid", 32, 32, "native", "split"),  # stride above the kernel: empty phases
]


@pytest.mark.parametrize(
    "kernel,stride,expected",
    [
        (2, 2, "unified"),  # no wasted tap
        (4, 2, "unified"),
        (3, 2, "unified"),  # 16 stacked taps for 9
        (5, 2, "unified"),  # 36 for 25
        (4, 3, "split"),  # 36 for 16
        (5, 4, "split"),  # 64 for 25
    ],
)
def test_xla_gradient_rule(kernel, stride, expected):
    """The segregated gradient under XLA where nothing is measured: ``unified``
    up to twice the useful work, ``split`` beyond."""
    plans = plan_axes((kernel, kernel, 8, 8), stride, "same", None)
    assert auto.xla_gradient_rule(*plans) == expected


def _choose(kernel, stride, padding, filters, channels):
    shape = (*kernel, filters, channels)
    return choose_implementation(shape, *plan_axes(shape, stride, padding, None))


# A rule with a different pick on every branch, so that the cases below check the decision list itself,
# whatever the fitted per-library rules say.
EVERY_BRANCH = StaticRule(
    min_channels=16,
    wide_channels=256,
    min_work=2**15,
    exact_wide_pick="rows",
    exact_narrow_pick="unified",
    many_taps_pick="split",
    rest_pick="native",
)


@pytest.fixture(autouse=True)
def every_branch_rule(monkeypatch):
    monkeypatch.setitem(auto.RULES, auto.cpu_kernel_library(), EVERY_BRANCH)


@pytest.mark.parametrize("kernel,stride,padding,filters,channels,tensorflow,litert", CASES)
def test_rule(kernel, stride, padding, filters, channels, tensorflow, litert):
    assert _choose(kernel, stride, padding, filters, channels) == tensorflow
    with lowering_target("litert"):
        assert _choose(kernel, stride, padding, filters, channels) == litert
    assert _choose(kernel, stride, padding, filters, channels) == tensorflow  # restored on exit


def test_litert_never_picks_tensorflows_kernel():
    with lowering_target("litert"):
        choices = {_choose(k, s, p, f, c) for k, s, p, f, c, *_ in CASES}
    assert "native" not in choices and choices <= {"split", "unified", "rows"}


@pytest.mark.parametrize(
    "kernel,stride,filters,channels,size,expected",
    [
        ((2, 2), 2, 256, 512, 16, "unified"),  # U-Net k=2: no wasted tap
        ((4, 4), 2, 64, 64, 32, "unified"),  # LapSRN
        ((4, 4), 2, 256, 512, 4, "native"),  # DCGAN 4x4 input: too small
        ((3, 3), 2, 32, 64, 16, "native"),  # k=3, s=2: wasted taps
        ((5, 5), 2, 64, 128, 7, "native"),
        ((5, 5), 2, 1, 64, 14, "unified"),  # one filter
        ((4, 4), 2, 3, 64, 32, "unified"),  # to RGB
    ],
)
def test_litert_int8_rule(kernel, stride, filters, channels, size, expected):
    """Under the int8 target, TRANSPOSE_CONV (``native``) stays except where the
    models suite measured a segregated lowering faster in int8."""
    shape = (*kernel, filters, channels)
    with lowering_target("litert_int8"):
        assert (
            choose_implementation(shape, *plan_axes(shape, stride, "same", None), 1, size, size) == expected
        )
        unknown_size = choose_implementation(shape, *plan_axes(shape, stride, "same", None))
    assert unknown_size == ("unified" if expected == "unified" or shape[:2] == (4, 4) else "native")


def test_target_is_per_thread_and_restored_after_errors():
    seen = []
    with pytest.raises(RuntimeError):
        with lowering_target("litert"):
            worker = threading.Thread(target=lambda: seen.append(_choose((3, 3), 2, "same", 32, 64)))
            worker.start()
            worker.join()
            raise RuntimeError("boom")
    assert seen == ["native"]  # another thread keeps the default target (LiteRT's pick: split)
    assert _choose((3, 3), 2, "same", 32, 64) == "native"


def test_unknown_target_is_rejected():
    with pytest.raises(
        ValueError,
        match=r"Expected one of \('tensorflow', 'litert', 'litert_int8'\). Received: target='tflite'",
    ):
        with lowering_target("tflite"):
            pass


def test_native_below_rows():
    rule = EVERY_BRANCH
    assert rule.native_below_rows((4, 4, 256, 512), "rows") == 128  # 2**15 / 256
    assert rule.native_below_rows((5, 5, 64, 128), "split") == 512
    assert rule.native_below_rows((4, 4, 3, 3), "unified") == 0  # small kernels: never worth it
    assert rule.native_below_rows((5, 5, 1, 64), "native") == 0


def test_rule_per_kernel_library():
    assert set(auto.RULES) == {"Eigen", "oneDNN"}
    shape = (3, 3, 32, 64)
    plans = plan_axes(shape, 2, "same", None)
    for pick in ("unified", "split"):
        auto.RULES[auto.cpu_kernel_library()] = dataclasses.replace(EVERY_BRANCH, rest_pick=pick)
        assert choose_implementation(shape, *plans) == pick


def test_static_rule_takes_tensorflows_kernel_for_few_rows():
    """With the batch known, few rows of work run TensorFlow's kernel; with it unknown, no runtime switch."""
    shape = (4, 4, 32, 64)
    plans = plan_axes(shape, 2, "same", None)
    assert (
        choose_implementation(shape, *plans, batch=1, height=4, width=4) == "native"
    )  # 16 rows < 2**15 / 32
    assert choose_implementation(shape, *plans, batch=80, height=4, width=4) == "rows"
    assert choose_implementation(shape, *plans) == "rows"


def test_tflite_plain_conversion_has_no_branch():
    """A dynamic-batch layer traces no cond (which TFLite would turn into IF), whatever auto picks."""
    ours = SegregatedConv2DTranspose(32, 4, strides=2, padding="same", activation="relu")
    ours.build((None, 4, 4, 64))
    function = tf.function(ours.call, input_signature=[tf.TensorSpec((None, 4, 4, 64), tf.float32)])
    op_types = {op.type for op in function.get_concrete_function().graph.get_operations()}
    assert op_types.isdisjoint({"If", "StatelessIf", "While", "StatelessWhile"})
    assert ours.chosen_implementation in ("native", "split", "rows", "unified")
