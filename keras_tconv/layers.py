"""``SegregatedConv2DTranspose``: the drop-in Keras layer."""

from __future__ import annotations

import logging

import keras

from keras_tconv.ops import conv2d_transpose
from keras_tconv.ops.registry import FUSED_ACTIVATIONS, check_implementation

log = logging.getLogger("keras_tconv")
# The backends that compute by kernel segregation; on the others the layer runs Keras's own computation.
SEGREGATING_BACKENDS = ("tensorflow", "jax")
_said_unsegregated = set()


@keras.saving.register_keras_serializable(package="keras_tconv")
class SegregatedConv2DTranspose(keras.layers.Conv2DTranspose):
    """``keras.layers.Conv2DTranspose`` computed by kernel segregation.

    Takes every argument of ``keras.layers.Conv2DTranspose``, validates them
    with Keras's own code and messages, and creates the same variables in the
    same order and shapes (``kernel`` of shape
    ``(kh, kw, filters, in_channels)``, then ``bias`` of shape
    ``(filters,)``), so weights and checkpoints move freely between the two
    classes. Only the computation differs: instead of the backend's
    transposed convolution (TensorFlow's ``Conv2DBackpropInput``, JAX's
    ``lax.conv_transpose``) it runs ordinary stride-1 convolutions on the
    original input (one per output phase, one per row of phases, or one with
    all sub-kernels stacked) and interleaves the results; ``"auto"`` keeps
    the backend's own kernel for the shapes where that is faster (see
    :mod:`keras_tconv.ops.tensorflow.conv2d_transpose`,
    :mod:`keras_tconv.ops.jax.conv2d_transpose` and
    :mod:`keras_tconv.ops.choosing`). On other Keras backends it runs
    Keras's own computation.
    It is a subclass of ``keras.layers.Conv2DTranspose``, so code that checks
    ``isinstance`` keeps working.

    Args:
        implementation: ``"auto"`` (default; measures the candidates once
            per layer geometry on the device at hand, or follows a static
            rule, see :mod:`keras_tconv.ops.choosing.tuning`; the pick is in
            ``chosen_implementation`` once the layer ran), ``"split"``, ``"rows"``,
            ``"unified"``, ``"native"`` (the backend's own kernel, what Keras's
            layer runs) or
            ``"zero_insertion"`` (the conventional method, for comparisons).
        All other arguments: as ``keras.layers.Conv2DTranspose``.
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        output_padding=None,
        data_format=None,
        dilation_rate=(1, 1),
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        implementation="auto",
        **kwargs,
    ):
        super().__init__(
            filters=filters,
            kernel_size=kernel_size,
            strides=strides,
            padding=padding,
            output_padding=output_padding,
            data_format=data_format,
            dilation_rate=dilation_rate,
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            kernel_constraint=kernel_constraint,
            bias_constraint=bias_constraint,
            **kwargs,
        )
        self.implementation = check_implementation(implementation)
        # The lowering the layer ran at its last trace ("auto" resolved).
        self.chosen_implementation = None
        # Keras only asks for ndim >= 4; anything but 4-D fails later and less
        # clearly, so the rank is checked before build, naming this layer.
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channel_axis = -1 if self.data_format == "channels_last" else 1
        if input_shape[channel_axis] is None:
            expected = (
                "(batch, height, width, channels)"
                if self.data_format == "channels_last"
                else "(batch, channels, height, width)"
            )
            raise ValueError(
                f"Layer '{self.name}' needs the channel dimension of its input to be "
                f"known: expected shape {expected} with data_format='{self.data_format}'. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        super().build(input_shape)
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={channel_axis: input_shape[channel_axis]})

    def call(self, inputs):
        backend = keras.backend.backend()
        if backend not in SEGREGATING_BACKENDS:
            if backend not in _said_unsegregated:
                _said_unsegregated.add(backend)
                log.warning(
                    "keras_tconv: kernel segregation runs on the TensorFlow and JAX backends; on %s, "
                    "SegregatedConv2DTranspose runs Keras's own Conv2DTranspose computation.",
                    backend,
                )
            self._record_choice("native")
            return super().call(inputs)
        fused_activation = self._fused_activation
        outputs = conv2d_transpose(
            inputs,
            self.kernel,
            strides=self.strides,
            padding=self.padding,
            output_padding=self.output_padding,
            data_format=self.data_format,
            dilation_rate=self.dilation_rate,
            implementation=self.implementation,
            bias=self.bias if self.use_bias else None,
            activation=fused_activation,
            on_choice=self._record_choice,
        )
        return outputs if fused_activation else self.activation(outputs)

    def _record_choice(self, implementation: str) -> None:
        self.chosen_implementation = implementation

    @property
    def _fused_activation(self):
        """The activation's name where the op can fuse it, else None."""
        name = getattr(self.activation, "__name__", None)
        if name is not None and name in FUSED_ACTIVATIONS and keras.activations.get(name) is self.activation:
            return name
        return None

    def get_config(self):
        config = super().get_config()
        config["implementation"] = self.implementation
        return config


# Keras's weight files (`.weights.h5`, and the weights inside `.keras`) file each
# layer's variables under its class name. Reporting Keras's class name keeps those
# checkpoints interchangeable between the two classes (auto-generated layer names
# follow suit); serialization still records the registered name
# "keras_tconv>SegregatedConv2DTranspose", so saved models load this class.
SegregatedConv2DTranspose.__name__ = "Conv2DTranspose"
