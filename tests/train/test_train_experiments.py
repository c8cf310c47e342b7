"""The paper's experiments (``conf/experiment/``), composed with Hydra's
compose API, nothing trained: ``-m experiment=paper_mnist`` and ``-m
experiment=paper_flowers`` each sweep the three layers with the paper's
settings, making the same jobs as the command-line sweeps they replace, and
overrides on the command line still win. test_train_multirun.py runs
``-m experiment=paper_mnist`` end to end."""

from __future__ import annotations

import dataclasses

import pytest
from hydra import compose
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from train_helpers import compose_config, hydra_conf

from train.config import DatasetName, Implementation, LayerName, TrainConfig

LAYERS = [
    (LayerName.keras, None),
    (LayerName.segregated, Implementation.auto),
    (LayerName.zero_insertion, Implementation.zero_insertion),
]
# The command-line sweeps each experiment replaces (README's paper section and
# its flowers example, swept over the layers).
COMMAND_LINE_SWEEPS = {
    "paper_mnist": ("model=paper_mnist", "layer=keras,segregated,zero_insertion", "trainer.epochs=5"),
    "paper_flowers": ("data=flowers", "model=flowers_autoencoder", "layer=keras,segregated,zero_insertion"),
}


@pytest.fixture(scope="module", autouse=True)
def composing():
    with hydra_conf():
        yield


def sweep_jobs(*arguments: str) -> list[TrainConfig]:
    """The config of each job of ``python -m train -m *arguments``, expanded
    as Hydra's basic sweeper expands them: the ``hydra.sweeper.params`` of
    the config that the arguments other than sweeps compose, then the
    arguments, the later override of a key replacing the earlier."""
    parser = OverridesParser.create()
    fixed = [
        override.input_line
        for override in parser.parse_overrides(list(arguments))
        if not override.is_sweep_override()
    ]
    hydra = compose(config_name="config", overrides=fixed, return_hydra_config=True).hydra
    params = [f"{key}={value}" for key, value in (hydra.sweeper.params or {}).items()]
    (jobs,) = BasicSweeper.split_arguments(parser.parse_overrides([*params, *arguments]), max_batch_size=None)
    return [compose_config(*job) for job in jobs]


def without_layer(config: TrainConfig) -> dict:
    return {key: value for key, value in dataclasses.asdict(config).items() if key != "layer"}


@pytest.mark.parametrize("experiment", COMMAND_LINE_SWEEPS)
def test_experiment_sweeps_the_three_layers_as_the_command_line_did(experiment: str) -> None:
    jobs = sweep_jobs(f"experiment={experiment}")
    assert [(job.layer.name, job.layer.implementation) for job in jobs] == LAYERS
    assert all(without_layer(job) == without_layer(jobs[0]) for job in jobs)  # only the layer differs
    assert jobs == sweep_jobs(*COMMAND_LINE_SWEEPS[experiment])


def test_paper_mnist_is_the_simple_model_for_five_epochs() -> None:
    (job, *_) = sweep_jobs("experiment=paper_mnist")
    data = job.data
    assert (data.name, data.image_size, data.channels, data.batch_size) == (DatasetName.mnist, 28, 1, 64)
    assert (job.model.name, job.model.filters, job.model.kernel_size) == ("paper_mnist", [32], 3)
    assert (job.trainer.epochs, job.backend) == (5, "tensorflow")


def test_paper_flowers_is_the_flowers_autoencoder_on_rgb_photos() -> None:
    (job, *_) = sweep_jobs("experiment=paper_flowers")
    data = job.data
    assert (data.name, data.image_size, data.channels, data.batch_size) == (DatasetName.flowers, 128, 3, 32)
    assert (job.model.name, job.model.filters) == ("flowers_autoencoder", [32, 64, 128, 128])
    assert job.trainer.epochs == 10


def test_command_line_overrides_win_over_the_experiment() -> None:
    (job,) = sweep_jobs("experiment=paper_mnist", "layer=segregated", "trainer.epochs=1")
    assert (job.layer.name, job.model.name, job.trainer.epochs) == (LayerName.segregated, "paper_mnist", 1)
    # Offline, the flower photos from a folder, sized as tf_flowers.
    jobs = sweep_jobs("experiment=paper_flowers", "data=folder", "data.path=/photos")
    assert [(job.data.name, job.data.path, job.data.image_size) for job in jobs] == [
        (DatasetName.folder, "/photos", 128)
    ] * len(LAYERS)
