"""``python -m train.compare SWEEP_DIR``: compare the jobs of a multirun.

Reads every ``metrics.json`` under SWEEP_DIR (e.g. from
``python -m train -m experiment=paper_mnist``,
``python -m train -m layer=segregated,keras,zero_insertion`` or
``python -m train -m backend=jax layer=segregated,keras``) as
:class:`~train.metrics.Metrics`, prints the table
and writes ``comparison.md`` (a table per job: Keras's backend, the lowering
each transposed convolution ran, time per step with its interquartile range,
speed-up over Keras's layer and over zero insertion, ties, final losses) and
``comparison.png`` (step times with their spread, and loss curves) into
SWEEP_DIR. Needs matplotlib only, not TensorFlow.

Jobs are compared only with jobs of the same setting (backend, model, data,
image and batch size, device, replicas, precision). Two such jobs **tie** when the
interquartile ranges of their step times (25th to 75th percentile over the
steps, first step left out) overlap: the difference of their medians is then
within the noise of the runs (the noise within each job: drift of the
machine between jobs adds to it). Jobs of one setting that ran the same
lowering in every transposed convolution are named too: their step times can
differ only by noise. Loss curves **coincide** when loss and val_loss agree
within 0.1% at every epoch (layers that compute the same function do);
coinciding curves are drawn on top of each other, so the notes name them.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from train.metrics import Metrics  # noqa: E402
from train.run_dir import METRICS_FILE  # noqa: E402

# The metrics that must agree for two jobs' step times to be comparable.
SETTING_KEYS = ("backend", "model", "data", "image_size", "batch_size", "device", "replicas", "precision")
# The layers whose job of the same setting each job's speed-up is measured against.
BASELINE_LAYERS = {"keras": "keras", "zero_insertion": "zero insertion"}
# Loss curves closer than this (relative, at every epoch) are drawn on top of each other.
COINCIDE_RTOL = 1e-3


@dataclass(frozen=True)
class Job:
    """One job's metrics and its directory relative to the sweep."""

    name: str
    metrics: Metrics

    @property
    def label(self) -> str:
        """The layer choice, with the implementation when it adds information."""
        layer, implementation = self.metrics.layer, self.metrics.implementation
        if implementation and implementation != layer:
            return f"{layer} ({implementation})"
        return layer

    @property
    def setting(self) -> tuple:
        return tuple(getattr(self.metrics, key) for key in SETTING_KEYS)

    @property
    def step_iqr(self) -> tuple[float, float] | None:
        """``(q1, q3)`` of the step times in ms; None for metrics without them."""
        q1, q3 = self.metrics.step_ms_q1, self.metrics.step_ms_q3
        return None if q1 is None or q3 is None else (q1, q3)

    @property
    def lowerings(self) -> str:
        """The lowering of each transposed convolution, in layer order."""
        if self.metrics.lowerings is None:
            return "n/a"
        return ", ".join(lowering or "unknown" for lowering in self.metrics.lowerings.values())


def find_jobs(sweep_dir: Path) -> list[Job]:
    """All jobs under ``sweep_dir`` that wrote metrics, in directory order."""
    return [
        Job(str(path.parent.relative_to(sweep_dir)), Metrics.read(path))
        for path in sorted(sweep_dir.rglob(METRICS_FILE))
    ]


def ties(job: Job, others: list[Job]) -> list[Job]:
    """The jobs of ``others`` in ``job``'s setting whose step-time
    interquartile range overlaps ``job``'s."""
    if job.step_iqr is None:
        return []
    q1, q3 = job.step_iqr
    return [
        other
        for other in others
        if other is not job
        and other.setting == job.setting
        and other.step_iqr is not None
        and max(q1, other.step_iqr[0]) <= min(q3, other.step_iqr[1])
    ]


def coinciding_loss_curves(jobs: list[Job]) -> list[list[Job]]:
    """Groups of two or more jobs whose loss and val_loss curves coincide
    (within :data:`COINCIDE_RTOL` at every epoch)."""

    def coincide(a: Job, b: Job) -> bool:
        curves = ((a.metrics.loss, b.metrics.loss), (a.metrics.val_loss, b.metrics.val_loss))
        return all(
            len(curve_a) == len(curve_b) and np.allclose(curve_a, curve_b, rtol=COINCIDE_RTOL, atol=0.0)
            for curve_a, curve_b in curves
        )

    groups: list[list[Job]] = []
    for job in jobs:
        group = next((group for group in groups if coincide(group[0], job)), None)
        if group is None:
            groups.append([job])
        else:
            group.append(job)
    return [group for group in groups if len(group) > 1]


def same_lowerings(jobs: list[Job]) -> list[list[Job]]:
    """Groups of two or more jobs of one setting whose transposed convolutions
    all ran the same, known, lowerings."""
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        lowerings = job.metrics.lowerings
        if lowerings and None not in lowerings.values():
            groups.setdefault((job.setting, tuple(lowerings.values())), []).append(job)
    return [group for group in groups.values() if len(group) > 1]


def _baseline_step_ms(jobs: list[Job], layer: str) -> dict[tuple, float]:
    """Median step time of the ``layer`` job of each setting."""
    return {
        job.setting: job.metrics.median_step_ms
        for job in jobs
        if job.metrics.layer == layer and job.metrics.median_step_ms
    }


def _format(value, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _speedup(reference_ms: float | None, step_ms: float | None) -> str:
    """``reference_ms / step_ms`` as ``1.23x``; n/a without both."""
    return f"{reference_ms / step_ms:.2f}x" if reference_ms and step_ms else "n/a"


def _names(jobs: list[Job]) -> str:
    return ", ".join(job.name for job in jobs)


def comparison_table(jobs: list[Job]) -> str:
    """A Markdown table with one row per job."""
    baselines = [_baseline_step_ms(jobs, layer) for layer in BASELINE_LAYERS]
    speedup_columns = "".join(f" speed-up vs {name} |" for name in BASELINE_LAYERS.values())
    lines = [
        "| job | model | layer | lowering per layer | device | backend | median epoch (s) | median step (ms) "
        f"| step IQR (ms) | images/s |{speedup_columns} ties with | final loss | final val_loss |",
        f"|---|---|---|---|---|---|---:|---:|---:|---:|{'---:|' * len(BASELINE_LAYERS)}---|---:|---:|",
    ]
    for job in jobs:
        m = job.metrics
        epoch_seconds = statistics.median(m.epoch_seconds) if m.epoch_seconds else None
        speedups = "".join(f" {_speedup(base.get(job.setting), m.median_step_ms)} |" for base in baselines)
        iqr = "n/a" if job.step_iqr is None else f"{job.step_iqr[0]:.2f}–{job.step_iqr[1]:.2f}"
        lines.append(
            f"| {job.name} | {m.model} | {job.label} | {job.lowerings} | {m.device} | {m.backend} "
            f"| {_format(epoch_seconds, 2)} | {_format(m.median_step_ms, 2)} | {iqr} "
            f"| {_format(m.images_per_second, 0)} |{speedups} "
            f"{_names(ties(job, jobs)) or '–'} | {_format(m.loss[-1], 5)} | {_format(m.val_loss[-1], 5)} |"
        )
    return "\n".join(lines) + "\n"


def notes(jobs: list[Job]) -> str:
    """What the table's columns mean, and which loss curves coincide."""
    lines = [
        "Lowering per layer: what each transposed convolution ran; `native` is the backend's own transposed "
        "convolution, which keras.layers.Conv2DTranspose runs (TensorFlow's Conv2DBackpropInput, JAX's "
        "lax.conv_transpose).",
        "Step IQR: the middle half of the step times (25th to 75th percentile, first step left out).",
        "Speed-up vs keras (vs zero insertion): median step time of the keras (zero-insertion) job of the "
        "same setting divided by this job's.",
        "Ties with: jobs of the same setting (backend, model, data, image and batch size, device, replicas, "
        "precision) whose step IQR overlaps this job's: their difference in median step time is within "
        "the noise.",
    ]
    for group in same_lowerings(jobs):
        lowerings = group[0].lowerings
        lines.append(
            f"Jobs {_names(group)} ran the same lowerings ({lowerings}): their step times can differ only "
            "by noise, so their difference shows how large the noise between jobs is."
        )
    for group in coinciding_loss_curves(jobs):
        lines.append(
            f"Loss curves of jobs {_names(group)} coincide (loss and val_loss within {COINCIDE_RTOL:.1%} "
            "at every epoch), so comparison.png shows them as one."
        )
    return "\n".join(f"- {line}" for line in lines) + "\n"


def plot_comparison(jobs: list[Job], path: Path) -> None:
    """Median step time per job with its interquartile range as error bar,
    and per-epoch loss curves, one colour per job; coinciding curves are
    named on the plot."""
    figure, (steps_axis, loss_axis) = plt.subplots(1, 2, figsize=(11, 4))
    colors = [f"C{index % 10}" for index in range(len(jobs))]
    labels = [f"{job.label}\n[{job.name}, {job.metrics.backend}]" for job in jobs]
    medians = [job.metrics.median_step_ms or 0.0 for job in jobs]
    spread = np.array(
        [
            [median - job.step_iqr[0], job.step_iqr[1] - median] if job.step_iqr else [0.0, 0.0]
            for job, median in zip(jobs, medians)
        ]
    ).T
    steps_axis.bar(labels, medians, color=colors, yerr=spread, capsize=4)
    steps_axis.set_ylabel("training step (ms)")
    steps_axis.set_title("Median training step (whiskers: interquartile range)")
    steps_axis.tick_params(axis="x", labelsize=8)
    for job, color in zip(jobs, colors):
        m = job.metrics
        epochs = range(1, len(m.loss) + 1)
        loss_axis.plot(epochs, m.loss, marker="o", color=color, label=f"{job.label} loss")
        loss_axis.plot(epochs, m.val_loss, linestyle="--", color=color, label=f"{job.label} val_loss")
    coinciding = [f"jobs {_names(group)} coincide" for group in coinciding_loss_curves(jobs)]
    if coinciding:
        loss_axis.text(
            0.02,
            0.02,
            "; ".join(coinciding) + " (drawn as one)",
            transform=loss_axis.transAxes,
            fontsize=8,
            verticalalignment="bottom",
        )
    loss_axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("loss")
    loss_axis.set_title("Loss per epoch")
    loss_axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_comparison(sweep_dir: Path) -> list[Job]:
    """Writes ``comparison.md`` and ``comparison.png`` into ``sweep_dir``."""
    jobs = find_jobs(sweep_dir)
    if not jobs:
        raise SystemExit(f"no {METRICS_FILE} found under {sweep_dir}")
    (sweep_dir / "comparison.md").write_text(
        f"# Layer comparison: {sweep_dir}\n\n{comparison_table(jobs)}\n{notes(jobs)}"
    )
    plot_comparison(jobs, sweep_dir / "comparison.png")
    return jobs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "sweep_dir", type=Path, help="a multirun directory holding the jobs' metrics.json files"
    )
    arguments = parser.parse_args(argv)
    jobs = write_comparison(arguments.sweep_dir)
    print(comparison_table(jobs))
    print(f"Compared {len(jobs)} job(s): {arguments.sweep_dir / 'comparison.md'}")


if __name__ == "__main__":
    main()
