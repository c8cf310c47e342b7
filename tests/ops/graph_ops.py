"""The ops of a traced forward-and-gradient graph: for the tests that check
which TensorFlow kernels the layer calls, and with which attributes."""

from __future__ import annotations

import tensorflow as tf

from keras_tconv.ops import conv2d_transpose


def gradient_graph_ops(x_spec, kernel_shape, implementation, **config):
    """The ops of the traced forward-and-gradient graph, cond branches
    included; the kernel (a float32 variable) is cast to ``x_spec``'s dtype."""
    kernel = tf.Variable(tf.random.normal(kernel_shape))

    @tf.function(input_signature=[x_spec])
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = conv2d_transpose(x, tf.cast(kernel, x.dtype), implementation=implementation, **config)
        return tape.gradient(y, [x, kernel])

    graph = step.get_concrete_function().graph
    ops, functions = list(graph.get_operations()), list(graph._functions.values())
    while functions:
        function = functions.pop()
        ops += list(function.graph.get_operations())
        functions += list(function.graph._functions.values())
    return ops
