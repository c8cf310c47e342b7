"""Keras's backend of a job (``backend=tensorflow|jax``), set before Keras loads.

Keras reads ``KERAS_BACKEND`` once, when it is first imported, and importing
TensorFlow imports Keras. ``python -m train`` therefore composes and checks
the config first and calls :func:`use_backend` before it imports the modules
that import Keras or TensorFlow (:mod:`train.job` and all below it, imported
inside :func:`train.__main__.main`). The composed config decides, not the
command line alone, so a backend chosen in a config file counts as well.

The config wins over the environment: a ``KERAS_BACKEND`` (or the backend of
``~/.keras/keras.json``) naming another backend is overridden with a warning,
so that a run's config says what it ran on.

Keras cannot switch backends inside a process, and Hydra's basic launcher runs
the jobs of a multirun one after another in one process. A job whose backend
differs from the one Keras already loaded (``-m backend=jax,tensorflow``)
therefore fails in one line, the jobs before it keeping their outputs: sweep
each backend in its own command, as with ``device=`` on TensorFlow. This
module imports nothing heavy, so that it can run before Keras loads.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys

from train.errors import UserError

KERAS_BACKEND = "KERAS_BACKEND"

log = logging.getLogger(__name__)


class BackendUnavailableError(UserError, RuntimeError):
    """The configured backend cannot run in this process."""


def loaded_backend() -> str | None:
    """Keras's backend in this process; None while Keras is not imported."""
    keras = sys.modules.get("keras")
    return None if keras is None else keras.backend.backend()


def use_backend(backend: str) -> None:
    """Makes Keras load on ``backend`` (one of :data:`train.config.BACKENDS`),
    or checks that it already runs on it.

    Raises :class:`BackendUnavailableError` when the backend's package is not
    installed, or when Keras already runs on another backend in this process.
    """
    if importlib.util.find_spec(backend) is None:
        raise BackendUnavailableError(
            f"backend={backend} needs the {backend} package, which is not installed: pip install {backend}"
        )
    loaded = loaded_backend()
    if loaded is None:
        environment = os.environ.get(KERAS_BACKEND)
        if environment not in (None, backend):
            log.warning(
                "%s=%s in the environment is overridden by backend=%s (pass backend=%s to train on it)",
                KERAS_BACKEND,
                environment,
                backend,
                environment,
            )
        os.environ[KERAS_BACKEND] = backend
    elif loaded != backend:
        raise BackendUnavailableError(
            f"backend={backend} is unavailable: Keras already runs on {loaded} in this process and cannot "
            "switch (a multirun runs its jobs in one process): run each backend as its own command"
        )
