"""Fit the static rule of ``keras_tconv.ops.choosing.rules`` to benchmark results.

Usage (one results.csv per CPU kernel library, from the ``sample`` suite)::

    TF_ENABLE_ONEDNN_OPTS=0 python -m keras_tconv.benchmark --suite sample --mode forward \\
        --impls split,rows,unified,native --out docs/benchmarks/sample_eigen
    TF_ENABLE_ONEDNN_OPTS=1 python -m keras_tconv.benchmark --suite sample --mode forward \\
        --impls split,rows,unified,native --out docs/benchmarks/sample_onednn
    python tools/fit_static_rule.py docs/benchmarks/sample_eigen/results.csv
    python tools/fit_static_rule.py docs/benchmarks/sample_onednn/results.csv

It searches the parameters of :class:`keras_tconv.ops.choosing.rules.StaticRule` (the
thresholds and each branch's lowering) for the rule with the best score on
the sample: the geometric mean of the speed-ups over Keras's layer, where a
speed-up below 0.95 counts cubed, so that a rule losing clearly on a few
layers scores below one that ties on them. It prints the best rule, the
default rule's score for comparison, and the best rule's losing layers.
The holdout suite is never read here: it is for reporting only.
"""

from __future__ import annotations

import csv
import itertools
import math
import sys

from keras_tconv.ops.choosing.rules import StaticRule
from keras_tconv.ops.phases import plan_axes

PICKS = {
    "few_filters_pick": ("native", "unified"),
    "exact_wide_pick": ("rows", "unified", "native"),
    "exact_narrow_pick": ("unified", "rows", "native"),
    "many_taps_pick": ("split", "rows", "unified", "native"),
    "rest_pick": ("native", "unified", "split", "rows"),
}
THRESHOLDS = {
    "few_filters": (0, 2, 4, 8),
    "min_channels": (8, 16, 32),
    "wide_channels": (128, 256, 512),
    "min_work": (0, 2**13, 2**15, 2**17),
}


def read_layers(path: str) -> list[dict]:
    """Per layer (forward rows): its plans, rows of work and speed-up per lowering."""
    layers: dict[str, dict] = {}
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            if row["mode"] != "forward" or not row["speedup_vs_keras"]:
                continue
            layer = layers.setdefault(row["shape"], {"speedups": {}})
            layer["speedups"][row["impl"]] = float(row["speedup_vs_keras"])
            kernel = (int(row["kernel_h"]), int(row["kernel_w"]), int(row["filters"]), int(row["in_channels"]))
            output_padding = eval(row["output_padding"]) if row["output_padding"] else None  # noqa: S307 - our CSV
            layer["kernel"] = kernel
            layer["plans"] = plan_axes(kernel, (int(row["stride_h"]), int(row["stride_w"])), row["padding"], output_padding)
            layer["rows"] = int(row["batch"]) * int(row["height"]) * int(row["width"])
    return list(layers.values())


def score(rule: StaticRule, layers: list[dict]) -> float:
    total = 0.0
    for layer in layers:
        speedup = layer["speedups"][rule.choose(layer["kernel"], *layer["plans"], layer["rows"])]
        total += math.log(speedup if speedup >= 0.95 else speedup**3)
    return math.exp(total / len(layers))


def fit(layers: list[dict]) -> tuple[StaticRule, float]:
    best, best_score = StaticRule(), score(StaticRule(), layers)
    names = list(THRESHOLDS) + list(PICKS)
    for values in itertools.product(*THRESHOLDS.values(), *PICKS.values()):
        rule = StaticRule(**dict(zip(names, values)))
        rule_score = score(rule, layers)
        if rule_score > best_score + 1e-9:
            best, best_score = rule, rule_score
    return best, best_score


def main(path: str) -> None:
    layers = read_layers(path)
    default = score(StaticRule(), layers)
    rule, best = fit(layers)
    picks = [layer["speedups"][rule.choose(layer["kernel"], *layer["plans"], layer["rows"])] for layer in layers]
    geomean = math.exp(sum(map(math.log, picks)) / len(picks))
    print(f"{len(layers)} layers from {path}")
    print(f"default rule score {default:.3f}; fitted rule score {best:.3f}, geomean {geomean:.3f}x, min {min(picks):.2f}x")
    oracle = math.exp(sum(math.log(max(layer["speedups"].values())) for layer in layers) / len(layers))
    print(f"best possible per layer (oracle): {oracle:.3f}x")
    print(rule)


if __name__ == "__main__":
    main(sys.argv[1])
