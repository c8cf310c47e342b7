"""Runs ``python -m train`` inside a test subprocess, with the test doubles
that must be in place before TensorFlow or tfds do any work.

    python tests/train/train_runner.py [--tfds mock|offline] [--mock-examples N]
        [--logical-cpus N] [--keras-backend NAME] -- HYDRA_OVERRIDES...

``--tfds mock`` serves fake examples through ``tfds.testing.mock_data`` (no
download; images in [0, 64), an easy problem to reconstruct). ``--tfds
offline`` makes the tfds download host unreachable, as on a machine without
internet. ``--logical-cpus N`` splits the CPU into N logical devices for
``distribute=mirrored``. These import TensorFlow, and with it Keras, before
the app can set Keras's backend: ``--keras-backend NAME`` sets
``KERAS_BACKEND`` first, for a run with ``backend=NAME``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import runpy
import sys
from unittest import mock

MOCK_MAX_PIXEL = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tfds", choices=("mock", "offline"))
    parser.add_argument("--mock-examples", type=int, default=48)
    parser.add_argument("--logical-cpus", type=int, default=1)
    parser.add_argument("--keras-backend")
    parser.add_argument("overrides", nargs="*")
    arguments = parser.parse_args()
    if arguments.keras_backend:
        os.environ["KERAS_BACKEND"] = arguments.keras_backend

    if arguments.logical_cpus > 1:
        import tensorflow as tf

        (cpu,) = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * arguments.logical_cpus
        )

    with contextlib.ExitStack() as stack:
        if arguments.tfds == "mock":
            import tensorflow_datasets as tfds

            stack.enter_context(
                tfds.testing.mock_data(num_examples=arguments.mock_examples, max_value=MOCK_MAX_PIXEL)
            )
        if arguments.tfds:
            # Under the mock, downloading is a no-op, so the host counts as reachable.
            reachable = arguments.tfds == "mock"
            stack.enter_context(
                mock.patch("train.data.tfds_source.download_host_reachable", return_value=reachable)
            )
        # Exactly what `python -m train` runs; Hydra finds conf/ next to the
        # package only when train/__main__.py runs as __main__.
        sys.argv = ["train", *arguments.overrides]
        runpy.run_module("train", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
