"""``python -m train``: train the configured autoencoder (defaults: MNIST,
``SegregatedConv2DTranspose``, best available device).

Examples::

    python -m train
    python -m train model=paper_mnist layer=zero_insertion trainer.epochs=3
    python -m train data=flowers model=flowers_autoencoder device=gpu
    python -m train -m layer=segregated,keras,zero_insertion
    python -m train -m experiment=paper_mnist   # the paper's MNIST experiment: all three layers
    python -m train -m backend=jax layer=segregated,keras
    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
               "task": {"type": "worker", "index": 0}}' python -m train distribute=multi_worker

Run it from the repository root: the package is not installed, and Hydra
reads ``conf/`` next to it. Keras's backend is the config's ``backend``
(tensorflow by default), set once the config is composed and checked, before
anything imports Keras (see :mod:`train.backend`). TensorFlow's start-up
messages are hidden unless ``TF_CPP_MIN_LOG_LEVEL`` is set (see
:mod:`train.quiet`); a bad config value, a dataset that cannot be provided or
a missing device ends the run with one line on standard error and exit
status 1 (``HYDRA_FULL_ERROR=1`` shows the traceback), and a run that fails
before writing anything leaves no directory behind (see :mod:`train.errors`).
"""

from __future__ import annotations

from train.quiet import quiet_tensorflow, startup_noise_hidden

quiet_tensorflow()  # before anything imports TensorFlow

import logging  # noqa: E402
from pathlib import Path  # noqa: E402

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from train.backend import use_backend  # noqa: E402
from train.config import register_schema, to_train_config  # noqa: E402
from train.errors import job_failures_reported  # noqa: E402
from train.multi_worker.cluster import cluster_of  # noqa: E402
from train.run_dir import RunDir  # noqa: E402

log = logging.getLogger(__name__)

register_schema()


def _hydra_dirs() -> list[Path]:
    """This job's output directory, and the sweep's directory in a multirun."""
    hydra_config = HydraConfig.get()
    dirs = [Path(hydra_config.runtime.output_dir)]
    if hydra_config.mode is RunMode.MULTIRUN:
        dirs.append(Path(hydra_config.sweep.dir))
    return dirs


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Validates the config (and ``TF_CONFIG`` for ``distribute=multi_worker``),
    runs one job, and returns its final validation loss (the value a Hydra
    sweeper would minimise; None on the workers other than the chief)."""
    hydra_dirs = _hydra_dirs()
    with job_failures_reported(hydra_dirs):
        config = to_train_config(cfg)
        cluster = cluster_of(config, multirun=HydraConfig.get().mode is RunMode.MULTIRUN)
        use_backend(config.backend)
        # Imported once the config is valid and the backend set, so that a bad
        # override fails at once instead of after TensorFlow's import, and Keras
        # loads on the configured backend.
        with startup_noise_hidden():
            from train.job import run_job
            from train.multi_worker.job import run_worker_job

        log.info("Config:\n%s", OmegaConf.to_yaml(cfg))
        run_dir = RunDir(hydra_dirs[0])
        metrics = run_job(config, run_dir) if cluster is None else run_worker_job(config, run_dir, cluster)
    return None if metrics is None else metrics.val_loss[-1]


if __name__ == "__main__":
    main()
