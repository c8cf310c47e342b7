"""The layers Keras tracks inside a model, at any depth, with their paths."""

from __future__ import annotations

from collections.abc import Iterator

import keras


def tracked_layers(model: keras.layers.Layer) -> Iterator[tuple[str, keras.layers.Layer]]:
    """Every distinct layer Keras tracks under ``model``, depth first, with its path.

    Keras records each sub-layer a layer holds in the layer's ``_layers``:
    the graph layers of Functional and Sequential models, and the layers a
    subclassed layer or model assigns to its attributes, directly or inside
    lists and dicts (Keras's tracker wraps those). ``Layer.weights`` and
    ``Layer._flatten_layers`` walk the same lists, so this reaches every layer
    whose variables belong to the model, keras-hub backbones and task models
    included. A path is the ``/``-joined layer names from ``model`` (which is
    not part of it) down to the layer. A layer reachable along several routes
    (a shared layer, or a keras-hub task model that also holds its backbone's
    layers) is yielded once, on the first route.
    """
    seen = {id(model)}

    def visit(layer: keras.layers.Layer, prefix: str) -> Iterator[tuple[str, keras.layers.Layer]]:
        for child in layer._layers:
            if id(child) in seen:
                continue
            seen.add(id(child))
            path = prefix + child.name
            yield path, child
            yield from visit(child, path + "/")

    yield from visit(model, "")
