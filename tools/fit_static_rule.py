"""Fit the static rules of ``keras_tconv.ops.choosing.rules`` to benchmark results, and write them.

Usage (one results.csv per CPU kernel library, from the ``sample`` suite)::

    TF_ENABLE_ONEDNN_OPTS=0 python -m keras_tconv.benchmark --suite sample --mode forward \\
        --impls split,rows,unified,native --out docs/benchmarks/sample_eigen
    TF_ENABLE_ONEDNN_OPTS=1 python -m keras_tconv.benchmark --suite sample --mode forward \\
        --impls split,rows,unified,native --out docs/benchmarks/sample_onednn
    python tools/fit_static_rule.py docs/benchmarks/sample_eigen/results.csv \\
        docs/benchmarks/sample_onednn/results.csv

It searches the parameters of :class:`keras_tconv.ops.choosing.rules.StaticRule`
(the thresholds and each branch's lowering) for the rule with the best score on
each file's layers: the geometric mean of the speed-ups over Keras's layer,
where a speed-up below 0.95 counts cubed, so that a rule losing clearly on a
few layers scores below one that ties on them. Ties keep the first rule in the
search order, so a refit of the same results gives the same rule. It prints
each rule's score, the best possible per layer and the losing layers, and with
``--write`` stores the rules, keyed by the kernel library the results name, in
``keras_tconv/ops/choosing/static_rules.json``, which the library reads
(``tests/ops/test_static_rules.py`` refits and compares). The holdout suite
is never read here: it is for reporting only.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import json
import math
from pathlib import Path

from keras_tconv.benchmark.report import geomean
from keras_tconv.ops.choosing import rules
from keras_tconv.ops.choosing.rules import StaticRule
from keras_tconv.ops.phases import plan_axes

RULES_PATH = Path(rules.__file__).with_name(rules.FITTED_RULES_FILE)
# The values searched, per StaticRule field, in search order.
SEARCH = {
    "min_channels": (8, 16, 32),
    "wide_channels": (128, 256, 512),
    "min_work": (0, 2**13, 2**15, 2**17),
    "exact_wide_pick": ("rows", "unified", "native"),
    "exact_narrow_pick": ("unified", "rows", "native"),
    "many_taps_pick": ("split", "rows", "unified", "native"),
    "rest_pick": ("native", "unified", "split", "rows"),
}
LOSS = 0.95


def read_layers(path: Path) -> tuple[str, list[dict]]:
    """The kernel library the results were measured with, and per layer
    (forward rows): its kernel, plans, rows of work and speed-up per lowering."""
    layers: dict[str, dict] = {}
    libraries = set()
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            if row["mode"] != "forward" or not row["speedup_vs_keras"]:
                continue
            libraries.add(row["kernels"])
            layer = layers.setdefault(row["shape"], {"name": row["shape"], "speedups": {}})
            layer["speedups"][row["impl"]] = float(row["speedup_vs_keras"])
            kernel = (
                int(row["kernel_h"]),
                int(row["kernel_w"]),
                int(row["filters"]),
                int(row["in_channels"]),
            )
            padding = tuple(map(int, row["output_padding"].split("x"))) if row["output_padding"] else None
            strides = (int(row["stride_h"]), int(row["stride_w"]))
            layer["kernel"] = kernel
            layer["plans"] = plan_axes(kernel, strides, row["padding"], padding)
            layer["rows"] = int(row["batch"]) * int(row["height"]) * int(row["width"])
    if len(libraries) != 1:
        raise SystemExit(f"{path}: expected results of one kernel library, found {sorted(libraries)}")
    return libraries.pop(), list(layers.values())


def picked(rule: StaticRule, layers: list[dict]) -> list[float]:
    """The speed-up of ``rule``'s pick on each layer."""
    return [
        layer["speedups"][rule.choose(layer["kernel"], *layer["plans"], layer["rows"])] for layer in layers
    ]


def score(rule: StaticRule, layers: list[dict]) -> float:
    return geomean(s if s >= LOSS else s**3 for s in picked(rule, layers))


def fit(layers: list[dict]) -> tuple[StaticRule, float]:
    """The best-scoring rule of the search (the first of equal scores)."""
    best, best_score = None, -math.inf
    for values in itertools.product(*SEARCH.values()):
        rule = StaticRule(**dict(zip(SEARCH, values)))
        rule_score = score(rule, layers)
        if rule_score > best_score + 1e-9:
            best, best_score = rule, rule_score
    return best, best_score


def fit_files(paths: list[Path]) -> dict[str, dict]:
    """The fitted entry of each results file, by kernel library: the rule and where it came from."""
    entries = {}
    for path in paths:
        library, layers = read_layers(path)
        rule, rule_score = fit(layers)
        speedups = picked(rule, layers)
        entries[library] = {
            "results": str(path),
            "layers": len(layers),
            "score": round(rule_score, 4),
            "geomean_speedup": round(geomean(speedups), 4),
            "oracle_speedup": round(geomean(max(layer["speedups"].values()) for layer in layers), 4),
            "rule": dataclasses.asdict(rule),
        }
        losing = [f"{layer['name']} {s:.2f}x" for layer, s in zip(layers, speedups) if s < LOSS]
        print(
            f"{library}: {len(layers)} layers from {path}; score {rule_score:.3f}, "
            f"geomean {geomean(speedups):.3f}x, min {min(speedups):.2f}x, "
            f"oracle {entries[library]['oracle_speedup']:.3f}x"
        )
        print(f"  {rule}")
        print(f"  losing: {', '.join(losing) or 'none'}")
    return entries


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "results", nargs="+", type=Path, help="results.csv of the sample suite, one per kernel library"
    )
    parser.add_argument("--write", action="store_true", help=f"store the rules in {RULES_PATH}")
    args = parser.parse_args(argv)
    entries = fit_files(args.results)
    if args.write:
        stored = json.loads(RULES_PATH.read_text()) if RULES_PATH.exists() else {"rules": {}}
        stored["fitted_by"] = "tools/fit_static_rule.py"
        stored["rules"].update(entries)
        RULES_PATH.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
        print(f"wrote {RULES_PATH}")


if __name__ == "__main__":
    main()
