"""The cluster of ``distribute=multi_worker``: TF_CONFIG parsing and every
bad cluster failing, naming the problem, before TensorFlow is imported and
before any data loads (in-process, and from the command line)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import REPO_ROOT, subprocess_env

from train.config import (
    ConfigValueError,
    DataConfig,
    DatasetName,
    DeviceConfig,
    DistributeConfig,
    LayerConfig,
    LayerName,
    ModelConfig,
    StrategyName,
    TrainConfig,
    TrainerConfig,
)
from train.multi_worker.cluster import ClusterConfigError, cluster_of, read_cluster

TWO_WORKERS = {"worker": ["127.0.0.1:20001", "127.0.0.1:20002"]}


def tf_config(cluster=TWO_WORKERS, task_type="worker", index=0) -> str:
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


def train_config(strategy: StrategyName, batch_size: int = 64) -> TrainConfig:
    return TrainConfig(
        data=DataConfig(name=DatasetName.mnist, batch_size=batch_size),
        model=ModelConfig(name="paper_mnist", filters=[32]),
        layer=LayerConfig(name=LayerName.keras),
        trainer=TrainerConfig(),
        device=DeviceConfig(),
        distribute=DistributeConfig(strategy=strategy),
    )


def test_workers_and_the_chief_follow_tensorflow() -> None:
    second = read_cluster({"TF_CONFIG": tf_config(index=1)})
    assert (second.workers, second.is_chief, str(second.me)) == (2, False, "worker 1 at 127.0.0.1:20002")
    assert [str(peer) for peer in second.peers] == ["worker 0 at 127.0.0.1:20001"]
    assert read_cluster({"TF_CONFIG": tf_config(index=0)}).is_chief
    # With a chief task, the chief leads and worker 0 is an ordinary worker.
    with_chief = {"chief": ["10.0.0.1:2222"], "worker": ["10.0.0.2:2222", "10.0.0.3:2222"]}
    assert read_cluster({"TF_CONFIG": tf_config(with_chief, "chief", 0)}).is_chief
    worker = read_cluster({"TF_CONFIG": tf_config(with_chief, "worker", 0)})
    assert (worker.workers, worker.is_chief, str(worker.tasks[0])) == (3, False, "chief 0 at 10.0.0.1:2222")


BAD_TF_CONFIGS = [
    (None, "distribute=multi_worker needs the TF_CONFIG environment variable"),
    ("", "distribute=multi_worker needs the TF_CONFIG environment variable"),
    ('{"cluster": {"worker": ["127.0.0.1:20001"]', "TF_CONFIG is not valid JSON"),
    (
        '["127.0.0.1:20001"]',
        'TF_CONFIG is invalid: allowed values are JSON objects with "cluster" and "task"',
    ),
    (tf_config(index=2), "TF_CONFIG task index 2 is outside the cluster: allowed values are 0 to 1"),
    (tf_config(index=-1), "TF_CONFIG task index -1 is outside the cluster"),
    (tf_config(index="1"), 'TF_CONFIG task index "1" is outside the cluster'),
    (
        tf_config(task_type="evaluator"),
        'TF_CONFIG task type "evaluator" is invalid: allowed values are chief, worker',
    ),
    (tf_config(task_type="ps"), 'TF_CONFIG task type "ps" is invalid'),
    (tf_config(task_type="chief"), 'TF_CONFIG task type "chief" is invalid: the cluster has no "chief" job'),
    (tf_config({**TWO_WORKERS, "ps": ["127.0.0.1:20003"]}), 'TF_CONFIG cluster job "ps" is invalid'),
    (tf_config({"worker": ["127.0.0.1"]}), '"host:port" strings'),
    (tf_config({"worker": ["127.0.0.1:70000"]}), '"host:port" strings'),
    (tf_config({"worker": []}), "non-empty lists"),
    (tf_config({"worker": ["a:1", "a:1"]}), "TF_CONFIG cluster lists a:1 more than once"),
    (tf_config({"chief": ["a:1", "b:1"], "worker": ["c:1"]}, "chief"), "at most one chief"),
]


@pytest.mark.parametrize("raw, message", BAD_TF_CONFIGS)
def test_bad_tf_config_fails_naming_the_problem(raw: str | None, message: str) -> None:
    environ = {} if raw is None else {"TF_CONFIG": raw}
    with pytest.raises(ClusterConfigError) as raised:
        read_cluster(environ)
    assert message in str(raised.value)


def test_the_global_batch_must_split_across_the_workers() -> None:
    environ = {"TF_CONFIG": tf_config()}
    assert cluster_of(train_config(StrategyName.multi_worker), environ).workers == 2
    message = (
        "data.batch_size=63 is invalid: allowed values are multiples of 2, the number of workers in TF_CONFIG"
    )
    with pytest.raises(ConfigValueError, match=message):
        cluster_of(train_config(StrategyName.multi_worker, batch_size=63), environ)
    # Other strategies do not read TF_CONFIG at all.
    assert cluster_of(train_config(StrategyName.mirrored), {"TF_CONFIG": "not json"}) is None


@pytest.mark.parametrize(
    "raw, overrides, message",
    [
        (None, [], "distribute=multi_worker needs the TF_CONFIG environment variable"),
        ("{cluster", [], "TF_CONFIG is not valid JSON"),
        (tf_config(index=5), [], "TF_CONFIG task index 5 is outside the cluster"),
        (tf_config(task_type="evaluator"), [], 'TF_CONFIG task type "evaluator" is invalid'),
        (
            tf_config(),
            ["data.batch_size=63"],
            "data.batch_size=63 is invalid: allowed values are multiples of 2",
        ),
        (tf_config(), ["-m"], "distribute=multi_worker is invalid in a multirun (-m)"),
    ],
)
def test_command_line_fails_before_importing_tensorflow(
    raw: str | None, overrides: list[str], message: str, tmp_path: Path
) -> None:
    # A TensorFlow that cannot be imported: the checks must not need it.
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text("raise ImportError('TensorFlow was imported')\n")
    env = {key: value for key, value in subprocess_env().items() if key != "TF_CONFIG"}
    env["PYTHONPATH"] = f"{tmp_path}:{env.get('PYTHONPATH', '')}"
    if raw is not None:
        env["TF_CONFIG"] = raw
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "train",
            *overrides,
            "distribute=multi_worker",
            f"hydra.run.dir={tmp_path / 'run'}",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode != 0
    assert message in completed.stderr
    assert "TensorFlow was imported" not in completed.stderr
    assert not (tmp_path / "run" / "metrics.json").exists()
