"""The float64-reference checks shared by every backend's tests (no backend is imported here):
Hypothesis strategies for layer configurations, the inputs, weights and
cotangent of a case with its expected values (:func:`materialize`), and the
comparison with tolerances for rounded sums (:meth:`Case.check`).

Strategies:

Kernel 1-7 (1 drawn often) and stride 1-4 per axis plus strides 8 and 16,
dilation 1-3 with any stride, both paddings, ``output_padding`` below the
stride or a larger dilation, fused and unfused activations, batch and spatial
sizes down to 1 (1 drawn often), 1-3 channels, both data formats.
"""

from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np
from hypothesis import strategies as st

try:
    from reference import Reference, pair
except ImportError:  # imported as tests.ops.cases, from another test directory
    from tests.ops.reference import Reference, pair

STRIDES = st.one_of(st.integers(1, 4), st.sampled_from([8, 16]))


def layer_accepts(config) -> bool:
    """Whether Keras's constructor (and so the layer's) takes these arguments:
    no dilation with a stride, ``output_padding`` below the stride."""
    strides, dilation = pair(config["strides"]), pair(config.get("dilation_rate", 1))
    if strides != (1, 1) and dilation != (1, 1):
        return False
    output_padding = config.get("output_padding")
    return output_padding is None or all(op < s for op, s in zip(pair(output_padding), strides))


def keras_accepts(config) -> bool:
    """Whether Keras (and TensorFlow's kernel) define this geometry: the
    layer takes it, and for "same" with ``output_padding`` a last output
    position that some input pixel reaches (``k_eff % 2 + op >= 1``)."""
    if not layer_accepts(config):
        return False
    dilation = pair(config.get("dilation_rate", 1))
    if config["padding"] == "same" and config.get("output_padding") is not None:
        k_eff = [(k - 1) * d + 1 for k, d in zip(pair(config["kernel_size"]), dilation)]
        return all(k % 2 + op >= 1 for k, op in zip(k_eff, pair(config["output_padding"])))
    return True


ACTIVATIONS = [None, "relu", "tanh", "sigmoid"]
# relu's derivative jumps at 0, where half-precision rounding of the output can
# put an element on either side: the mixed-precision tests draw smooth ones.
SMOOTH_ACTIVATIONS = [None, "tanh", "sigmoid"]


# 1-tap kernel axes and inputs of length 1 are where the gradient's rewrites
# (keras_tconv/ops/tensorflow/gradients.py) apply: draw them often.
KERNEL_SIZES = st.one_of(st.just(1), st.integers(1, 7))
LENGTHS = st.one_of(st.just(1), st.integers(1, 6))


@st.composite
def configs(draw, activations=ACTIVATIONS):
    kernel = (draw(KERNEL_SIZES), draw(KERNEL_SIZES))
    strides = (draw(STRIDES), draw(STRIDES))
    dilation = (1, 1)
    if draw(st.booleans()):
        dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    output_padding = None
    if draw(st.booleans()):
        # Below the stride, or below the dilation where that is larger (the op's extension).
        output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(strides, dilation))
    return dict(
        activation=draw(st.sampled_from(activations)),
        filters=draw(st.integers(1, 3)),
        kernel_size=kernel,
        strides=strides,
        padding=draw(st.sampled_from(["valid", "same"])),
        output_padding=output_padding,
        dilation_rate=dilation,
    )


@st.composite
def cases(draw, activations=ACTIVATIONS):
    config = draw(configs(activations))
    shape = (draw(st.integers(1, 3)), draw(LENGTHS), draw(LENGTHS), draw(st.integers(1, 3)))
    return (
        config,
        shape,
        draw(st.sampled_from(["channels_last", "channels_first"])),
        draw(st.integers(0, 2**31 - 1)),
    )


def assert_close(got, want, rtol, what, terms=1):
    """``got == want`` to ``rtol``, with an absolute floor for sums of ``terms``
    unit-size terms: rounding of such a sum grows like ``sqrt(terms)``
    whatever its result."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = max(1.0, float(np.abs(want).max(initial=0.0)), float(np.sqrt(terms)))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale, err_msg=what)


def summed_terms(output_shape, kernel_shape):
    """Terms summed per element of the output and of the input, kernel and bias
    gradients (upper bounds; channels last)."""
    batch, out_h, out_w, filters = output_shape
    kh, kw, _, channels = kernel_shape
    return [kh * kw * channels, kh * kw * filters, batch * out_h * out_w, batch * out_h * out_w]


def rounded(array, dtype):
    """``array`` rounded to ``dtype`` (what the layer computes with), as float64."""
    return np.asarray(array).astype(dtype).astype(np.float64)


def nhwc(array, data_format):
    return np.transpose(array, (0, 2, 3, 1)) if data_format == "channels_first" else array


def nchw(array, data_format):
    return np.transpose(array, (0, 3, 1, 2)) if data_format == "channels_first" else array


# The compute dtype of each dtype policy the tests use.
COMPUTE_DTYPES = {"float32": np.float32, "mixed_float16": np.float16, "mixed_bfloat16": ml_dtypes.bfloat16}


@dataclasses.dataclass
class Case:
    """One configuration's float32 weights, its inputs and cotangent rounded
    to the compute dtype (channels last), and the float64 definition's
    output and gradients of ``sum(y * cotangent)`` for them."""

    config: dict
    shape: tuple
    weights: list
    x: np.ndarray
    cotangent: np.ndarray
    out_shape: tuple
    want: list

    def check(self, got, implementation, data_format, rtol):
        """``got`` = (output, input grad, kernel grad, bias grad), the first two
        in ``data_format``, against the definition."""
        got = [
            nhwc(np.asarray(got[0], np.float64), data_format),
            nhwc(np.asarray(got[1], np.float64), data_format),
            *got[2:],
        ]
        terms = summed_terms(self.out_shape, self.weights[0].shape)
        names = ["output", "input grad", "kernel grad", "bias grad"]
        for name, g, w, n in zip(names, got, self.want, terms):
            assert_close(
                g, w, rtol, f"{name} ({implementation}, {self.config}, {self.shape}, {data_format})", n
            )


def materialize(config, shape, seed, dtype="float32") -> Case:
    rng = np.random.default_rng(seed)
    reference = Reference(**config)
    out_shape = reference.output_shape(shape, config["filters"])
    kernel_shape = pair(config["kernel_size"]) + (config["filters"], shape[-1])
    weights = [
        rng.standard_normal(kernel_shape).astype("float32"),
        rng.standard_normal(config["filters"]).astype("float32"),
    ]
    compute = COMPUTE_DTYPES[dtype]
    x = rounded(rng.standard_normal(shape), compute)
    cotangent = rounded(rng.standard_normal(out_shape), compute)
    kernel, bias = (rounded(w, compute) for w in weights)
    want = [reference.forward(x, kernel, bias), *reference.gradients(x, kernel, bias, cotangent)]
    return Case(config, shape, weights, x, cotangent, out_shape, want)
