"""``tools/performance_tables.py``: the tables it writes from a run directory, and
that the stored ``docs/performance.md`` is what it writes from the stored results.

No timing: the inputs are fixed rows (a tiny run written here) or the stored
``docs/benchmarks/*/results.csv``.
"""

from __future__ import annotations

import csv
import importlib.util
import re
import types
from pathlib import Path

import pytest

from keras_tconv.benchmark import report

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "docs" / "benchmarks"


def _tool():
    spec = importlib.util.spec_from_file_location(
        "performance_tables", ROOT / "tools" / "performance_tables.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HEADER = """\
# keras-tconv benchmark

- command: `python -m keras_tconv.benchmark --suite models --kernels eigen --out /tmp/run`
- started 2026-01-02 03:04:05, took 12 s
- device: CPU (Test CPU; avx2, fma; intra-op threads: TF default for 2 CPUs); Eigen kernels; \
TensorFlow 2.21.0, Keras 3.15.1, Python 3.11.7, float32
- auto: measured on a fresh tuning cache (/tmp/cache)
- method: interleaved.

## Summary

(the rest of the report)
"""


def _row(shape: str, impl: str, speedup: float, **extra) -> dict:
    row = dict.fromkeys(report.COLUMNS, "")
    row.update(
        suite="models",
        device="cpu",
        kernels="Eigen",
        mode="forward",
        shape=shape,
        impl=impl,
        speedup_vs_keras=speedup,
        time_ms=10.0 / speedup,
    )
    row.update(extra)
    return row


def _write_run(directory: Path, rows: list[dict]) -> None:
    directory.mkdir(parents=True)
    with open(directory / "results.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=report.COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (directory / "results.md").write_text(HEADER)


def test_a_tiny_run_gives_its_tables(tmp_path):
    rows = [
        _row("a", "keras", 1.0, first_call_ms=100.0),
        _row("a", "native", 0.5),
        _row("a", "split", 2.0),
        _row("a", "auto", 2.0, auto_picks="split", first_call_ms=400.0),
        _row("b", "keras", 1.0, first_call_ms=100.0, empty_call_ms=6.0),
        _row("b", "native", 1.0),
        _row("b", "split", 0.5),
        _row("b", "auto", 1.0, auto_picks="native", first_call_ms=300.0),
    ]
    _write_run(tmp_path / "benchmarks" / "tiny_eigen", rows)
    out = tmp_path / "docs" / "performance.md"
    text = _tool().render(tmp_path / "benchmarks", out)
    lines = text.splitlines()

    # One overview row per run and mode: where it ran, and the geomeans (auto: sqrt(2 * 1)).
    assert (
        "| [tiny_eigen](#tiny_eigen) | forward | tensorflow | Eigen | CPU: Test CPU (avx2, fma) "
        "| TensorFlow 2.21.0, Keras 3.15.1 | 2026-01-02 | 1.41x | 0.71x | 1.41x |" in lines
    )
    # The run's table names machine, backend, kernel library, versions, date and command.
    for expected in [
        "### tiny_eigen",
        "| suite | models (2 layers) |",
        "| date | 2026-01-02 |",
        "| machine | CPU: Test CPU (avx2, fma); intra-op threads: TF default for 2 CPUs |",
        "| backend | tensorflow |",
        "| kernel library | Eigen |",
        "| versions | TensorFlow 2.21.0, Keras 3.15.1, Python 3.11.7 |",
        "| command | `python -m keras_tconv.benchmark --suite models --kernels eigen --out /tmp/run` |",
    ]:
        assert expected in lines, expected
    # The summary: geomean, slowest and fastest layer per implementation, and the best lowering per layer.
    start = lines.index("| mode | impl | geomean vs keras | min (layer) | max |")
    assert lines[start + 2 : start + 6] == [
        "| forward | split | 1.00x | 0.50x (b) | 2.00x |",
        "| forward | native | 0.71x | 0.50x (a) | 1.00x |",
        "| forward | **auto** | 1.41x | 1.00x (b) | 2.00x |",
        "| forward | best lowering per layer | 1.41x | 1.00x (b) | 2.00x |",
    ]
    assert "- forward: `auto` ran (of 2 layers) `native` on 1, `split` on 1." in lines
    assert any(
        line.startswith("- forward: `auto`'s first call took longer than Keras's by 250 ms") for line in lines
    )
    assert "- forward: 1 of 2 layers overhead-bound." in lines
    # Links relative to the output file.
    assert "- Per-layer tables: [tiny_eigen/results.md](../benchmarks/tiny_eigen/results.md)." in lines
    # The paper's experiments have their heading even before any is stored.
    assert "## The paper's experiments" in lines
    # Regenerating gives the same text; --check says whether the file is up to date.
    assert _tool().render(tmp_path / "benchmarks", out) == text
    tool = _tool()
    args = ["--benchmarks", str(tmp_path / "benchmarks"), "--out", str(out)]
    out.parent.mkdir()
    assert tool.main([*args, "--check"]) == 1
    assert tool.main(args) == 0 and out.read_text() == text
    assert tool.main([*args, "--check"]) == 0


def _stored_summary(results_md: Path) -> dict[tuple[str, str], tuple[str, str, str]]:
    """``{(mode, impl): (geomean, min, max)}`` from the ``## Summary`` table of a ``results.md``."""
    summary, inside = {}, False
    for line in results_md.read_text().splitlines():
        if line.startswith("## "):
            inside = line == "## Summary"
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if inside and len(cells) == 6 and cells[0] not in ("mode", "---"):
            summary[(cells[0], cells[1])] = (cells[2], cells[3], cells[4])
    return summary


def test_the_machine_keeps_the_parentheses_of_a_cpu_model():
    device = "CPU (Intel(R) Xeon(R) Processor; avx512f, amx_tile; intra-op threads: 2), XLA CPU"
    run = types.SimpleNamespace(header={"device": device})
    assert _tool().machine(run) == "CPU: Intel(R) Xeon(R) Processor (avx512f, amx_tile)"
    assert _tool().machine(run, full=True).endswith("; intra-op threads: 2")


RUNS = sorted(path.parent.name for path in BENCHMARKS.glob("*/results.csv"))


@pytest.mark.parametrize("name", RUNS)
def test_each_runs_summary_is_its_results_md_summary(name):
    tool = _tool()
    run = tool.Run(BENCHMARKS / name)
    stored = _stored_summary(BENCHMARKS / name / "results.md")
    ours = {}
    for line in tool.summary_table(run)[2:]:
        mode, impl, geomean, worst, best = [cell.strip() for cell in line.strip("|").split("|")][:5]
        ours[(mode, impl.strip("*"))] = (geomean, re.sub(r"\s+", " ", worst), best)
    assert stored and {key: ours[key] for key in stored} == stored


def test_docs_performance_md_is_up_to_date_with_the_stored_results():
    tool = _tool()
    text = tool.render()
    assert (ROOT / "docs" / "performance.md").read_text() == text, (
        "docs/performance.md is out of date: run python tools/performance_tables.py"
    )
    for name in RUNS:
        assert f"### {name}" in text.splitlines()


def test_paper_experiments_are_the_stored_comparison_tables(tmp_path):
    """Each stored ``train.compare`` table of an ``experiment=`` run appears as it is, linked."""
    table = ["| job | layer | median step (ms) |", "|---|---|---:|", "| 0 | keras | 6.59 |"]
    run = tmp_path / "benchmarks" / "paper_mnist"
    run.mkdir(parents=True)
    (run / "comparison.md").write_text("# Layer comparison\n\n" + "\n".join(table) + "\n\n- notes\n")
    lines = _tool().paper_section(tmp_path / "benchmarks", tmp_path / "docs" / "performance.md")
    heading = "### experiment=paper_mnist ([comparison.md](../benchmarks/paper_mnist/comparison.md))"
    start = lines.index(heading)
    assert lines[start + 2 : start + 5] == table
    assert not any("paper_flowers" in line and line.startswith("###") for line in lines)
