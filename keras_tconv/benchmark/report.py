"""Writing the results: ``results.csv``, ``results.md`` and ``speedup.png``.

The CSV has one row per shape, mode and implementation (TFLite rows have mode
``tflite``); the Markdown report turns the same rows into per-mode tables of
time and speedup over Keras (shapes too small to measure more than per-call
overhead marked), efficiency against the dense-conv ceiling, peak memory, and
TFLite ops; the plot (matplotlib, the ``bench`` extra) shows the
speedups.
"""

from __future__ import annotations

import collections
import csv
import importlib.util
import math
import statistics
from pathlib import Path

COLUMNS = (
    "suite",
    "backend",
    "device",
    "kernels",
    "mode",
    "shape",
    "layer",
    "source",
    "batch",
    "height",
    "width",
    "in_channels",
    "filters",
    "kernel_h",
    "kernel_w",
    "stride_h",
    "stride_w",
    "padding",
    "output_padding",
    "out_height",
    "out_width",
    "macs",
    "impl",
    "auto_picks",
    "time_ms",
    "time_q1_ms",
    "time_q3_ms",
    "calls_per_sample",
    "samples",
    "speedup_vs_keras",
    "gflops",
    "ceiling_ms",
    "ceiling_gflops",
    "empty_call_ms",
    "efficiency",
    "max_rel_err",
    "traces",
    "first_call_ms",
    "peak_mem_mb",
    "ops",
    "xnnpack",
    "error",
)
# Relative error (max |impl - keras| / max |keras|) above which the report flags a result.
ERROR_FLAG = 1e-4
# The same for full-integer models, whose 8-bit activations round to about 1/256 of their range.
INT8_ERROR_FLAG = 0.05
# A shape is overhead-bound when calling an empty function with its inputs (a tf.function, a jitted JAX
# function or a LiteRT model, that computes nothing) takes at least this share of Keras's time: its
# speedups then measure per-call overhead more than the convolution.
OVERHEAD_BOUND_SHARE = 0.5
OVERHEAD_MARK = "†"
# What the empty call is, by the backend of Keras's row.
_EMPTY_FUNCTIONS = {"tensorflow": "tf.function", "jax": "jitted JAX function"}


def geomean(values) -> float:
    values = [v for v in values if v is not None and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({key: _csv_value(row.get(key)) for key in COLUMNS})


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def _by_mode(rows: list[dict]) -> dict[str, dict[str, dict[str, dict]]]:
    """``{mode: {shape: {impl: row}}}``, in first-seen order."""
    grouped: dict = collections.defaultdict(lambda: collections.defaultdict(dict))
    for row in rows:
        grouped[row["mode"]][row["shape"]][row["impl"]] = row
    return grouped


def _impls(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(row["impl"] for row in rows))


def _fmt(value, spec: str, suffix: str = "") -> str:
    return (
        "–"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:{spec}}{suffix}"
    )


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in body]


def overhead_bound(keras_row: dict) -> bool:
    """Whether the shape of ``keras_row`` (Keras's row of one shape and mode) is overhead-bound."""
    empty, keras = keras_row.get("empty_call_ms"), keras_row.get("time_ms")
    return bool(empty and keras) and empty >= OVERHEAD_BOUND_SHARE * keras


def _overhead_bound_shapes(shapes: dict) -> list[str]:
    return [name for name, by_impl in shapes.items() if overhead_bound(by_impl.get("keras", {}))]


def _summary(grouped: dict, impls: list[str]) -> list[str]:
    body = []
    for mode, shapes in grouped.items():
        for impl in impls:
            if impl == "keras":
                continue
            speedups = {
                name: by_impl[impl]["speedup_vs_keras"]
                for name, by_impl in shapes.items()
                if by_impl.get(impl, {}).get("speedup_vs_keras")
            }
            if not speedups:
                continue
            worst = min(speedups, key=speedups.get)
            efficiencies = [by_impl[impl].get("efficiency") for by_impl in shapes.values() if impl in by_impl]
            body.append(
                [
                    mode,
                    impl,
                    _fmt(geomean(speedups.values()), ".2f", "x"),
                    f"{speedups[worst]:.2f}x ({worst})",
                    _fmt(max(speedups.values()), ".2f", "x"),
                    _fmt(geomean(efficiencies), ".0%") if not mode.startswith("tflite") else "–",
                ]
            )
    header = ["mode", "impl", "geomean speedup vs keras", "min (shape)", "max", "geomean efficiency"]
    lines = _table(header, body) + _first_call_note(grouped)
    bound = {mode: len(_overhead_bound_shapes(shapes)) for mode, shapes in grouped.items()}
    if any(bound.values()):
        counts = ", ".join(
            f"{count} of {len(grouped[mode])} in {mode}" for mode, count in bound.items() if count
        )
        lines += [
            "",
            f"The geomeans include overhead-bound shapes ({counts}; marked {OVERHEAD_MARK} below), "
            "whose speedups measure per-call overhead more than the convolution.",
        ]
    return lines


def _first_call_note(grouped: dict) -> list[str]:
    """How much longer ``auto``'s first call takes than Keras's (tracing, and measuring its candidates)."""
    lines = []
    for mode, shapes in grouped.items():
        extra = {
            name: by_impl["auto"]["first_call_ms"] - by_impl["keras"]["first_call_ms"]
            for name, by_impl in shapes.items()
            if by_impl.get("auto", {}).get("first_call_ms") is not None
            and by_impl.get("keras", {}).get("first_call_ms") is not None
        }
        if extra:
            worst = max(extra, key=extra.get)
            lines.append(
                f"- {mode}: auto's first call (trace, and timing its candidates on a fresh cache) took "
                f"{statistics.median(extra.values()):.0f} ms longer than keras's (median over shapes), "
                f"at most {extra[worst]:.0f} ms ({worst})."
            )
    return [""] + lines if lines else []


def _mode_tables(mode: str, shapes: dict, impls: list[str]) -> list[str]:
    others = [impl for impl in impls if impl != "keras"]
    lines = [f"## {mode}", "", "Time per step (median) and speedup over keras (keras time / impl time).", ""]
    header = ["shape", "layer", "MMACs", "keras ms"] + others
    body, flags = [], []
    for name, by_impl in shapes.items():
        keras_row = by_impl.get("keras", {})
        marked = f"{name} {OVERHEAD_MARK}" if overhead_bound(keras_row) else name
        cells = [
            marked,
            keras_row.get("layer", ""),
            _fmt(keras_row.get("macs", 0) / 1e6, ".3g"),
            _fmt(keras_row.get("time_ms"), ".3f"),
        ]
        for impl in others:
            row = by_impl.get(impl)
            if row is None or row.get("time_ms") is None:
                cells.append(row.get("error", "–") if row else "–")
                continue
            cell = f"{row['time_ms']:.3f}"
            if row.get("speedup_vs_keras"):
                cell += f" ({row['speedup_vs_keras']:.2f}x)"
            if impl == "auto" and row.get("auto_picks"):
                cell += f" [{row['auto_picks']}]"
            cells.append(cell)
        for impl, row in by_impl.items():
            if (row.get("max_rel_err") or 0) > (INT8_ERROR_FLAG if mode == "tflite_int8" else ERROR_FLAG):
                flags.append(f"- {name} / {impl}: max relative error vs keras {row['max_rel_err']:.2e}")
            if (row.get("traces") or 1) > 1:
                flags.append(f"- {name} / {impl}: traced {row['traces']} times")
        body.append(cells)
    lines += _table(header, body) + _overhead_note(mode, shapes)
    if mode.startswith("tflite"):
        return lines + _tflite_ops(shapes, impls)
    lines += [
        "",
        "Efficiency: dense-conv ceiling time / impl time, and GFLOP/s. The ceiling is a stride-1 "
        '"same" conv2d of the same input with the layer\'s kernel size and output channels (plus bias): '
        "exactly the layer's multiply-accumulates, so its GFLOP/s is this machine's practical rate for that "
        "work. With very few output channels that conv is itself slow, and efficiencies above 100% say so.",
        "",
    ]
    header = ["shape", "ceiling GFLOP/s"] + [f"{impl} (GFLOP/s)" for impl in impls]
    body = []
    for name, by_impl in shapes.items():
        any_row = next(iter(by_impl.values()))
        cells = [name, _fmt(any_row.get("ceiling_gflops"), ".3g")]
        cells += [
            f"{_fmt(by_impl[i].get('efficiency'), '.0%')} ({_fmt(by_impl[i].get('gflops'), '.3g')})"
            if i in by_impl
            else "–"
            for i in impls
        ]
        body.append(cells)
    lines += _table(header, body)
    if any(row.get("peak_mem_mb") is not None for by_impl in shapes.values() for row in by_impl.values()):
        lines += ["", "Peak memory of one step beyond inputs and weights (output included), MB.", ""]
        body = [
            [name] + [_fmt(by_impl.get(i, {}).get("peak_mem_mb"), ".1f") for i in impls]
            for name, by_impl in shapes.items()
        ]
        lines += _table(["shape"] + impls, body)
    if flags:
        lines += ["", "**Check these results:**", ""] + flags
    return lines


def _overhead_note(mode: str, shapes: dict) -> list[str]:
    """The footnote on the overhead-bound shapes of one mode's table, if any."""
    bound = _overhead_bound_shapes(shapes)
    if not bound:
        return []
    keras_rows = {name: shapes[name]["keras"] for name in bound}
    empty = (
        "LiteRT model"
        if mode.startswith("tflite")
        else _EMPTY_FUNCTIONS.get(next(iter(keras_rows.values())).get("backend"), "tf.function")
    )
    times = "; ".join(
        f"{name}: {row['empty_call_ms']:.3f} of {row['time_ms']:.3f} ms" for name, row in keras_rows.items()
    )
    return [
        "",
        f"{OVERHEAD_MARK} Overhead-bound: invoking an empty {empty} with the same inputs takes at least "
        f"{OVERHEAD_BOUND_SHARE:.0%} of Keras's time ({times}), so the speedups of these shapes measure "
        "per-call overhead more than the convolution.",
    ]


def _tflite_ops(shapes: dict, impls: list[str]) -> list[str]:
    lines = ["", "Ops of each converted model, all subgraphs (XNNPACK: whether the delegate took ops).", ""]
    body = []
    for name, by_impl in shapes.items():
        for impl in impls:
            row = by_impl.get(impl)
            if row is not None:
                body.append(
                    [
                        name,
                        impl,
                        _compact_ops(row.get("ops") or ""),
                        row.get("xnnpack") or "",
                        row.get("error") or "",
                    ]
                )
    return lines + _table(["shape", "impl", "ops", "XNNPACK", "error"], body)


def _compact_ops(ops: str) -> str:
    """``"CONV_2D CONV_2D PAD"`` -> ``"CONV_2D x2, PAD"``, first-seen order."""
    counts = collections.Counter(ops.split())
    return ", ".join(op if n == 1 else f"{op} x{n}" for op, n in counts.items())


def write_markdown(rows: list[dict], header_lines: list[str], path: Path) -> None:
    grouped, impls = _by_mode(rows), _impls(rows)
    lines = ["# keras-tconv benchmark", ""] + header_lines + ["", "## Summary", ""]
    lines += _summary(grouped, impls)
    for mode, shapes in grouped.items():
        lines += [""] + _mode_tables(mode, shapes, impls)
    path.write_text("\n".join(lines) + "\n")


def can_plot() -> bool:
    """Whether matplotlib, which :func:`plot_speedups` needs (the ``bench`` extra), is installed."""
    return importlib.util.find_spec("matplotlib") is not None


def plot_speedups(rows: list[dict], path: Path) -> None:
    """Grouped bars of speedup over keras, one panel per mode, log scale with 1x marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    grouped = _by_mode(rows)
    impls = [impl for impl in _impls(rows) if impl != "keras"]
    n_shapes = max(len(shapes) for shapes in grouped.values())
    fig, axes = plt.subplots(
        len(grouped),
        1,
        squeeze=False,
        figsize=(max(7.0, 0.22 * n_shapes * len(impls) + 1.5), 3.0 * len(grouped) + 0.6),
    )
    width = 0.8 / max(1, len(impls))
    for ax, (mode, shapes) in zip(axes[:, 0], grouped.items()):
        names = list(shapes)
        values = {
            impl: [shapes[name].get(impl, {}).get("speedup_vs_keras") or float("nan") for name in names]
            for impl in impls
        }
        for i, impl in enumerate(impls):
            offsets = [j + (i - (len(impls) - 1) / 2) * width for j in range(len(names))]
            ax.bar(offsets, values[impl], width, label=impl, color=f"C{i}")
        finite = [v for vs in values.values() for v in vs if not math.isnan(v)] or [1.0]
        ax.set_yscale("log", base=2)
        ax.set_ylim(min(0.5, min(finite) / 1.2), max(2.0, max(finite) * 1.2))
        ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%gx"))
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.grid(axis="y", alpha=0.3)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("speedup vs keras")
        ax.set_title(mode, fontsize=10)
    if impls:
        fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="upper center", ncol=len(impls), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))
    fig.savefig(path, dpi=110)
    plt.close(fig)
