"""Images from tensorflow-datasets, prepared on first use when online."""

from __future__ import annotations

import logging
import socket

import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging as absl_logging

from train.errors import UserError
from train.quiet import absl_verbosity

log = logging.getLogger(__name__)

# TFDS downloads MNIST and tf_flowers from Google Cloud Storage. Offline, its
# downloader retries for minutes before giving up, so reachability is checked
# once up front instead.
DOWNLOAD_HOST = "storage.googleapis.com"


class DatasetUnavailableError(UserError, RuntimeError):
    """A dataset is neither prepared locally nor downloadable."""


def download_host_reachable(host: str = DOWNLOAD_HOST, timeout_s: float = 5.0) -> bool:
    """Whether a TCP connection to ``host``:443 opens within ``timeout_s``."""
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def _prepare(builder: tfds.core.DatasetBuilder) -> None:
    """Downloads and prepares ``builder``'s dataset unless a prepared copy exists.

    tfds warns through absl about every incomplete version folder it finds
    while it looks for a prepared copy ("Variant folder ... has no
    dataset_info.json", left behind by an interrupted download); the app
    says itself when there is none.
    """
    with absl_verbosity(absl_logging.ERROR):
        prepared = builder.is_prepared()
    if prepared:
        return
    if not download_host_reachable():
        raise DatasetUnavailableError(
            f"tfds dataset {builder.name!r} is not prepared in {builder.data_dir} "
            f"and {DOWNLOAD_HOST} cannot be reached to download it"
        )
    log.info("Downloading and preparing tfds dataset %r", builder.name)
    try:
        builder.download_and_prepare()
    except OSError as error:  # requests' ConnectionError and file-system errors
        raise DatasetUnavailableError(f"downloading tfds dataset {builder.name!r} failed: {error}") from error


def load_tfds_images(
    tfds_name: str, data_dir: str | None, validation_split: float
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """Returns unbatched uint8 images of the ``train`` split as ``(train, validation)``.

    The first ``validation_split`` of the split is held out for validation
    (TFDS's split order is already shuffled).
    """
    builder = tfds.builder(tfds_name, data_dir=data_dir)
    _prepare(builder)
    percent = format(100 * validation_split, "g")
    train, validation = builder.as_dataset(
        split=[f"train[{percent}%:]", f"train[:{percent}%]"], as_supervised=True
    )
    return train.map(_image_only), validation.map(_image_only)


def _image_only(image: tf.Tensor, label: tf.Tensor) -> tf.Tensor:
    del label  # autoencoders reconstruct the image
    return image
