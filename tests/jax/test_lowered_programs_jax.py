"""What XLA is given on the JAX backend: the segregated lowerings' forward and
gradient programs hold stride-1 convolutions only, with no ``lhs_dilation``
(the slow path of Keras's layer on JAX) and no window dilation, and their
kernel gradients are matrix products (``dot_general``), not convolutions.

Read off the lowered StableHLO of ``jax.jit`` of the step (forward output and
gradients of input, kernel and bias), so that it holds whatever JAX's
autodiff and our ``custom_vjp`` put there.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from keras_tconv import SegregatedConv2DTranspose
from keras_tconv.ops import conv2d_transpose
from keras_tconv.ops.registry import SEGREGATED

# kernel, strides, padding, output_padding, dilation: strided, uneven, dilated, 1-tap.
GEOMETRIES = [
    ((3, 3), (2, 2), "same", None, (1, 1)),
    ((4, 5), (2, 3), "valid", (1, 2), (1, 1)),
    ((2, 2), (2, 2), "valid", None, (1, 1)),
    ((3, 1), (3, 2), "same", None, (1, 1)),
    ((3, 3), (2, 2), "same", None, (2, 2)),
]


def _window(line: str) -> dict[str, list[int]]:
    """The ``stride``, ``lhs_dilate`` and ``rhs_dilate`` of one ``stablehlo.convolution`` line."""
    window = re.search(r"window = \{([^}]*)\}", line).group(1)
    return {
        name: [int(n) for n in values.split(",")]
        for name, values in re.findall(r"(stride|lhs_dilate|rhs_dilate) = \[([\d, ]+)\]", window)
    }


def lowered(implementation, geometry, argnums=(0, 1, 2), x_shape=(2, 5, 6, 3), filters=4) -> str:
    """The StableHLO text of the step: forward, and gradients in the arguments
    ``argnums`` (none: forward only)."""
    kernel_size, strides, padding, output_padding, dilation = geometry
    x = jnp.ones(x_shape)
    kernel = jnp.ones((*kernel_size, filters, x_shape[-1]))
    bias = jnp.ones((filters,))

    def loss(x, kernel, bias):
        y = conv2d_transpose(
            x, kernel, strides, padding, output_padding, "channels_last", dilation, implementation, bias=bias
        )
        return jnp.sum(jnp.sin(y))

    step = jax.value_and_grad(loss, argnums=argnums) if argnums else loss
    return jax.jit(step).lower(x, kernel, bias).as_text()


def convolutions(implementation, geometry, argnums=(0, 1, 2)) -> list[dict]:
    """The windows of every convolution in the step's program."""
    text = lowered(implementation, geometry, argnums)
    return [_window(line) for line in text.splitlines() if "stablehlo.convolution" in line]


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("implementation", SEGREGATED)
def test_segregated_kernel_gradients_are_matrix_products(implementation, geometry):
    """The kernel gradient adds no convolution to the forward's, only ``dot_general``s."""
    assert len(convolutions(implementation, geometry, argnums=(1,))) == len(
        convolutions(implementation, geometry, ())
    )
    assert "stablehlo.dot_general" in lowered(implementation, geometry, argnums=(1,))


@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("implementation", [*SEGREGATED, "auto"])
def test_segregated_programs_hold_only_stride_1_undilated_convolutions(implementation, geometry):
    windows = convolutions(implementation, geometry)
    assert (
        len(windows) >= 2
    )  # the forward and the input gradient (the kernel gradient: matrix products per tap)
    for window in windows:
        for name in ("stride", "lhs_dilate", "rhs_dilate"):
            assert set(window.get(name, [1])) == {1}, (name, window)


def test_the_inspection_sees_keras_lhs_dilation():
    """Keras's own computation (``native``) is where ``lhs_dilation`` shows: the check can fail."""
    windows = convolutions("native", GEOMETRIES[0])
    assert any(set(w["lhs_dilate"]) != {1} for w in windows)


def test_layer_training_step_has_no_lhs_dilation():
    """Through the layer as Keras trains it (``stateless_call`` under ``jax.jit``)."""
    layer = SegregatedConv2DTranspose(4, 3, strides=2, padding="same")
    layer.build((2, 5, 5, 3))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 5, 5, 3)), jnp.float32)

    def loss(variables, x):
        y, _ = layer.stateless_call(variables, [], x)
        return jnp.sum(y * y)

    variables = [v.value for v in layer.trainable_variables]
    text = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(variables, x).as_text()
    lines = [line for line in text.splitlines() if "stablehlo.convolution" in line]
    assert lines and all(set(_window(line).get("lhs_dilate", [1])) == {1} for line in lines)
