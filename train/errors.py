"""Failures the user resolves through the configuration or the environment,
and how ``python -m train`` reports a failed job.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

# What Hydra writes into a run or sweep directory before the job starts: its
# config copies (hydra.output_subdir) and the sweep summary, besides the job's
# log file (<job name>.log).
_HYDRA_BOOKKEEPING = (".hydra", "multirun.yaml")


class UserError(Exception):
    """A bad config value, a dataset that cannot be provided, a missing device.

    Its message says what to change; ``python -m train`` prints it as one line
    without a traceback (``HYDRA_FULL_ERROR=1`` shows the traceback, as for
    Hydra's own errors).
    """


def _holds_only_hydra_bookkeeping(directory: Path) -> bool:
    return directory.is_dir() and all(
        entry.name in _HYDRA_BOOKKEEPING or entry.suffix == ".log" for entry in directory.iterdir()
    )


def _remove_unused(directory: Path) -> None:
    """Removes ``directory`` if Hydra alone wrote it, then the directories
    above it that are left empty, up to the working directory (Hydra's
    default ``outputs/<date>/<time>`` leaves ``outputs/<date>/``)."""
    directory = directory.absolute()
    if not _holds_only_hydra_bookkeeping(directory):
        return
    shutil.rmtree(directory)
    cwd = Path.cwd()
    for parent in directory.parents:
        if parent == cwd or cwd not in parent.parents or any(parent.iterdir()):
            break
        parent.rmdir()


@contextlib.contextmanager
def job_failures_reported(hydra_dirs: list[Path]) -> Iterator[None]:
    """Runs a job; when it fails, removes those of ``hydra_dirs`` (the run
    directory, then in a multirun the sweep directory) that hold nothing but
    Hydra's bookkeeping, since the job failed before writing anything, with
    the empty directories above them inside the working directory, and turns
    a :class:`UserError` into its message on standard error and exit status 1.

    A directory with outputs of an earlier attempt (a backup to resume from,
    finished jobs of the sweep) is kept.
    """
    try:
        yield
    except BaseException as error:
        for directory in hydra_dirs:
            _remove_unused(directory)
        if isinstance(error, UserError) and os.environ.get("HYDRA_FULL_ERROR") != "1":
            raise SystemExit(f"Error: {error}") from None
        raise
