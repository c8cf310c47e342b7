"""The run directory contract: what a training job leaves in Hydra's output dir."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from train.metrics import Metrics

METRICS_FILE = "metrics.json"


@dataclass(frozen=True)
class RunDir:
    """Paths of a job's outputs under ``root`` (Hydra's ``runtime.output_dir``)."""

    root: Path

    @property
    def metrics(self) -> Path:
        """JSON summary (:class:`~train.metrics.Metrics`): configuration
        choices, per-epoch losses, timings."""
        return self.root / METRICS_FILE

    @property
    def readme(self) -> Path:
        """How to load the saved models."""
        return self.root / "README.txt"

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

    def completed_metrics(self, epochs: int) -> Metrics | None:
        """The metrics of a finished run of ``epochs`` epochs already here, if any.

        Rerunning a finished run must not train again nor overwrite its
        timings with those of an empty resume; a run asked for more epochs
        than it has goes on from its backup instead.
        """
        if not self.metrics.exists():
            return None
        metrics = Metrics.read(self.metrics)
        return metrics if len(metrics.loss) >= epochs else None
