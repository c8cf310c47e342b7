"""A console with the application's own messages only.

TensorFlow writes start-up lines from C++, beside Python's logging, that a
user cannot act on: absl's "before absl::InitializeLog()" warning, CUDA
probing on a machine without a GPU (``cudart_stub``, ``failed call to
cuInit``), CPU-feature notices. JAX logs the platforms it cannot find
("Unable to initialize backend 'tpu'"). Image decoders (libjpeg) print raw
errors such as ``Input file read error`` for the corrupt files that the app
reports itself.

``python -m train`` calls :func:`quiet_tensorflow` before anything imports
TensorFlow: it sets ``TF_CPP_MIN_LOG_LEVEL=3`` (fatal messages only) and
JAX's platform log to warnings, and :func:`startup_noise_hidden` then
discards what native code writes to standard error while TensorFlow is
imported. Setting ``TF_CPP_MIN_LOG_LEVEL`` yourself (``0`` shows everything)
turns this quieting off. :func:`absl_verbosity` quiets the absl log, which
TensorFlow and tfds write through, for a while.

This module imports nothing heavy, so that it can run first. The silencer,
:func:`native_stderr_discarded`, is the library's
(:mod:`keras_tconv.native_stderr`), run from its file: importing it by name
would first run ``keras_tconv/__init__``, which imports Keras, and with it
TensorFlow, before :func:`quiet_tensorflow` and before :mod:`train.backend`
has chosen Keras's backend.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import types
from collections.abc import Iterator
from pathlib import Path

TF_LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"
# The logger of JAX's platform discovery.
JAX_PLATFORM_LOGGER = "jax._src.xla_bridge"

_quiet = False


def quiet_tensorflow() -> None:
    """Hides TensorFlow's C++ log below fatal and JAX's platform log below
    warnings, unless the user set a level."""
    global _quiet
    if TF_LOG_LEVEL not in os.environ:
        os.environ[TF_LOG_LEVEL] = "3"
        logging.getLogger(JAX_PLATFORM_LOGGER).setLevel(logging.WARNING)
        _quiet = True


def _library_silencer() -> types.ModuleType:
    """:mod:`keras_tconv.native_stderr`, executed from its file without running
    ``keras_tconv/__init__`` (see the module docstring)."""
    package = importlib.util.find_spec("keras_tconv")
    path = Path(package.submodule_search_locations[0], "native_stderr.py")
    spec = importlib.util.spec_from_file_location("keras_tconv.native_stderr", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


native_stderr_discarded = _library_silencer().native_stderr_discarded


@contextlib.contextmanager
def startup_noise_hidden() -> Iterator[None]:
    """Around the first import of TensorFlow: discards native standard-error
    output if :func:`quiet_tensorflow` quieted TensorFlow. An import error
    still shows, as Python reports it once the import has failed."""
    with native_stderr_discarded() if _quiet else contextlib.nullcontext():
        yield


@contextlib.contextmanager
def absl_verbosity(level: int) -> Iterator[None]:
    """Meanwhile, the absl log shows messages at ``level`` (an absl level,
    such as ``absl.logging.WARNING``) and above only."""
    from absl import logging as absl_logging

    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(level)
    try:
        yield
    finally:
        absl_logging.set_verbosity(verbosity)
