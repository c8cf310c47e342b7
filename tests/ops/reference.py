"""An independent float64 transposed convolution, written from its definition.

Along each spatial axis, with stride ``s``, dilation ``d`` and kernel size
``k``, input pixel ``i`` reaches output position ``o = i*s + t*d - p`` through
tap ``t``; ``p`` is the leading crop and the output length ``O`` is Keras's.
Both come from Keras's and TensorFlow's documented padding rules, restated
here rather than read from either library:

* ``"valid"``: ``O = (N-1)*s + k_eff + op`` where ``op`` defaults to
  ``max(k_eff, s) - k_eff``; ``p = 0``.
* ``"same"``: ``O = N*s`` without ``output_padding``, else
  ``(N-1)*s + k_eff % 2 + op``; ``p = max((N-1)*s + k_eff - O, 0) // 2``
  (the pad-before of the "same" convolution whose input gradient this is).

with ``k_eff = (k-1)*d + 1``. The output, the bias and activation, and the
gradients of ``sum(y * cotangent)`` with respect to input, kernel and bias
are computed with NumPy loops over the taps, in float64, so a defect in any
TensorFlow kernel (Eigen or oneDNN) cannot hide in the reference.
"""

from __future__ import annotations

import numpy as np

ACTIVATIONS = {
    None: (lambda z: z, lambda z, y: np.ones_like(z)),
    "linear": (lambda z: z, lambda z, y: np.ones_like(z)),
    "relu": (lambda z: np.maximum(z, 0.0), lambda z, y: (z > 0).astype(np.float64)),
    "tanh": (np.tanh, lambda z, y: 1.0 - y * y),
    "sigmoid": (lambda z: 1.0 / (1.0 + np.exp(-z)), lambda z, y: y * (1.0 - y)),
}


def pair(value):
    """An int or a pair (or None) as a pair."""
    if value is None:
        return (None, None)
    return (value, value) if isinstance(value, int) else tuple(value)


def axis_length_and_crop(n: int, k: int, s: int, d: int, padding: str, output_padding):
    """Keras's output length ``O`` and the leading crop ``p`` for one axis."""
    k_eff = (k - 1) * d + 1
    if padding == "valid":
        op = max(k_eff, s) - k_eff if output_padding is None else output_padding
        return (n - 1) * s + k_eff + op, 0
    length = n * s if output_padding is None else (n - 1) * s + k_eff % 2 + output_padding
    return length, max((n - 1) * s + k_eff - length, 0) // 2


def _taps(n, k, s, d, length, crop):
    """Per tap ``t``: (input indices, output indices) of the pairs it connects."""
    i = np.arange(n)
    pairs = []
    for t in range(k):
        o = i * s + t * d - crop
        keep = (o >= 0) & (o < length)
        pairs.append((i[keep], o[keep]))
    return pairs


class Reference:
    """Forward and gradients of one configuration, channels last, float64.

    Args:
        kernel_size, strides, padding, output_padding, dilation_rate,
        activation: as in ``keras.layers.Conv2DTranspose``.
    """

    def __init__(
        self,
        kernel_size,
        strides=1,
        padding="valid",
        output_padding=None,
        dilation_rate=1,
        activation=None,
        **_,
    ):
        self.kernel_size = pair(kernel_size)
        self.strides = pair(strides)
        self.padding = padding.lower()
        self.output_padding = pair(output_padding)
        self.dilation = pair(dilation_rate)
        self.activation, self.activation_grad = ACTIVATIONS[activation]

    def _plans(self, x_shape):
        plans = []
        for axis in range(2):
            args = (x_shape[axis + 1], self.kernel_size[axis], self.strides[axis], self.dilation[axis])
            length, crop = axis_length_and_crop(*args, self.padding, self.output_padding[axis])
            plans.append((length, _taps(*args, length, crop)))
        return plans

    def output_shape(self, x_shape, filters):
        (oh, _), (ow, _) = self._plans(x_shape)
        return (x_shape[0], oh, ow, filters)

    def _pre_activation(self, x, kernel, bias):
        (oh, taps_h), (ow, taps_w) = self._plans(x.shape)
        z = np.zeros((x.shape[0], oh, ow, kernel.shape[2]))
        for th, (ih, ohi) in enumerate(taps_h):
            for tw, (iw, owi) in enumerate(taps_w):
                # kernel[th, tw] is (filters, in_channels).
                z[:, ohi[:, None], owi[None, :], :] += x[:, ih[:, None], iw[None, :], :] @ kernel[th, tw].T
        return z + bias

    def forward(self, x, kernel, bias):
        x, kernel, bias = (np.asarray(a, np.float64) for a in (x, kernel, bias))
        return self.activation(self._pre_activation(x, kernel, bias))

    def gradients(self, x, kernel, bias, cotangent):
        """``(dx, dkernel, dbias)`` of ``sum(forward(x, kernel, bias) * cotangent)``."""
        x, kernel, bias, cotangent = (np.asarray(a, np.float64) for a in (x, kernel, bias, cotangent))
        z = self._pre_activation(x, kernel, bias)
        dz = cotangent * self.activation_grad(z, self.activation(z))
        (_, taps_h), (_, taps_w) = self._plans(x.shape)
        dx, dkernel = np.zeros_like(x), np.zeros_like(kernel)
        for th, (ih, ohi) in enumerate(taps_h):
            for tw, (iw, owi) in enumerate(taps_w):
                g = dz[:, ohi[:, None], owi[None, :], :]  # (B, h, w, F)
                dx[:, ih[:, None], iw[None, :], :] += g @ kernel[th, tw]
                dkernel[th, tw] = np.einsum("bhwf,bhwc->fc", g, x[:, ih[:, None], iw[None, :], :])
        return dx, dkernel, dz.sum(axis=(0, 1, 2))
