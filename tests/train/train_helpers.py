"""Shared by the training-application tests: running ``python -m train`` in a
subprocess (through ``train_runner.py``, or as a user would), an image
folder to train on, checking the run-directory contract, and serving an
export from a process that never imports the project."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("train_runner.py")
RUN_TIMEOUT_S = 300

# Small and fast: a few steps per epoch, a learning rate that shows progress in them.
FAST_TRAINER = ("trainer.epochs=2", "trainer.steps_per_epoch=8", "trainer.learning_rate=0.01")

RUN_DIR_CONTRACT = (
    "metrics.json", "reconstructions.png", "model.keras", "export", "tensorboard", "backup", "README.txt"
)
METRICS_KEYS = {
    "backend",
    "jit_compile",
    "layer",
    "implementation",
    "model",
    "data_source",
    "device",
    "loss",
    "val_loss",
    "median_step_ms",
    "step_ms_q1",
    "step_ms_q3",
    "lowerings",
    "images_per_second",
    "train_seconds",
    "resumed_from_epoch",
    "skipped_files",
    "workers",
    "replicas",
}

SERVE_SCRIPT = textwrap.dedent(
    """
    import json
    import sys

    import numpy as np
    import tensorflow as tf

    for job in json.loads(sys.argv[1]):
        serve = tf.saved_model.load(job["export"]).signatures["serving_default"]
        (input_name,) = serve.structured_input_signature[1]
        inputs = np.load(job["inputs"])
        outputs = {}
        for batch in (1, len(inputs)):
            (result,) = serve(**{input_name: tf.constant(inputs[:batch])}).values()
            outputs[f"batch_{batch}"] = result.numpy()
        np.savez(job["outputs"], **outputs)
    project = [name for name in sys.modules if name.split(".")[0] in ("keras_tconv", "train")]
    assert not project, f"serving imported the project: {project}"
    """
)


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
    assert completed.returncode == 0, f"training failed:\n{completed.stdout[-5000:]}\n{completed.stderr[-5000:]}"
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
    (root / "dark" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not image data")
    (root / "light" / "notes.txt").write_text("not an image, not counted")


def folder_data(images: Path) -> tuple[str, ...]:
    """Overrides training on the image folder :func:`write_image_folder` wrote
    at ``images``: 32-pixel images, batch 4, and 4 of the 12 readable images
    for validation (one full batch)."""
    return ("data=folder", f"data.path={images}", "data.image_size=32", "data.batch_size=4",
            "data.validation_split=0.34")


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


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def check_run_dir(run_dir: Path, epochs: int, resumed: bool = False) -> dict:
    """Asserts the run-directory contract and an easy problem's falling loss
    (of a run that was interrupted and then ``resumed``, or trained in one go);
    returns the metrics."""
    for name in RUN_DIR_CONTRACT:
        assert (run_dir / name).exists(), f"{name} missing from {run_dir}"
    assert any((run_dir / "tensorboard").rglob("events.out.tfevents.*")), "no TensorBoard events written"
    metrics = read_metrics(run_dir)
    assert METRICS_KEYS <= metrics.keys(), f"missing metrics: {METRICS_KEYS - metrics.keys()}"
    assert len(metrics["loss"]) == len(metrics["val_loss"]) == epochs
    assert metrics["loss"][-1] < 0.95 * metrics["loss"][0], f"loss did not fall: {metrics['loss']}"
    assert metrics["median_step_ms"] > 0 and metrics["images_per_second"] > 0 and metrics["train_seconds"] > 0
    assert 0 < metrics["step_ms_q1"] <= metrics["median_step_ms"] <= metrics["step_ms_q3"]
    assert list(metrics["lowerings"]) == [f"decoder_transpose_conv_{index}" for index in range(len(metrics["lowerings"]))]
    assert metrics["lowerings"], "no transposed convolution found"
    readme = (run_dir / "README.txt").read_text()
    assert 'keras.saving.load_model("model.keras")' in readme
    assert ("import keras_tconv" in readme) == (metrics["layer"] != "keras")
    if resumed:
        assert 1 <= metrics["resumed_from_epoch"] < epochs, metrics["resumed_from_epoch"]
        assert len(metrics["epoch_seconds"]) == epochs - metrics["resumed_from_epoch"]
    else:
        assert metrics["resumed_from_epoch"] is None
    return metrics


def check_exports_serve(run_dirs: list[Path], tmp_path: Path) -> None:
    """Serves each run's ``export/`` at batch sizes 1 and 3, in one subprocess
    that imports only TensorFlow, and compares with its ``model.keras``
    loaded in safe mode."""
    import keras

    import keras_tconv  # noqa: F401  (registers the layer for safe-mode loading)

    rng = np.random.default_rng(0)
    jobs, models = [], []
    for index, run_dir in enumerate(run_dirs):
        model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
        inputs_path = tmp_path / f"serve_inputs_{index}.npy"
        np.save(inputs_path, rng.random((3, *model.input_shape[1:]), dtype=np.float32))
        jobs.append(
            {
                "export": str(run_dir / "export"),
                "inputs": str(inputs_path),
                "outputs": str(tmp_path / f"served_{index}.npz"),
            }
        )
        models.append(model)
    served = subprocess.run(
        [sys.executable, "-c", SERVE_SCRIPT, json.dumps(jobs)],
        cwd=tmp_path,
        env={key: value for key, value in subprocess_env().items() if key != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert served.returncode == 0, served.stderr[-5000:]
    for job, model in zip(jobs, models, strict=False):
        outputs = np.load(job["outputs"])
        expected = model.predict(np.load(job["inputs"]), verbose=0)
        np.testing.assert_allclose(outputs["batch_1"], expected[:1], atol=1e-5, err_msg=job["export"])
        np.testing.assert_allclose(outputs["batch_3"], expected, atol=1e-5, err_msg=job["export"])
