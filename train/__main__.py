"""``python -m train``: train the configured autoencoder (defaults: MNIST,
``SegregatedConv2DTranspose``, best available device).

Examples::

    python -m train
    python -m train model=paper_mnist layer=zero_insertion trainer.epochs=3
    python -m train data=flowers model=flowers_autoencoder device=gpu
    python -m train -m layer=segregated,keras,zero_insertion
    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
               "task": {"type": "worker", "index": 0}}' python -m train distribute=multi_worker
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from train.config import register_schema, to_train_config
from train.multi_worker.cluster import cluster_of
from train.run_dir import RunDir

log = logging.getLogger(__name__)

register_schema()


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Validates the config (and ``TF_CONFIG`` for ``distribute=multi_worker``),
    runs one job, and returns its final validation loss (the value a Hydra
    sweeper would minimise; None on the workers other than the chief)."""
    config = to_train_config(cfg)
    cluster = cluster_of(config, multirun=HydraConfig.get().mode is RunMode.MULTIRUN)
    # Imported once the config is valid, so that a bad override fails at once
    # instead of after TensorFlow's import.
    from train.job import run_job
    from train.multi_worker.job import run_worker_job

    run_dir = RunDir(Path(HydraConfig.get().runtime.output_dir))
    log.info("Config:\n%s", OmegaConf.to_yaml(cfg))
    metrics = run_job(config, run_dir) if cluster is None else run_worker_job(config, run_dir, cluster)
    return None if metrics is None else metrics["val_loss"][-1]


if __name__ == "__main__":
    main()
