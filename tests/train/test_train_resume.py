"""Resume: a run killed with SIGKILL after its first completed epoch, rerun
with the same command and run directory, continues from the backup and ends
with the complete per-epoch history."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from train_helpers import RUN_TIMEOUT_S, read_metrics, run_training, subprocess_env, train_command

pytestmark = pytest.mark.slow

EPOCHS = 3
# Long enough epochs (a few seconds) that the kill lands inside the second one.
OVERRIDES = (f"trainer.epochs={EPOCHS}", "trainer.steps_per_epoch=40", "trainer.learning_rate=0.01")


def completed_epochs(backup_dir: Path) -> int:
    """Epochs saved by BackupAndRestore so far (0 while none or mid-write)."""
    try:
        return json.loads((backup_dir / "training_metadata.json").read_text())["epoch"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def kill_after_first_epoch(command: list[str], cwd: Path, backup_dir: Path) -> None:
    process = subprocess.Popen(
        command, cwd=cwd, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while completed_epochs(backup_dir) < 1:
            assert process.poll() is None, (
                f"run ended before its first backup:\n{process.stderr.read()[-5000:]}"
            )
            assert time.monotonic() < deadline, "no epoch completed in time"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert completed_epochs(backup_dir) < EPOCHS, "the run finished before it could be killed"


def test_rerun_after_sigkill_resumes_with_complete_history(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    overrides = (*OVERRIDES, f"hydra.run.dir={run_dir}")
    kill_after_first_epoch(train_command(*overrides, tfds="mock"), tmp_path, run_dir / "backup")
    assert not (run_dir / "metrics.json").exists()

    run_training(*overrides, cwd=tmp_path, tfds="mock")

    metrics = read_metrics(run_dir)
    assert metrics.resumed_from_epoch >= 1
    assert len(metrics.loss) == len(metrics.val_loss) == EPOCHS
    assert len(metrics.epoch_seconds) == EPOCHS - metrics.resumed_from_epoch
    assert metrics.loss[-1] < metrics.loss[0]
