"""keras-tconv: an exact, faster drop-in for ``keras.layers.Conv2DTranspose``."""

from keras_tconv import ops
from keras_tconv.ops import conv2d_transpose

__all__ = ["ops", "conv2d_transpose"]
