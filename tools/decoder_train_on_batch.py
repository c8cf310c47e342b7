"""``train_on_batch`` of small decoder models: Keras's ``Conv2DTranspose`` against
``SegregatedConv2DTranspose``.

Whole models rather than single layers (the benchmark's unit): three
decoders of stride-2 "same" layers, each built twice with the same weights,
compiled with Adam and MSE, timed interleaved (9 rounds of 3 steps, medians)
after their first call, which is reported on its own (compilation and, for
``auto``, measuring its candidates on a fresh tuning cache). Runs on the
backend ``KERAS_BACKEND`` selects (JAX unless set)::

    python tools/decoder_train_on_batch.py
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ["KERAS_TCONV_CACHE_DIR"] = tempfile.mkdtemp(prefix="keras_tconv_tuning_")

import keras  # noqa: E402 - after the backend is chosen
import numpy as np  # noqa: E402

import keras_tconv  # noqa: E402

# name: (input shape, [(filters, kernel, activation)], batch)
DECODERS = {
    "DCGAN generator k=5, batch 16": (
        (4, 4, 256),
        [(128, 5, "relu"), (64, 5, "relu"), (32, 5, "relu"), (3, 5, "tanh")],
        16,
    ),
    "MNIST decoder k=3, batch 32": ((7, 7, 64), [(64, 3, "relu"), (32, 3, "relu"), (1, 3, "sigmoid")], 32),
    "super-resolution decoder k=4, batch 4": (
        (24, 24, 64),
        [(64, 4, "relu"), (64, 4, "relu"), (3, 4, None)],
        4,
    ),
}
ROUNDS, STEPS = 9, 3


def decoder(layer_class, input_shape, spec):
    layers = [keras.Input(input_shape)]
    layers += [layer_class(filters, k, strides=2, padding="same", activation=act) for filters, k, act in spec]
    return keras.Sequential(layers)


def main() -> None:
    print(f"Keras {keras.__version__} on {keras.backend.backend()}")
    for name, (input_shape, spec, batch) in DECODERS.items():
        keras.utils.set_random_seed(0)
        models = {
            "keras": decoder(keras.layers.Conv2DTranspose, input_shape, spec),
            "segregated": decoder(keras_tconv.SegregatedConv2DTranspose, input_shape, spec),
        }
        models["segregated"].set_weights(models["keras"].get_weights())
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch, *input_shape)).astype("float32")
        y = rng.standard_normal((batch, *models["keras"].output_shape[1:])).astype("float32")
        first = {}
        for label, model in models.items():
            model.compile(optimizer="adam", loss="mse")
            start = time.perf_counter()
            model.train_on_batch(x, y)
            first[label] = time.perf_counter() - start
            model.train_on_batch(x, y)
        samples = {label: [] for label in models}
        for round_index in range(ROUNDS):
            for label in list(models) if round_index % 2 == 0 else list(models)[::-1]:
                start = time.perf_counter()
                for _ in range(STEPS):
                    models[label].train_on_batch(x, y)
                samples[label].append((time.perf_counter() - start) / STEPS)
        keras_ms, ours_ms = (statistics.median(samples[label]) * 1e3 for label in models)
        print(
            f"{name}: keras {keras_ms:.1f} ms, segregated {ours_ms:.1f} ms ({keras_ms / ours_ms:.2f}x); "
            f"first call keras {first['keras']:.2f} s, segregated {first['segregated']:.2f} s "
            f"({len(spec)} layers)"
        )


if __name__ == "__main__":
    main()
