"""Smoke test of ``python -m keras_tconv.benchmark``: it runs and writes its outputs.

Runs the tiny ``quick`` suite with as little timing as possible and checks
the shape of what comes out, never the timings themselves; the report's
overhead-bound flag is checked on fixed rows. A subprocess in which the
``bench`` extra cannot be imported runs what the base install offers; another
runs ``--backend jax`` (restarting itself on Keras's JAX backend).
"""

from __future__ import annotations

import csv
import importlib.util
import math
import os
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf

from keras_tconv.benchmark import cli, report
from keras_tconv.benchmark.impls import IMPLEMENTATIONS
from keras_tconv.benchmark.suites import SUITES
from tests.helpers.png import PNG_MAGIC

FAST = ["--suite", "quick", "--rounds", "2", "--warmup", "1", "--min-sample-ms", "0"]


def _rows(out):
    with open(out / "results.csv", newline="") as file:
        reader = csv.DictReader(file)
        assert tuple(reader.fieldnames) == report.COLUMNS
        return list(reader)


def test_quick_suite_both_modes_and_tflite(tmp_path):
    assert cli.main([*FAST, "--mode", "both", "--tflite", "--out", str(tmp_path)]) == 0

    rows = _rows(tmp_path)
    shapes = [shape.name for shape in SUITES["quick"]]
    expected = {
        (mode, shape, impl)
        for mode in ("forward", "train", "tflite")
        for shape in shapes
        for impl in IMPLEMENTATIONS
    }
    assert {(row["mode"], row["shape"], row["impl"]) for row in rows} == expected
    assert len(rows) == len(expected)
    for row in rows:
        if row["error"]:  # an implementation TFLite cannot convert is reported, not timed
            assert row["mode"] == "tflite" and not row["time_ms"]
            continue
        assert float(row["time_ms"]) > 0 and float(row["empty_call_ms"]) > 0
        assert math.isfinite(float(row["speedup_vs_keras"]))
        assert float(row["max_rel_err"]) >= 0
        if row["impl"] == "keras":
            assert float(row["speedup_vs_keras"]) == 1.0
        if row["mode"] == "tflite":  # errors are against Keras in TensorFlow, so not 0 for keras
            assert row["ops"] and row["xnnpack"] in ("yes", "no")
        else:
            assert float(row["efficiency"]) > 0 and float(row["ceiling_gflops"]) > 0
            assert row["traces"] == "1"
            assert row["impl"] != "keras" or float(row["max_rel_err"]) == 0.0
    keras_tflite = [row for row in rows if row["mode"] == "tflite" and row["impl"] == "keras"]
    assert all("TRANSPOSE_CONV" in row["ops"].split() for row in keras_tflite)
    segregated_tflite = [
        row for row in rows if row["mode"] == "tflite" and row["impl"] not in ("keras", "native")
    ]
    assert all("TRANSPOSE_CONV" not in row["ops"].split() for row in segregated_tflite if not row["error"])

    markdown = (tmp_path / "results.md").read_text()
    for heading in ("## Summary", "## forward", "## train", "## tflite"):
        assert heading in markdown
    assert all(shape in markdown for shape in shapes)
    assert (tmp_path / "speedup.png").read_bytes().startswith(PNG_MAGIC)


def test_jit_compiles_every_implementation_with_xla(tmp_path):
    """``--jit``: every step (Keras's layer and the ceiling too) compiled by
    XLA, said in the header and the rows; auto's pick names its gradient's."""
    assert (
        cli.main([*FAST, "--mode", "train", "--jit", "--shapes", "tiny_k3_outpad", "--out", str(tmp_path)])
        == 0
    )
    rows = _rows(tmp_path)
    assert {row["impl"] for row in rows} == set(IMPLEMENTATIONS)
    assert {row["kernels"] for row in rows} == {"XLA CPU"}
    assert all(float(row["max_rel_err"]) < 1e-4 for row in rows if row["impl"] != "zero_insertion")
    assert "gradient " in rows[0]["auto_picks"]
    assert (
        "- backend: tensorflow (tf.function(jit_compile=True): XLA)" in (tmp_path / "results.md").read_text()
    )


def test_list_and_bad_arguments(capsys):
    assert cli.main(["--suite", "models", "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == [shape.name for shape in SUITES["models"]]
    with pytest.raises(SystemExit):
        cli.main(["--suite", "quick", "--shapes", "no_such_shape"])
    with pytest.raises(SystemExit):
        cli.main(["--impls", "keras,fastest"])
    if not tf.config.list_physical_devices("GPU"):
        with pytest.raises(SystemExit):
            cli.main(["--device", "gpu", "--list"])
    capsys.readouterr()
    with pytest.raises(SystemExit):  # TensorFlow-only options are refused before anything restarts or runs
        cli.main(["--backend", "jax", "--memory", "--list"])
    expected = "measure TensorFlow only" if importlib.util.find_spec("jax") else "needs JAX"
    assert expected in capsys.readouterr().err
    if importlib.util.find_spec("jax"):
        with pytest.raises(SystemExit):
            cli.main(["--backend", "jax", "--jit", "--list"])
        assert "always compiles with XLA" in capsys.readouterr().err


@pytest.mark.slow
def test_module_entry_point_with_memory(tmp_path):
    """``python -m`` runs, and ``--memory`` fills peak memory from its per-implementation subprocess."""
    command = [
        sys.executable,
        "-m",
        "keras_tconv.benchmark",
        *FAST,
        "--shapes",
        "tiny_k3_same",
        "--mode",
        "forward",
        "--impls",
        "keras",
        "--memory",
        "--out",
        str(tmp_path),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = _rows(tmp_path)
    assert [row["impl"] for row in rows] == ["keras"]
    assert float(rows[0]["peak_mem_mb"]) >= 0
    assert "Peak memory" in (tmp_path / "results.md").read_text()


JAX_SHAPES = ("tiny_k3_outpad",)  # "valid" with an output_padding: the most output-shape arithmetic


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="needs JAX (the jax extra)")
def test_jax_backend_times_every_implementation_and_keras_on_tensorflow(tmp_path):
    """``--backend jax`` restarts the run on Keras's JAX backend and times every
    implementation plus keras_tf (Keras's TensorFlow computation) in both
    modes, each computing what Keras's layer on JAX computes."""
    command = [
        sys.executable,
        "-m",
        "keras_tconv.benchmark",
        "--backend",
        "jax",
        *FAST,
        "--shapes",
        ",".join(JAX_SHAPES),
        "--out",
        str(tmp_path),
    ]
    env = {name: value for name, value in os.environ.items() if name != "KERAS_BACKEND"}
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert completed.returncode == 0, completed.stderr[-3000:]

    rows = _rows(tmp_path)
    names = (*IMPLEMENTATIONS, "keras_tf")
    expected = {
        (mode, shape, impl) for mode in ("forward", "train") for shape in JAX_SHAPES for impl in names
    }
    assert {(row["mode"], row["shape"], row["impl"]) for row in rows} == expected
    assert len(rows) == len(expected)
    for row in rows:
        if row["impl"] == "keras_tf":
            assert row["backend"] == "tensorflow" and row["kernels"] in ("Eigen", "oneDNN")
        else:
            assert row["backend"] == "jax" and row["kernels"] == "XLA CPU"
        assert float(row["time_ms"]) > 0 and float(row["empty_call_ms"]) > 0 and float(row["efficiency"]) > 0
        assert math.isfinite(float(row["speedup_vs_keras"])) and row["traces"] == "1"
        assert float(row["max_rel_err"]) < 1e-4, row
        if row["impl"] == "keras":
            assert float(row["speedup_vs_keras"]) == 1.0 and float(row["max_rel_err"]) == 0.0
        picks = row["auto_picks"].split(", gradient ")
        assert picks[0] in IMPLEMENTATIONS and len(picks) == (2 if row["mode"] == "train" else 1), row[
            "auto_picks"
        ]
    markdown = (tmp_path / "results.md").read_text()
    assert "- backend: jax (XLA, jax.jit), JAX " in markdown and "keras_tf: TensorFlow " in markdown
    for heading in ("## Summary", "## forward", "## train"):
        assert heading in markdown


def _keras_row(mode, shape, time_ms, empty_call_ms):
    return {
        "mode": mode,
        "shape": shape,
        "impl": "keras",
        "layer": shape,
        "macs": 1000,
        "time_ms": time_ms,
        "empty_call_ms": empty_call_ms,
        "speedup_vs_keras": 1.0,
    }


def test_report_marks_shapes_whose_time_is_mostly_call_overhead(tmp_path):
    rows = [
        _keras_row("forward", "tiny", time_ms=0.5, empty_call_ms=0.3),
        _keras_row("forward", "large", time_ms=5.0, empty_call_ms=0.3),
        _keras_row("tflite", "tiny", time_ms=0.02, empty_call_ms=0.001),
    ]
    assert [report.overhead_bound(row) for row in rows] == [True, False, False]
    assert not report.overhead_bound({"time_ms": 0.5})  # rows written before the empty call was timed
    report.write_markdown(rows, [], tmp_path / "results.md")
    markdown = (tmp_path / "results.md").read_text()
    assert "| tiny † |" in markdown and "| large |" in markdown
    assert "tiny: 0.300 of 0.500 ms" in markdown
    assert "1 of 2 in forward" in markdown and "in tflite" not in markdown


# Runs the benchmark's entry point as on the base install: the bench extra's modules cannot be imported.
BASE_INSTALL_SCRIPT = textwrap.dedent(
    """
    import runpy
    import sys

    # Python's way of marking a module absent: importing it raises ModuleNotFoundError,
    # importlib.util.find_spec returns None.
    for name in ("ai_edge_litert", "matplotlib", "tqdm"):
        sys.modules[name] = None
    for arguments in (["--help"], ["--tflite", "--list"], sys.argv[1:]):
        sys.argv = ["keras_tconv.benchmark", *arguments]
        try:
            runpy.run_module("keras_tconv.benchmark", run_name="__main__", alter_sys=True)
        except SystemExit as exit:
            print("EXIT", exit.code, flush=True)
    """
)


@pytest.mark.slow
def test_base_install_runs_everything_but_litert(tmp_path):
    """Without the bench extra: ``--help`` works, ``--tflite`` names the extra,
    and a TensorFlow run writes its tables without the plot."""
    command = [
        sys.executable,
        "-c",
        BASE_INSTALL_SCRIPT,
        *FAST,
        "--shapes",
        "tiny_k3_same",
        "--mode",
        "forward",
        "--impls",
        "keras",
        "--out",
        str(tmp_path),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.count("EXIT 0") == 2 and "EXIT 2" in completed.stdout
    assert "usage: python -m keras_tconv.benchmark" in completed.stdout
    assert (
        "error: --tflite needs LiteRT (ai-edge-litert), which the base install lacks: "
        'pip install "keras-tconv[bench]"' in completed.stderr
    )
    assert (
        'speedup.png not written: the plot needs matplotlib (pip install "keras-tconv[bench]")'
        in completed.stdout
    )
    assert [row["impl"] for row in _rows(tmp_path)] == ["keras"]
    assert "## forward" in (tmp_path / "results.md").read_text()
    assert not (tmp_path / "speedup.png").exists()


def test_kernel_gradient_paddings_tell_the_forms_apart(monkeypatch):
    """What the train tables use to say that auto's kernel gradient is
    Eigen's EXPLICIT form: Conv2DBackpropFilter's padding in the traced step,
    with auto's gradient choice forced each way (nothing depends on timing
    or on what an earlier test measured)."""
    import importlib

    from keras_tconv.benchmark import impls

    module = importlib.import_module("keras_tconv.ops.tensorflow.conv2d_transpose")
    shape = SUITES["quick"][0]
    for form, padding in (("native", "SAME"), ("explicit", "EXPLICIT")):
        monkeypatch.setattr(module, "_auto_kernel_gradient", lambda *args, form=form: form)
        case = impls.build_case(shape, "train", ("keras", "native", "auto"), "/CPU:0")
        assert case.kernel_gradient_paddings("native") == case.kernel_gradient_paddings("keras") == ["SAME"]
        assert case.kernel_gradient_paddings("auto") == [padding], form
