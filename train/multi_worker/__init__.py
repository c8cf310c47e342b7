"""``distribute=multi_worker``: data-parallel training across machines with
``tf.distribute.MultiWorkerMirroredStrategy``.

Keras 3's ``fit`` does not run under that strategy (keras-team/keras#20585),
so the workers train with this package's own loop. :mod:`.cluster` reads
``TF_CONFIG`` without TensorFlow, so that a bad cluster fails at once; the
other modules import TensorFlow.
"""
