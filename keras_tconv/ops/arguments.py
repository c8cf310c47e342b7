"""The op's argument checks, shared by the backends, with Keras-style messages."""

from __future__ import annotations

from keras_tconv.ops import registry


def check_options(activation, implementation, data_format) -> None:
    """ValueError unless the activation can be fused, the implementation exists and the data
    format is Keras's."""
    if activation not in registry.FUSED_ACTIVATIONS:
        raise ValueError(
            f"Invalid value for argument `activation`. Expected one of {tuple(registry.FUSED_ACTIVATIONS)}. "
            f"Received: activation={activation}"
        )
    registry.check_implementation(implementation)
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            "The `data_format` argument must be one of {'channels_first', 'channels_last'}. "
            f"Received: data_format={data_format}"
        )


def check_ranks(inputs_shape, kernel_shape) -> None:
    """ValueError unless input and kernel are 4-D."""
    if len(inputs_shape) != 4 or len(kernel_shape) != 4:
        raise ValueError(
            "conv2d_transpose expects 4-D inputs and a 4-D kernel (kh, kw, filters, in_channels). "
            f"Received: inputs.shape={inputs_shape}, kernel.shape={kernel_shape}"
        )


def check_channels(channels, inputs_shape, kernel_shape, data_format) -> None:
    """ValueError when the input's known ``channels`` differ from the kernel's last dimension."""
    if channels is not None and channels != kernel_shape[-1]:
        raise ValueError(
            f"The number of input channels ({channels}) does not match the kernel's "
            f"last dimension ({kernel_shape[-1]}). Received: inputs.shape={inputs_shape}, "
            f"kernel.shape={kernel_shape}, data_format={data_format}"
        )
