"""Entry point of ``python -m keras_tconv.benchmark``; see ``--help``."""

import os

# TensorFlow's C++ INFO and WARNING lines (oneDNN notices, converter dumps) would
# drown the progress bar; errors still show, and a user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_tconv.benchmark.cli import main  # noqa: E402 - must follow the logging setting

raise SystemExit(main())
