"""Peak memory of one step of each implementation.

What is measured: the memory a step needs beyond its inputs and weights, that
is the peak of everything allocated while it runs (its output included),
after one warm-up step.

On a GPU, TensorFlow's allocator keeps a peak counter:
``tf.config.experimental.reset_memory_stats`` and ``get_memory_info`` give it
directly, in process.

On the CPU, TensorFlow allocates with ``malloc``, which no in-process
counter sees, so every implementation runs in its own subprocess
(``python -m keras_tconv.benchmark.memory``) over all shapes, and the
process's resident-set high-water mark is read around the step: Linux resets
it to the current resident size when ``5`` is written to
``/proc/self/clear_refs``, and reports it as ``VmHWM``. The child fixes
glibc's mmap threshold (``MALLOC_MMAP_THRESHOLD_``) so that large freed
buffers go back to the system instead of being reused silently by the next
step, which would hide its allocations.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys

import tensorflow as tf

from keras_tconv.benchmark import impls
from keras_tconv.benchmark.suites import Shape, get_suite

# Allocations of at least this many bytes are mmap'ed, and unmapped on free.
_MMAP_THRESHOLD = 64 * 1024


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _rss_peak_of(step) -> int:
    """Bytes by which the resident set grows, at its peak, while ``step()`` runs."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    before = _status_kib("VmRSS")
    result = step()
    peak = _status_kib("VmHWM")
    del result
    return max(0, peak - before) * 1024


def gpu_peak_bytes(step, sync, device: str) -> int:
    """Peak bytes TensorFlow's GPU allocator holds beyond what it held before ``step()``."""
    sync(step())
    tf.config.experimental.reset_memory_stats(device)
    before = tf.config.experimental.get_memory_info(device)["current"]
    result = step()
    sync(result)
    peak = tf.config.experimental.get_memory_info(device)["peak"]
    del result
    return max(0, peak - before)


def cpu_peak_bytes(
    suite: str, shapes: tuple[Shape, ...], modes: tuple[str, ...], implementations: tuple[str, ...], seed: int
) -> dict[tuple[str, str, str], int]:
    """``{(shape name, mode, impl): bytes}``, one subprocess per implementation.

    The subprocesses run two at a time: memory, unlike time, does not suffer
    from sharing the processor.
    """
    request = {"suite": suite, "shapes": [s.name for s in shapes], "modes": list(modes), "seed": seed}
    # CUDA_VISIBLE_DEVICES="": a GPU, if any, would only add its runtime's memory to the CPU measurement.
    env = dict(
        os.environ,
        MALLOC_MMAP_THRESHOLD_=str(_MMAP_THRESHOLD),
        TF_CPP_MIN_LOG_LEVEL="2",
        CUDA_VISIBLE_DEVICES="",
    )

    def child(impl: str) -> dict[tuple[str, str, str], int]:
        completed = subprocess.run(
            [sys.executable, "-m", "keras_tconv.benchmark.memory", impl],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            env=env,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"Memory measurement of {impl!r} failed:\n{completed.stderr[-4000:]}")
        results = {}
        for line in completed.stdout.splitlines():
            if line.startswith("{"):
                row = json.loads(line)
                results[(row["shape"], row["mode"], impl)] = row["bytes"]
        return results

    peaks = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for results in pool.map(child, implementations):
            peaks.update(results)
    return peaks


def _child_main(impl: str) -> None:
    """Subprocess entry: measure ``impl`` on the shapes and modes read from stdin."""
    request = json.loads(sys.stdin.read())
    for shape in get_suite(request["suite"], request["shapes"]):
        for mode in request["modes"]:
            case = impls.build_case(shape, mode, (impl,), "/CPU:0", request["seed"])
            step = case.run[impl]
            step()  # warm-up: one-time allocations (kernel caches, scratch) are not per-step memory
            print(json.dumps({"shape": shape.name, "mode": mode, "bytes": _rss_peak_of(step)}), flush=True)
            del case, step


if __name__ == "__main__":
    _child_main(sys.argv[1])
