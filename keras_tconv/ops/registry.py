"""The implementations of the transposed convolution: one list, read by every other.

Each backend (:mod:`keras_tconv.ops.tensorflow`, :mod:`keras_tconv.ops.jax`)
computes every implementation listed here; the layer's validation, the
tuner's candidates, the benchmark, the training configuration and the tests
take their lists from :data:`REGISTRY` (or are checked against it).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Implementation:
    """One way to compute the transposed convolution.

    Attributes:
        name: the ``implementation=`` value.
        computes: what it runs, in a sentence.
        segregated: whether it runs stride-1 convolutions on the un-expanded
            input (kernel segregation).
        needs_stride: where it differs from ``unified``: ``"any"`` for a
            stride above 1 on either axis, ``"height"`` for one along the
            height; ``""`` where it always applies.
        measured: whether ``auto`` times it as a candidate.
    """

    name: str
    computes: str
    segregated: bool
    needs_stride: str = ""
    measured: bool = True

    def applies(self, strides: tuple[int, int]) -> bool:
        """Whether this is a distinct candidate for a layer with ``strides``."""
        sh, sw = strides
        if self.needs_stride == "any":
            return sh * sw > 1
        if self.needs_stride == "height":
            return sh > 1
        return True


REGISTRY = (
    Implementation("native", "the backend's own transposed convolution (what Keras's layer runs)", False),
    Implementation("split", "one stride-1 convolution per output phase, exact sub-kernels", True, "any"),
    Implementation(
        "rows", "one stride-1 convolution per row of phases, column phases stacked", True, "height"
    ),
    Implementation("unified", "one stride-1 convolution with every phase's sub-kernel stacked", True),
    Implementation(
        "zero_insertion",
        "the conventional method: a zero-expanded input and a dense convolution",
        False,
        measured=False,
    ),
)
BY_NAME = {impl.name: impl for impl in REGISTRY}
# "auto" chooses among the measured ones, per layer geometry.
IMPLEMENTATIONS = ("auto", *BY_NAME)
SEGREGATED = tuple(impl.name for impl in REGISTRY if impl.segregated)


def candidates(strides: tuple[int, int]) -> tuple[str, ...]:
    """What ``auto`` measures for a layer with ``strides``: ``native`` first."""
    return tuple(impl.name for impl in REGISTRY if impl.measured and impl.applies(strides))


def check_implementation(value) -> str:
    """``value`` if it names an implementation, else Keras-style ValueError."""
    if value not in IMPLEMENTATIONS:
        raise ValueError(
            f"Invalid value for argument `implementation`. Expected one of {IMPLEMENTATIONS}. "
            f"Received: implementation={value}"
        )
    return value


# Activations the ops apply themselves (TensorFlow fuses them into the phase
# convolutions; its gradient comes from the output). Sigmoid and softmax are
# left to the layer: Keras tags their outputs with the logits for the losses.
FUSED_ACTIVATIONS = (None, "relu", "tanh")
