"""Joining the cluster and talking to the other workers, with bounded waits."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator, Sequence

import tensorflow as tf

# MultiWorkerMirroredStrategy configures TensorFlow's coordination service
# through these internal modules; join_cluster configures it the same way
# first, with a bounded registration (which the strategy does not expose).
from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
from tensorflow.python.eager import context

from train.errors import UserError
from train.multi_worker.cluster import ClusterTask, Task

log = logging.getLogger(__name__)

# TensorFlow's errors when a collective operation loses a peer: a dead peer
# (found by the coordination service's heartbeats) or a collective timeout.
LOST_PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError)


class PeerUnreachableError(UserError, RuntimeError):
    """The other workers did not join the cluster, or stopped answering: what
    to check or relaunch, printed as one line like the other user errors."""


def _answers(task: Task, timeout_s: float = 2.0) -> bool:
    """Whether ``task``'s address accepts TCP connections."""
    host, _, port = task.address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return True
    except OSError:
        return False


def _configure_coordination(cluster: ClusterTask, timeout_s: float) -> None:
    """Configures the coordination service as MultiWorkerMirroredStrategy
    would (the chief, or worker 0, leads), except that registration is a
    barrier with a timeout.

    By default a worker whose peers never come waits in the device exchange
    after registration, inside a TensorFlow call that holds the GIL, so that
    no Python code (not even a watchdog thread) can interrupt it; a timed-out
    registration barrier raises ``DeadlineExceededError`` on every worker
    instead.
    """
    leader = cluster.tasks[0]
    jobs = [task.job for task in cluster.tasks]
    eager_context = context.context()
    eager_context.configure_coordination_service(
        service_type="standalone",
        service_leader=f"/job:{leader.job}/replica:0/task:{leader.index}",
        coordinated_jobs=[
            coordination_config_pb2.CoordinatedJob(name=job, num_tasks=jobs.count(job))
            for job in dict.fromkeys(jobs)
        ],
        cluster_register_timeout_in_ms=int(timeout_s * 1000),
    )
    eager_context.coordination_service.cluster_register_with_barrier = True


def join_cluster(cluster: ClusterTask, timeout_s: float) -> tf.distribute.MultiWorkerMirroredStrategy:
    """Starts this worker's server and waits until all workers of
    ``TF_CONFIG`` have joined; raises :class:`PeerUnreachableError`, naming
    the peers that do not answer, when they have not within about
    ``timeout_s``.

    Every collective operation afterwards gets the same timeout; a peer that
    dies is also detected by the heartbeats of TensorFlow's coordination
    service.
    """
    log.info("%s: waiting up to %g s for %s", cluster.me, timeout_s, ", ".join(map(str, cluster.peers)))
    _configure_coordination(cluster, timeout_s)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=tf.distribute.cluster_resolver.TFConfigClusterResolver(),
            communication_options=tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout_s),
        )
    except tf.errors.DeadlineExceededError as error:
        silent = [str(task) for task in cluster.peers if not _answers(task)]
        reason = (
            f"no answer from {', '.join(silent)}"
            if silent
            else "every peer's port answers, but not every peer joined "
            "(do all workers have the same TF_CONFIG cluster?)"
        )
        raise PeerUnreachableError(
            f"{cluster.me} could not reach its peers within distribute.peer_timeout_s={timeout_s:g} s: "
            f"{reason}. Start every task of the TF_CONFIG cluster, each with its own task index, and check "
            "that their addresses are reachable from here."
        ) from error


@contextlib.contextmanager
def peers_lost_as_error(cluster: ClusterTask, timeout_s: float) -> Iterator[None]:
    """Turns TensorFlow's lost-peer errors into :class:`PeerUnreachableError`
    with a message saying how to go on (TensorFlow's error stays chained)."""
    try:
        yield
    except LOST_PEER_ERRORS as error:
        raise PeerUnreachableError(
            f"{cluster.me} lost contact with the other workers ({type(error).__name__}: a worker stopped, "
            f"or a collective operation waited longer than distribute.peer_timeout_s={timeout_s:g} s). "
            "Relaunch every worker with its same command to resume from the last completed epoch."
        ) from error


def from_chief(
    strategy: tf.distribute.Strategy, values: Sequence[tf.Tensor | tf.Variable]
) -> list[tf.Tensor]:
    """The chief's ``values`` on every worker.

    Each replica contributes its values if it is the chief's first replica
    (global replica 0) and zeros otherwise, and one all-reduce sums them:
    adding zeros is exact, so every worker gets the chief's values bit for
    bit. They travel as float64, which holds float16/32 and integers below
    2**53 exactly and lets the all-reduce pack them into one message.
    """
    dtypes = [value.dtype for value in values]

    def replica_fn():
        replica = tf.distribute.get_replica_context()
        is_chief = tf.equal(replica.replica_id_in_sync_group, 0)
        mine = [
            tf.where(is_chief, tf.cast(value, tf.float64), tf.zeros(value.shape, tf.float64))
            for value in values
        ]
        return replica.all_reduce(tf.distribute.ReduceOp.SUM, mine)

    summed = strategy.run(tf.function(replica_fn))
    local = [strategy.experimental_local_results(value)[0] for value in summed]
    return [tf.cast(value, dtype) for value, dtype in zip(local, dtypes, strict=True)]


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Returns once every worker has reached it (an all-reduce of nothing)."""
    from_chief(strategy, [tf.zeros(())])
