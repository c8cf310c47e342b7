"""The layer shapes the benchmark measures, grouped into named suites.

Each :class:`Shape` is one ``Conv2DTranspose`` layer applied to one input
batch (channels last). The ``models`` suite holds layers from published
models, so that speedups are reported for shapes people actually run; the
``paper`` suite mirrors the two experiments of the kernel-segregation paper
(arXiv 2209.03704); ``serving`` is the ``models`` suite at batch 1; ``quick``
holds a few tiny shapes, some with odd edge cases, for the CI smoke test;
``sample`` and ``holdout`` are seeded random realistic layers, the first for
fitting ``auto``'s static rule, the second for reporting only.
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Shape:
    """One transposed-convolution layer and its input batch.

    Attributes:
        name: short identifier, unique within a suite.
        source: where the layer comes from (model and layer), for the report.
        batch, height, width, in_channels: the input, ``(N, H, W, C)``.
        filters: output channels.
        kernel: ``(kh, kw)``.
        strides: ``(sh, sw)``.
        padding: ``"same"`` or ``"valid"``.
        output_padding: ``None`` or ``(ph, pw)``, as in Keras.
        activation: the layer's own ``activation`` in its source model
            (``None`` where the model normalises or activates in a separate
            layer), so that what is timed is the layer as that model runs it.
        use_bias: likewise the layer's own ``use_bias``.
    """

    name: str
    source: str
    batch: int
    height: int
    width: int
    in_channels: int
    filters: int
    kernel: tuple[int, int]
    strides: tuple[int, int] = (2, 2)
    padding: str = "same"
    output_padding: tuple[int, int] | None = None
    activation: str | None = None
    use_bias: bool = True

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.height, self.width, self.in_channels)

    @property
    def macs(self) -> int:
        """Useful multiply-accumulates: every input pixel meets every tap once.

        This is the nominal count ``N*H*W*kh*kw*Cin*Cout`` (taps that padding
        crops away at the border are counted too), the same count as a dense
        stride-1 ``kh x kw`` convolution on the input grid, and ``1/(sh*sw)``
        of what zero insertion multiplies.
        """
        return math.prod(self.input_shape) * math.prod(self.kernel) * self.filters

    def with_batch(self, batch: int) -> Shape:
        return dataclasses.replace(self, batch=batch)

    def describe(self) -> str:
        """A compact one-line description, e.g. ``64x4x4x512 -> 256 k4 s2 same``."""
        kernel = _square_or_pair(self.kernel)
        strides = _square_or_pair(self.strides)
        text = (
            f"{self.batch}x{self.height}x{self.width}x{self.in_channels} -> {self.filters} "
            f"k{kernel} s{strides} {self.padding}"
        )
        if self.output_padding is not None:
            text += f" op{_square_or_pair(self.output_padding)}"
        if self.activation is not None:
            text += f" {self.activation}"
        return text


def _square_or_pair(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def _square(k: int) -> tuple[int, int]:
    return (k, k)


# The paper's shapes are not all stated in it; these follow its description:
# one transpose-conv layer on RGB flower photos (the Kaggle "flowers" data,
# about 240x320 natively, commonly resized to 224x224) with kernels 3 to 5,
# and a simple MNIST model whose only transpose conv sits on the 28x28 input.
PAPER = (
    Shape("flowers224_k3", "paper exp. 1: flower photo 224x224 RGB", 8, 224, 224, 3, 3, _square(3)),
    Shape("flowers224_k4", "paper exp. 1: flower photo 224x224 RGB", 8, 224, 224, 3, 3, _square(4)),
    Shape("flowers224_k5", "paper exp. 1: flower photo 224x224 RGB", 8, 224, 224, 3, 3, _square(5)),
    Shape("flowers240x320_k3", "paper exp. 1: flower photo at native 240x320", 8, 240, 320, 3, 3, _square(3)),
    Shape("mnist_tconv", "paper exp. 2: one-transpose-conv MNIST model", 64, 28, 28, 1, 32, _square(3)),
)

MODELS = (
    # DCGAN generator (Radford et al. 2015; PyTorch reference: k4 s2 p1 == Keras "same"), batch 64.
    # Its hidden layers are followed by BatchNorm, then ReLU: no activation in the layer itself.
    Shape("dcgan_4to8", "DCGAN generator 4->8 (ngf*8 -> ngf*4)", 64, 4, 4, 512, 256, _square(4)),
    Shape("dcgan_8to16", "DCGAN generator 8->16", 64, 8, 8, 256, 128, _square(4)),
    Shape("dcgan_16to32", "DCGAN generator 16->32", 64, 16, 16, 128, 64, _square(4)),
    Shape(
        "dcgan_32to64", "DCGAN generator 32->64 (to RGB)", 64, 32, 32, 64, 3, _square(4), activation="tanh"
    ),
    # TensorFlow's DCGAN tutorial (MNIST), batch 256; its layers have use_bias=False.
    Shape(
        "tfdcgan_7to14", "TF DCGAN tutorial generator 7->14", 256, 7, 7, 128, 64, _square(5), use_bias=False
    ),
    Shape(
        "tfdcgan_14to28",
        "TF DCGAN tutorial generator 14->28 (to 1 channel)",
        256,
        14,
        14,
        64,
        1,
        _square(5),
        activation="tanh",
        use_bias=False,
    ),
    # U-Net decoder up-convolutions (2x2, stride 2), 256x256 inputs, 32 base filters, batch 4.
    Shape("unet_up16", "U-Net decoder up-conv 16->32", 4, 16, 16, 512, 256, _square(2)),
    Shape("unet_up32", "U-Net decoder up-conv 32->64", 4, 32, 32, 256, 128, _square(2)),
    Shape("unet_up64", "U-Net decoder up-conv 64->128", 4, 64, 64, 128, 64, _square(2)),
    Shape("unet_up128", "U-Net decoder up-conv 128->256", 4, 128, 128, 64, 32, _square(2)),
    # Image autoencoders.
    Shape(
        "vae_mnist_7to14", "Keras VAE example decoder 7->14", 128, 7, 7, 64, 64, _square(3), activation="relu"
    ),
    Shape(
        "vae_mnist_14to28",
        "Keras VAE example decoder 14->28",
        128,
        14,
        14,
        64,
        32,
        _square(3),
        activation="relu",
    ),
    Shape(
        "ae_mnist_3to7",
        "MNIST conv autoencoder decoder 3->7 (valid)",
        128,
        3,
        3,
        128,
        64,
        _square(3),
        padding="valid",
        activation="relu",
    ),
    Shape(
        "ae_cifar_16to32",
        "CIFAR-10 conv autoencoder decoder 16->32",
        64,
        16,
        16,
        64,
        32,
        _square(3),
        activation="relu",
    ),
    # Super-resolution upsamplers.
    Shape("lapsrn_32to64", "LapSRN feature upsampler (4x4 deconv, 64 ch)", 16, 32, 32, 64, 64, _square(4)),
    Shape(
        "srdensenet_32to64",
        "SRDenseNet deconvolution layer (3x3, 256 ch)",
        4,
        32,
        32,
        256,
        256,
        _square(3),
        activation="relu",
    ),
)

QUICK = (
    Shape("tiny_k3_same", "smoke test", 2, 6, 6, 4, 3, _square(3)),
    Shape("tiny_k4_valid", "smoke test", 1, 5, 7, 3, 2, _square(4), padding="valid"),
    Shape("tiny_k3_outpad", "smoke test", 2, 4, 5, 2, 5, _square(3), padding="valid", output_padding=(1, 0)),
)


def random_layers(seed: int, count: int, prefix: str) -> tuple[Shape, ...]:
    """``count`` seeded random layers of the kinds decoders and generators use.

    Kernel 2-5; stride 2, sometimes 3 or 4 (never above the kernel); input and
    output channels log-uniform in 1-512; square spatial size log-uniform in
    4-128 (shrunk while the input would exceed 2**21 values); batch from
    {1, 2, 4, 8, 16, 32, 64} (shrunk while the layer would exceed 2**30
    multiply-accumulates, so that one layer stays measurable in seconds);
    "same" padding mostly; with or without bias; activation none or relu.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    shapes = []
    for index in range(count):
        kernel = int(rng.integers(2, 6))
        stride = int(rng.choice([2, 2, 2, 2, 3, 4]))
        stride = min(stride, kernel)
        channels, filters = (int(round(2 ** rng.uniform(0, 9))) for _ in range(2))
        size = int(round(2 ** rng.uniform(2, 7)))
        batch = int(rng.choice([1, 2, 4, 8, 16, 32, 64]))
        while size > 4 and size * size * channels > 2**21:
            size //= 2
        while batch > 1 and batch * size * size * channels * filters * kernel * kernel > 2**30:
            batch //= 2
        shapes.append(
            Shape(
                f"{prefix}{index:02d}",
                f"random layer (seed {seed})",
                batch,
                size,
                size,
                channels,
                filters,
                _square(kernel),
                _square(stride),
                padding="same" if rng.random() < 0.8 else "valid",
                activation="relu" if rng.random() < 0.5 else None,
                use_bias=bool(rng.random() < 0.7),
            )
        )
    return tuple(shapes)


# The static rule of keras_tconv.ops.choosing.rules is fitted on SAMPLE (tools/fit_static_rule.py);
# HOLDOUT, drawn with another seed, is for reporting only: nothing is fitted on it.
SAMPLE = random_layers(seed=2026, count=40, prefix="sample")
HOLDOUT = random_layers(seed=7, count=24, prefix="holdout")

SUITES: dict[str, tuple[Shape, ...]] = {
    "holdout": HOLDOUT,
    "sample": SAMPLE,
    "paper": PAPER,
    "models": MODELS,
    "serving": tuple(shape.with_batch(1) for shape in MODELS),
    "quick": QUICK,
}


def get_suite(name: str, only: list[str] | None = None) -> tuple[Shape, ...]:
    """The shapes of suite ``name``, optionally only those named in ``only``."""
    shapes = SUITES[name]
    if only:
        unknown = sorted(set(only) - {shape.name for shape in shapes})
        if unknown:
            raise ValueError(
                f"Suite {name!r} has no shapes named {unknown}; it has {[s.name for s in shapes]}"
            )
        shapes = tuple(shape for shape in shapes if shape.name in only)
    return shapes
