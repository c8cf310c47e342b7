"""The run directory contract: what a training job leaves in Hydra's output dir."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class RunDir:
    """Paths of a job's outputs under ``root`` (Hydra's ``runtime.output_dir``)."""

    root: Path

    @property
    def metrics(self) -> Path:
        """JSON summary: configuration choices, per-epoch losses, timings."""
        return self.root / METRICS_FILE

    @property
    def history(self) -> Path:
        """Per-epoch CSV log, appended to across resumes."""
        return self.root / "history.csv"

    @property
    def reconstructions(self) -> Path:
        """Validation inputs above their reconstructions."""
        return self.root / "reconstructions.png"

    @property
    def model(self) -> Path:
        """The trained model in Keras format (loads in safe mode)."""
        return self.root / "model.keras"

    @property
    def export(self) -> Path:
        """SavedModel with a ``serving_default`` signature."""
        return self.root / "export"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def backup(self) -> Path:
        """BackupAndRestore state of the last completed epoch."""
        return self.root / "backup"
