"""Hiding what C and C++ libraries print to standard error, for a while.

TensorFlow's converter prints MLIR dumps, image decoders (libjpeg) print
errors for corrupt files and TensorFlow prints start-up notices, all to file
descriptor 2 directly, past Python's ``sys.stderr`` and its logging, so only
redirecting the descriptor hides them. The benchmark's LiteRT conversions
and the training app (:mod:`train.quiet`) use :func:`native_stderr_discarded`.

This module imports only the standard library: the training app runs this
file before Keras may load (see :mod:`train.quiet`), so it must stay free of
the rest of the package.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def native_stderr_discarded() -> Iterator[None]:
    """Sends file descriptor 2 to /dev/null meanwhile, which is where C and C++
    libraries print. Python's ``sys.stderr`` is flushed before, so that what
    it wrote earlier still shows, and after, so that what it wrote meanwhile
    is discarded with the rest."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
