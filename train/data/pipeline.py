"""The tf.data pipeline from raw images to autoencoder batches."""

from __future__ import annotations

import tensorflow as tf

SHUFFLE_BUFFER = 10_000


def _to_model_input(image: tf.Tensor, image_size: int, channels: int) -> tf.Tensor:
    """Resizes a uint8 image of any size to ``image_size`` squared and matches
    the channel count, staying uint8 so that the cache stays small."""
    source_channels = image.shape[-1]
    if source_channels == 1 and channels == 3:
        image = tf.image.grayscale_to_rgb(image)
    elif source_channels == 3 and channels == 1:
        image = tf.image.rgb_to_grayscale(image)
    resized = tf.image.resize(image, [image_size, image_size], antialias=True)
    return tf.ensure_shape(tf.saturate_cast(tf.round(resized), tf.uint8), [image_size, image_size, channels])


def _as_reconstruction_pair(images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    scaled = tf.cast(images, tf.float32) / 255.0
    return scaled, scaled


def autoencoder_batches(
    images: tf.data.Dataset,
    image_size: int,
    channels: int,
    batch_size: int,
    shuffle_seed: int | None = None,
    repeat: bool = False,
) -> tf.data.Dataset:
    """Batches of ``(image, image)`` pairs scaled to [0, 1].

    Images are resized once and cached; ``shuffle_seed`` (training only)
    reshuffles every epoch; ``repeat`` makes the dataset endless for a fixed
    ``steps_per_epoch``.
    """
    dataset = images.map(
        lambda image: _to_model_input(image, image_size, channels), num_parallel_calls=tf.data.AUTOTUNE
    ).cache()
    if shuffle_seed is not None:
        dataset = dataset.shuffle(SHUFFLE_BUFFER, seed=shuffle_seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    return dataset.batch(batch_size).map(_as_reconstruction_pair).prefetch(tf.data.AUTOTUNE)
