"""Benchmark of ``Conv2DTranspose`` implementations: ``python -m keras_tconv.benchmark``.

Modules: :mod:`~keras_tconv.benchmark.suites` (layer shapes),
:mod:`~keras_tconv.benchmark.impls` (the timed callables and the dense-conv
ceiling), :mod:`~keras_tconv.benchmark.jax_impls` (the same on Keras's JAX
backend, ``--backend jax``, with Keras's TensorFlow computation as a
reference), :mod:`keras_tconv.timing` (interleaved timing, shared with the tuner),
:mod:`~keras_tconv.benchmark.memory` (peak memory),
:mod:`~keras_tconv.benchmark.tflite` (LiteRT comparison),
:mod:`~keras_tconv.benchmark.runner` (a run as steps),
:mod:`~keras_tconv.benchmark.report` (CSV, Markdown, plot) and
:mod:`~keras_tconv.benchmark.cli` (the command line). This module imports
nothing, so that ``__main__`` can quiet TensorFlow's logging before
TensorFlow loads.

The TensorFlow timings need only the base install; LiteRT (``--tflite``) and
the plot need the ``bench`` extra, which :data:`BENCH_EXTRA` names; the JAX
timings need JAX too (the ``jax`` extra).
"""

BENCH_EXTRA = 'pip install "keras-tconv[bench]"'
