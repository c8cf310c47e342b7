"""``conv2d_transpose``: Keras's Conv2DTranspose computed by kernel segregation."""

from __future__ import annotations

import functools

import tensorflow as tf

from keras_tconv.ops import arguments, registry
from keras_tconv.ops.choosing import tuning
from keras_tconv.ops.choosing.rules import choose_implementation, lowering_target_name, xla_gradient_rule
from keras_tconv.ops.phases import AxisPlan, check_output_padding, pair, plan_axes
from keras_tconv.ops.platform import cpu_kernel_library
from keras_tconv.ops.tensorflow import gradients, lowerings
from keras_tconv.ops.tensorflow import tuning as tf_tuning
from keras_tconv.tf_devices import wait_for_gpu

# The fused activations (keras_tconv.ops.registry.FUSED_ACTIVATIONS) run on the
# phase blocks, with their gradient computed from the activation's output, as
# TensorFlow's own gradients do.
FUSED_ACTIVATIONS = {
    None: (tf.identity, lambda y, dy: dy),
    "relu": (tf.nn.relu, lambda y, dy: tf.raw_ops.ReluGrad(gradients=dy, features=y)),
    "tanh": (tf.nn.tanh, lambda y, dy: tf.raw_ops.TanhGrad(y=y, dy=dy)),
}


def _forward(implementation: str, plan_h: AxisPlan, plan_w: AxisPlan, activation: str | None):
    """``(x, kernel, bias) -> y`` for one lowering, the activation included.

    A segregated lowering's phase groups come with the bias already fused in;
    the activation runs on them (it is elementwise, so it commutes with the
    interleave, and TensorFlow fuses it into the convolution), then the
    interleave writes the output.
    """
    act = FUSED_ACTIVATIONS[activation][0]
    if implementation in lowerings.WHOLE_OUTPUT:
        lowering = lowerings.WHOLE_OUTPUT[implementation]
        return lambda x, kernel, bias: act(lowering(x, kernel, bias, plan_h, plan_w))
    lowering = lowerings.SEGREGATED[implementation]
    return lambda x, kernel, bias: lowerings.interleave(
        [act(group) for group in lowering(x, kernel, bias, plan_h, plan_w)], plan_h, plan_w
    )


def _segregated_gradient(lowering: str, dy, x, kernel, plan_h: AxisPlan, plan_w: AxisPlan):
    """``(dx, dkernel)`` as the derivative of the segregated ``lowering``
    (without bias and activation), for a gradient compiled by XLA: stride-1
    correlations of the cotangent's phases with the input for the kernel (a
    matrix product per tap, :func:`lowerings.correlation_by_taps`), and of
    the cotangent with the sub-kernels for the input.

    Built with ``tf.gradients``, since it runs inside graphs only (XLA
    compiles graphs) and, unlike a tape, records there while an outer
    gradient is being built. The forward it differentiates is unused, and
    graph pruning (or XLA) drops it.
    """
    y = lowerings.interleave(
        lowerings.SEGREGATED[lowering](
            x, kernel, None, plan_h, plan_w, correlate=lowerings.correlation_by_taps
        ),
        plan_h,
        plan_w,
    )
    return tf.gradients(y, [x, kernel], grad_ys=dy)


def _adjoint_gradient(dy, x, kernel, plan_h: AxisPlan, plan_w: AxisPlan, form: str = "native"):
    """``(dx, dkernel)`` by TensorFlow's two kernels (:mod:`gradients`), the
    kernel gradient in padding ``form``."""
    dx = gradients.input_gradient(dy, kernel, x, plan_h, plan_w)
    return dx, gradients.kernel_gradient(dy, x, tf.shape(kernel), plan_h, plan_w, form=form)


def _with_adjoint_gradient(
    forward,
    plan_h: AxisPlan,
    plan_w: AxisPlan,
    activation: str | None,
    kernel_gradient_form=None,
    gradient_lowering=None,
):
    """``forward`` as one op with its own gradient, by default the adjoint strided correlation.

    Differentiating ``s*s`` phase convolutions, gathers and an interleave
    costs more on TensorFlow's kernels than the two single convolutions
    TensorFlow uses for its own Conv2DTranspose, so the gradient runs those
    (:func:`_adjoint_gradient`; :mod:`keras_tconv.ops.tensorflow.gradients`
    also routes around TensorFlow's defects): after the activation's
    gradient from the output (TensorFlow's own ``ReluGrad``/``TanhGrad``),
    the input gradient, one strided ``conv2d`` of the cotangent with the
    kernel, and the kernel gradient, one ``Conv2DBackpropFilter``. The same
    gradient serves ``native``, so that it, too, avoids the defective
    kernels. An empty input or output has zero gradients (TensorFlow's
    kernels return uninitialised memory there).

    Both callables are asked only when a gradient is built, so that only
    layers that are differentiated measure them. ``kernel_gradient_form()``
    names the adjoint kernel gradient's padding form (one of
    :data:`gradients.KERNEL_GRADIENT_FORMS`; default ``"native"``);
    ``gradient_lowering()`` names the gradient's lowering: ``"native"`` (the
    adjoint, the default) or a segregated lowering, whose derivative
    :func:`_segregated_gradient` runs instead (under XLA, where that can be
    faster).
    """
    act_grad = FUSED_ACTIVATIONS[activation][1]

    @tf.custom_gradient
    def op(x, kernel, *bias):
        y = forward(x, kernel, bias[0] if bias else None)

        def grad(dy):
            dy = act_grad(y, dy)
            dbias = [tf.reduce_sum(dy, axis=(0, 1, 2))] if bias else []
            if x.shape.num_elements() == 0 or y.shape.num_elements() == 0:
                return [tf.zeros_like(x), tf.zeros_like(kernel)] + dbias
            lowering = gradient_lowering() if gradient_lowering else "native"
            if lowering in lowerings.SEGREGATED:
                dx, dkernel = _segregated_gradient(lowering, dy, x, kernel, plan_h, plan_w)
            else:
                form = kernel_gradient_form() if kernel_gradient_form else "native"
                dx, dkernel = _adjoint_gradient(dy, x, kernel, plan_h, plan_w, form)
            return [dx, dkernel] + dbias

        return y, grad

    return op


def _empty_output(x, kernel, bias, plan_h: AxisPlan, plan_w: AxisPlan):
    """The output of a geometry whose output has length 0 along an axis:
    an empty tensor of Keras's shape, with zero gradients."""

    @tf.custom_gradient
    def op(*args):
        shape = tf.shape(x)
        lengths = [p.geometry.output_length(shape[a + 1]) for a, p in enumerate((plan_h, plan_w))]
        y = tf.zeros(tf.stack([shape[0], *lengths, kernel.shape[2]]), x.dtype)
        return y, lambda dy: [tf.zeros_like(arg) for arg in args]

    return op(x, kernel) if bias is None else op(x, kernel, bias)


def _output_may_be_empty(plans, lengths) -> bool | None:
    """True if an output length ``N*s + c`` is 0 for the static input
    lengths, None if it is for some input length 1 not known yet, else False.

    Keras's output lengths are at least ``N*s - s``, so only ``N = 1`` with
    ``c = -s`` ("same" with an even kernel and ``output_padding=0``, a
    geometry Keras itself rejects) gives an empty output from a non-empty
    input.
    """
    maybe = False
    for plan, n in zip(plans, lengths):
        if plan.geometry.extra == -plan.stride:
            if n == 1:
                return True
            maybe = maybe or n is None
    return None if maybe else False


def _traced_runner(function, args_by_batch: dict, xla: bool = False):
    """A runner for :func:`tuning.choose`: ``function`` traced (without
    autograph: it is plain graph code, and converting it costs seconds), and
    compiled by XLA if ``xla``, for each batch's arguments here, so that
    timing its first run leaves tracing and compiling out; ``run(n)`` calls it on batch
    ``n``'s arguments and, on a GPU, waits for the result, so that measured
    times are complete."""
    function = tf.function(function, autograph=False, jit_compile=xla or None)
    for args in args_by_batch.values():
        function.get_concrete_function(*args)
        if xla:  # XLA compiles at the first call: that, too, stays out of the timed runs
            tf.nest.map_structure(lambda t: t.numpy(), function(*args))
    if not tf_tuning.visible_gpus():
        return lambda n: function(*args_by_batch[n])

    def run(n):
        wait_for_gpu(function(*args_by_batch[n]))

    return run


def _measurable(x) -> bool:
    """Whether ``auto`` may time candidates for ``x``: the target is
    TensorFlow and the spatial size is known while tracing."""
    return lowering_target_name() == "tensorflow" and None not in x.shape[1:3]


def _random_like(shape, dtype, batch: int):
    return tf.random.normal((batch, *shape[1:]), dtype=dtype)


def _measurement(x, kernel, bias, activation, plan_h: AxisPlan, plan_w: AxisPlan) -> tuple[str, tuple]:
    """The layer's cache key and measured batches (:func:`tuning.measurement`)."""
    return tuning.measurement(
        tuple(x.shape), x.dtype.name, kernel.shape[2], bias is not None, activation, plan_h, plan_w
    )


def _auto(x, kernel, bias, activation, plan_h: AxisPlan, plan_w: AxisPlan, xla: bool) -> tuning.Choice:
    """``implementation="auto"``: measured on the device at hand
    (:mod:`keras_tconv.ops.choosing.tuning`), each candidate compiled by XLA
    when the layer is (``xla``), where the spatial size is known and the
    target is TensorFlow; else the static rule of
    :mod:`keras_tconv.ops.choosing.rules`."""
    batch, height, width, _ = x.shape
    where = tf_tuning.where(tf_tuning.placement(x))
    static = choose_implementation(kernel.shape, plan_h, plan_w, batch, height, width, device=where.device)
    if not _measurable(x):
        return tuning.Choice("", static, "static rule")
    key, batches = _measurement(x, kernel, bias, activation, plan_h, plan_w)
    candidates = registry.candidates((plan_h.stride, plan_w.stride))

    def make_runner(implementation):
        k = tf.random.normal(kernel.shape, dtype=kernel.dtype)
        b = None if bias is None else tf.random.normal(bias.shape, dtype=bias.dtype)
        args = {n: (_random_like(x.shape, x.dtype, n), k, b) for n in batches}
        return _traced_runner(_forward(implementation, plan_h, plan_w, activation), args, xla)

    budget_s = tuning.COMPILED_BUDGET_S if xla else tuning.BUDGET_S
    return tuning.choose(
        tf_tuning.key_for_compiler(key, xla), candidates, make_runner, batches, static, where, budget_s
    )


def _gradient_arguments(x, kernel, plan_h: AxisPlan, plan_w: AxisPlan, batches) -> dict:
    """Random ``(dy, x)`` of the traced shapes at each measured batch."""
    _, height, width, _ = x.shape
    out_shape = (
        None,
        plan_h.geometry.output_length(height),
        plan_w.geometry.output_length(width),
        kernel.shape[2],
    )
    return {n: (_random_like(out_shape, x.dtype, n), _random_like(x.shape, x.dtype, n)) for n in batches}


def _auto_kernel_gradient(x, kernel, bias, activation, plan_h: AxisPlan, plan_w: AxisPlan) -> str:
    """The kernel gradient's padding form for ``implementation="auto"``:
    ``"native"`` (TensorFlow's registered form, "SAME"/"VALID") or
    ``"explicit"``, measured where the choice matters.

    It matters only under oneDNN, where "SAME"/"VALID" run oneDNN's
    ``Conv2DBackpropFilter`` and ``"EXPLICIT"`` runs Eigen's: which is faster
    depends on the CPU and the shapes. Under Eigen both forms run the same
    kernel, so nothing is measured there, nor on a GPU, nor where the
    geometry has no "SAME"/"VALID" form (:func:`gradients.kernel_gradient_forms`).
    """
    lengths = tuple(x.shape[1:3])
    if (
        not _measurable(x)
        or cpu_kernel_library() != "oneDNN"
        or tf_tuning.device_name(tf_tuning.placement(x)).startswith("GPU")
        or gradients.kernel_gradient_forms((plan_h, plan_w), lengths) != gradients.KERNEL_GRADIENT_FORMS
    ):
        return "native"
    key, batches = _measurement(x, kernel, bias, activation, plan_h, plan_w)

    def make_runner(form):
        gradient = functools.partial(
            gradients.kernel_gradient, kernel_shape=kernel.shape, plan_h=plan_h, plan_w=plan_w, form=form
        )
        return _traced_runner(gradient, _gradient_arguments(x, kernel, plan_h, plan_w, batches))

    # Half the forward's budget: a layer's first training step measures both.
    choice = tuning.choose(
        f"{key} kernel-gradient",
        gradients.KERNEL_GRADIENT_FORMS,
        make_runner,
        batches,
        "native",
        tf_tuning.where("CPU"),
        budget_s=tuning.BUDGET_S / 2,
    )
    return choice.implementation


def _auto_xla_gradient(x, kernel, bias, activation, plan_h: AxisPlan, plan_w: AxisPlan) -> str:
    """The gradient's lowering for ``implementation="auto"`` under XLA:
    ``"native"`` (the adjoint: TensorFlow's strided ``conv2d`` and
    ``Conv2DBackpropFilter``, as XLA compiles them, which is also Keras's
    layer's gradient) or the derivative of one segregated lowering
    (:func:`_segregated_gradient`, the pick of
    :func:`~keras_tconv.ops.choosing.rules.xla_gradient_rule`, whatever the
    forward runs), each compiled by XLA and measured on the device at hand;
    ``"native"`` where nothing can be measured. One segregated candidate,
    not three, and the one that compiles fastest: compiling a segregated
    derivative with XLA costs more than its forward, and the first call pays
    it. Cached under the geometry's key plus ``XLA gradient``."""
    if not _measurable(x):
        return "native"
    key, batches = _measurement(x, kernel, bias, activation, plan_h, plan_w)
    segregated = xla_gradient_rule(plan_h, plan_w)

    def make_runner(lowering):
        if lowering in lowerings.SEGREGATED:
            gradient = functools.partial(_segregated_gradient, lowering, plan_h=plan_h, plan_w=plan_w)
        else:
            gradient = functools.partial(_adjoint_gradient, plan_h=plan_h, plan_w=plan_w)
        k = tf.random.normal(kernel.shape, dtype=kernel.dtype)
        args = _gradient_arguments(x, kernel, plan_h, plan_w, batches)
        return _traced_runner(gradient, {n: (dy, xn, k) for n, (dy, xn) in args.items()}, xla=True)

    choice = tuning.choose(
        f"{tf_tuning.key_for_compiler(key, True)} gradient",
        ("native", segregated),
        make_runner,
        batches,
        "native",
        tf_tuning.where(tf_tuning.placement(x)),
        budget_s=tuning.COMPILED_BUDGET_S,
    )
    return choice.implementation


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
    """Exactly ``keras.layers.Conv2DTranspose``'s convolution (plus optional bias and activation).

    Args:
        inputs: 4-D tensor, ``(batch, h, w, in_channels)`` for
            ``"channels_last"`` or ``(batch, in_channels, h, w)``. Batch and
            spatial sizes may be unknown.
        kernel: ``(kh, kw, filters, in_channels)``, Keras's layout.
        strides: int or pair. Any positive value, also larger than the kernel.
        padding: ``"valid"`` or ``"same"``, as in Keras.
        output_padding: None, int or pair, each at least 0 and less than
            the stride, or than the dilation where that is larger.
        data_format: ``"channels_last"`` or ``"channels_first"``. The latter
            is computed in NHWC between two transposes, so it also runs on CPU
            (where Keras's own layer fails).
        dilation_rate: int or pair. Keras allows it only with stride 1;
            here it is also defined for larger strides. The kernel is
            zero-expanded to its undilated equivalent (see
            :func:`~keras_tconv.ops.tensorflow.lowerings.dilate_kernel`).
        implementation: a segregated lowering, ``"split"`` (one conv per
            phase), ``"rows"`` (one conv per row phase, column phases
            stacked) or ``"unified"`` (one conv with all sub-kernels
            stacked); ``"native"`` (TensorFlow's own Conv2DBackpropInput);
            ``"zero_insertion"`` (the conventional baseline); or ``"auto"``,
            which measures the candidates once per geometry on the device
            at hand (:mod:`keras_tconv.ops.choosing.tuning`) or, where nothing can be
            measured, follows the static rule of :mod:`keras_tconv.ops.choosing.rules`.
        bias: optional ``(filters,)`` vector added to the output. Passing it
            here rather than adding it afterwards is cheaper: it is added to
            each convolution's output before the interleave, where
            TensorFlow fuses it into the convolution.
        activation: optional name in :data:`FUSED_ACTIVATIONS` (``"relu"``,
            ``"tanh"``), applied to the output; likewise cheaper here, where
            it runs before the interleave, fused into the convolution.
        on_choice: optional callable, called (while tracing) with the
            lowering that runs, which for ``"auto"`` is its pick.

    Returns:
        ``(batch, out_h, out_w, filters)`` (or channels first), with Keras's
        output lengths: ``keras.layers.Conv2DTranspose``'s output.
    """
    arguments.check_options(activation, implementation, data_format)
    inputs = tf.convert_to_tensor(inputs)
    kernel = tf.convert_to_tensor(kernel, dtype=inputs.dtype)
    arguments.check_ranks(inputs.shape, kernel.shape)
    channels_first = data_format == "channels_first"
    x = tf.transpose(inputs, (0, 2, 3, 1)) if channels_first else inputs
    arguments.check_channels(x.shape[-1], inputs.shape, kernel.shape, data_format)
    dilation_rate = pair(dilation_rate, "dilation_rate")
    check_output_padding(pair(output_padding, "output_padding"), pair(strides, "strides"), dilation_rate)
    if dilation_rate != (1, 1):
        kernel = lowerings.dilate_kernel(kernel, *dilation_rate)
    plan_h, plan_w = plan_axes(kernel.shape, strides, padding, output_padding)
    if bias is not None:
        bias = tf.convert_to_tensor(bias, dtype=x.dtype)

    kernel_gradient_form = gradient_lowering = None
    if x.shape[:3].num_elements() == 0:
        # An input known to be empty gets TensorFlow's kernel, as Keras runs
        # it: a phase convolution can have output blocks where the input has
        # none, which TensorFlow's shape inference rejects ("Negative
        # dimension size") and its fused Conv2D+BiasAdd kernel crashes on.
        implementation = "native"
    elif implementation == "auto":
        xla = tf_tuning.in_xla_context()
        implementation = _auto(x, kernel, bias, activation, plan_h, plan_w, xla).implementation
        layer = (x, kernel, bias, activation, plan_h, plan_w)
        if xla:
            gradient_lowering = functools.partial(_auto_xla_gradient, *layer)
        else:
            kernel_gradient_form = functools.partial(_auto_kernel_gradient, *layer)
    if on_choice is not None:
        on_choice(implementation)
    forward = _forward(implementation, plan_h, plan_w, activation)
    if implementation == "zero_insertion":
        # The baseline keeps the gradients TensorFlow registers for its ops.
        compute = lambda: forward(x, kernel, bias)  # noqa: E731
    else:
        op = _with_adjoint_gradient(
            forward, plan_h, plan_w, activation, kernel_gradient_form, gradient_lowering
        )
        compute = lambda: op(x, kernel) if bias is None else op(x, kernel, bias)  # noqa: E731
    empty = _output_may_be_empty((plan_h, plan_w), x.shape[1:3])
    if empty:
        y = _empty_output(x, kernel, bias, plan_h, plan_w)
    elif empty is None:
        one = [
            tf.shape(x)[a + 1] == 1 for a, p in enumerate((plan_h, plan_w)) if p.geometry.extra == -p.stride
        ]
        y = tf.cond(tf.reduce_any(one), lambda: _empty_output(x, kernel, bias, plan_h, plan_w), compute)
    else:
        y = compute()
    return tf.transpose(y, (0, 3, 1, 2)) if channels_first else y
