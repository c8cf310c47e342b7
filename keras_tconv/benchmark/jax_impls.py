"""The callables the benchmark times on Keras's JAX backend (``--backend jax``).

The same layers, weights and inputs as on TensorFlow
(:func:`~keras_tconv.benchmark.impls.build_layers`,
:func:`~keras_tconv.benchmark.impls.step_inputs`): ``keras`` is
``keras.layers.Conv2DTranspose`` on JAX (``jax.lax.conv_transpose``), the
others ``SegregatedConv2DTranspose`` with that ``implementation``. Each step is
one ``jax.jit`` function of the layer's ``stateless_call``, taking the
trainable variables as arguments: in ``forward`` mode it returns the output;
in ``train`` mode the loss ``sum(output * cotangent)`` and its gradients with
respect to the input, kernel and bias (``jax.value_and_grad``), in the order
the TensorFlow step returns them, so that errors compare the same tensors.
Each function is compiled by its first call here (for ``auto``, that call
also measures its candidates), so timing never compiles.

The ceiling is a dense stride-1 ``jax.lax.conv_general_dilated`` ("SAME",
``kh x kw``, ``filters`` outputs) plus bias, the empty call a jitted identity:
as on TensorFlow (see :mod:`~keras_tconv.benchmark.impls`).

:data:`KERAS_TF`, the cross-backend reference, is what Keras's layer computes
on its TensorFlow backend (Keras's TensorFlow ``conv_transpose``, i.e.
``Conv2DBackpropInput`` with Keras's output-shape arithmetic, then the bias
and the activation), as a ``tf.function`` on TensorFlow's device of the run,
timed interleaved with the JAX steps; TensorFlow's kernel runs in a JAX-backend
process, Keras's TensorFlow layer cannot.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import tensorflow as tf

from keras_tconv.benchmark import impls
from keras_tconv.benchmark.impls import CEILING, EMPTY_CALL
from keras_tconv.benchmark.suites import Shape
from keras_tconv.ops.choosing import tuning
from keras_tconv.tf_devices import device_string

KERAS_TF = "keras_tf"


def jax_device(device: str) -> jax.Device:
    """JAX's device for ``"cpu"`` or ``"gpu"`` (the first GPU; a RuntimeError if JAX sees none)."""
    return jax.devices(device)[0]


def use_device(device: str) -> None:
    """Make ``device`` (``"cpu"`` or ``"gpu"``) JAX's default device; call it before JAX starts its backends.

    Keras creates its variables on JAX's default device, and ``auto`` measures
    and keys its tuning cache by it
    (:func:`keras_tconv.ops.jax.tuning.device_name`): with a GPU visible, that
    is the GPU, whatever the run asked for, so a CPU run makes the CPU JAX's
    only platform. A GPU is JAX's default device wherever there is one; a GPU
    run lets TensorFlow (:data:`KERAS_TF`) take GPU memory as it needs it,
    next to JAX's preallocated share, rather than all that is left when it
    starts.
    """
    if device == "cpu":
        jax.config.update("jax_platforms", "cpu")
    else:
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)


@dataclasses.dataclass
class JaxCase:
    """One shape in one mode on one device, on JAX: the interface of
    :class:`keras_tconv.benchmark.impls.Case` (``implementations``, ``run``,
    ``functions``, ``args``, ``first_call_s``, ``sync``, :meth:`columns`,
    :meth:`auto_picks`), with :data:`KERAS_TF` among the implementations.

    ``kernels`` and ``tf_kernels`` name what computes the JAX steps and
    :data:`KERAS_TF`'s; ``picks`` is :meth:`auto_picks`'s answer, read after
    ``auto``'s first call; ``trace_counts`` counts the traces of each jitted step.
    """

    implementations: tuple[str, ...]
    run: dict[str, Callable[[], object]]
    functions: dict[str, Callable]
    args: dict[str, tuple]
    first_call_s: dict[str, float]
    sync: Callable[[object], None]
    kernels: str
    tf_kernels: str
    picks: str
    trace_counts: collections.Counter

    def columns(self, name: str) -> dict:
        """The result columns that describe how ``name`` ran: backend, kernels and how often it was traced."""
        if name == KERAS_TF:
            return {
                "backend": "tensorflow",
                "kernels": self.tf_kernels,
                "traces": self.functions[name].experimental_get_tracing_count(),
            }
        return {"backend": "jax", "kernels": self.kernels, "traces": self.trace_counts[name]}

    def auto_picks(self) -> str:
        """The lowering ``auto`` ran (the layer's ``chosen_implementation``) and, in train mode, the one
        whose derivatives formed its gradient (its choice keyed ``"<geometry> gradient"``)."""
        return self.picks


def _layer_call(layer) -> Callable:
    """``(trainable values, x) -> y``: the layer as a pure function of its variables."""
    state = [variable.value for variable in layer.non_trainable_variables]
    return lambda params, x: layer.stateless_call(params, state, x)[0]


def _ceiling(params, x):
    kernel, bias = params
    y = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias


def _step(call: Callable, mode: str) -> Callable:
    """One step of ``call`` (``(params, x) -> y``), not yet jitted."""
    if mode == "forward":
        return call

    def loss(params, x, cotangent):
        return jnp.sum(call(params, x) * cotangent)

    value_and_grad = jax.value_and_grad(loss, argnums=(0, 1))

    def train_step(params, x, cotangent):
        value, (params_gradient, x_gradient) = value_and_grad(params, x, cotangent)
        return [value, x_gradient, *params_gradient]  # the TensorFlow step's order: loss, input, variables

    return train_step


def _jit(function: Callable, trace_counts: collections.Counter, name: str) -> Callable:
    """``jax.jit(function)``, counting its traces under ``name``."""

    def traced(*args):
        trace_counts[name] += 1  # runs only while jax.jit traces
        return function(*args)

    return jax.jit(traced)


def _first_call(function: Callable, args: tuple) -> float:
    """Seconds of the first call of a jitted function: tracing, compiling (and auto's measuring) included."""
    start = time.perf_counter()
    jax.block_until_ready(function(*args))
    return time.perf_counter() - start


def _keras_on_tensorflow(shape: Shape, weights: list) -> tuple[Callable, list]:
    """``x -> y`` computed as Keras's layer computes on TensorFlow, with its variables.

    Keras's TensorFlow backend ops (what ``keras.layers.Conv2DTranspose.call``
    runs there: ``conv_transpose``, the bias added, the activation by name),
    which run under any Keras backend since they call TensorFlow directly.
    """
    from keras.src.backend.tensorflow import nn

    variables = [tf.Variable(weight) for weight in weights]

    def call(x):
        y = nn.conv_transpose(
            x, variables[0], strides=shape.strides, padding=shape.padding, output_padding=shape.output_padding
        )
        if shape.use_bias:
            y = y + variables[1]
        return getattr(nn, shape.activation)(y) if shape.activation else y

    return call, variables


def _sync_for(tf_sync: Callable[[object], None]) -> Callable[[object], None]:
    """Wait for a step's outputs: JAX's by ``jax.block_until_ready``, TensorFlow's by ``tf_sync``."""

    def sync(result) -> None:
        if isinstance(jax.tree_util.tree_leaves(result)[-1], tf.Tensor):
            tf_sync(result)
        else:
            jax.block_until_ready(result)

    return sync


def build_case(
    shape: Shape, mode: str, implementations: tuple[str, ...], device: str, seed: int = 0
) -> JaxCase:
    """Layers, inputs and compiled step functions of ``implementations``, :data:`KERAS_TF`,
    the ceiling and the empty call, on ``device`` (``"cpu"`` or ``"gpu"``).

    ``device`` must be JAX's default device (see :func:`use_device`), where
    Keras creates the layers' variables and ``auto`` measures. (Not a
    ``jax.default_device`` scope: it is part of ``jax.jit``'s cache key, so
    calls outside it would compile again.)
    """
    target = jax_device(device)
    tf_device = device_string(device)
    # Auto's choices are read back from tuning.choices(): forget those of earlier cases, so that it lists
    # this case's alone (a geometry met before is then read from the disk cache, not measured again).
    tuning.clear_memory()
    layer_arrays, ceiling_arrays = impls.step_inputs(shape, mode, seed)
    trace_counts = collections.Counter()
    functions, args, first_call_s = {}, {}, {}
    layers = impls.build_layers(shape, implementations, seed)
    calls = {
        impl: (_layer_call(layer), [v.value for v in layer.trainable_variables])
        for impl, layer in layers.items()
    }
    calls[CEILING] = (_ceiling, [jax.device_put(w, target) for w in impls.ceiling_weights(shape, seed)])
    layer_args = tuple(jax.device_put(a, target) for a in layer_arrays)
    ceiling_args = tuple(jax.device_put(a, target) for a in ceiling_arrays)
    for name, (call, params) in calls.items():
        args[name] = (params, *(ceiling_args if name == CEILING else layer_args))
        functions[name] = _jit(_step(call, mode), trace_counts, name)
        first_call_s[name] = _first_call(functions[name], args[name])
    functions[EMPTY_CALL], args[EMPTY_CALL] = jax.jit(lambda params, x, *rest: x), args["keras"]
    _first_call(functions[EMPTY_CALL], args[EMPTY_CALL])
    with tf.device(tf_device):
        call, variables = _keras_on_tensorflow(shape, layers["keras"].get_weights())
        args[KERAS_TF] = tuple(tf.constant(a) for a in layer_arrays)
        functions[KERAS_TF], first_call_s[KERAS_TF] = impls.traced_step(call, variables, mode, args[KERAS_TF])
    run = {name: impls.bind(function, args[name]) for name, function in functions.items()}
    return JaxCase(
        implementations=(*implementations, KERAS_TF),
        run=run,
        functions=functions,
        args=args,
        first_call_s=first_call_s,
        sync=_sync_for(impls.sync_for(tf_device)),
        kernels=f"XLA {target.platform.upper()}",
        tf_kernels=impls.kernels(tf_device),
        picks=impls.auto_choices(layers.get("auto"), mode),
        trace_counts=trace_counts,
    )
