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
"""

from __future__ import annotations

import collections
import dataclasses
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from keras_tconv import SegregatedConv2DTranspose
from keras_tconv.benchmark.suites import Shape

IMPLEMENTATIONS = ("keras", "zero_insertion", "split", "rows", "unified", "native", "auto")
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


@dataclasses.dataclass
class Case:
    """One shape in one mode on one device: the timed callables and their inputs.

    ``run[name]()`` executes one step of implementation ``name`` (or of
    :data:`CEILING`) and returns its outputs: ``functions[name](*args[name])``.
    """

    run: dict[str, Callable[[], object]]
    functions: dict[str, tf.types.experimental.GenericFunction]
    args: dict[str, tuple]
    first_call_s: dict[str, float]

    def _ops(self, name: str) -> list:
        return self.functions[name].get_concrete_function(*self.args[name]).graph.get_operations()

    def op_types(self, name: str) -> collections.Counter:
        """How many ops of each type the traced function of ``name`` holds."""
        return collections.Counter(op.type for op in self._ops(name))

    def kernel_gradient_paddings(self, name: str) -> list[str]:
        """The padding of each kernel-gradient call (``Conv2DBackpropFilter``)
        in the traced function of ``name``: what tells the kernel gradient's
        forms apart (see ``keras_tconv.ops.tensorflow.gradients``)."""
        return sorted(op.get_attr("padding").decode() for op in self._ops(name) if op.type == "Conv2DBackpropFilter")


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


def _step_function(call: Callable, variables: list, mode: str) -> tf.types.experimental.GenericFunction:
    if mode == "forward":
        return tf.function(call)

    def train_step(x, cotangent):
        with tf.GradientTape() as tape:
            tape.watch(x)
            # The step returns a loss computed from the output, as training does: with
            # the cotangent passed as output_gradients alone, graph pruning would drop
            # the forward pass of a layer whose gradients do not need its output.
            loss = tf.reduce_sum(call(x) * cotangent)
        return [loss, *tape.gradient(loss, [x, *variables])]

    return tf.function(train_step)


def _ceiling(shape: Shape, seed: int) -> tuple[Callable, list]:
    rng = np.random.default_rng(seed + 1)
    kernel = tf.Variable(rng.standard_normal((*shape.kernel, shape.in_channels, shape.filters), dtype=np.float32))
    bias = tf.Variable(rng.standard_normal((shape.filters,), dtype=np.float32))

    def conv(x):
        return tf.nn.bias_add(tf.nn.conv2d(x, kernel, strides=1, padding="SAME"), bias)

    return conv, [kernel, bias]


def build_case(shape: Shape, mode: str, impls: tuple[str, ...], device: str, seed: int = 0) -> Case:
    """Layers, inputs and traced step functions of ``impls``, the ceiling and
    the empty call.

    Everything is created under ``device`` (a TensorFlow device string such as
    ``"/CPU:0"``); each function is traced here, once, so timing never traces.
    """
    with tf.device(device):
        rng = np.random.default_rng(seed + 2)
        x = tf.constant(rng.standard_normal(shape.input_shape, dtype=np.float32))
        layers = build_layers(shape, impls, seed)
        calls = {impl: (layer, layer.trainable_variables) for impl, layer in layers.items()}
        calls[CEILING] = _ceiling(shape, seed)
        args = {name: (x,) for name in calls}
        if mode == "train":
            # One cotangent shared by all implementations, so their gradients compare.
            cotangent = tf.constant(rng.standard_normal(output_shape(shape), dtype=np.float32))
            ceiling_out = (*shape.input_shape[:3], shape.filters)
            ceiling_cotangent = tf.constant(rng.standard_normal(ceiling_out, dtype=np.float32))
            args = {name: (x, ceiling_cotangent if name == CEILING else cotangent) for name in calls}
        run, functions, first_call_s = {}, {}, {}
        for name, (call, variables) in calls.items():
            # The first call traces (and, for auto, measures its candidates): what a
            # model pays once per layer geometry before its first result.
            start = time.perf_counter()
            function = _step_function(call, variables, mode)
            function.get_concrete_function(*args[name])
            tf.nest.map_structure(lambda t: t.numpy(), function(*args[name]))
            first_call_s[name] = time.perf_counter() - start
            functions[name] = function
            run[name] = _bind(function, args[name])
        layer_args = args[impls[0]]
        empty = tf.function(lambda *inputs: inputs[0])
        empty.get_concrete_function(*layer_args)
        functions[EMPTY_CALL], args[EMPTY_CALL], run[EMPTY_CALL] = empty, layer_args, _bind(empty, layer_args)
    return Case(run=run, functions=functions, args=args, first_call_s=first_call_s)


def _bind(function: Callable, args: tuple) -> Callable[[], object]:
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
