"""Suite-wide settings: quiet TensorFlow, and ``auto`` without timing.

``implementation="auto"`` times its candidates the first time it meets a
layer geometry; across hundreds of random geometries that would slow the
suite and make its choices depend on the machine's load. The suite runs the
static rule instead (exact either way: every lowering computes the same
numbers); tests/ops/test_tuning.py turns measuring on where it is the subject.
Subprocesses started by the tests inherit both settings.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["KERAS_TCONV_TUNING"] = "off"
