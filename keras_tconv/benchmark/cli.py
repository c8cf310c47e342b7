"""Command line of ``python -m keras_tconv.benchmark``."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import keras
import tensorflow as tf

from keras_tconv.benchmark import BENCH_EXTRA, report, runner, tflite
from keras_tconv.benchmark.impls import IMPLEMENTATIONS, MODES
from keras_tconv.benchmark.suites import SUITES, get_suite
from keras_tconv.ops.platform import cpu_isa_flags, cpu_kernel_library, cpu_model


def _implementations(text: str) -> tuple[str, ...]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(IMPLEMENTATIONS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown implementations {unknown}; choose from {', '.join(IMPLEMENTATIONS)}")
    # keras is the reference every ratio is taken against, so it always runs.
    return tuple(impl for impl in IMPLEMENTATIONS if impl in names or impl == "keras")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m keras_tconv.benchmark",
        description="Time Conv2DTranspose implementations against keras.layers.Conv2DTranspose, "
        "interleaved in one process, and write results.csv, results.md and speedup.png.",
    )
    parser.add_argument("--suite", choices=sorted(SUITES), default="models",
                        help="layer shapes: paper, models (default), serving (models at batch 1), quick (tiny)")
    parser.add_argument("--mode", choices=(*MODES, "both"), default="both",
                        help="forward, train (forward + gradients of input, kernel and bias), or both (default)")
    parser.add_argument("--impls", type=_implementations, default=IMPLEMENTATIONS, metavar="LIST",
                        help=f"comma-separated subset of {','.join(IMPLEMENTATIONS)} (default all; keras always runs)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="cpu (default) or gpu: the first GPU TensorFlow sees (an error if there is none)")
    parser.add_argument("--out", type=Path, default=Path("bench_results"),
                        help="output directory (default bench_results)")
    parser.add_argument("--shapes", default="", metavar="NAMES", help="comma-separated shape names of the suite to run")
    parser.add_argument("--rounds", type=int, default=15, help="timed samples per implementation (default 15)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per implementation (default 3)")
    parser.add_argument("--min-sample-ms", type=float, default=20.0,
                        help="each sample repeats the call until it lasts this long (default 20)")
    parser.add_argument("--memory", action="store_true",
                        help="also measure peak memory per implementation (CPU: one subprocess per implementation)")
    parser.add_argument("--tflite", action="store_true",
                        help="also convert batch-1 one-layer models to TFLite and time them in LiteRT (XNNPACK)")
    parser.add_argument("--tflite-int8", action="store_true",
                        help="also time full-integer (int8) quantized batch-1 models in LiteRT")
    parser.add_argument("--tflite-threads", type=int, default=2, help="LiteRT interpreter threads (default 2)")
    parser.add_argument("--kernels", choices=("default", "eigen", "onednn"), default="default",
                        help="TensorFlow's CPU kernel library: the machine's default, or Eigen or oneDNN forced "
                             "(the run restarts itself with TF_ENABLE_ONEDNN_OPTS set)")
    parser.add_argument("--tuning-cache", type=Path, default=None, metavar="DIR",
                        help="auto's tuning cache (default: a fresh temporary one, so that auto measures in this run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--list", action="store_true", help="list the suite's shapes and exit")
    args = parser.parse_args(argv)
    if (args.tflite or args.tflite_int8) and not tflite.litert_available():
        parser.error(tflite.LITERT_MISSING)
    if args.device == "gpu" and not tf.config.list_physical_devices("GPU"):
        parser.error("--device gpu: TensorFlow sees no GPU on this machine")
    try:
        args.shape_list = get_suite(args.suite, [name.strip() for name in args.shapes.split(",") if name.strip()])
    except ValueError as error:
        parser.error(str(error))
    if args.rounds < 1 or args.warmup < 0 or args.min_sample_ms < 0 or args.tflite_threads < 1:
        parser.error("--rounds and --tflite-threads must be at least 1, --warmup and --min-sample-ms not negative")
    return args


def _header(args: argparse.Namespace, argv: list[str], started: datetime.datetime, seconds: float) -> list[str]:
    if args.device == "gpu":
        details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
        device = f"GPU ({details.get('device_name', 'unknown')})"
    else:
        threads = tf.config.threading.get_intra_op_parallelism_threads() or f"TF default for {os.cpu_count()} CPUs"
        device = (f"CPU ({cpu_model()}; {', '.join(cpu_isa_flags()) or 'no AVX2'}; intra-op threads: {threads}); "
                  f"{cpu_kernel_library()} kernels")
    return [
        f"- command: `python -m keras_tconv.benchmark {shlex.join(argv)}`",
        f"- started {started:%Y-%m-%d %H:%M:%S}, took {seconds:.0f} s",
        f"- device: {device}; TensorFlow {tf.__version__}, Keras {keras.__version__}, "
        f"Python {platform.python_version()}, float32",
        f"- auto: measured on a fresh tuning cache ({os.environ.get('KERAS_TCONV_CACHE_DIR')})"
        if os.environ.get("KERAS_TCONV_TUNING", "on") != "off" else "- auto: static rule (tuning off)",
        f"- method: per shape and mode, all implementations and the dense-conv ceiling timed interleaved in one "
        f"process after {args.warmup} warm-up calls; {args.rounds} rounds in rotating order; a sample repeats "
        f"the call for at least {args.min_sample_ms:g} ms; time = median per call. speedup = keras time / impl "
        "time; geomeans over shapes. GFLOP/s count 2 x multiply-accumulates (the training step counts three "
        "products: forward, input and kernel gradients).",
    ]


def _use_kernels(requested: str, argv: list[str]) -> None:
    """Restart this run under the requested CPU kernel library, which TensorFlow
    reads only when it loads (``TF_ENABLE_ONEDNN_OPTS``)."""
    wanted = {"eigen": "Eigen", "onednn": "oneDNN"}.get(requested)
    if wanted is None or cpu_kernel_library() == wanted:
        return
    if os.environ.get("KERAS_TCONV_BENCH_RESTARTED"):
        raise SystemExit(f"--kernels {requested}: this TensorFlow runs {cpu_kernel_library()} kernels regardless")
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1" if wanted == "oneDNN" else "0", "KERAS_TCONV_BENCH_RESTARTED": "1"}
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "keras_tconv.benchmark", *argv], env)


def _use_tuning_cache(directory: Path | None) -> None:
    """``auto`` measures on the given cache, or on a fresh one (what a new user gets)."""
    os.environ["KERAS_TCONV_TUNING"] = "on"
    os.environ["KERAS_TCONV_CACHE_DIR"] = str(directory or tempfile.mkdtemp(prefix="keras_tconv_tuning_"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    _use_kernels(args.kernels, argv)
    _use_tuning_cache(args.tuning_cache)
    shapes = args.shape_list
    if args.list:
        for shape in shapes:
            print(f"{shape.name:20s} {shape.describe():38s} {shape.macs / 1e6:10.1f} MMAC  {shape.source}")
        return 0
    options = runner.Options(
        suite=args.suite,
        modes=MODES if args.mode == "both" else (args.mode,),
        implementations=args.impls,
        device=args.device,
        rounds=args.rounds,
        warmup=args.warmup,
        min_sample_s=args.min_sample_ms / 1e3,
        memory=args.memory,
        tflite=args.tflite,
        tflite_threads=args.tflite_threads,
        tflite_int8=args.tflite_int8,
        seed=args.seed,
    )
    started, start = datetime.datetime.now(), time.perf_counter()
    rows = []
    steps = runner.plan(shapes, options)
    for index, (label, step) in enumerate(steps, 1):
        print(f"[{index}/{len(steps)}, {time.perf_counter() - start:.0f} s] {label}", file=sys.stderr, flush=True)
        rows += step()
    args.out.mkdir(parents=True, exist_ok=True)
    report.write_csv(rows, args.out / "results.csv")
    report.write_markdown(rows, _header(args, argv, started, time.perf_counter() - start), args.out / "results.md")
    written = ["results.csv", "results.md"]
    if report.can_plot():
        report.plot_speedups(rows, args.out / "speedup.png")
        written.append("speedup.png")
    else:
        print(f"speedup.png not written: the plot needs matplotlib ({BENCH_EXTRA})")
    for (mode, impl), speedups in _speedups(rows).items():
        print(f"{mode:8s} {impl:15s} geomean speedup vs keras {report.geomean(speedups):.2f}x "
              f"(min {min(speedups):.2f}x) over {len(speedups)} shapes")
    print(f"Wrote {', '.join(written)} in {args.out}")
    return 0


def _speedups(rows: list[dict]) -> dict[tuple[str, str], list[float]]:
    grouped: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        if row["impl"] != "keras" and row.get("speedup_vs_keras"):
            grouped.setdefault((row["mode"], row["impl"]), []).append(row["speedup_vs_keras"])
    return grouped
