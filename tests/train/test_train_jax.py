"""``backend=jax``: the issue's sweep ``python -m train -m backend=jax
layer=segregated,keras`` on mocked MNIST, compared by ``train.compare``, and
the flowers autoencoder on an image folder run as a user would, with
``KERAS_BACKEND=tensorflow`` in the environment, which the config overrides.
Each run directory holds what a TensorFlow run's does; the exports (jax2tf)
serve from a process that imports only TensorFlow, on the outputs of
``model.keras`` loaded on TensorFlow.

The test process runs Keras on TensorFlow (``tests/conftest.py`` leaves
``tests/train`` out of the JAX run); the JAX runs are subprocesses.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import (
    FAST_TRAINER,
    check_exports_serve,
    check_run_dir,
    folder_data,
    run_app,
    run_compare,
    run_training,
    write_image_folder,
)

pytestmark = pytest.mark.slow

LAYERS = ("segregated", "keras")


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sweep = tmp_path_factory.mktemp("jax_multirun") / "sweep"
    run_training(
        "-m",
        "backend=jax",
        f"layer={','.join(LAYERS)}",
        "data.batch_size=16",
        *FAST_TRAINER,
        f"hydra.sweep.dir={sweep}",
        cwd=sweep.parent,
        tfds="mock",
        keras_backend="jax",  # the runner's tfds mock imports Keras before the app could set its backend
    )
    return sweep


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("jax_folder")
    write_image_folder(root / "images")
    run_dir = root / "run"
    completed = run_app(
        "backend=jax",
        *folder_data(root / "images"),
        "model=flowers_autoencoder",
        "layer=zero_insertion",
        *FAST_TRAINER,
        f"hydra.run.dir={run_dir}",
        cwd=root,
        KERAS_BACKEND="tensorflow",
    )
    assert completed.returncode == 0, (
        f"training failed:\n{completed.stdout[-5000:]}\n{completed.stderr[-5000:]}"
    )
    return run_dir


def test_sweep_trains_each_layer_on_jax_into_a_complete_run_directory(sweep_dir: Path) -> None:
    jobs = [check_run_dir(sweep_dir / str(index), epochs=2) for index in range(len(LAYERS))]
    assert [(job.layer, job.backend, job.jit_compile) for job in jobs] == [
        (layer, "jax", True) for layer in LAYERS
    ]
    assert jobs[1].lowerings == {"decoder_transpose_conv_0": "native", "decoder_transpose_conv_1": "native"}
    assert "converted with jax2tf" in (sweep_dir / "0" / "README.txt").read_text()


def test_compare_prints_the_backend_and_the_speedup_over_keras(sweep_dir: Path) -> None:
    completed = run_compare(sweep_dir)
    assert completed.returncode == 0, completed.stderr
    rows = {
        cells[0]: cells
        for cells in (
            [cell.strip() for cell in line.strip("|").split("|")] for line in completed.stdout.splitlines()
        )
        if cells[0] in ("0", "1")
    }
    # job, model, layer, lowering per layer, device, backend, epoch, step, IQR, images/s, vs keras,
    # vs zero insertion
    assert [rows[job][2] for job in ("0", "1")] == ["segregated (auto)", "keras"]
    assert [rows[job][5] for job in ("0", "1")] == ["jax", "jax"]
    assert rows["0"][10].endswith("x") and float(rows["0"][10][:-1]) > 0
    assert rows["1"][10:12] == ["1.00x", "n/a"]
    assert (sweep_dir / "comparison.md").read_text().count("| jax |") == 2


def test_the_app_sets_the_backend_over_the_environment(folder_run: Path) -> None:
    metrics = check_run_dir(folder_run, epochs=2)
    assert (metrics.model, metrics.layer, metrics.backend) == ("flowers_autoencoder", "zero_insertion", "jax")
    assert metrics.skipped_files == 1
    log = (folder_run / "train.log").read_text()
    assert "KERAS_BACKEND=tensorflow in the environment is overridden by backend=jax" in log
    # Neither JAX's platform probing nor jax2tf's renaming of the exported variables is shown.
    assert "Unable to initialize backend" not in log and "unsupported characters" not in log


def test_exports_from_jax_serve_without_the_project(
    sweep_dir: Path, folder_run: Path, tmp_path: Path
) -> None:
    check_exports_serve([sweep_dir / "0", sweep_dir / "1", folder_run], tmp_path)
