"""``conv2d_transpose``: Keras's Conv2DTranspose computed by kernel segregation."""

from __future__ import annotations

import tensorflow as tf

from keras_tconv.ops import lowerings
from keras_tconv.ops.auto import choose_implementation, native_below_rows
from keras_tconv.ops.phases import AxisPlan, axis_geometry, axis_plan

IMPLEMENTATIONS = ("auto", "split", "rows", "unified", "native", "zero_insertion")

# Activations that may run on the phase blocks, with their gradient computed
# from the activation's output, as TensorFlow's own gradients do. (Sigmoid and
# softmax are left out on purpose: Keras tags their outputs with the logits so
# that losses can use them, which a fused op would lose.)
FUSED_ACTIVATIONS = {
    None: (tf.identity, lambda y, dy: dy),
    "relu": (tf.nn.relu, lambda y, dy: tf.raw_ops.ReluGrad(gradients=dy, features=y)),
    "tanh": (tf.nn.tanh, lambda y, dy: tf.raw_ops.TanhGrad(y=y, dy=dy)),
}


def _pair(value, name: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2:
        raise ValueError(f"`{name}` must be an int or a tuple of 2 ints. Received: {name}={value}")
    return value


def plan_axes(kernel_shape, strides, padding, output_padding):
    """The two :class:`AxisPlan` objects of a 2-D transposed convolution
    with an undilated kernel of shape ``kernel_shape``."""
    strides = _pair(strides, "strides")
    output_padding = _pair(output_padding, "output_padding") or (None, None)
    return tuple(
        axis_plan(axis_geometry(kernel_shape[axis], strides[axis], padding, output_padding[axis]))
        for axis in range(2)
    )


def _gradient_view_of_cotangent(dy, plan_h: AxisPlan, plan_w: AxisPlan):
    """``dy`` cropped, plus explicit paddings, as the input of the adjoint
    strided convolution (:attr:`~keras_tconv.ops.phases.AxisGeometry.conv_padding`).
    A negative trailing amount crops ``dy``: those output positions receive
    no input pixel."""
    pads, crops = [[0, 0]], []
    for plan in (plan_h, plan_w):
        before, after = plan.geometry.conv_padding
        pads.append([before, max(after, 0)])
        crops.append(max(-after, 0))
    pads.append([0, 0])
    if any(crops):
        dy = dy[:, : lowerings.slice_stop(crops[0]), : lowerings.slice_stop(crops[1]), :]
    return dy, pads


def _segregated(implementation: str, plan_h: AxisPlan, plan_w: AxisPlan, activation: str | None, min_rows: int = 0):
    """A segregated lowering as one op ``(x, kernel[, bias]) -> y``.

    With ``min_rows``, inputs with fewer rows of work (batch x height x
    width, known only when the graph runs) take TensorFlow's own kernel
    instead (:func:`~keras_tconv.ops.auto.native_below_rows`); its gradient
    is the one below, so only the forward pass branches.

    Forward: the lowering's phase groups (bias already fused in), the
    activation applied to them (it is elementwise, so it commutes with the
    interleave, and TensorFlow fuses it into the convolution), then the
    interleave.

    Backward: differentiating ``s*s`` phase convolutions, gathers and an
    interleave costs more than the two single convolutions TensorFlow uses
    for its own Conv2DTranspose, so a custom gradient runs those: the
    activation's gradient from the output (TensorFlow's own
    ``ReluGrad``/``TanhGrad``), the input gradient, which is one ordinary
    strided ``conv2d`` of the cotangent with the original kernel, and the
    kernel gradient, one ``Conv2DBackpropFilter``. Measured against
    automatic differentiation of ``split`` and ``unified`` on the 16 layers
    of the benchmark's models suite, the strided input gradient was the
    fastest on all and the strided kernel gradient on all but one (U-Net
    32->64: 10.6 ms against 9.5 ms), also where the stacked window is 1x1
    and the forward pass is one matrix product (U-Net k=2 at 128x128: input
    gradient 8.4 ms against 33 ms, kernel gradient 19 ms against 37 ms).
    """
    lowering = lowerings.SEGREGATED[implementation]
    strides = [1, plan_h.stride, plan_w.stride, 1]
    act, act_grad = FUSED_ACTIVATIONS[activation]

    def segregated(x, kernel, bias):
        groups = lowering(x, kernel, bias, plan_h, plan_w)
        return lowerings.interleave([act(group) for group in groups], plan_h, plan_w)

    def native(x, kernel, bias):
        return act(lowerings.native(x, kernel, bias, plan_h, plan_w))

    @tf.custom_gradient
    def op(x, kernel, *bias):
        bias_ = bias[0] if bias else None
        if min_rows:
            # int32 product of the shape, which TFLite's builtins can convert.
            rows = tf.reduce_prod(tf.shape(x)[:3])
            y = tf.cond(rows < min_rows, lambda: native(x, kernel, bias_), lambda: segregated(x, kernel, bias_))
        else:
            y = segregated(x, kernel, bias_)

        def grad(dy):
            dy = act_grad(y, dy)
            dbias = [tf.reduce_sum(dy, axis=(0, 1, 2))] if bias else []
            dy, pads = _gradient_view_of_cotangent(dy, plan_h, plan_w)
            dx = tf.nn.conv2d(dy, kernel, strides=strides, padding=pads)
            dkernel = tf.raw_ops.Conv2DBackpropFilter(
                input=dy,
                filter_sizes=tf.shape(kernel),
                out_backprop=x,
                strides=strides,
                padding="EXPLICIT",
                explicit_paddings=[v for pair in pads for v in pair],
            )
            return [dx, dkernel] + dbias

        return y, grad

    return op


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
):
    """Exactly ``keras.layers.Conv2DTranspose``'s convolution (plus optional bias and activation).

    Args:
        inputs: 4-D tensor, ``(batch, h, w, in_channels)`` for
            ``"channels_last"`` or ``(batch, in_channels, h, w)``. Batch and
            spatial sizes may be unknown.
        kernel: ``(kh, kw, filters, in_channels)``, Keras's layout.
        strides: int or pair. Any positive value, also larger than the kernel.
        padding: ``"valid"`` or ``"same"``, as in Keras.
        output_padding: None, int or pair, each strictly less than the stride.
        data_format: ``"channels_last"`` or ``"channels_first"``. The latter
            is computed in NHWC between two transposes, so it also runs on CPU
            (where Keras's own layer fails).
        dilation_rate: int or pair. Keras allows it only with stride 1;
            here it is also defined for larger strides. The kernel is
            zero-expanded to its undilated equivalent (see
            :func:`~keras_tconv.ops.lowerings.dilate_kernel`).
        implementation: a segregated lowering, ``"split"`` (one conv per
            phase), ``"rows"`` (one conv per row phase, column phases
            stacked) or ``"unified"`` (one conv with all sub-kernels
            stacked); ``"native"`` (TensorFlow's own Conv2DBackpropInput);
            ``"zero_insertion"`` (the conventional baseline); or ``"auto"``,
            which picks from the static shapes and the lowering target
            (:func:`keras_tconv.ops.auto.choose_implementation`).
        bias: optional ``(filters,)`` vector added to the output. Passing it
            here rather than adding it afterwards is cheaper: it is added to
            each convolution's output before the interleave, where
            TensorFlow fuses it into the convolution.
        activation: optional name in :data:`FUSED_ACTIVATIONS` (``"relu"``,
            ``"tanh"``), applied to the output; likewise cheaper here, where
            it runs before the interleave, fused into the convolution.

    Returns:
        ``(batch, out_h, out_w, filters)`` (or channels first), with Keras's
        output lengths: ``keras.layers.Conv2DTranspose``'s output.
    """
    if activation not in FUSED_ACTIVATIONS:
        raise ValueError(
            f"Invalid value for argument `activation`. Expected one of {tuple(FUSED_ACTIVATIONS)}. "
            f"Received: activation={activation}"
        )
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"Invalid value for argument `implementation`. Expected one of {IMPLEMENTATIONS}. "
            f"Received: implementation={implementation}"
        )
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            "The `data_format` argument must be one of {'channels_first', 'channels_last'}. "
            f"Received: data_format={data_format}"
        )
    inputs = tf.convert_to_tensor(inputs)
    kernel = tf.convert_to_tensor(kernel, dtype=inputs.dtype)
    if inputs.shape.rank != 4 or kernel.shape.rank != 4:
        raise ValueError(
            "conv2d_transpose expects 4-D inputs and a 4-D kernel (kh, kw, filters, in_channels). "
            f"Received: inputs.shape={inputs.shape}, kernel.shape={kernel.shape}"
        )
    channels_first = data_format == "channels_first"
    x = tf.transpose(inputs, (0, 2, 3, 1)) if channels_first else inputs
    if x.shape[-1] is not None and x.shape[-1] != kernel.shape[-1]:
        raise ValueError(
            f"The number of input channels ({x.shape[-1]}) does not match the kernel's "
            f"last dimension ({kernel.shape[-1]}). Received: inputs.shape={inputs.shape}, "
            f"kernel.shape={kernel.shape}, data_format={data_format}"
        )
    dilation_rate = _pair(dilation_rate, "dilation_rate")
    if dilation_rate != (1, 1):
        kernel = lowerings.dilate_kernel(kernel, *dilation_rate)
    plan_h, plan_w = plan_axes(kernel.shape, strides, padding, output_padding)
    if bias is not None:
        bias = tf.convert_to_tensor(bias, dtype=x.dtype)

    min_rows = 0
    rows = x.shape[:3].num_elements()
    if rows == 0:
        # An input known to be empty gets TensorFlow's kernel, as Keras runs
        # it: a phase convolution can have output blocks where the input has
        # none, which TensorFlow's shape inference rejects ("Negative
        # dimension size") and its fused Conv2D+BiasAdd kernel crashes on.
        implementation = "native"
    elif implementation == "auto":
        implementation = choose_implementation(kernel.shape, plan_h, plan_w)
        min_rows = native_below_rows(kernel.shape, implementation)
        if min_rows and rows is not None:
            implementation, min_rows = ("native" if rows < min_rows else implementation), 0
    if implementation in lowerings.WHOLE_OUTPUT:
        # Both keep the gradients TensorFlow registers for their ops.
        lowering = lowerings.WHOLE_OUTPUT[implementation]
        y = FUSED_ACTIVATIONS[activation][0](lowering(x, kernel, bias, plan_h, plan_w))
    else:
        op = _segregated(implementation, plan_h, plan_w, activation, min_rows)
        y = op(x, kernel) if bias is None else op(x, kernel, bias)
    return tf.transpose(y, (0, 3, 1, 2)) if channels_first else y
