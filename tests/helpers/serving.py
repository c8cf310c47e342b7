"""Serving SavedModels the way a deployment would: in a fresh Python process
that imports TensorFlow and nothing of the project.

The process blocks ``keras_tconv`` and ``train`` (an import of either fails
there, and it checks first that one does), loads each SavedModel with
``tf.saved_model.load``, calls its ``signatures["serving_default"]`` on each
batch of inputs it is given, and checks at the end that no module of the
project was loaded. The test compares the outputs with its own.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

TIMEOUT_S = 300

_SCRIPT = textwrap.dedent(
    """
    import json
    import sys

    PROJECT = ("keras_tconv", "train")

    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in PROJECT:
                raise ImportError(f"{name} is blocked in this process")
            return None

    sys.meta_path.insert(0, _Block())
    try:
        import keras_tconv  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the blocker let keras_tconv through")

    import numpy as np
    import tensorflow as tf

    served = []
    for job in json.loads(sys.argv[1]):
        serve = tf.saved_model.load(job["export"]).signatures["serving_default"]
        ((input_name, spec),) = serve.structured_input_signature[1].items()
        inputs = np.load(job["inputs"])
        outputs = {}
        for key in inputs.files:
            (output,) = serve(**{input_name: tf.constant(inputs[key])}).values()
            outputs[key] = output.numpy()
        np.savez(job["outputs"], **outputs)
        served.append({"input_name": input_name, "input_shape": spec.shape.as_list()})
    project = [name for name in sys.modules if name.split(".")[0] in PROJECT]
    assert not project, f"serving imported the project: {project}"
    print(json.dumps(served))
    """
)


@dataclasses.dataclass(frozen=True)
class Served:
    """What one SavedModel's serving signature takes and gave: its input's
    name and shape (``None`` where any size goes), and one output per batch."""

    input_name: str
    input_shape: list[int | None]
    outputs: list[np.ndarray]


def serve_without_the_project(
    requests: Sequence[tuple[str | Path, Sequence[np.ndarray]]],
    scratch: Path,
    env: Mapping[str, str] | None = None,
) -> list[Served]:
    """Serves each ``(SavedModel directory, input batches)`` of ``requests``
    in one fresh process (see the module docstring), passing the arrays
    through files in ``scratch``, in the environment ``env`` (by default
    this process's), and fails the test with the process's output if it fails.

    Every signature must have one input and one output.
    """
    jobs = []
    for index, (export, batches) in enumerate(requests):
        inputs = scratch / f"serve_inputs_{index}.npz"
        np.savez(inputs, *batches)
        jobs.append(
            {"export": str(export), "inputs": str(inputs), "outputs": str(scratch / f"served_{index}.npz")}
        )
    completed = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(jobs)],
        cwd=scratch,
        env=dict(os.environ if env is None else env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    served = []
    for job, signature in zip(jobs, json.loads(completed.stdout.splitlines()[-1]), strict=True):
        with np.load(job["outputs"]) as outputs:
            served.append(Served(outputs=[outputs[key] for key in outputs.files], **signature))
    return served
