"""``train.compare`` on hand-written metrics: the step-time spread, the
lowerings, ties only within the same setting and overlapping IQRs, jobs that
ran the same lowerings, and coinciding loss curves named in comparison.md."""

from __future__ import annotations

import json
from pathlib import Path

from train.compare import write_comparison

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_job(sweep: Path, name: str, **metrics) -> None:
    defaults = {
        "model": "paper_mnist",
        "data": "mnist",
        "image_size": 28,
        "batch_size": 16,
        "device": "cpu (2 cores)",
        "replicas": 1,
        "precision": "float32",
        "implementation": None,
        "epoch_seconds": [2.0],
        "images_per_second": 1000.0,
        "loss": [0.5, 0.4],
        "val_loss": [0.45, 0.35],
    }
    (sweep / name).mkdir(parents=True)
    (sweep / name / "metrics.json").write_text(json.dumps({**defaults, **metrics}))


def test_comparison_shows_spread_lowerings_ties_and_coinciding_curves(tmp_path: Path) -> None:
    write_job(tmp_path, "0", layer="segregated", implementation="auto", median_step_ms=12.0, step_ms_q1=11.0,
              step_ms_q3=13.5, lowerings={"decoder_0": "native", "decoder_1": "native"})
    # Same losses within 0.1%, step IQR overlapping job 0's: a tie.
    write_job(tmp_path, "1", layer="keras", median_step_ms=14.4, step_ms_q1=13.0, step_ms_q3=16.0,
              lowerings={"decoder_0": "native", "decoder_1": "native"}, loss=[0.5002, 0.4], val_loss=[0.45, 0.35])
    write_job(tmp_path, "2", layer="zero_insertion", implementation="zero_insertion", median_step_ms=40.0,
              step_ms_q1=38.0, step_ms_q3=42.0, lowerings={"decoder_0": "zero_insertion", "decoder_1": None},
              loss=[0.5, 0.41])
    # Overlapping IQR, but another batch size: not comparable, so no tie.
    write_job(tmp_path, "3", layer="keras", batch_size=32, median_step_ms=13.0, step_ms_q1=12.5, step_ms_q3=13.2,
              lowerings={"decoder_0": "native", "decoder_1": "native"}, loss=[0.6, 0.5])
    # Written before step quartiles and lowerings were recorded.
    write_job(tmp_path, "4", layer="keras", median_step_ms=12.5, loss=[0.7, 0.6])

    write_comparison(tmp_path)

    table = (tmp_path / "comparison.md").read_text()
    rows = {cells[0]: cells[2:] for cells in (
        [cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines() if line.startswith("| ")
    )}
    # layer, lowering per layer, device, epoch (s), step (ms), step IQR (ms), images/s, speed-up, ties, losses
    assert rows["0"] == ["segregated (auto)", "native, native", "cpu (2 cores)", "2.00", "12.00", "11.00–13.50",
                         "1000", "3.33x", "1", "0.40000", "0.35000"]
    assert rows["1"][:9] == ["keras", "native, native", "cpu (2 cores)", "2.00", "14.40", "13.00–16.00", "1000",
                             "2.78x", "0"]
    assert rows["2"][1] == "zero_insertion, unknown" and rows["2"][7:9] == ["1.00x", "–"]
    assert rows["3"][4:9] == ["13.00", "12.50–13.20", "1000", "n/a", "–"]
    assert rows["4"][1] == "n/a" and rows["4"][4:9] == ["12.50", "n/a", "1000", "3.20x", "–"]
    assert "Jobs 0, 1 ran the same lowerings (native, native)" in table  # job 3 has another batch size
    assert table.count("ran the same lowerings") == 1
    assert "Loss curves of jobs 0, 1 coincide" in table
    assert table.count("coincide (") == 1  # jobs 2, 3 and 4 differ from each other and from 0 and 1
    assert (tmp_path / "comparison.png").read_bytes().startswith(PNG_MAGIC)
