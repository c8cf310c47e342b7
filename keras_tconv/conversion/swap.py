"""Turning one Conv2DTranspose layer into the other class in place."""

from __future__ import annotations

import inspect

import keras

from keras_tconv.layers import SegregatedConv2DTranspose

# The classes conversion swaps between; user subclasses are left alone.
CONVERTIBLE = (keras.layers.Conv2DTranspose, SegregatedConv2DTranspose)

# The functions a Keras model compiles on first use of fit, evaluate and
# predict, and reuses while they are set.
_TRACED_FUNCTIONS = ("train_function", "test_function", "predict_function")


def swap_class(layer: keras.layers.Conv2DTranspose, cls: type, implementation: str | None = None) -> None:
    """Make ``layer`` an instance of ``cls``, keeping its variables and its place.

    ``cls`` is ``keras.layers.Conv2DTranspose`` or
    :class:`SegregatedConv2DTranspose` (then with ``implementation``). The two
    classes create the same variables in ``build`` and differ in ``call``, in
    the attributes the segregated constructor adds (``implementation``) and in
    the rank rule of the input spec. So the layer object itself changes class:
    it keeps its variables, name, build state and dtype policy, and every
    reference to it (Functional graph nodes, attributes and containers of
    subclassed layers, optimizer and compile state) sees the new behaviour.
    The new class's own attributes and input spec are taken from a layer that
    class constructs with the layer's arguments, so they are what
    constructing it directly would give.

    A layer that is not built yet builds with its original class's ``build``
    (Keras binds ``build`` per instance at construction): both create the same
    variables, and only the input rank check differs (Keras's accepts rank 4
    and above).
    """
    arguments = _constructor_arguments(layer)
    segregated = SegregatedConv2DTranspose(
        **arguments,
        implementation=implementation if cls is SegregatedConv2DTranspose else layer.implementation,
    )
    plain = keras.layers.Conv2DTranspose(**arguments)
    template = segregated if cls is SegregatedConv2DTranspose else plain

    layer.__class__ = cls
    for name in vars(segregated).keys() - vars(plain).keys():
        if template is segregated:
            setattr(layer, name, getattr(segregated, name))
        elif name in vars(layer):
            delattr(layer, name)
    # Both classes' build keep their constructor's rank rule and add the
    # channel axis, which the layer's current spec holds once built.
    layer.input_spec = keras.layers.InputSpec(
        **{**template.input_spec.get_config(), "axes": layer.input_spec.axes}
    )


def _constructor_arguments(layer: keras.layers.Conv2DTranspose) -> dict:
    """The arguments of ``keras.layers.Conv2DTranspose`` that made ``layer``, read from its attributes.

    Each argument is stored under its own name; the objects themselves are
    passed (not a ``get_config`` round trip, which a custom activation,
    initializer or regularizer may not support).
    """
    names = inspect.signature(keras.layers.Conv2DTranspose.__init__).parameters.keys() - {"self", "kwargs"}
    return {**{name: getattr(layer, name) for name in names}, "name": layer.name, "dtype": layer.dtype_policy}


def reset_traced_functions(models) -> None:
    """Drop the train/test/predict functions the models compiled before a swap.

    Keras traces them once and reuses them, so without this ``fit``,
    ``evaluate`` and ``predict`` would keep computing with the classes the
    layers had when they were traced.
    """
    for model in models:
        for name in _TRACED_FUNCTIONS:
            setattr(model, name, None)
