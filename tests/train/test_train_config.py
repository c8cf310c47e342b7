"""The config schema: every option in conf/ composes into a valid config, and
bad values fail with messages naming the key and the allowed values — before
any data is loaded, also from the command line, where they are one line on
standard error and leave no run directory behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from train_helpers import REPO_ROOT, run_app

from train.config import ConfigValueError, DatasetName, Implementation, LayerName, register_schema, to_train_config

CONF_DIR = REPO_ROOT / "conf"


@pytest.fixture(scope="module", autouse=True)
def hydra_conf():
    register_schema()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield


def compose_config(*overrides: str):
    return to_train_config(compose(config_name="config", overrides=list(overrides)))


def test_defaults_train_the_mnist_autoencoder_with_the_segregated_layer_on_tensorflow() -> None:
    config = compose_config()
    assert config.backend == "tensorflow"
    assert config.data.name is DatasetName.mnist
    assert config.model.name == "mnist_autoencoder"
    assert (config.layer.name, config.layer.implementation) == (LayerName.segregated, Implementation.auto)


@pytest.mark.parametrize(
    "group, option",
    [(path.parent.name, path.stem) for path in sorted(CONF_DIR.glob("*/*.yaml"))],
)
def test_every_config_option_is_valid(group: str, option: str) -> None:
    extra = {"folder": ["data.path=/images"], "flowers_autoencoder": ["data=flowers"]}.get(option, [])
    config = compose_config(f"{group}={option}", *extra)
    assert getattr(config, group) is not None


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        (["layer=foo"], MissingConfigException, "Available options in 'layer'"),
        (["device=tpu"], MissingConfigException, "Available options in 'device'"),
        (["trainer.precision=fp8"], ConfigCompositionException, ""),
        (["trainer.epochs=-1"], ConfigValueError, "trainer.epochs=-1 is invalid: allowed values are integers >= 1"),
        (["trainer.epochs=0"], ConfigValueError, "trainer.epochs=0"),
        (["trainer.steps_per_epoch=0"], ConfigValueError, "trainer.steps_per_epoch=0"),
        (["trainer.learning_rate=0"], ConfigValueError, "trainer.learning_rate=0"),
        (["data.batch_size=0"], ConfigValueError, "data.batch_size=0"),
        (["data.validation_split=1.5"], ConfigValueError, "data.validation_split=1.5"),
        (["data=folder"], ConfigValueError, "data.path=null"),
        (["layer=keras", "layer.implementation=split"], ConfigValueError, "allowed values are null when layer=keras"),
        (["layer.implementation=zero_insertion"], ConfigValueError, "auto, native, split, rows, unified when layer=segregated"),
        (
            ["model=flowers_autoencoder"],
            ConfigValueError,
            "data.image_size=28 is invalid: allowed values are multiples of 16",
        ),
        (["backend=torch"], ConfigValueError, "backend=torch is invalid: allowed values are tensorflow, jax"),
        (["backend=jax", "distribute=mirrored"], ConfigValueError, "allowed values are none when backend=jax"),
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
            "Error: device=gpu but TensorFlow sees no GPU; allowed values: auto (a GPU when present), cpu, gpu",
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
