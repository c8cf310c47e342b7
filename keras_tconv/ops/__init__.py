"""Operations: the transposed convolution and its lowerings."""

from keras_tconv.ops.auto import lowering_target
from keras_tconv.ops.conv2d_transpose import IMPLEMENTATIONS, conv2d_transpose

__all__ = ["IMPLEMENTATIONS", "conv2d_transpose", "lowering_target"]
