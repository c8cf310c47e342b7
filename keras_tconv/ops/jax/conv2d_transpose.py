"""``conv2d_transpose`` on JAX: Keras's Conv2DTranspose computed by kernel segregation."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from keras_tconv.ops import arguments, registry
from keras_tconv.ops.choosing import tuning
from keras_tconv.ops.choosing.rules import choose_implementation, xla_gradient_rule
from keras_tconv.ops.jax import tuning as jax_tuning
from keras_tconv.ops.jax.lowerings import LOWERINGS, dilate_kernel
from keras_tconv.ops.phases import AxisPlan, check_output_padding, pair, plan_axes

_ACTIVATIONS = {None: lambda y: y, "relu": jax.nn.relu, "tanh": jnp.tanh}


def _lowering(implementation: str, plan_h: AxisPlan, plan_w: AxisPlan):
    """``(x, kernel, *bias) -> y`` for one lowering, the bias included."""
    lowering = LOWERINGS[implementation]

    def run(x, kernel, *bias):
        y = lowering(x, kernel, plan_h, plan_w)
        return y + bias[0] if bias else y

    return run


def _with_gradient_of(forward, backward_choice):
    """``forward`` whose gradient is the autodiff of another lowering.

    ``backward_choice()`` names the lowering whose derivatives (stride-1
    convolutions, for a segregated one) form the gradient; it is asked only
    when a gradient is traced, so only layers that are differentiated
    measure it. Its forward pass is dead code inside ``jit`` and XLA drops it.
    """

    @jax.custom_vjp
    def op(*args):
        return forward(*args)

    def op_forward(*args):
        return forward(*args), args

    def op_backward(args, dy):
        _, vjp = jax.vjp(backward_choice(), *args)
        return vjp(dy)

    op.defvjp(op_forward, op_backward)
    return op


def _concrete(shape) -> bool:
    """Whether every dimension is a known int (Keras's shape inference uses symbolic ones)."""
    return all(isinstance(n, int) for n in shape)


def _random_args(shape, kernel, bias, seed: int = 0):
    return (
        jax_tuning.random_array(shape, kernel.dtype, seed),
        jax_tuning.random_array(kernel.shape, kernel.dtype, seed + 1),
        *(() if bias is None else (jax_tuning.random_array(bias.shape, bias.dtype, seed + 2),)),
    )


def _measurement(x, kernel, bias, activation, plan_h: AxisPlan, plan_w: AxisPlan):
    """Where the shapes are concrete, the layer's cache key and the batches
    to measure it at (:func:`keras_tconv.ops.choosing.tuning.measurement`);
    else None."""
    if not _concrete(x.shape):
        return None
    return tuning.measurement(
        x.shape, x.dtype.name, kernel.shape[2], bias is not None, activation, plan_h, plan_w
    )


def _auto_forward(x, kernel, bias, activation, plan_h: AxisPlan, plan_w: AxisPlan) -> tuning.Choice:
    """The forward lowering for ``implementation="auto"``: measured (compiled
    and timed on JAX's default device) where the shapes are concrete, else
    the static rule (:func:`keras_tconv.ops.choosing.rules.jax_rule`)."""
    static = choose_implementation(kernel.shape, plan_h, plan_w, backend="jax")
    measurement = _measurement(x, kernel, bias, activation, plan_h, plan_w)
    if measurement is None:
        return tuning.Choice("", static, "static rule")
    key, batches = measurement

    def make_runner(implementation):
        args = {n: _random_args((n, *x.shape[1:]), kernel, bias) for n in batches}
        return jax_tuning.compiled_runner(_lowering(implementation, plan_h, plan_w), args)

    candidates = registry.candidates((plan_h.stride, plan_w.stride))
    return tuning.choose(key, candidates, make_runner, batches, static, jax_tuning.where())


def _auto_backward(x, kernel, bias, activation, plan_h: AxisPlan, plan_w: AxisPlan) -> str:
    """The lowering whose derivatives form the gradient under ``auto``,
    measured as the gradient of input, kernel and bias together: the
    gradient rule's pick (:func:`~keras_tconv.ops.choosing.rules.xla_gradient_rule`)
    is the baseline (its derivatives are stride-1 convolutions, no
    ``lhs_dilation`` anywhere), and ``native`` (Keras's gradient) and the
    other segregated lowerings replace it only where they are faster beyond
    the noise, so that small layers, where XLA's ``lhs_dilation`` gradient is
    fast, keep it."""
    static = xla_gradient_rule(plan_h, plan_w)
    measurement = _measurement(x, kernel, bias, activation, plan_h, plan_w)
    if measurement is None:
        return static
    key, batches = measurement
    out_h, out_w = plan_h.geometry.output_length(x.shape[1]), plan_w.geometry.output_length(x.shape[2])

    def make_runner(implementation):
        lowering = _lowering(implementation, plan_h, plan_w)

        def gradient(dy, *args):
            return jax.vjp(lowering, *args)[1](dy)

        args = {
            n: (
                jax_tuning.random_array((n, out_h, out_w, kernel.shape[2]), kernel.dtype, 3),
                *_random_args((n, *x.shape[1:]), kernel, bias),
            )
            for n in batches
        }
        return jax_tuning.compiled_runner(gradient, args)

    candidates = tuple(dict.fromkeys((static, *registry.candidates((plan_h.stride, plan_w.stride)))))
    return tuning.choose(
        f"{key} gradient", candidates, make_runner, batches, static, jax_tuning.where()
    ).implementation


def _empty_output(x, kernel, plan_h: AxisPlan, plan_w: AxisPlan):
    """Zeros of Keras's output shape, for a geometry whose output has length 0."""
    lengths = [p.geometry.output_length(n) for p, n in zip((plan_h, plan_w), x.shape[1:3])]
    return jnp.zeros((x.shape[0], *lengths, kernel.shape[2]), x.dtype)


def conv2d_transpose(
    inputs,
    kernel,
    strides,
    padding: str = "valid",
    output_padding=None,
    data_format: str = "channels_last",
    dilation_rate=1,
    implementation: str = "auto",
    bias=None,
    activation: str | None = None,
    on_choice=None,
):
    """Exactly ``keras.layers.Conv2DTranspose``'s convolution on JAX (plus
    optional bias and activation), with the arguments of the TensorFlow op
    (:func:`keras_tconv.ops.tensorflow.conv2d_transpose.conv2d_transpose`).

    ``native`` is what Keras's layer runs on JAX (``jax.lax.conv_transpose``,
    a convolution with ``lhs_dilation``), differentiated by JAX. The
    segregated lowerings are differentiated by JAX too: their derivatives are
    stride-1 convolutions. ``auto`` measures the forward lowering (``native``
    the baseline) and, separately and only for a layer that is
    differentiated, the lowering whose derivatives form the gradient (a
    ``jax.custom_vjp``; the static rule's segregated pick the baseline), once
    per geometry.
    """
    arguments.check_options(activation, implementation, data_format)
    inputs = jnp.asarray(inputs)
    kernel = jnp.asarray(kernel, dtype=inputs.dtype)
    arguments.check_ranks(inputs.shape, kernel.shape)
    channels_first = data_format == "channels_first"
    x = jnp.transpose(inputs, (0, 2, 3, 1)) if channels_first else inputs
    arguments.check_channels(x.shape[-1], inputs.shape, kernel.shape, data_format)
    dilation_rate = pair(dilation_rate, "dilation_rate")
    check_output_padding(pair(output_padding, "output_padding"), pair(strides, "strides"), dilation_rate)
    if dilation_rate != (1, 1):
        kernel = dilate_kernel(kernel, *dilation_rate)
    plan_h, plan_w = plan_axes(kernel.shape, strides, padding, output_padding)
    args = (x, kernel) if bias is None else (x, kernel, jnp.asarray(bias, dtype=x.dtype))

    if _concrete(x.shape) and 0 in x.shape[:3]:
        # An empty input gets Keras's computation: a phase convolution can have
        # output blocks where the input has none, which XLA rejects.
        implementation = "native"
    if on_choice is not None and implementation != "auto":
        on_choice(implementation)
    if any(p.geometry.extra == -p.stride and n == 1 for p, n in zip((plan_h, plan_w), x.shape[1:3])):
        # "same", an even kernel and output_padding 0 on an input of length 1
        # (a geometry Keras rejects): an empty output, zero gradients.
        y = _empty_output(x, kernel, plan_h, plan_w)
    elif implementation == "auto":
        implementation = _auto_forward(x, kernel, bias, activation, plan_h, plan_w).implementation
        if on_choice is not None:
            on_choice(implementation)
        backward = functools.partial(_auto_backward, x, kernel, bias, activation, plan_h, plan_w)
        forward = _lowering(implementation, plan_h, plan_w)
        y = _with_gradient_of(forward, lambda: _lowering(backward(), plan_h, plan_w))(*args)
    else:
        y = _lowering(implementation, plan_h, plan_w)(*args)
    y = _ACTIVATIONS[activation](y)
    return jnp.transpose(y, (0, 3, 1, 2)) if channels_first else y
