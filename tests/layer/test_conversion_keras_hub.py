"""convert_model on keras-hub models, randomly initialised from tiny configurations (no downloads).

SAM keeps its two Conv2DTranspose layers in a Sequential that its mask
decoder (a subclassed layer) creates; Depth Anything keeps one per
reassemble stage of its neck as an attribute. Neither is reachable through
a Functional graph.
"""

from __future__ import annotations

import re

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from conversion_checks import (
    KerasCT,
    assert_same_outputs,
    check_round_trip,
    layers_of,
    outputs,
)

from keras_tconv import SegregatedConv2DTranspose, convert_model

IMAGE_SIZE = 32


def _sam_backbone():
    return keras_hub.models.SAMBackbone(
        image_encoder=keras_hub.models.ViTDetBackbone(
            hidden_size=8,
            num_layers=2,
            intermediate_dim=16,
            num_heads=2,
            global_attention_layer_indices=[1],
            patch_size=8,
            num_output_channels=8,
            window_size=2,
            image_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
        ),
        prompt_encoder=keras_hub.layers.SAMPromptEncoder(
            hidden_size=8,
            image_embedding_size=(IMAGE_SIZE // 8, IMAGE_SIZE // 8),
            input_image_size=(IMAGE_SIZE, IMAGE_SIZE),
            mask_in_channels=4,
        ),
        mask_decoder=keras_hub.layers.SAMMaskDecoder(
            num_layers=1,
            hidden_size=8,
            intermediate_dim=16,
            num_heads=2,
            embedding_dim=8,
            num_multimask_outputs=3,
            iou_head_depth=2,
            iou_head_hidden_dim=8,
        ),
    )


def _depth_anything():
    return keras_hub.models.DepthAnythingBackbone(
        image_encoder=keras_hub.models.DINOV2Backbone(
            patch_size=4,
            num_layers=2,
            hidden_dim=8,
            num_heads=2,
            intermediate_dim=16,
            image_shape=(16, 16, 3),
            position_embedding_shape=(16, 16),
        ),
        reassemble_factors=[4, 2],
        neck_hidden_dims=[4, 8],
        fusion_hidden_dim=8,
        head_hidden_dim=4,
        head_in_index=-1,
        feature_keys=["stage1", "stage2"],
    )


@pytest.fixture
def sam_inputs(rng):
    return {
        "images": rng.uniform(size=(1, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32"),
        "points": rng.uniform(0, IMAGE_SIZE, size=(1, 1, 2)).astype("float32"),
        "labels": np.ones((1, 1), "float32"),
        "boxes": rng.uniform(0, IMAGE_SIZE, size=(1, 1, 2, 2)).astype("float32"),
        "masks": np.zeros((1, 0, IMAGE_SIZE, IMAGE_SIZE, 1), "float32"),
    }


@pytest.fixture(scope="module")
def depth_anything(tmp_path_factory):
    """Inputs, and the segregated copy of a Depth Anything backbone with its report, checked both ways."""
    keras.utils.set_random_seed(0)
    inputs = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype("float32")
    fast, report = check_round_trip(
        _depth_anything(), inputs, tmp_path_factory.mktemp("depth_anything"), implementation="unified"
    )
    return inputs, fast, report


def test_sam_image_segmenter(sam_inputs, tmp_path):
    original = keras_hub.models.SAMImageSegmenter(backbone=_sam_backbone())
    fast, report = check_round_trip(original, sam_inputs, tmp_path)
    assert len(report.converted) == 2
    # Auto-generated names carry a number when an earlier test made the same layers (any test order).
    assert all(
        re.match(r"sam_backbone(_\d+)?/sam_mask_decoder(_\d+)?/", entry.path) for entry in report.converted
    )
    assert [entry.geometry for entry in report.converted] == [
        {"kernel": "2x2", "strides": "2x2", "padding": "valid", "channels": "8->2"},
        {"kernel": "2x2", "strides": "2x2", "padding": "valid", "channels": "2->1"},
    ]


def test_sam_backbone_converts_its_unused_mask_decoder(sam_inputs):
    """A SAMBackbone alone never calls its mask decoder: its layers are converted unbuilt and
    build on first use."""
    original = _sam_backbone()
    fast, report = convert_model(original, return_report=True)
    assert [entry.geometry["channels"] for entry in report.converted] == ["?->2", "?->1"]
    assert len(layers_of(original, KerasCT)) == 2
    segmenters = [keras_hub.models.SAMImageSegmenter(backbone=backbone) for backbone in (original, fast)]
    fast.mask_decoder.set_weights(original.mask_decoder.get_weights())
    assert len(layers_of(segmenters[1], SegregatedConv2DTranspose)) == 2
    assert_same_outputs(outputs(segmenters[1], sam_inputs), outputs(segmenters[0], sam_inputs))


def test_depth_anything_backbone(depth_anything):
    _, _, report = depth_anything
    assert [entry.path for entry in report.converted] == [
        "neck/reassemble_stage_0/resize",
        "neck/reassemble_stage_1/resize",
    ]
    assert [entry.lowering for entry in report.converted] == ["unified", "unified"]


def test_converted_keras_hub_model_saves_loads_and_exports(depth_anything, tmp_path):
    inputs, fast, _ = depth_anything
    expected = outputs(fast, inputs)

    fast.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert_same_outputs(outputs(loaded, inputs), expected)
    # The neck creates its Conv2DTranspose layers in __init__, so they load as Keras's class; convert again.
    assert len(layers_of(loaded, KerasCT)) == 2
    again = convert_model(loaded, implementation="unified")
    assert len(layers_of(again, SegregatedConv2DTranspose)) == 2
    assert_same_outputs(outputs(again, inputs), expected)

    fast.export(tmp_path / "export", verbose=False)
    exported = tf.saved_model.load(str(tmp_path / "export"))
    assert_same_outputs([np.asarray(exported.serve(tf.constant(inputs)))], expected)
