"""Process-global TensorFlow and Keras state, reset at the start of every job.

Hydra's multirun runs its jobs one after another in one process, so the Keras
session, the dtype policy, the random seeds and op determinism would otherwise
leak from one job into the next.
"""

from __future__ import annotations

import keras
import tensorflow as tf

# TensorFlow exports only enable_op_determinism; turning it back off for the
# next job of a multirun needs the function behind it.
from tensorflow.python.framework import config as tf_framework_config

from train.config import TrainerConfig


def reset_global_state(trainer: TrainerConfig) -> None:
    """Clears the Keras session and sets dtype policy, seeds and determinism for this job."""
    keras.backend.clear_session()
    keras.mixed_precision.set_dtype_policy(trainer.precision.value)
    keras.utils.set_random_seed(trainer.seed)
    if trainer.deterministic:
        tf.config.experimental.enable_op_determinism()
    else:
        tf_framework_config.disable_op_determinism()
