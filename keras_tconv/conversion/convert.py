"""``convert_model``: swap every Conv2DTranspose Keras tracks in a model."""

from __future__ import annotations

import keras

from keras_tconv.conversion.copying import copy_model
from keras_tconv.conversion.report import ConversionReport, ConvertedLayer, SkippedLayer, class_label
from keras_tconv.conversion.swap import CONVERTIBLE, reset_traced_functions, swap_class
from keras_tconv.conversion.tracking import tracked_layers
from keras_tconv.layers import SegregatedConv2DTranspose
from keras_tconv.ops.registry import check_implementation

TARGETS = ("segregated", "keras")


def convert_model(
    model: keras.Model,
    to: str = "segregated",
    implementation: str = "auto",
    *,
    inplace: bool = False,
    return_report: bool = False,
) -> keras.Model | tuple[keras.Model, ConversionReport]:
    """Swap every 2-D transposed convolution of ``model`` between Keras's class and keras-tconv's.

    ``to="segregated"`` turns each ``keras.layers.Conv2DTranspose`` into a
    :class:`SegregatedConv2DTranspose` with the given ``implementation`` (and
    sets that implementation on layers that already are segregated);
    ``to="keras"`` turns each :class:`SegregatedConv2DTranspose` back into
    ``keras.layers.Conv2DTranspose`` (``implementation`` is then unused).

    It reaches every layer Keras tracks, at any depth: the layers of
    Sequential and Functional models, the attributes of subclassed models and
    layers, layers in lists and dicts, nested models, keras-hub backbones and
    task models. Each converted layer keeps its variables (the two classes
    hold the same ones), its name and its configuration, so the model keeps
    every weight, saves and loads its weight files as before, and computes the
    same outputs. User subclasses of Conv2DTranspose are left as they are and
    listed in the report: replacing them would drop their own ``call`` or
    other methods.

    Args:
        model: A built Keras model (call it on data or build it first).
        to: ``"segregated"`` or ``"keras"``.
        implementation: The ``implementation`` of the segregated layers.
        inplace: Convert ``model`` itself and return it. By default the
            original is left untouched and a copy is converted; the copy is
            made by a ``.keras`` round trip (``model.save``, then
            ``keras.saving.load_model``) and checked layer by layer against
            the original, weights included, so the model must be one Keras
            can save and reload (else this raises a ``ValueError`` that says
            so); the copy keeps the compile and optimizer state. In
            place, the layer objects themselves change class, wherever else
            they are used, and the model's traced ``fit``/``evaluate``/
            ``predict`` functions are dropped so that they retrace; functions
            you traced yourself (``tf.function``) keep the old computation.
        return_report: Also return a :class:`ConversionReport`: print it to
            see each converted layer's path, class before and after,
            geometry and, once the model has run, the lowering ``auto`` chose.

    Returns:
        The converted model, or ``(model, report)`` with ``return_report``.

    A ``.keras`` file of a converted model loads segregated layers where the
    model's configuration names the layer class (Sequential and Functional
    graphs). Layers that a subclassed layer creates in its ``__init__``
    (keras-hub models, hand-written blocks) come back as Keras's class, with
    their weights: convert the loaded model again.
    """
    if to not in TARGETS:
        raise ValueError(f"Invalid value for argument `to`. Expected one of {TARGETS}. Received: to={to}")
    if to == "segregated":
        check_implementation(implementation)
    if not model.built:
        raise ValueError("convert_model needs a built model (call it on data or build it first).")

    target = model if inplace else copy_model(model)
    report = _convert_in_place(target, to, implementation)
    return (target, report) if return_report else target


def _convert_in_place(model: keras.Model, to: str, implementation: str) -> ConversionReport:
    """Swap the classes of ``model``'s layers that ``to`` converts, and report them."""
    cls = SegregatedConv2DTranspose if to == "segregated" else keras.layers.Conv2DTranspose
    converted, skipped, models = [], [], [model]
    for path, layer in tracked_layers(model):
        if isinstance(layer, keras.Model):
            models.append(layer)
        if not isinstance(layer, keras.layers.Conv2DTranspose):
            continue
        if type(layer) not in CONVERTIBLE:
            skipped.append(SkippedLayer(path, layer))
        elif to == "segregated" or type(layer) is SegregatedConv2DTranspose:
            before = class_label(layer)
            swap_class(layer, cls, implementation)
            converted.append(ConvertedLayer(path, before, layer))
    reset_traced_functions(models)
    return ConversionReport(model.name, to, tuple(converted), tuple(skipped))
