"""The static rule ``implementation="auto"`` falls back on, and the lowering target.

``auto`` measures where it can (:mod:`keras_tconv.ops.choosing.tuning`); this rule
decides where nothing can be measured: for the LiteRT target, when the
spatial size is unknown while tracing, inside XLA compilation, or with tuning
turned off and no cached choice. The best lowering depends on where the
graph runs, so the rule has two *lowering targets*, chosen with
:func:`lowering_target` while a model is traced:

``"tensorflow"`` (the default)
    The graph runs on TensorFlow's own kernels: on a CPU :class:`StaticRule`,
    a decision list whose thresholds and picks are fitted per CPU kernel
    library (:data:`RULES`, read from :data:`FITTED_RULES_FILE`) on a seeded
    random sample of realistic layers; on a GPU ``native`` (no CPU rule
    decides for a GPU).

``"litert"``
    The graph is converted to TensorFlow Lite / LiteRT in float. There
    Keras's layer becomes TRANSPOSE_CONV, which every segregated lowering beat
    on every layer of the models suite at batch 1 (XNNPACK, 2 threads), so
    ``native`` is never picked: ``unified`` when no stacked tap is wasted,
    else ``split`` with :data:`LITERT_SPLIT_CHANNELS` or more filters and
    input channels, else ``unified``.

``"litert_int8"``
    The graph is converted to LiteRT with full-integer (int8) quantization.
    XNNPACK's int8 TRANSPOSE_CONV is much faster than its float one, and
    beats the segregated lowerings on layers whose stacked kernel wastes taps
    (k=3, s=2) and on tiny inputs, so the rule keeps ``native`` (which
    converts to TRANSPOSE_CONV, as Keras's layer does) except for ``unified``
    where no stacked tap is wasted and the input has at least
    :data:`LITERT_INT8_MIN_PIXELS` pixels, or the layer has at most
    :data:`LITERT_INT8_FEW_FILTERS` filters. (The trace cannot know that the
    model will be quantized, hence a target of its own.)
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import json
from importlib import resources

from keras_tconv.ops.phases import AxisPlan, stacked_window
from keras_tconv.ops.platform import cpu_kernel_library

TARGETS = ("tensorflow", "litert", "litert_int8")
# The LiteRT rules' thresholds (see the module docstring).
LITERT_SPLIT_CHANNELS = 16
LITERT_INT8_MIN_PIXELS = 64
LITERT_INT8_FEW_FILTERS = 3
# The stacked kernel's waste up to which XLA's gradient takes ``unified`` (:func:`xla_gradient_rule`).
XLA_GRADIENT_MAX_WASTE = 2.0


@dataclasses.dataclass(frozen=True)
class StaticRule:
    """The decision list of the ``"tensorflow"`` target on a CPU, with its
    thresholds and the lowering of each branch as parameters, fitted per CPU
    kernel library by ``tools/fit_static_rule.py`` (:data:`RULES`).

    Branches, first match wins:

    1. No stacked tap wasted (every stride divides its kernel) or fewer than
       ``min_channels`` filters or input channels: ``exact_wide_pick`` with
       ``min_channels`` or more filters, else ``exact_narrow_pick``.
    2. Every phase keeps two taps per axis, or ``wide_channels`` or more
       channels: ``many_taps_pick``.
    3. Otherwise (k=3, s=2 and alike, with a 1-tap phase): ``rest_pick``.

    A segregated pick with known rows of work (batch x height x width) below
    ``min_work / min(filters, channels)`` gives way to ``native``
    (:meth:`native_below_rows`).
    """

    min_channels: int
    wide_channels: int
    min_work: int
    exact_wide_pick: str
    exact_narrow_pick: str
    many_taps_pick: str
    rest_pick: str

    def by_shape(self, kernel_shape, plan_h: AxisPlan, plan_w: AxisPlan) -> str:
        filters, channels = kernel_shape[2:]
        if stacked_waste(plan_h, plan_w) <= 1.0 or min(filters, channels) < self.min_channels:
            return self.exact_wide_pick if filters >= self.min_channels else self.exact_narrow_pick
        if (
            min(_fewest_taps(plan_h), _fewest_taps(plan_w)) >= 2
            or min(filters, channels) >= self.wide_channels
        ):
            return self.many_taps_pick
        return self.rest_pick

    def native_below_rows(self, kernel_shape, implementation: str) -> int:
        """Rows of work below which ``native`` replaces ``implementation`` (0: never).

        A segregated lowering re-lays the kernel out on every call (a gather
        and a transpose), which TensorFlow's kernel does not; with few rows
        of work that per-call cost outweighs the faster convolutions. Layers
        with fewer than ``min_channels`` channels have kernels too small for
        this to matter.
        """
        filters, channels = kernel_shape[2:]
        if implementation == "native" or min(filters, channels) < self.min_channels:
            return 0
        return -(-self.min_work // min(filters, channels))

    def choose(self, kernel_shape, plan_h: AxisPlan, plan_w: AxisPlan, rows: int | None = None) -> str:
        choice = self.by_shape(kernel_shape, plan_h, plan_w)
        if rows is not None and rows < self.native_below_rows(kernel_shape, choice):
            return "native"
        return choice


# The fitted rules, as tools/fit_static_rule.py writes them from the benchmark's
# "sample" suite (results in docs/benchmarks/sample_*).
FITTED_RULES_FILE = "static_rules.json"


def read_rules(text: str) -> dict[str, StaticRule]:
    """The rules of a :data:`FITTED_RULES_FILE`'s ``text``, by CPU kernel library."""
    return {library: StaticRule(**entry["rule"]) for library, entry in json.loads(text)["rules"].items()}


RULES = read_rules(resources.files(__package__).joinpath(FITTED_RULES_FILE).read_text())

_target = contextvars.ContextVar("keras_tconv_lowering_target", default="tensorflow")


@contextlib.contextmanager
def lowering_target(target: str):
    """Make ``implementation="auto"`` choose for ``target`` while the block runs.

    The choice is made when a layer is traced, so wrap whatever traces the
    model for that runtime, e.g.::

        with keras_tconv.lowering_target("litert"):
            model.export("model.tflite", format="litert")

    Args:
        target: ``"tensorflow"`` (the default outside the block),
            ``"litert"`` or ``"litert_int8"`` (for full-integer quantization).
    """
    if target not in TARGETS:
        raise ValueError(f"Invalid lowering target. Expected one of {TARGETS}. Received: target={target!r}")
    token = _target.set(target)
    try:
        yield
    finally:
        _target.reset(token)


@functools.lru_cache(maxsize=4096)
def stacked_waste(plan_h: AxisPlan, plan_w: AxisPlan) -> float:
    """Multiplications of the stacked ("unified") kernel per useful one."""
    window_h, window_w = stacked_window(plan_h, plan_w)
    slots = window_h * window_w * plan_h.stride * plan_w.stride
    return slots / (plan_h.geometry.kernel_size * plan_w.geometry.kernel_size)


@functools.lru_cache(maxsize=4096)
def _fewest_taps(plan: AxisPlan) -> int:
    """Taps of the thinnest phase along one axis (0 if the stride exceeds the kernel)."""
    return min(len(phase.taps) for phase in plan.phases)


def lowering_target_name() -> str:
    """The current :func:`lowering_target`."""
    return _target.get()


def jax_rule(plan_h: AxisPlan, plan_w: AxisPlan) -> str:
    """The JAX backend's static rule for the forward: a segregated lowering
    always (XLA runs Keras's ``lhs_dilation`` convolution on slow paths),
    ``unified`` where its stacked kernel wastes no tap, else ``split``."""
    return "unified" if stacked_waste(plan_h, plan_w) <= 1.0 else "split"


def xla_gradient_rule(plan_h: AxisPlan, plan_w: AxisPlan) -> str:
    """The segregated lowering whose derivative forms a gradient compiled by
    XLA (JAX, and TensorFlow under ``jit_compile``) where nothing else is
    known, and the baseline its measurement starts from: ``unified`` where
    its stacked kernel does at most :data:`XLA_GRADIENT_MAX_WASTE` times the
    useful work, else ``split``.

    The kernel gradient dominates there; ``unified``'s is one matrix product
    per tap of the stacked window, large products XLA runs fast, where
    ``split``'s many small ones (one per tap of every phase) cost more than
    the wasted taps, and it compiles in about half the time. Beyond the
    bound (strides above 2 with kernels they do not divide) the waste wins.
    """
    return "unified" if stacked_waste(plan_h, plan_w) <= XLA_GRADIENT_MAX_WASTE else "split"


def choose_implementation(
    kernel_shape,
    plan_h: AxisPlan,
    plan_w: AxisPlan,
    batch=None,
    height=None,
    width=None,
    backend: str = "tensorflow",
    device: str = "",
) -> str:
    """The static rule's lowering for a kernel ``(kh, kw, filters,
    in_channels)`` under the current :func:`lowering_target` (TensorFlow) or
    on ``backend="jax"``, given the input's batch and spatial size where known.

    ``device`` is the cache-key name of where the layer runs
    (:func:`keras_tconv.ops.tensorflow.tuning.device_name`): on a GPU
    (``"GPU ..."``) the TensorFlow target's rule is ``native``, since the CPU
    rules are fitted on CPU kernel libraries and cuDNN runs Keras's layer
    near the speed of a dense convolution; only a GPU measurement (from the
    tuning cache) replaces it."""
    if backend == "jax":
        return jax_rule(plan_h, plan_w)
    target = _target.get()
    if target == "tensorflow" and device.startswith("GPU"):
        return "native"
    if target != "tensorflow":
        filters, channels = kernel_shape[2:]
        exact = stacked_waste(plan_h, plan_w) <= 1.0
        if target == "litert":
            return "unified" if exact or min(filters, channels) < LITERT_SPLIT_CHANNELS else "split"
        large = None in (height, width) or height * width >= LITERT_INT8_MIN_PIXELS
        return "unified" if filters <= LITERT_INT8_FEW_FILTERS or (exact and large) else "native"
    rows = None if None in (batch, height, width) else batch * height * width
    return RULES[cpu_kernel_library()].choose(kernel_shape, plan_h, plan_w, rows)
