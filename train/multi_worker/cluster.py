"""The cluster of ``distribute=multi_worker``, read from ``TF_CONFIG``.

Every worker runs the same command; the ``TF_CONFIG`` environment variable,
TensorFlow's standard description of a cluster, gives each process the
addresses of all tasks and tells it which one it is::

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}'

It is checked here without importing TensorFlow, so that a bad cluster fails
within a second, naming the problem, instead of after TensorFlow's import or
while waiting for peers that will never answer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

from train.config import ConfigValueError, StrategyName, TrainConfig, require_even_split

TF_CONFIG = "TF_CONFIG"
# The tasks that train under MultiWorkerMirroredStrategy, in TensorFlow's
# order of worker ids: the chief (if any) first, then the workers.
JOBS = ("chief", "worker")
EXAMPLE = '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}'


class ClusterConfigError(ConfigValueError):
    """``TF_CONFIG`` is missing or does not describe a cluster this process belongs to."""


@dataclass(frozen=True)
class Task:
    """One task of the cluster: its job (chief or worker), index and address."""

    job: str
    index: int
    address: str

    def __str__(self) -> str:
        return f"{self.job} {self.index} at {self.address}"


@dataclass(frozen=True)
class ClusterTask:
    """The cluster's tasks and which of them this process is."""

    tasks: tuple[Task, ...]
    me: Task

    @property
    def workers(self) -> int:
        """Processes that train (the chief counts as one)."""
        return len(self.tasks)

    @property
    def is_chief(self) -> bool:
        """TensorFlow's rule: the chief task, or worker 0 when the cluster has
        no chief. Only the chief writes the run directory."""
        return self.me == self.tasks[0]

    @property
    def peers(self) -> tuple[Task, ...]:
        return tuple(task for task in self.tasks if task != self.me)


def _fail(problem: str) -> ClusterConfigError:
    return ClusterConfigError(f"{TF_CONFIG} {problem}")


def _valid_address(address: object) -> bool:
    """A ``host:port`` string with a port in 1-65535."""
    if not isinstance(address, str):
        return False
    host, _, port = address.rpartition(":")
    return bool(host) and port.isdigit() and 1 <= int(port) <= 65535


def _parse_tasks(cluster: object) -> tuple[Task, ...]:
    if not isinstance(cluster, dict) or not cluster:
        raise _fail(
            f'"cluster" is invalid: allowed values are objects mapping {" or ".join(JOBS)} to addresses'
        )
    for job, addresses in cluster.items():
        if job not in JOBS:
            raise _fail(
                f'cluster job "{job}" is invalid: allowed jobs are {", ".join(JOBS)} '
                "(MultiWorkerMirroredStrategy trains on all of them; "
                "it has no parameter servers or evaluators)"
            )
        if not isinstance(addresses, list) or not addresses or not all(map(_valid_address, addresses)):
            raise _fail(
                f'cluster job "{job}" is invalid: allowed values are non-empty lists of "host:port" strings'
            )
    if len(cluster.get("chief", [])) > 1:
        raise _fail('cluster job "chief" is invalid: a cluster has at most one chief')
    tasks = tuple(
        Task(job, index, address) for job in JOBS for index, address in enumerate(cluster.get(job, []))
    )
    addresses = [task.address for task in tasks]
    duplicates = sorted({address for address in addresses if addresses.count(address) > 1})
    if duplicates:
        raise _fail(f"cluster lists {', '.join(duplicates)} more than once: every task needs its own address")
    return tasks


def _find_me(task: object, tasks: tuple[Task, ...]) -> Task:
    if not isinstance(task, dict):
        raise _fail('"task" is invalid: allowed values are objects like {"type": "worker", "index": 0}')
    job, index = task.get("type"), task.get("index")
    if job not in JOBS:
        raise _fail(f"task type {json.dumps(job)} is invalid: allowed values are {', '.join(JOBS)}")
    indexes = [candidate.index for candidate in tasks if candidate.job == job]
    if not indexes:
        raise _fail(f'task type "{job}" is invalid: the cluster has no "{job}" job')
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(indexes):
        raise _fail(
            f"task index {json.dumps(index)} is outside the cluster: "
            f"allowed values are 0 to {len(indexes) - 1}, "
            f'the indexes of its {len(indexes)} "{job}" task(s)'
        )
    return next(candidate for candidate in tasks if (candidate.job, candidate.index) == (job, index))


def read_cluster(environ: Mapping[str, str] = os.environ) -> ClusterTask:
    """Parses and checks ``TF_CONFIG``; raises :class:`ClusterConfigError`
    naming the problem."""
    raw = environ.get(TF_CONFIG, "")
    if not raw.strip():
        raise ClusterConfigError(
            f"distribute=multi_worker needs the {TF_CONFIG} environment variable on every worker, "
            f"for example {TF_CONFIG}='{EXAMPLE}'"
        )
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError as error:
        raise _fail(f"is not valid JSON ({error}): {raw}") from None
    if not isinstance(spec, dict):
        raise _fail(
            f'is invalid: allowed values are JSON objects with "cluster" and "task", for example {EXAMPLE}'
        )
    tasks = _parse_tasks(spec.get("cluster"))
    return ClusterTask(tasks, _find_me(spec.get("task"), tasks))


def cluster_of(
    config: TrainConfig, environ: Mapping[str, str] = os.environ, multirun: bool = False
) -> ClusterTask | None:
    """The checked cluster of a ``distribute=multi_worker`` job, None for the
    other strategies.

    The global batch must split evenly across the workers; this is checked
    here already, before any worker waits for the others. A Hydra
    ``multirun`` is refused: its jobs share one process, and a second job's
    collectives fail on the state the first left behind.
    """
    if config.distribute.strategy is not StrategyName.multi_worker:
        return None
    if multirun:
        raise ConfigValueError(
            "distribute=multi_worker is invalid in a multirun (-m): every worker trains one job per process, "
            "so launch each job of a sweep as its own command"
        )
    cluster = read_cluster(environ)
    require_even_split(config.data.batch_size, cluster.workers, f"workers in {TF_CONFIG}")
    return cluster
