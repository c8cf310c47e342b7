"""Shared by the training-application tests: composing configs with Hydra's
compose API, running ``python -m train`` in a subprocess (through
``train_runner.py``, or as a user would), an image folder to train on,
checking the run-directory contract, and serving an export from a process
that never imports the project."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from PIL import Image

from tests.helpers.png import PNG_MAGIC
from tests.helpers.serving import serve_without_the_project
from train.config import TrainConfig, register_schema, to_train_config
from train.metrics import Metrics

REPO_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = REPO_ROOT / "conf"
RUNNER = Path(__file__).with_name("train_runner.py")
RUN_TIMEOUT_S = 300

# Small and fast: a few steps per epoch, a learning rate that shows progress in them.
FAST_TRAINER = ("trainer.epochs=2", "trainer.steps_per_epoch=8", "trainer.learning_rate=0.01")

RUN_DIR_CONTRACT = (
    "metrics.json",
    "reconstructions.png",
    "model.keras",
    "export",
    "tensorboard",
    "backup",
    "README.txt",
)


@contextlib.contextmanager
def hydra_conf() -> Iterator[None]:
    """Hydra's compose API over ``conf/``, with the schema registered as
    ``python -m train`` registers it."""
    register_schema()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield


def compose_config(*overrides: str) -> TrainConfig:
    """The validated config of ``python -m train *overrides`` (inside :func:`hydra_conf`)."""
    return to_train_config(compose(config_name="config", overrides=list(overrides)))


def train_command(
    *overrides: str,
    tfds: str | None = None,
    logical_cpus: int = 1,
    mock_examples: int = 48,
    keras_backend: str | None = None,
) -> list[str]:
    """The command line of one training run through ``train_runner.py``."""
    options = [f"--logical-cpus={logical_cpus}", f"--mock-examples={mock_examples}"]
    if tfds:
        options.append(f"--tfds={tfds}")
    if keras_backend:
        options.append(f"--keras-backend={keras_backend}")
    return [sys.executable, str(RUNNER), *options, "--", *overrides]


def subprocess_env() -> dict[str, str]:
    """The environment of test subprocesses: quiet TensorFlow, no GPU, so that
    results do not depend on the machine, and the checkout on the import path,
    where the (not installed) training application lives."""
    python_path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": python_path}


def run_training(*overrides: str, cwd: Path, **options) -> subprocess.CompletedProcess:
    """Runs one training job to completion and fails the test with its output if it fails."""
    completed = subprocess.run(
        train_command(*overrides, **options),
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert completed.returncode == 0, (
        f"training failed:\n{completed.stdout[-5000:]}\n{completed.stderr[-5000:]}"
    )
    return completed


def run_app(*overrides: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """``python -m train`` in ``cwd``, where Hydra's default run directory
    (``outputs/<date>/<time>``) goes, with TensorFlow's log level left to the
    app and ``env`` added to the environment; the test checks the outcome."""
    base = {key: value for key, value in subprocess_env().items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [sys.executable, "-m", "train", *overrides],
        cwd=cwd,
        env={**base, **env},  # subprocess_env hides any GPU
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )


def write_image_folder(root: Path) -> None:
    """Two classes of six dark gradient PNGs of assorted sizes (easy to
    reconstruct), one corrupt PNG, and a file that is not an image."""
    rng = np.random.default_rng(0)
    for class_index, class_name in enumerate(("dark", "light")):
        class_dir = root / class_name
        class_dir.mkdir(parents=True)
        for image_index in range(6):
            height, width = rng.integers(20, 48, size=2)
            ramp = np.linspace(0.0, 1.0, width)[None, :, None] * np.ones((height, 1, 3))
            pixels = 20 * class_index + 40 * ramp
            Image.fromarray(pixels.astype(np.uint8)).save(class_dir / f"{image_index}.png")
    (root / "dark" / "corrupt.png").write_bytes(PNG_MAGIC + b" this is not image data")
    (root / "light" / "notes.txt").write_text("not an image, not counted")


def folder_data(images: Path) -> tuple[str, ...]:
    """Overrides training on the image folder :func:`write_image_folder` wrote
    at ``images``: 32-pixel images, batch 4, and 4 of the 12 readable images
    for validation (one full batch)."""
    return (
        "data=folder",
        f"data.path={images}",
        "data.image_size=32",
        "data.batch_size=4",
        "data.validation_split=0.34",
    )


def run_compare(sweep_dir: Path, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    """``python -m train.compare sweep_dir`` from the repository root, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "train.compare", str(sweep_dir)],
        cwd=REPO_ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_metrics(run_dir: Path) -> Metrics:
    return Metrics.read(run_dir / "metrics.json")


def check_run_dir(run_dir: Path, epochs: int, resumed: bool = False) -> Metrics:
    """Asserts the run-directory contract (``metrics.json`` holding every
    field of :class:`Metrics`, none left to the defaults for older runs) and
    an easy problem's falling loss (of a run that was interrupted and then
    ``resumed``, or trained in one go); returns the metrics."""
    for name in RUN_DIR_CONTRACT:
        assert (run_dir / name).exists(), f"{name} missing from {run_dir}"
    assert any((run_dir / "tensorboard").rglob("events.out.tfevents.*")), "no TensorBoard events written"
    written = json.loads((run_dir / "metrics.json").read_text())
    assert list(written) == [field.name for field in dataclasses.fields(Metrics)]
    metrics = read_metrics(run_dir)
    assert len(metrics.loss) == len(metrics.val_loss) == metrics.epochs == epochs
    assert metrics.loss[-1] < 0.95 * metrics.loss[0], f"loss did not fall: {metrics.loss}"
    assert metrics.median_step_ms > 0 and metrics.images_per_second > 0 and metrics.train_seconds > 0
    assert 0 < metrics.step_ms_q1 <= metrics.median_step_ms <= metrics.step_ms_q3
    assert metrics.lowerings, "no transposed convolution found"
    assert list(metrics.lowerings) == [f"decoder_transpose_conv_{i}" for i in range(len(metrics.lowerings))]
    readme = (run_dir / "README.txt").read_text()
    assert 'keras.saving.load_model("model.keras")' in readme
    assert ("import keras_tconv" in readme) == (metrics.layer != "keras")
    if resumed:
        assert 1 <= metrics.resumed_from_epoch < epochs, metrics.resumed_from_epoch
        assert len(metrics.epoch_seconds) == epochs - metrics.resumed_from_epoch
    else:
        assert metrics.resumed_from_epoch is None
    return metrics


def check_exports_serve(run_dirs: list[Path], tmp_path: Path) -> None:
    """Serves each run's ``export/`` at batch sizes 1 and 3, in one process
    that imports only TensorFlow (:func:`tests.helpers.serving.serve_without_the_project`),
    and compares with its ``model.keras`` loaded in safe mode."""
    import keras

    import keras_tconv  # noqa: F401  (registers the layer for safe-mode loading)

    rng = np.random.default_rng(0)
    models = [keras.saving.load_model(run_dir / "model.keras", safe_mode=True) for run_dir in run_dirs]
    inputs = [rng.random((3, *model.input_shape[1:]), dtype=np.float32) for model in models]
    served = serve_without_the_project(
        [(run_dir / "export", [x[:1], x]) for run_dir, x in zip(run_dirs, inputs)],
        tmp_path,
        env=subprocess_env(),
    )
    for run_dir, model, x, result in zip(run_dirs, models, inputs, served):
        expected = model.predict(x, verbose=0)
        np.testing.assert_allclose(result.outputs[0], expected[:1], atol=1e-5, err_msg=str(run_dir))
        np.testing.assert_allclose(result.outputs[1], expected, atol=1e-5, err_msg=str(run_dir))
