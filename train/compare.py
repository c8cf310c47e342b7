"""``python -m train.compare SWEEP_DIR``: compare the jobs of a multirun.

Reads every ``metrics.json`` under SWEEP_DIR (e.g. from
``python -m train -m layer=segregated,keras,zero_insertion``) and writes
``comparison.md`` (a table per job: time per step and epoch, speed-up over
zero insertion, final losses) and ``comparison.png`` (step times and loss
curves per layer) into SWEEP_DIR. Needs matplotlib only, not TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from train.run_dir import METRICS_FILE  # noqa: E402


@dataclass(frozen=True)
class Job:
    """One job's metrics and its directory relative to the sweep."""

    name: str
    metrics: dict

    @property
    def label(self) -> str:
        """The layer choice, with the implementation when it adds information."""
        layer, implementation = self.metrics["layer"], self.metrics["implementation"]
        if implementation and implementation != layer:
            return f"{layer} ({implementation})"
        return layer


def find_jobs(sweep_dir: Path) -> list[Job]:
    """All jobs under ``sweep_dir`` that wrote metrics, in directory order."""
    return [
        Job(str(path.parent.relative_to(sweep_dir)), json.loads(path.read_text()))
        for path in sorted(sweep_dir.rglob(METRICS_FILE))
    ]


def _zero_insertion_step_ms(jobs: list[Job]) -> dict[str, float]:
    """Median step time of the zero-insertion job of each model."""
    return {
        job.metrics["model"]: job.metrics["median_step_ms"]
        for job in jobs
        if job.metrics["layer"] == "zero_insertion" and job.metrics["median_step_ms"]
    }


def _format(value, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def comparison_table(jobs: list[Job]) -> str:
    """A Markdown table with one row per job."""
    baseline = _zero_insertion_step_ms(jobs)
    lines = [
        "| job | model | layer | device | median epoch (s) | median step (ms) | images/s "
        "| speed-up vs zero insertion | final loss | final val_loss |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for job in jobs:
        m = job.metrics
        epoch_seconds = statistics.median(m["epoch_seconds"]) if m["epoch_seconds"] else None
        reference = baseline.get(m["model"])
        speedup = reference / m["median_step_ms"] if reference and m["median_step_ms"] else None
        lines.append(
            f"| {job.name} | {m['model']} | {job.label} | {m['device']} | {_format(epoch_seconds, 2)} "
            f"| {_format(m['median_step_ms'], 2)} | {_format(m['images_per_second'], 0)} "
            f"| {_format(speedup, 2)}{'x' if speedup else ''} | {_format(m['loss'][-1], 5)} "
            f"| {_format(m['val_loss'][-1], 5)} |"
        )
    return "\n".join(lines) + "\n"


def plot_comparison(jobs: list[Job], path: Path) -> None:
    """Bar chart of median step time and per-epoch loss curves, one colour
    per job (curves of exactly equivalent layers overlap)."""
    figure, (steps_axis, loss_axis) = plt.subplots(1, 2, figsize=(11, 4))
    colors = [f"C{index % 10}" for index in range(len(jobs))]
    labels = [f"{job.label}\n[{job.name}]" for job in jobs]
    steps_axis.bar(labels, [job.metrics["median_step_ms"] or 0.0 for job in jobs], color=colors)
    steps_axis.set_ylabel("median training step (ms)")
    steps_axis.set_title("Step time (lower is faster)")
    steps_axis.tick_params(axis="x", labelsize=8)
    for job, color in zip(jobs, colors):
        epochs = range(1, len(job.metrics["loss"]) + 1)
        loss_axis.plot(epochs, job.metrics["loss"], marker="o", color=color, label=f"{job.label} loss")
        loss_axis.plot(epochs, job.metrics["val_loss"], linestyle="--", color=color, label=f"{job.label} val_loss")
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
        f"# Layer comparison: {sweep_dir}\n\n{comparison_table(jobs)}"
        "\nSpeed-up: median step time of the zero-insertion job of the same model divided by this job's.\n"
    )
    plot_comparison(jobs, sweep_dir / "comparison.png")
    return jobs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m train.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory holding the jobs' metrics.json files")
    arguments = parser.parse_args(argv)
    jobs = write_comparison(arguments.sweep_dir)
    print(f"Compared {len(jobs)} job(s): {arguments.sweep_dir / 'comparison.md'}")


if __name__ == "__main__":
    main()
