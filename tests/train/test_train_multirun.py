"""Multirun: ``python -m train -m experiment=paper_mnist``, the paper's MNIST
experiment on tiny mocked data, runs its sweep over the three layers in one
process, each job writing its metrics.json with no state leaking between
them, and ``python -m train.compare`` summarises the sweep."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from train_helpers import FAST_TRAINER, read_metrics, run_compare, run_training

pytestmark = pytest.mark.slow

# The experiment's sweep, in its order (conf/experiment/paper_mnist.yaml).
LAYERS = ("keras", "segregated", "zero_insertion")


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sweep = tmp_path_factory.mktemp("multirun") / "sweep"
    run_training(
        "-m",
        "experiment=paper_mnist",
        "data.batch_size=16",
        *FAST_TRAINER,  # over the experiment's epochs
        f"hydra.sweep.dir={sweep}",
        cwd=sweep.parent,
        tfds="mock",
    )
    return sweep


def test_each_job_writes_its_metrics_and_none_leaks_state(sweep_dir: Path) -> None:
    jobs = [read_metrics(sweep_dir / str(index)) for index in range(len(LAYERS))]
    assert [job.layer for job in jobs] == list(LAYERS)
    assert [job.implementation for job in jobs] == [None, "auto", "zero_insertion"]
    assert all((job.model, job.epochs, len(job.loss)) == ("paper_mnist", 2, 2) for job in jobs)
    # Same seed, same data order, exact layers: identical training, which a
    # leaked Keras session, seed or dtype policy would break.
    for job in jobs[1:]:
        np.testing.assert_allclose(job.loss, jobs[0].loss, rtol=1e-4)
    assert all(job.precision == "float32" and job.resumed_from_epoch is None for job in jobs)
    # The default backend, stepping as before: tf.function graphs without XLA.
    assert all(job.backend == "tensorflow" and job.jit_compile is False for job in jobs)
    # Keras's layer runs TensorFlow's kernel; the segregated layer reports its own lowering (when it does).
    assert jobs[0].lowerings == {"decoder_transpose_conv_0": "native"}
    assert all(list(job.lowerings) == ["decoder_transpose_conv_0"] for job in jobs)


def test_compare_writes_table_and_plot(sweep_dir: Path) -> None:
    completed = run_compare(sweep_dir, timeout=120)
    assert completed.returncode == 0, completed.stderr
    table = (sweep_dir / "comparison.md").read_text()
    assert all(f"| {index} | paper_mnist | " in completed.stdout for index in range(len(LAYERS)))  # printed
    assert "| 0 | paper_mnist | keras |" in table
    assert table.count("| tensorflow |") == len(LAYERS)
    assert "| 1 | paper_mnist | segregated (auto) |" in table
    assert "| 2 | paper_mnist | zero_insertion |" in table
    assert "1.00x" in table  # zero insertion against itself
    assert "| native |" in table  # the keras job's lowering
    assert "Loss curves of jobs 0, 1, 2 coincide" in table  # the three layers compute the same function
    assert (sweep_dir / "comparison.png").stat().st_size > 0
