"""``train.compare`` on hand-written metrics (as the app writes them, one as
its first version did): the backend, the step-time
spread, the lowerings, speed-ups over Keras's layer and over zero insertion
of the same setting, ties only within the same setting (backend included)
and overlapping IQRs, jobs that ran the same lowerings, and coinciding loss
curves named in comparison.md."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from tests.helpers.png import PNG_MAGIC
from train.compare import write_comparison
from train.metrics import Metrics

# What the jobs below share unless they say otherwise.
SHARED = {
    "model": "paper_mnist",
    "implementation": None,
    "data": "mnist",
    "data_source": "tfds:mnist",
    "skipped_files": 0,
    "image_size": 28,
    "batch_size": 16,
    "jit_compile": False,
    "device": "cpu (2 cores)",
    "replicas": 1,
    "precision": "float32",
    "epochs": 2,
    "steps_per_epoch": None,
    "parameters": 1000,
    "loss": [0.5, 0.4],
    "val_loss": [0.45, 0.35],
    "epoch_seconds": [2.0],
    "images_per_second": 1000.0,
    "train_seconds": 4.0,
    "resumed_from_epoch": None,
}
# The keys the first version of metrics.json did not have.
LATER_KEYS = ("lowerings", "step_ms_q1", "step_ms_q3", "backend", "jit_compile", "workers")


def write_job(sweep: Path, name: str, first_version: bool = False, **metrics) -> None:
    """Writes a job's metrics.json as the app does, or as its first version
    did (without :data:`LATER_KEYS`)."""
    written = dataclasses.asdict(Metrics(**{**SHARED, **metrics}))
    if first_version:
        written = {key: value for key, value in written.items() if key not in LATER_KEYS}
    (sweep / name).mkdir(parents=True)
    (sweep / name / "metrics.json").write_text(json.dumps(written))


def test_comparison_shows_backends_spread_lowerings_speedups_ties_and_coinciding_curves(
    tmp_path: Path,
) -> None:
    write_job(
        tmp_path,
        "0",
        layer="segregated",
        implementation="auto",
        median_step_ms=12.0,
        step_ms_q1=11.0,
        step_ms_q3=13.5,
        lowerings={"decoder_0": "native", "decoder_1": "native"},
    )
    # Same losses within 0.1%, step IQR overlapping job 0's: a tie.
    write_job(
        tmp_path,
        "1",
        layer="keras",
        median_step_ms=14.4,
        step_ms_q1=13.0,
        step_ms_q3=16.0,
        lowerings={"decoder_0": "native", "decoder_1": "native"},
        loss=[0.5002, 0.4],
        val_loss=[0.45, 0.35],
    )
    write_job(
        tmp_path,
        "2",
        layer="zero_insertion",
        implementation="zero_insertion",
        median_step_ms=40.0,
        step_ms_q1=38.0,
        step_ms_q3=42.0,
        lowerings={"decoder_0": "zero_insertion", "decoder_1": None},
        loss=[0.5, 0.41],
    )
    # Overlapping IQR, but another batch size: not comparable, so no tie.
    write_job(
        tmp_path,
        "3",
        layer="keras",
        batch_size=32,
        median_step_ms=13.0,
        step_ms_q1=12.5,
        step_ms_q3=13.2,
        lowerings={"decoder_0": "native", "decoder_1": "native"},
        loss=[0.6, 0.5],
    )
    # Written before step quartiles, lowerings and backends were recorded (as all the jobs
    # above: on TensorFlow).
    write_job(
        tmp_path,
        "4",
        first_version=True,
        layer="segregated",
        implementation="auto",
        median_step_ms=12.5,
        loss=[0.7, 0.6],
    )
    # On JAX: IQR overlapping jobs 0 and 1, but another backend, so no tie; its speed-up is
    # over JAX's keras job.
    write_job(
        tmp_path,
        "5",
        backend="jax",
        layer="segregated",
        implementation="split",
        median_step_ms=12.5,
        step_ms_q1=11.5,
        step_ms_q3=13.0,
        lowerings={"decoder_0": "split", "decoder_1": "split"},
        loss=[0.8, 0.7],
    )
    write_job(
        tmp_path,
        "6",
        backend="jax",
        layer="keras",
        median_step_ms=15.0,
        step_ms_q1=14.0,
        step_ms_q3=16.0,
        lowerings={"decoder_0": "native", "decoder_1": "native"},
        loss=[0.9, 0.8],
    )

    write_comparison(tmp_path)

    table = (tmp_path / "comparison.md").read_text()
    rows = {
        cells[0]: cells[2:]
        for cells in (
            [cell.strip() for cell in line.strip("|").split("|")]
            for line in table.splitlines()
            if line.startswith("| ")
        )
    }
    # layer, lowering per layer, device, backend, epoch (s), step (ms), step IQR (ms), images/s,
    # speed-up vs keras, speed-up vs zero insertion, ties, losses
    assert rows["0"] == [
        "segregated (auto)",
        "native, native",
        "cpu (2 cores)",
        "tensorflow",
        "2.00",
        "12.00",
        "11.00–13.50",
        "1000",
        "1.20x",
        "3.33x",
        "1",
        "0.40000",
        "0.35000",
    ]
    assert rows["1"][:11] == [
        "keras",
        "native, native",
        "cpu (2 cores)",
        "tensorflow",
        "2.00",
        "14.40",
        "13.00–16.00",
        "1000",
        "1.00x",
        "2.78x",
        "0",
    ]
    assert rows["2"][1] == "zero_insertion, unknown" and rows["2"][8:11] == ["0.36x", "1.00x", "–"]
    assert rows["3"][5:11] == ["13.00", "12.50–13.20", "1000", "1.00x", "n/a", "–"]
    assert rows["4"][1] == "n/a" and rows["4"][3:11] == [
        "tensorflow",
        "2.00",
        "12.50",
        "n/a",
        "1000",
        "1.15x",
        "3.20x",
        "–",
    ]
    assert rows["5"][:4] == ["segregated (split)", "split, split", "cpu (2 cores)", "jax"]
    assert rows["5"][8:11] == ["1.20x", "n/a", "–"]
    assert rows["6"][3] == "jax" and rows["6"][8:11] == ["1.00x", "n/a", "–"]
    assert (
        "Jobs 0, 1 ran the same lowerings (native, native)" in table
    )  # job 3 has another batch size, 6 backend
    assert table.count("ran the same lowerings") == 1
    assert "Loss curves of jobs 0, 1 coincide" in table
    assert table.count("coincide (") == 1  # jobs 2 to 6 differ from each other and from 0 and 1
    assert (tmp_path / "comparison.png").read_bytes().startswith(PNG_MAGIC)
