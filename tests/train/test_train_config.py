"""The config schema: the defaults are the dataclasses', every option (in
conf/ or in the ConfigStore) composes into a valid config, and bad values
fail with messages naming the key and the allowed values — before any data
is loaded, also from the command line, where they are one line on standard
error and leave no run directory behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf
from train_helpers import CONF_DIR, compose_config, hydra_conf, run_app

from train.config import (
    ConfigValueError,
    DataConfig,
    DatasetName,
    DeviceConfig,
    DistributeConfig,
    Implementation,
    LayerConfig,
    LayerName,
    ModelConfig,
    TrainConfig,
    TrainerConfig,
)


@pytest.fixture(scope="module", autouse=True)
def composing():
    with hydra_conf():
        yield


def config_options() -> list[tuple[str, str]]:
    """``(group, option)`` for every option Hydra finds, in conf/ or in the ConfigStore."""
    with hydra_conf():
        loader = GlobalHydra.instance().config_loader()
        return [
            (group, option)
            for group in loader.list_groups("")
            if group != "hydra"
            for option in loader.get_group_options(group)
        ]


def test_defaults_train_the_mnist_autoencoder_with_the_segregated_layer_on_tensorflow() -> None:
    config = compose_config()
    assert config.backend == "tensorflow"
    assert config.data.name is DatasetName.mnist
    assert config.model.name == "mnist_autoencoder"
    assert (config.layer.name, config.layer.implementation) == (LayerName.segregated, Implementation.auto)


# The dataclass of each group, whose defaults the option files merge onto.
GROUP_SCHEMAS = {
    "data": DataConfig,
    "model": ModelConfig,
    "layer": LayerConfig,
    "trainer": TrainerConfig,
    "device": DeviceConfig,
    "distribute": DistributeConfig,
}


def repeated_defaults(path: Path) -> list[str]:
    """The keys of the option file at ``path`` whose value is the schema's
    default, other than the one naming the option (``kind: auto`` in
    device/auto.yaml); an experiment's keys are those of the groups it sets."""
    values = OmegaConf.to_container(OmegaConf.load(path))
    values.pop("defaults", None)
    values.pop("hydra", None)
    groups = values if path.parent.name == "experiment" else {path.parent.name: values}
    repeated = []
    for group, group_values in groups.items():
        defaults = OmegaConf.to_container(OmegaConf.structured(GROUP_SCHEMAS[group]), enum_to_str=True)
        repeated += [
            f"{group}.{key}"
            for key, value in group_values.items()
            if value == defaults[key] and value != path.stem
        ]
    return repeated


def test_the_entry_point_holds_no_values_of_the_schema() -> None:
    assert set(OmegaConf.load(CONF_DIR / "config.yaml")) == {"defaults", "hydra"}


@pytest.mark.parametrize(
    "path", sorted(CONF_DIR.glob("*/*.yaml")), ids=lambda path: f"{path.parent.name}/{path.stem}"
)
def test_option_files_hold_only_what_tells_the_option_apart(path: Path) -> None:
    assert repeated_defaults(path) == [], "the defaults live in train/config.py's dataclasses"


@pytest.mark.parametrize("group, option", config_options())
def test_every_config_option_is_valid(group: str, option: str) -> None:
    extra = {"folder": ["data.path=/images"], "flowers_autoencoder": ["data=flowers"]}.get(option, [])
    assert isinstance(compose_config(f"{group}={option}", *extra), TrainConfig)


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        (["layer=foo"], MissingConfigException, "Available options in 'layer'"),
        (["device=tpu"], MissingConfigException, "Available options in 'device'"),
        (["trainer.precision=fp8"], ConfigCompositionException, ""),
        (
            ["trainer.epochs=-1"],
            ConfigValueError,
            "trainer.epochs=-1 is invalid: allowed values are integers >= 1",
        ),
        (["trainer.epochs=0"], ConfigValueError, "trainer.epochs=0"),
        (["trainer.steps_per_epoch=0"], ConfigValueError, "trainer.steps_per_epoch=0"),
        (["trainer.learning_rate=0"], ConfigValueError, "trainer.learning_rate=0"),
        (["data.batch_size=0"], ConfigValueError, "data.batch_size=0"),
        (["data.validation_split=1.5"], ConfigValueError, "data.validation_split=1.5"),
        (["data=folder"], ConfigValueError, "data.path=null"),
        (
            ["layer=keras", "layer.implementation=split"],
            ConfigValueError,
            "allowed values are null when layer=keras",
        ),
        (
            ["layer.implementation=zero_insertion"],
            ConfigValueError,
            "auto, native, split, rows, unified when layer=segregated",
        ),
        (
            ["model=flowers_autoencoder"],
            ConfigValueError,
            "data.image_size=28 is invalid: allowed values are multiples of 16",
        ),
        (["backend=torch"], ConfigValueError, "backend=torch is invalid: allowed values are tensorflow, jax"),
        (
            ["backend=jax", "distribute=mirrored"],
            ConfigValueError,
            "allowed values are none when backend=jax",
        ),
    ],
)
def test_bad_values_fail_naming_key_and_allowed_values(overrides, error, message) -> None:
    with pytest.raises(error) as raised:
        compose_config(*overrides)
    assert message in str(raised.value)
    if error is ConfigCompositionException:
        assert "expected one of [float32, mixed_float16, mixed_bfloat16]" in str(raised.value.__cause__)


@pytest.mark.parametrize(
    "overrides, line",
    [
        (["trainer.epochs=-1"], "Error: trainer.epochs=-1 is invalid: allowed values are integers >= 1"),
        (
            ["data=folder"],
            "Error: data.path=null is invalid: data=folder needs data.path=DIR, "
            "a folder holding one subfolder of images per class",
        ),
        (
            ["device=gpu"],
            "Error: device=gpu but TensorFlow sees no GPU; allowed values: auto (a GPU when present), "
            "cpu, gpu",
        ),
        (["backend=foo"], "Error: backend=foo is invalid: allowed values are tensorflow, jax"),
        (
            ["backend=jax", "distribute=multi_worker"],
            "Error: distribute=multi_worker is invalid: allowed values are none when backend=jax "
            "(tf.distribute strategies distribute Keras on TensorFlow only)",
        ),
        (
            ["backend=jax", "device=gpu"],
            "Error: device=gpu but JAX sees no GPU; allowed values: auto (a GPU when present), cpu, gpu",
        ),
    ],
)
def test_command_line_error_is_one_line_before_loading_data(overrides, line: str, tmp_path: Path) -> None:
    """Also after TensorFlow's and JAX's import (device=gpu): their start-up lines are hidden by default."""
    completed = run_app(*overrides, cwd=tmp_path)
    assert completed.returncode == 1
    assert completed.stderr.splitlines() == [line]
    assert "Data:" not in completed.stdout
    assert not any(tmp_path.iterdir())  # no outputs/<date>/<time>/ left behind


def test_hydra_full_error_shows_the_traceback(tmp_path: Path) -> None:
    completed = run_app("trainer.epochs=-1", cwd=tmp_path, HYDRA_FULL_ERROR="1")
    assert completed.returncode == 1
    assert "Traceback (most recent call last)" in completed.stderr
    assert "ConfigValueError: trainer.epochs=-1 is invalid" in completed.stderr
    assert not any(tmp_path.iterdir())


def test_unknown_config_option_fails_with_hydras_message(tmp_path: Path) -> None:
    completed = run_app("layer=foo", cwd=tmp_path)
    assert completed.returncode == 1
    assert "Could not find 'layer/foo'" in completed.stderr and "Traceback" not in completed.stderr
    assert not any(tmp_path.iterdir())
