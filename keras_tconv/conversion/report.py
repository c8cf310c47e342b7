"""What ``convert_model`` changed in a model, printable as a table."""

from __future__ import annotations

import dataclasses

import keras

from keras_tconv.layers import SegregatedConv2DTranspose

_TARGET_CLASS = {"segregated": "SegregatedConv2DTranspose", "keras": "Conv2DTranspose"}
_SOURCE_CLASS = {"segregated": "Conv2DTranspose", "keras": "SegregatedConv2DTranspose"}
_NOT_RUN = "not run yet"


def class_label(layer: keras.layers.Conv2DTranspose) -> str:
    """The layer's class as the report shows it, with the implementation of a segregated layer.

    ``type(layer).__name__`` is no help: the segregated class reports Keras's
    name so that weight files interchange.
    """
    if type(layer) is SegregatedConv2DTranspose:
        return f"SegregatedConv2DTranspose({layer.implementation})"
    return type(layer).__qualname__


@dataclasses.dataclass(frozen=True)
class ConvertedLayer:
    """A converted layer: its path in the model, its class before, and the layer itself.

    Everything else is read from the layer when asked, so a report printed
    after the model has run shows what ``auto`` chose.
    """

    path: str
    before: str
    layer: keras.layers.Conv2DTranspose

    @property
    def after(self) -> str:
        return class_label(self.layer)

    @property
    def geometry(self) -> dict[str, str]:
        """Kernel, strides, padding and channels (input channels are ``?`` until the layer is built)."""
        layer = self.layer
        in_channels = layer.kernel.shape[-1] if layer.built else "?"
        return {
            "kernel": "x".join(map(str, layer.kernel_size)),
            "strides": "x".join(map(str, layer.strides)),
            "padding": layer.padding,
            "channels": f"{in_channels}->{layer.filters}",
        }

    @property
    def lowering(self) -> str | None:
        """The lowering a segregated layer runs; None for Keras's layer, or under ``auto`` until
        the layer has run.

        A fixed ``implementation`` is its own lowering; under ``auto`` it is
        the layer's ``chosen_implementation``, which the layer sets when it runs.
        """
        layer = self.layer
        if type(layer) is not SegregatedConv2DTranspose:
            return None
        if layer.implementation != "auto":
            return layer.implementation
        return getattr(layer, "chosen_implementation", None)


@dataclasses.dataclass(frozen=True)
class SkippedLayer:
    """A subclass of Conv2DTranspose that conversion left as it is.

    Replacing a user's subclass by either class would drop its own ``call``
    (or its other methods, and the class its saved files name), so it is
    reported instead.
    """

    path: str
    layer: keras.layers.Conv2DTranspose

    @property
    def reason(self) -> str:
        own_call = type(self.layer).call not in (
            keras.layers.Conv2DTranspose.call,
            SegregatedConv2DTranspose.call,
        )
        if own_call:
            return "subclass with its own call"
        return "subclass (replacing it would drop its class)"


@dataclasses.dataclass(frozen=True)
class ConversionReport:
    """The layers ``convert_model`` converted in a model and those it left alone.

    ``print(report)`` shows one row per converted layer (path, class before
    and after, kernel, strides, padding, channels and, for segregated layers,
    the lowering they run: under ``auto``, once the model has run), and the
    subclasses of Conv2DTranspose that were skipped, or says that the model
    had nothing to convert.
    """

    model_name: str
    target: str
    converted: tuple[ConvertedLayer, ...]
    skipped: tuple[SkippedLayer, ...]

    def __str__(self) -> str:
        if self.converted:
            lines = [
                f"Model '{self.model_name}': {len(self.converted)} "
                f"{_plural(len(self.converted), 'layer')} converted to {_TARGET_CLASS[self.target]}"
            ]
            header = ["Path", "Before", "After", "Kernel", "Strides", "Padding", "Channels"]
            rows = [
                [entry.path, entry.before, entry.after, *entry.geometry.values()] for entry in self.converted
            ]
            if self.target == "segregated":
                header.append("Lowering")
                for row, entry in zip(rows, self.converted):
                    row.append(entry.lowering or _NOT_RUN)
            lines += _table(header, rows)
        else:
            lines = [f"Model '{self.model_name}': no {_SOURCE_CLASS[self.target]} layer to convert."]
        if self.skipped:
            lines.append(
                f"Left unchanged: {len(self.skipped)} {_plural(len(self.skipped), 'subclass')} "
                "of Conv2DTranspose"
            )
            lines += _table(
                ["Path", "Class", "Reason"],
                [[entry.path, type(entry.layer).__qualname__, entry.reason] for entry in self.skipped],
            )
        return "\n".join(lines)


def _plural(count: int, noun: str) -> str:
    if count == 1:
        return noun
    return noun + ("es" if noun.endswith("s") else "s")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned columns two spaces apart, like ``model.summary()`` without the rules."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    return [
        "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip()
        for line in [header, *rows]
    ]
