"""The report convert_model returns: what a user prints to confirm the swap."""

from __future__ import annotations

import keras
import numpy as np
from conversion_checks import KerasCT

from keras_tconv import ConversionReport, SegregatedConv2DTranspose, convert_model


class Doubled(KerasCT):
    def call(self, inputs):
        return 2 * super().call(inputs)


def _model(cls=KerasCT):
    inputs = keras.Input((5, 5, 3), name="image")
    h = cls(4, 3, strides=2, padding="same", name="up")(inputs)
    h = cls(2, (2, 3), strides=(2, 1), name="up2")(h)
    return keras.Model(inputs, Doubled(2, 1, name="custom")(h), name="decoder")


def test_report_lists_each_converted_and_skipped_layer():
    _, report = convert_model(_model(), return_report=True)
    assert isinstance(report, ConversionReport)
    assert str(report) == (
        "Model 'decoder': 2 layers converted to SegregatedConv2DTranspose\n"
        "Path  Before           After                            Kernel  Strides  Padding  "
        "Channels  Lowering\n"
        "up    Conv2DTranspose  SegregatedConv2DTranspose(auto)  3x3     2x2      same     "
        "3->4      not run yet\n"
        "up2   Conv2DTranspose  SegregatedConv2DTranspose(auto)  2x3     2x1      valid    "
        "4->2      not run yet\n"
        "Left unchanged: 1 subclass of Conv2DTranspose\n"
        "Path    Class    Reason\n"
        "custom  Doubled  subclass with its own call"
    )


def test_report_reads_the_lowering_when_printed():
    _, report = convert_model(_model(), return_report=True)
    up = report.converted[0].layer
    assert report.converted[0].lowering is None
    up.chosen_implementation = "rows"  # what the layer records when it runs under auto
    assert str(report).splitlines()[2].endswith("3->4      rows")


def test_fixed_implementation_is_the_lowering():
    _, report = convert_model(_model(), implementation="split", return_report=True)
    assert [entry.lowering for entry in report.converted] == ["split", "split"]
    assert [entry.after for entry in report.converted] == ["SegregatedConv2DTranspose(split)"] * 2


def test_report_back_to_keras_has_no_lowering_column():
    model = _model(SegregatedConv2DTranspose)
    model(np.zeros((1, 5, 5, 3), "float32"))
    _, report = convert_model(model, to="keras", return_report=True)
    lines = str(report).splitlines()
    assert lines[0] == "Model 'decoder': 2 layers converted to Conv2DTranspose"
    assert lines[1].split() == ["Path", "Before", "After", "Kernel", "Strides", "Padding", "Channels"]
    assert lines[2].split()[:3] == ["up", "SegregatedConv2DTranspose(auto)", "Conv2DTranspose"]


def test_report_says_when_there_is_nothing_to_convert():
    inputs = keras.Input((3,))
    dense_only = keras.Model(inputs, keras.layers.Dense(2)(inputs), name="dense_only")
    _, report = convert_model(dense_only, return_report=True)
    assert str(report) == "Model 'dense_only': no Conv2DTranspose layer to convert."
    _, report = convert_model(_model(), to="keras", return_report=True)
    assert str(report).splitlines()[0] == "Model 'decoder': no SegregatedConv2DTranspose layer to convert."
    assert report.converted == ()
    assert [entry.path for entry in report.skipped] == ["custom"]
