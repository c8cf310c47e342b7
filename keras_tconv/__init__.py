"""keras-tconv: an exact, faster drop-in for ``keras.layers.Conv2DTranspose``.

Layout: :mod:`keras_tconv.ops` (the op and its lowerings) ->
:mod:`keras_tconv.layers` (the Keras layer) -> :mod:`keras_tconv.conversion`
(swapping layers in built models).
"""

from keras_tconv import ops
from keras_tconv.conversion import ConversionReport, convert_model
from keras_tconv.layers import SegregatedConv2DTranspose
from keras_tconv.ops import lowering_target, tuning_choices

__all__ = [
    "ConversionReport",
    "SegregatedConv2DTranspose",
    "convert_model",
    "lowering_target",
    "ops",
    "tuning_choices",
]
