"""End-to-end runs of ``python -m train`` in subprocesses: MNIST and
tf_flowers through ``tfds.testing.mock_data``, and an image folder with a
corrupt file trained with ``distribute=mirrored`` on two logical CPUs. Each
run is checked for the run-directory contract and a falling loss on an easy
problem; their exports are served by a process that never imports the
project."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import (
    FAST_TRAINER,
    check_exports_serve,
    check_run_dir,
    folder_data,
    run_training,
    write_image_folder,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("mnist") / "run"
    run_training(
        "data.batch_size=16",
        "layer=segregated",
        "layer.implementation=split",
        *FAST_TRAINER,
        f"hydra.run.dir={run_dir}",
        cwd=run_dir.parent,
        tfds="mock",
    )
    return run_dir


@pytest.fixture(scope="module")
def flowers_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("flowers") / "run"
    run_training(
        "data=flowers",
        "model=flowers_autoencoder",
        "data.image_size=32",
        "data.batch_size=8",
        "layer.implementation=unified",
        *FAST_TRAINER,
        f"hydra.run.dir={run_dir}",
        cwd=run_dir.parent,
        tfds="mock",
    )
    return run_dir


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("folder")
    write_image_folder(root / "images")
    run_dir = root / "run"
    run_training(
        *folder_data(root / "images"),
        "model=flowers_autoencoder",
        "layer=zero_insertion",
        "distribute=mirrored",
        *FAST_TRAINER,
        f"hydra.run.dir={run_dir}",
        cwd=root,
        logical_cpus=2,
    )
    return run_dir


def test_mnist_from_mocked_tfds(mnist_run: Path) -> None:
    metrics = check_run_dir(mnist_run, epochs=2)
    assert (metrics.model, metrics.data_source) == ("mnist_autoencoder", "tfds:mnist")
    assert (metrics.layer, metrics.implementation) == ("segregated", "split")


def test_flowers_from_mocked_tfds_of_random_sizes(flowers_run: Path) -> None:
    metrics = check_run_dir(flowers_run, epochs=2)
    assert (metrics.model, metrics.data_source) == ("flowers_autoencoder", "tfds:tf_flowers")
    assert (metrics.layer, metrics.implementation) == ("segregated", "unified")


def test_image_folder_skips_corrupt_file_and_trains_mirrored_on_two_cpus(folder_run: Path) -> None:
    metrics = check_run_dir(folder_run, epochs=2)
    assert metrics.data_source == f"folder:{folder_run.parent / 'images'}"
    assert metrics.skipped_files == 1
    assert metrics.replicas == 2
    assert (metrics.layer, metrics.implementation) == ("zero_insertion", "zero_insertion")


def test_exports_serve_without_the_project(
    mnist_run: Path, flowers_run: Path, folder_run: Path, tmp_path: Path
) -> None:
    check_exports_serve([mnist_run, flowers_run, folder_run], tmp_path)
