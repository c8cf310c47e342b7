"""The JAX backend's tests: collected only in a pytest run with ``KERAS_BACKEND=jax``
(Keras reads the backend once, at its first import)."""

import os

if os.environ.get("KERAS_BACKEND") != "jax":
    collect_ignore_glob = ["*"]
