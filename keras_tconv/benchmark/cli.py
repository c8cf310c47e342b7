"""Command line of ``python -m keras_tconv.benchmark``."""

from __future__ import annotations

import argparse
import datetime
import importlib.util
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
from keras_tconv.ops.platform import cpu_isa_flags, cpu_kernel_library, cpu_model, gpu_name

BACKENDS = ("tensorflow", "jax")
JAX_MISSING = '--backend jax needs JAX, which the base install lacks: pip install "keras-tconv[jax]"'


def _loaded_backend() -> str:
    """The backend Keras loaded in this process (``KERAS_BACKEND``), if the benchmark runs on it."""
    return keras.backend.backend() if keras.backend.backend() in BACKENDS else "tensorflow"


def _implementations(text: str) -> tuple[str, ...]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(IMPLEMENTATIONS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown implementations {unknown}; choose from {', '.join(IMPLEMENTATIONS)}"
        )
    # keras is the reference every ratio is taken against, so it always runs.
    return tuple(impl for impl in IMPLEMENTATIONS if impl in names or impl == "keras")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m keras_tconv.benchmark",
        description="Time Conv2DTranspose implementations against keras.layers.Conv2DTranspose, "
        "interleaved in one process, and write results.csv, results.md and speedup.png.",
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=_loaded_backend(),
        help="Keras's backend (default: the one KERAS_BACKEND selects, else tensorflow; the run "
        "restarts itself with KERAS_BACKEND set). jax also times keras_tf: Keras's layer's "
        "computation on TensorFlow, in the same process, as a cross-backend reference",
    )
    parser.add_argument(
        "--suite",
        choices=sorted(SUITES),
        default="models",
        help="layer shapes: paper, models (default), serving (models at batch 1), quick (tiny)",
    )
    parser.add_argument(
        "--mode",
        choices=(*MODES, "both"),
        default="both",
        help="forward, train (forward + gradients of input, kernel and bias), or both (default)",
    )
    parser.add_argument(
        "--impls",
        type=_implementations,
        default=IMPLEMENTATIONS,
        metavar="LIST",
        help=f"comma-separated subset of {','.join(IMPLEMENTATIONS)} (default all; keras always "
        "runs, and with --backend jax keras_tf)",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "gpu"),
        default="cpu",
        help="cpu (default) or gpu: the first GPU TensorFlow (and with --backend jax, JAX) sees "
        "(an error if there is none)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("bench_results"), help="output directory (default bench_results)"
    )
    parser.add_argument(
        "--shapes", default="", metavar="NAMES", help="comma-separated shape names of the suite to run"
    )
    parser.add_argument(
        "--rounds", type=int, default=15, help="timed samples per implementation (default 15)"
    )
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per implementation (default 3)")
    parser.add_argument(
        "--min-sample-ms",
        type=float,
        default=20.0,
        help="each sample repeats the call until it lasts this long (default 20)",
    )
    parser.add_argument(
        "--jit",
        action="store_true",
        help="compile every implementation's step with XLA (tf.function(jit_compile=True)), Keras's "
        "layer included, as Keras's jit_compile does (TensorFlow only: JAX always compiles)",
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help="also measure peak memory per implementation (CPU: one subprocess per implementation; "
        "TensorFlow only)",
    )
    parser.add_argument(
        "--tflite",
        action="store_true",
        help="also convert batch-1 one-layer models to TFLite and time them in LiteRT (XNNPACK; "
        "TensorFlow only)",
    )
    parser.add_argument(
        "--tflite-int8",
        action="store_true",
        help="also time full-integer (int8) quantized batch-1 models in LiteRT",
    )
    parser.add_argument(
        "--tflite-threads", type=int, default=2, help="LiteRT interpreter threads (default 2)"
    )
    parser.add_argument(
        "--kernels",
        choices=("default", "eigen", "onednn"),
        default="default",
        help="TensorFlow's CPU kernel library: the machine's default, or Eigen or oneDNN forced "
        "(the run restarts itself with TF_ENABLE_ONEDNN_OPTS set)",
    )
    parser.add_argument(
        "--tuning-cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="auto's tuning cache (default: a fresh temporary one, so that auto measures in this run)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--list", action="store_true", help="list the suite's shapes and exit")
    args = parser.parse_args(argv)
    if args.backend == "jax":
        _check_jax(parser, args)
    if (args.tflite or args.tflite_int8) and not tflite.litert_available():
        parser.error(tflite.LITERT_MISSING)
    if args.device == "gpu" and not tf.config.list_physical_devices("GPU"):
        parser.error(
            "--device gpu: TensorFlow sees no GPU on this machine"
            + (" (the keras_tf reference runs on it)" if args.backend == "jax" else "")
        )
    try:
        args.shape_list = get_suite(
            args.suite, [name.strip() for name in args.shapes.split(",") if name.strip()]
        )
    except ValueError as error:
        parser.error(str(error))
    if args.rounds < 1 or args.warmup < 0 or args.min_sample_ms < 0 or args.tflite_threads < 1:
        parser.error(
            "--rounds and --tflite-threads must be at least 1, --warmup and --min-sample-ms not negative"
        )
    return args


def _check_jax(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The parser errors of ``--backend jax``: JAX missing, a TensorFlow-only option, no GPU for JAX."""
    if importlib.util.find_spec("jax") is None:
        parser.error(JAX_MISSING)
    if args.memory or args.tflite or args.tflite_int8:
        parser.error(
            "--memory, --tflite and --tflite-int8 measure TensorFlow only: run them with --backend tensorflow"
        )
    if args.jit:
        parser.error("--jit compiles TensorFlow's steps with XLA; --backend jax always compiles with XLA")
    if args.device == "gpu":
        from keras_tconv.benchmark import jax_impls

        try:
            jax_impls.jax_device("gpu")
        except RuntimeError:
            parser.error("--device gpu: JAX sees no GPU on this machine")


def _tf_device(device: str) -> str:
    """TensorFlow's device in words: the GPU's name, or the CPU with its threads and kernel library."""
    if device == "gpu":
        return f"GPU ({gpu_name()})"
    threads = (
        tf.config.threading.get_intra_op_parallelism_threads() or f"TF default for {os.cpu_count()} CPUs"
    )
    return (
        f"CPU ({cpu_model()}; {', '.join(cpu_isa_flags()) or 'no AVX2'}; intra-op threads: {threads}); "
        f"{cpu_kernel_library()} kernels"
    )


def _platform_lines(args: argparse.Namespace) -> list[str]:
    """The header's backend and device lines."""
    versions = f"Keras {keras.__version__}, Python {platform.python_version()}, float32"
    if args.backend == "tensorflow":
        compiled = "tf.function(jit_compile=True): XLA" if args.jit else "tf.function"
        return [
            f"- backend: tensorflow ({compiled})",
            f"- device: {_tf_device(args.device)}; TensorFlow {tf.__version__}, {versions}",
        ]
    import jax

    from keras_tconv.benchmark import jax_impls

    if args.device == "gpu":
        device = f"GPU ({jax_impls.jax_device('gpu').device_kind})"
    else:
        device = f"CPU ({cpu_model()}; {', '.join(cpu_isa_flags()) or 'no AVX2'})"
    return [
        f"- backend: jax (XLA, jax.jit), JAX {jax.__version__}; keras is keras.layers.Conv2DTranspose on JAX "
        f"(jax.lax.conv_transpose); {jax_impls.KERAS_TF} is the computation of Keras's layer on TensorFlow "
        f"(Conv2DBackpropInput, bias, activation) as a tf.function, timed with the others, a cross-backend "
        f"reference whose speedup too is against keras on JAX",
        f"- device: {device}, XLA {args.device.upper()}; {versions}; {jax_impls.KERAS_TF}: TensorFlow "
        f"{tf.__version__} on {_tf_device(args.device)}",
    ]


def _header(
    args: argparse.Namespace, argv: list[str], started: datetime.datetime, seconds: float
) -> list[str]:
    return [
        f"- command: `python -m keras_tconv.benchmark {shlex.join(argv)}`",
        f"- started {started:%Y-%m-%d %H:%M:%S}, took {seconds:.0f} s",
        *_platform_lines(args),
        f"- auto: measured on a fresh tuning cache ({os.environ.get('KERAS_TCONV_CACHE_DIR')})"
        if os.environ.get("KERAS_TCONV_TUNING", "on") != "off"
        else "- auto: static rule (tuning off)",
        f"- method: per shape and mode, all implementations and the dense-conv ceiling timed interleaved in "
        f"one process after {args.warmup} warm-up calls; {args.rounds} rounds in rotating order; a sample "
        f"repeats the call for at least {args.min_sample_ms:g} ms; time = median per call. speedup = keras "
        "time / impl time; geomeans over shapes. GFLOP/s count 2 x multiply-accumulates (the training step "
        "counts three products: forward, input and kernel gradients).",
    ]


def _restart_if_needed(args: argparse.Namespace, argv: list[str]) -> None:
    """Restart this run, once, with the environment that the libraries read only when they load:
    ``KERAS_BACKEND`` for ``--backend`` (Keras), ``TF_ENABLE_ONEDNN_OPTS`` for ``--kernels`` (TensorFlow)."""
    env, unmet = {}, []
    if keras.backend.backend() != args.backend:
        env["KERAS_BACKEND"] = args.backend
        unmet.append(f"--backend {args.backend}: Keras runs on {keras.backend.backend()} regardless")
    wanted = {"eigen": "Eigen", "onednn": "oneDNN"}.get(args.kernels)
    if wanted is not None and cpu_kernel_library() != wanted:
        env["TF_ENABLE_ONEDNN_OPTS"] = "1" if wanted == "oneDNN" else "0"
        unmet.append(
            f"--kernels {args.kernels}: this TensorFlow runs {cpu_kernel_library()} kernels regardless"
        )
    if not env:
        return
    if os.environ.get("KERAS_TCONV_BENCH_RESTARTED"):
        raise SystemExit("; ".join(unmet))
    sys.stdout.flush()
    os.execve(
        sys.executable,
        [sys.executable, "-m", "keras_tconv.benchmark", *argv],
        {**os.environ, **env, "KERAS_TCONV_BENCH_RESTARTED": "1"},
    )


def _use_tuning_cache(directory: Path | None) -> None:
    """``auto`` measures on the given cache, or on a fresh one (what a new user gets)."""
    os.environ["KERAS_TCONV_TUNING"] = "on"
    os.environ["KERAS_TCONV_CACHE_DIR"] = str(directory or tempfile.mkdtemp(prefix="keras_tconv_tuning_"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    _restart_if_needed(args, argv)
    if args.backend == "jax":
        from keras_tconv.benchmark import jax_impls

        jax_impls.use_device(args.device)
    _use_tuning_cache(args.tuning_cache)
    shapes = args.shape_list
    if args.list:
        for shape in shapes:
            print(f"{shape.name:20s} {shape.describe():38s} {shape.macs / 1e6:10.1f} MMAC  {shape.source}")
        return 0
    options = runner.Options(
        suite=args.suite,
        backend=args.backend,
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
        jit=args.jit,
    )
    started, start = datetime.datetime.now(), time.perf_counter()
    rows = []
    steps = runner.plan(shapes, options)
    for index, (label, step) in enumerate(steps, 1):
        print(
            f"[{index}/{len(steps)}, {time.perf_counter() - start:.0f} s] {label}",
            file=sys.stderr,
            flush=True,
        )
        rows += step()
    args.out.mkdir(parents=True, exist_ok=True)
    report.write_csv(rows, args.out / "results.csv")
    report.write_markdown(
        rows, _header(args, argv, started, time.perf_counter() - start), args.out / "results.md"
    )
    written = ["results.csv", "results.md"]
    if report.can_plot():
        report.plot_speedups(rows, args.out / "speedup.png")
        written.append("speedup.png")
    else:
        print(f"speedup.png not written: the plot needs matplotlib ({BENCH_EXTRA})")
    for (mode, impl), speedups in _speedups(rows).items():
        print(
            f"{mode:8s} {impl:15s} geomean speedup vs keras {report.geomean(speedups):.2f}x "
            f"(min {min(speedups):.2f}x) over {len(speedups)} shapes"
        )
    print(f"Wrote {', '.join(written)} in {args.out}")
    return 0


def _speedups(rows: list[dict]) -> dict[tuple[str, str], list[float]]:
    grouped: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        if row["impl"] != "keras" and row.get("speedup_vs_keras"):
            grouped.setdefault((row["mode"], row["impl"]), []).append(row["speedup_vs_keras"])
    return grouped
