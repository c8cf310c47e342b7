"""Scratch space in TensorFlow's in-memory file system (``ram://``).

Files a worker writes only to satisfy an API (the other workers' share of
every backup, the chief's round trip through Keras's format) go there rather
than to a temporary directory: they cost no disk I/O, and they vanish with
the process, so a worker killed in the middle of a save leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import tensorflow as tf


@contextlib.contextmanager
def in_memory_directory(prefix: str) -> Iterator[str]:
    """A fresh ``ram://`` directory, deleted with its files on exit.

    Only for files written directly into it: the RAM file system's
    ``rmtree`` leaves files of subdirectories behind.
    """
    directory = f"ram://{prefix}{uuid.uuid4().hex}"
    tf.io.gfile.makedirs(directory)
    try:
        yield directory
    finally:
        tf.io.gfile.rmtree(directory)
