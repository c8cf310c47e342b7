"""Every implementation on Keras's JAX backend against the independent float64 definition.

The same Hypothesis cases and float64 reference as the TensorFlow tests
(tests/ops/cases.py, tests/ops/reference.py): forward output and the
gradients with respect to input, kernel and bias, under ``jax.jit`` (as
Keras runs a model) and eagerly, through the layer (``stateless_call``) where Keras's constructor
takes the configuration, else through the op (the natural extension:
dilation with a stride, the ``output_padding`` a larger dilation allows).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from keras_tconv import SegregatedConv2DTranspose
from keras_tconv.ops import IMPLEMENTATIONS, conv2d_transpose, registry
from keras_tconv.ops.registry import FUSED_ACTIVATIONS
from tests.ops.cases import SMOOTH_ACTIVATIONS, cases, keras_accepts, layer_accepts, materialize, nchw

FAST = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=True,
)


def _loss_of_layer(config, data_format, dtype, implementation, weights, shape):
    layer = SegregatedConv2DTranspose(
        **config, data_format=data_format, dtype=dtype, implementation=implementation
    )
    layer.build(nchw(np.empty(shape), data_format).shape)
    layer.set_weights(weights)

    def run(variables, x):
        y, _ = layer.stateless_call(variables, [], x)
        return y

    return run, [v.value for v in layer.trainable_variables]


def _loss_of_op(config, data_format, dtype, implementation, weights, shape):
    compute = keras.mixed_precision.Policy(dtype).compute_dtype
    activation = config["activation"]
    fused = activation if activation in FUSED_ACTIVATIONS else None

    def run(variables, x):
        kernel, bias = (v.astype(compute) for v in variables)
        y = conv2d_transpose(
            x.astype(compute),
            kernel,
            config["strides"],
            config["padding"],
            config["output_padding"],
            data_format,
            config["dilation_rate"],
            implementation,
            bias=bias,
            activation=fused,
        )
        return y if fused or activation is None else keras.activations.get(activation)(y)

    return run, [jnp.asarray(w) for w in weights]


def check(config, shape, data_format, seed, implementation, dtype="float32", rtol=1e-5, jit=False):
    case = materialize(config, shape, seed, dtype)
    if keras_accepts(config):
        assert tuple(keras.layers.Conv2DTranspose(**config).compute_output_shape(shape)) == case.out_shape
    build = _loss_of_layer if layer_accepts(config) else _loss_of_op
    run, variables = build(config, data_format, dtype, implementation, case.weights, shape)
    x, cotangent = (
        jnp.asarray(nchw(case.x, data_format), jnp.float32),
        jnp.asarray(nchw(case.cotangent, data_format)),
    )

    def loss(variables, x):
        y = run(variables, x)
        return jnp.sum(y.astype(jnp.float32) * cotangent), y

    step = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)
    if jit:
        step = jax.jit(step)
    (_, y), ((dkernel, dbias), dx) = step(variables, x)
    case.check([y, dx, dkernel, dbias], implementation, data_format, rtol)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@FAST
@given(case=cases())
def test_float32_matches_definition(implementation, case):
    check(*case, implementation=implementation, jit=True)


# Op by op, JAX compiles every primitive for every new shape: a few examples.
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@settings(FAST, max_examples=4)
@given(case=cases())
def test_eager_matches_definition(implementation, case):
    check(*case, implementation=implementation)


@pytest.mark.parametrize("implementation", registry.candidates((2, 2)))
@pytest.mark.parametrize("policy,rtol", [("mixed_float16", 1e-2), ("mixed_bfloat16", 4e-2)])
@settings(FAST, max_examples=4)
@given(case=cases(SMOOTH_ACTIVATIONS))
def test_mixed_precision_matches_definition(implementation, policy, rtol, case):
    check(*case, implementation=implementation, dtype=policy, rtol=rtol, jit=True)
