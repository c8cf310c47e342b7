"""Swapping the Conv2DTranspose layers of built models between Keras and keras-tconv.

:mod:`.tracking` finds every layer Keras tracks in a model, :mod:`.copying`
copies a model with Keras's own saving, :mod:`.swap` turns one layer into the
other class in place, :mod:`.report` describes what changed, and
:mod:`.convert` puts them together as :func:`convert_model`.
"""

from keras_tconv.conversion.convert import TARGETS, convert_model
from keras_tconv.conversion.report import ConversionReport, ConvertedLayer, SkippedLayer

__all__ = ["TARGETS", "ConversionReport", "ConvertedLayer", "SkippedLayer", "convert_model"]
