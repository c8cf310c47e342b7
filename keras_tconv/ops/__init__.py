"""Operations: the transposed convolution and its lowerings."""

from keras_tconv.ops.auto import lowering_target
from keras_tconv.ops.conv2d_transpose import IMPLEMENTATIONS, conv2d_transpose
from keras_tconv.ops.tuning import choices as tuning_choices

__all__ = ["IMPLEMENTATIONS", "conv2d_transpose", "lowering_target", "tuning_choices"]
