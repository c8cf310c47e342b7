"""The callables the benchmark times: one per implementation, plus the ceiling.

Every implementation is a Keras layer with the same weights: ``keras`` is the
built-in ``keras.layers.Conv2DTranspose`` (TensorFlow's Conv2DBackpropInput);
the others are ``keras_tconv.SegregatedConv2DTranspose`` with that
``implementation``. Timing the layers (bias included) measures exactly what a
user swapping one layer for the other gets.

The empty call (:data:`EMPTY_CALL`) is a ``tf.function`` taking the same
inputs and computing nothing: its time is what calling any of the others
costs before it computes, so a layer whose time is not well above it is too
small to compare implementations on.

The ceiling is a dense stride-1 ``tf.nn.conv2d`` of the same input with a
``kh x kw`` kernel and ``filters`` outputs ("same" padding), plus bias: it
does exactly :attr:`Shape.macs` multiply-accumulates, so its speed is what
this machine's convolution kernels reach on that much work, and
``ceiling_time / implementation_time`` is an implementation's efficiency.

Each callable is a ``tf.function`` traced once for its fixed inputs. In
``forward`` mode it returns the layer output; in ``train`` mode it runs the
forward pass under a tape, reduces the output against a fixed random
cotangent to a loss, and returns the loss and its gradients with respect to
the input, kernel and bias.

The layers, their weights, the inputs and the ceiling's weights
(:func:`build_layers`, :func:`step_inputs`, :func:`ceiling_weights`) are the
same on every backend; :mod:`keras_tconv.benchmark.jax_impls` builds the
JAX backend's case from them, and its TensorFlow reference with
:func:`traced_step`.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from keras_tconv import SegregatedConv2DTranspose
from keras_tconv.benchmark.suites import Shape
from keras_tconv.ops import registry
from keras_tconv.ops.choosing import tuning
from keras_tconv.ops.platform import cpu_kernel_library
from keras_tconv.tf_devices import wait_for_gpu

# Keras's layer, then every implementation of the registry, auto last.
IMPLEMENTATIONS = ("keras", *(name for name in registry.IMPLEMENTATIONS if name != "auto"), "auto")
CEILING = "dense_conv2d"
EMPTY_CALL = "empty_call"
MODES = ("forward", "train")


def make_layer(shape: Shape, impl: str) -> keras.layers.Conv2DTranspose:
    """An unbuilt layer of ``impl`` with ``shape``'s configuration."""
    config = dict(
        filters=shape.filters,
        kernel_size=shape.kernel,
        strides=shape.strides,
        padding=shape.padding,
        output_padding=shape.output_padding,
        activation=shape.activation,
        use_bias=shape.use_bias,
    )
    if impl == "keras":
        return keras.layers.Conv2DTranspose(**config)
    return SegregatedConv2DTranspose(**config, implementation=impl)


def output_shape(shape: Shape) -> tuple[int, int, int, int]:
    """The layer's output shape, by Keras's own arithmetic."""
    return tuple(make_layer(shape, "keras").compute_output_shape(shape.input_shape))


def cpu_sync(result) -> None:
    """Nothing to wait for: on the CPU a function call returns when its outputs are computed."""


def sync_for(device: str) -> Callable[[object], None]:
    """How to wait for the outputs of a TensorFlow step on ``device`` (a TensorFlow device string)."""
    return wait_for_gpu if device.startswith("/GPU") else cpu_sync


def kernels(device: str) -> str:
    """What computes TensorFlow's ops on ``device`` (a TensorFlow device string):
    ``"cuDNN"`` on a GPU, else the CPU kernel library."""
    return "cuDNN" if device.startswith("/GPU") else cpu_kernel_library()


def auto_picks(signatures: dict) -> str:
    """Which implementation ``auto`` ran: the first whose ops equal ``auto``'s ("" if none does).

    Read off the traced graphs (or converted models) rather than the library's
    internal rule, so it stays right whatever that rule becomes.
    """
    auto = signatures.get("auto")
    if auto is None:
        return ""
    return next((impl for impl, ops in signatures.items() if impl != "auto" and ops == auto), "")


@dataclasses.dataclass
class Case:
    """One shape in one mode on one device: the timed callables and their inputs.

    ``run[name]()`` executes one step of implementation ``name`` (or of
    :data:`CEILING` or :data:`EMPTY_CALL`) and returns its outputs:
    ``functions[name](*args[name])``; ``sync`` waits until such outputs are
    computed. ``implementations`` are the names that get a result row. The
    runner reads a case through these fields, ``first_call_s``,
    :meth:`columns` and :meth:`auto_picks`, which the JAX backend's case
    (:class:`keras_tconv.benchmark.jax_impls.JaxCase`) has too.
    """

    implementations: tuple[str, ...]
    run: dict[str, Callable[[], object]]
    functions: dict[str, tf.types.experimental.GenericFunction]
    args: dict[str, tuple]
    first_call_s: dict[str, float]
    sync: Callable[[object], None]
    kernels: str
    xla_picks: str | None = None

    def _ops(self, name: str) -> list:
        return self.functions[name].get_concrete_function(*self.args[name]).graph.get_operations()

    def op_types(self, name: str) -> collections.Counter:
        """How many ops of each type the traced function of ``name`` holds."""
        return collections.Counter(op.type for op in self._ops(name))

    def kernel_gradient_paddings(self, name: str) -> list[str]:
        """The padding of each kernel-gradient call (``Conv2DBackpropFilter``)
        in the traced function of ``name``: what tells the kernel gradient's
        forms apart (see ``keras_tconv.ops.tensorflow.gradients``)."""
        return sorted(
            op.get_attr("padding").decode() for op in self._ops(name) if op.type == "Conv2DBackpropFilter"
        )

    def columns(self, name: str) -> dict:
        """The result columns that describe how ``name`` ran: backend, kernels and how often it was traced."""
        return {
            "backend": "tensorflow",
            "kernels": self.kernels,
            "traces": self.functions[name].experimental_get_tracing_count(),
        }

    def auto_picks(self) -> str:
        """The implementation ``auto`` ran, read off the traced graphs (:func:`auto_picks`), plus ", kernel
        gradient EXPLICIT" where it measured Eigen's kernel gradient faster (under oneDNN); under XLA
        ``auto``'s own choices (:func:`auto_choices`), since its gradient may differ from its forward's."""
        if self.xla_picks is not None:
            return self.xla_picks
        picks = auto_picks({impl: self.op_types(impl) for impl in self.implementations})
        if picks and self.kernel_gradient_paddings("auto") != self.kernel_gradient_paddings(picks):
            picks += ", kernel gradient EXPLICIT"
        return picks


def build_layers(shape: Shape, impls: tuple[str, ...], seed: int) -> dict[str, keras.layers.Layer]:
    """Built layers of ``impls``, all holding the same random kernel (and bias)."""
    rng = np.random.default_rng(seed)
    kernel = rng.standard_normal((*shape.kernel, shape.filters, shape.in_channels), dtype=np.float32)
    kernel *= 1.0 / np.sqrt(np.prod(shape.kernel) * shape.in_channels)
    bias = rng.standard_normal((shape.filters,), dtype=np.float32)
    layers = {}
    for impl in impls:
        layer = make_layer(shape, impl)
        layer.build(shape.input_shape)
        layer.set_weights([kernel, bias] if shape.use_bias else [kernel])
        layers[impl] = layer
    return layers


def step_inputs(shape: Shape, mode: str, seed: int) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """The arguments of one step, as NumPy arrays: the layers' and the ceiling's.

    Both are ``(x,)`` in ``forward`` mode; in ``train`` mode each adds the
    cotangent its output is reduced against, one shared by all
    implementations, so that their gradients compare.
    """
    rng = np.random.default_rng(seed + 2)
    x = rng.standard_normal(shape.input_shape, dtype=np.float32)
    if mode != "train":
        return (x,), (x,)
    cotangent = rng.standard_normal(output_shape(shape), dtype=np.float32)
    ceiling_cotangent = rng.standard_normal((*shape.input_shape[:3], shape.filters), dtype=np.float32)
    return (x, cotangent), (x, ceiling_cotangent)


def ceiling_weights(shape: Shape, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The ceiling's random kernel ``(kh, kw, in_channels, filters)`` and bias."""
    rng = np.random.default_rng(seed + 1)
    kernel = rng.standard_normal((*shape.kernel, shape.in_channels, shape.filters), dtype=np.float32)
    return kernel, rng.standard_normal((shape.filters,), dtype=np.float32)


def _step_function(
    call: Callable, variables: list, mode: str, jit: bool
) -> tf.types.experimental.GenericFunction:
    if mode == "forward":
        return tf.function(call, jit_compile=jit or None)

    def train_step(x, cotangent):
        with tf.GradientTape() as tape:
            tape.watch(x)
            # The step returns a loss computed from the output, as training does: with
            # the cotangent passed as output_gradients alone, graph pruning would drop
            # the forward pass of a layer whose gradients do not need its output.
            loss = tf.reduce_sum(call(x) * cotangent)
        return [loss, *tape.gradient(loss, [x, *variables])]

    return tf.function(train_step, jit_compile=jit or None)


def traced_step(
    call: Callable, variables: list, mode: str, args: tuple, jit: bool = False
) -> tuple[tf.types.experimental.GenericFunction, float]:
    """The ``tf.function`` of one step of ``call`` (``x -> y``, differentiated
    with respect to ``x`` and ``variables`` in ``train`` mode), compiled by
    XLA if ``jit``, traced for ``args`` and called once, and how long that
    first call took.

    The first call traces (and, for auto, measures its candidates; under XLA
    also compiles): what a model pays once per layer geometry before its
    first result.
    """
    start = time.perf_counter()
    function = _step_function(call, variables, mode, jit)
    function.get_concrete_function(*args)
    tf.nest.map_structure(lambda t: t.numpy(), function(*args))
    return function, time.perf_counter() - start


def _ceiling(shape: Shape, seed: int) -> tuple[Callable, list]:
    kernel, bias = (tf.Variable(weights) for weights in ceiling_weights(shape, seed))

    def conv(x):
        return tf.nn.bias_add(tf.nn.conv2d(x, kernel, strides=1, padding="SAME"), bias)

    return conv, [kernel, bias]


def auto_choices(layer, mode: str) -> str:
    """The lowering the ``auto`` layer ran, from the layer and, in ``train``
    mode, the gradient's from ``auto``'s choices in this process (where the
    backend chooses the gradient separately): "" if it did not run."""
    if layer is None:
        return ""
    picks = layer.chosen_implementation or ""
    gradient = next((c.implementation for c in tuning.choices() if c.key.endswith(" gradient")), None)
    return f"{picks}, gradient {gradient}" if mode == "train" and gradient else picks


def build_case(
    shape: Shape, mode: str, impls: tuple[str, ...], device: str, seed: int = 0, jit: bool = False
) -> Case:
    """Layers, inputs and traced step functions of ``impls``, the ceiling and
    the empty call; with ``jit``, every step (Keras's layer and the ceiling
    included) compiled by XLA.

    Everything is created under ``device`` (a TensorFlow device string such as
    ``"/CPU:0"``); each function is traced here, once, so timing never traces.
    """
    # Under XLA auto's choices are read back from tuning.choices(): forget those of earlier cases.
    tuning.clear_memory()
    with tf.device(device):
        layer_args, ceiling_args = (
            tuple(tf.constant(a) for a in arrays) for arrays in step_inputs(shape, mode, seed)
        )
        layers = build_layers(shape, impls, seed)
        calls = {impl: (layer, layer.trainable_variables) for impl, layer in layers.items()}
        calls[CEILING] = _ceiling(shape, seed)
        args = {name: ceiling_args if name == CEILING else layer_args for name in calls}
        run, functions, first_call_s = {}, {}, {}
        for name, (call, variables) in calls.items():
            functions[name], first_call_s[name] = traced_step(call, variables, mode, args[name], jit)
            run[name] = bind(functions[name], args[name])
        empty = tf.function(lambda *inputs: inputs[0])
        empty.get_concrete_function(*layer_args)
        functions[EMPTY_CALL], args[EMPTY_CALL], run[EMPTY_CALL] = empty, layer_args, bind(empty, layer_args)
    return Case(
        implementations=impls,
        run=run,
        functions=functions,
        args=args,
        first_call_s=first_call_s,
        sync=sync_for(device),
        kernels=f"XLA {device.strip('/').split(':')[0]}" if jit else kernels(device),
        xla_picks=auto_choices(layers.get("auto"), mode) if jit else None,
    )


def bind(function: Callable, args: tuple) -> Callable[[], object]:
    """``function(*args)`` as a call without arguments: a timed candidate."""
    return lambda: function(*args)


def max_relative_error(outputs, reference) -> float:
    """``max |a - b| / max |b|`` over all corresponding tensors."""
    errors = [0.0]
    for got, want in zip(tf.nest.flatten(outputs), tf.nest.flatten(reference)):
        got, want = np.asarray(got), np.asarray(want)
        if want.size:
            scale = max(float(np.max(np.abs(want))), np.finfo(np.float32).tiny)
            errors.append(float(np.max(np.abs(got - want))) / scale)
    return max(errors)
