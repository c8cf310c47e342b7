"""Images from a folder with one subfolder per class, screened for unreadable files."""

from __future__ import annotations

import logging
from pathlib import Path

import tensorflow as tf

from train.data.holdout import shuffled_holdout
from train.errors import UserError
from train.quiet import native_stderr_discarded

log = logging.getLogger(__name__)

# What tf.io.decode_image reads.
IMAGE_SUFFIXES = frozenset({".bmp", ".gif", ".jpeg", ".jpg", ".png"})


class EmptyImageFolderError(UserError, ValueError):
    """The folder has no class subfolders with image files."""


def list_image_files(root: Path) -> list[str]:
    """Image files (by suffix) in the class subfolders of ``root``, in sorted order."""
    return sorted(
        str(path)
        for class_dir in root.iterdir()
        if class_dir.is_dir()
        for path in class_dir.iterdir()
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
    )


def decode_image_file(path: tf.Tensor, channels: int) -> tf.Tensor:
    """Reads one image file as a uint8 (height, width, channels) tensor."""
    return tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)


def readable_files(paths: list[str], channels: int) -> list[str]:
    """The files of ``paths`` that decode, checked in parallel with tf.data.

    Screening up front keeps a corrupt file from failing an epoch, and unlike
    ``ignore_errors`` inside the training pipeline it tells which files were
    skipped. The decoders' own messages about corrupt files (libjpeg prints
    lines such as ``Input file read error`` to standard error) are discarded:
    the caller reports the skipped files.
    """
    decoded = (
        tf.data.Dataset.from_tensor_slices(paths)
        .map(
            lambda path: (path, tf.shape(decode_image_file(path, channels))),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .ignore_errors()
    )
    with native_stderr_discarded():
        return [path.decode() for path, _ in decoded.as_numpy_iterator()]


def load_folder_images(
    root: str, channels: int, validation_split: float, seed: int
) -> tuple[tf.data.Dataset, tf.data.Dataset, int]:
    """Returns unbatched uint8 images as ``(train, validation, skipped_files)``."""
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise EmptyImageFolderError(
            f"data.path={root} is invalid: no such folder; data=folder needs a folder holding one subfolder "
            "of images per class"
        )
    paths = list_image_files(folder)
    if not paths:
        raise EmptyImageFolderError(
            f"data.path={root} has no class subfolders holding image files "
            f"({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    readable = readable_files(paths, channels)
    skipped = sorted(set(paths) - set(readable))
    if skipped:
        log.warning("Skipping %d unreadable image file(s): %s", len(skipped), ", ".join(skipped[:10]))
    if len(readable) < 2:
        raise EmptyImageFolderError(f"data.path={root} has fewer than 2 readable images")
    train_paths, validation_paths = shuffled_holdout(readable, validation_split, seed)

    def images(file_paths: list[str]) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices(file_paths).map(
            lambda path: decode_image_file(path, channels), num_parallel_calls=tf.data.AUTOTUNE
        )

    return images(train_paths), images(validation_paths), len(skipped)
