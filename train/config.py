"""Typed configuration schema of the training application, and its defaults.

One dataclass per config group in ``conf/`` (data, model, layer, trainer,
device, distribute), nested in :class:`TrainConfig` beside the top-level
keys (``backend``, ``reconstructions``) and registered in Hydra's
ConfigStore as the schema that ``conf/config.yaml`` extends. Every default
value is a dataclass field's: an option file (``conf/<group>/<option>.yaml``)
holds only what tells that option apart and merges onto its group's
dataclass, and the trainer group's one option, ``default``, is
:class:`TrainerConfig` itself. Hydra checks every override against the
schema while composing, so an unknown enum value fails with a message naming
the key and the allowed values. Ranges and cross-field rules, which a type
cannot express, are checked by the ``__post_init__`` methods when
:func:`to_train_config` turns the composed config into these dataclasses,
still before any data is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from train.errors import UserError

SCHEMA_NAME = "train_schema"

# Keras's backends that the app trains on (``backend=``), named as Keras names
# them (KERAS_BACKEND, keras.backend.backend()).
BACKENDS = ("tensorflow", "jax")


class ConfigValueError(UserError, ValueError):
    """A config value outside its allowed range; the message names the key."""


def _require(condition: bool, key: str, value: object, allowed: str) -> None:
    if not condition:
        shown = "null" if value is None else value
        raise ConfigValueError(f"{key}={shown} is invalid: allowed values are {allowed}")


def _yaml_name(value: Enum | None) -> str:
    return "null" if value is None else value.value


class DatasetName(Enum):
    mnist = "mnist"
    flowers = "flowers"
    folder = "folder"


class LayerName(Enum):
    segregated = "segregated"
    keras = "keras"
    zero_insertion = "zero_insertion"


class Implementation(Enum):
    """``SegregatedConv2DTranspose(implementation=...)`` values: those of
    ``keras_tconv.ops.registry`` (a test checks; importing it here would load
    Keras before the backend is chosen)."""

    auto = "auto"
    native = "native"
    split = "split"
    rows = "rows"
    unified = "unified"
    zero_insertion = "zero_insertion"


class OptimizerName(Enum):
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"
    rmsprop = "rmsprop"


class LossName(Enum):
    binary_crossentropy = "binary_crossentropy"
    mse = "mse"


class Precision(Enum):
    """Keras dtype policies."""

    float32 = "float32"
    mixed_float16 = "mixed_float16"
    mixed_bfloat16 = "mixed_bfloat16"


class DeviceKind(Enum):
    auto = "auto"
    cpu = "cpu"
    gpu = "gpu"


class StrategyName(Enum):
    none = "none"
    mirrored = "mirrored"
    multi_worker = "multi_worker"


@dataclass
class DataConfig:
    """Where the images come from and how they are batched.

    Images are resized to ``image_size`` x ``image_size`` with ``channels``
    channels: the model's input size. ``validation_split`` is the fraction of
    the training data held out for validation. ``data_dir`` is a tfds data
    directory (a prepared copy is reused, downloads go there); ``path`` is the
    image folder of ``data=folder``. The defaults are MNIST's.
    """

    name: DatasetName = MISSING
    image_size: int = 28
    channels: int = 1
    batch_size: int = 64
    validation_split: float = 0.1
    data_dir: str | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        _require(self.image_size >= 1, "data.image_size", self.image_size, "integers >= 1")
        _require(self.channels in (1, 3), "data.channels", self.channels, "1 or 3")
        _require(self.batch_size >= 1, "data.batch_size", self.batch_size, "integers >= 1")
        _require(
            0.0 < self.validation_split < 1.0,
            "data.validation_split",
            self.validation_split,
            "numbers strictly between 0 and 1",
        )
        if self.name is DatasetName.folder and not self.path:
            shown = "null" if self.path is None else repr(self.path)
            raise ConfigValueError(
                f"data.path={shown} is invalid: data=folder needs data.path=DIR, "
                "a folder holding one subfolder of images per class"
            )


@dataclass
class ModelConfig:
    """A convolutional autoencoder: one stride-2 Conv2D per entry of
    ``filters`` down, then as many stride-2 transpose convolutions up.

    With a single entry the decoder is a single transpose convolution, the
    paper's simple model.
    """

    name: str = MISSING
    filters: list[int] = MISSING
    kernel_size: int = 3

    def __post_init__(self) -> None:
        _require(len(self.filters) >= 1, "model.filters", self.filters, "non-empty lists")
        _require(min(self.filters) >= 1, "model.filters", self.filters, "lists of integers >= 1")
        _require(self.kernel_size >= 1, "model.kernel_size", self.kernel_size, "integers >= 1")

    @property
    def downsampling(self) -> int:
        """Factor by which the encoder shrinks each side of the image."""
        return 2 ** len(self.filters)


_LAYER_IMPLEMENTATIONS = {
    LayerName.segregated: (
        Implementation.auto,
        Implementation.native,
        Implementation.split,
        Implementation.rows,
        Implementation.unified,
    ),
    LayerName.zero_insertion: (Implementation.zero_insertion,),
    LayerName.keras: (None,),
}


@dataclass
class LayerConfig:
    """Which transpose convolution the decoder uses.

    ``segregated`` is ``SegregatedConv2DTranspose`` with ``implementation``
    auto, split, rows or unified; ``zero_insertion`` is the same layer running the
    conventional zero-insertion method; ``keras`` is
    ``keras.layers.Conv2DTranspose`` (no implementation).
    """

    name: LayerName = MISSING
    implementation: Implementation | None = None

    def __post_init__(self) -> None:
        allowed = _LAYER_IMPLEMENTATIONS[self.name]
        _require(
            self.implementation in allowed,
            "layer.implementation",
            _yaml_name(self.implementation),
            f"{', '.join(_yaml_name(a) for a in allowed)} when layer={self.name.value}",
        )


@dataclass
class TrainerConfig:
    """How the model is optimised.

    ``steps_per_epoch`` null means one full pass over the training data per
    epoch. ``deterministic`` turns on TensorFlow's op determinism (on
    ``backend=jax`` that covers the tf.data input pipeline only).
    ``jit_compile`` null is each backend's usual way to run a step: a
    tf.function graph without XLA on TensorFlow, ``jax.jit`` on JAX (where
    false runs every op eagerly, for debugging).
    """

    epochs: int = 10
    steps_per_epoch: int | None = None
    learning_rate: float = 1e-3
    optimizer: OptimizerName = OptimizerName.adam
    loss: LossName = LossName.binary_crossentropy
    seed: int = 0
    deterministic: bool = False
    precision: Precision = Precision.float32
    jit_compile: bool | None = None

    def __post_init__(self) -> None:
        _require(self.epochs >= 1, "trainer.epochs", self.epochs, "integers >= 1")
        _require(
            self.steps_per_epoch is None or self.steps_per_epoch >= 1,
            "trainer.steps_per_epoch",
            self.steps_per_epoch,
            "null (a full epoch) or integers >= 1",
        )
        _require(self.learning_rate > 0, "trainer.learning_rate", self.learning_rate, "numbers > 0")


@dataclass
class DeviceConfig:
    """``auto`` uses a GPU when the backend (TensorFlow or JAX) sees one,
    ``cpu`` keeps to the CPU, ``gpu`` requires a GPU."""

    kind: DeviceKind = DeviceKind.auto


@dataclass
class DistributeConfig:
    """``mirrored`` replicates training over all local devices of the chosen
    kind (``tf.distribute.MirroredStrategy``); ``multi_worker`` over the
    workers that ``TF_CONFIG`` names (``tf.distribute.MultiWorkerMirroredStrategy``,
    every worker running the same command). ``data.batch_size`` is then the
    global batch.

    ``peer_timeout_s`` (multi_worker only) bounds every wait for the other
    workers: for all of them to join at start-up, and for each collective
    operation during training. A worker that waits longer fails, naming the
    peers it could not reach.

    Both strategies are TensorFlow's and distribute Keras on TensorFlow only:
    ``backend=jax`` allows ``none``.
    """

    strategy: StrategyName = StrategyName.none
    peer_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        _require(self.peer_timeout_s > 0, "distribute.peer_timeout_s", self.peer_timeout_s, "numbers > 0")


@dataclass
class TrainConfig:
    """The whole configuration of one training job; each group is filled
    from ``conf/<group>/<choice>.yaml`` by the defaults list.

    ``backend`` is Keras's backend, one of :data:`BACKENDS` (a plain string,
    checked here, so that a bad value fails in one line like the other
    range checks); TensorFlow feeds the data (tf.data) and writes the
    SavedModel on either. ``python -m train`` sets ``KERAS_BACKEND`` from it
    (see :mod:`train.backend`). ``reconstructions`` is the number of
    validation images shown in ``reconstructions.png``.
    """

    backend: str = "tensorflow"
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    layer: LayerConfig = MISSING
    trainer: TrainerConfig = MISSING
    device: DeviceConfig = MISSING
    distribute: DistributeConfig = MISSING
    reconstructions: int = 8

    def __post_init__(self) -> None:
        _require(self.backend in BACKENDS, "backend", self.backend, ", ".join(BACKENDS))
        _require(
            self.backend == "tensorflow" or self.distribute.strategy is StrategyName.none,
            "distribute",
            self.distribute.strategy.value,
            f"none when backend={self.backend} "
            "(tf.distribute strategies distribute Keras on TensorFlow only)",
        )
        _require(self.reconstructions >= 1, "reconstructions", self.reconstructions, "integers >= 1")
        _require(
            self.data.image_size % self.model.downsampling == 0,
            "data.image_size",
            self.data.image_size,
            f"multiples of {self.model.downsampling} for model={self.model.name}, "
            f"whose encoder halves the image {len(self.model.filters)} times",
        )


def require_even_split(batch_size: int, parts: int, what: str) -> None:
    """Checks that ``data.batch_size``, the global batch, splits evenly into
    ``parts`` (the replicas or workers that ``what`` names).

    Keras's first-batch shape probe under a distribution strategy (in
    ``fit``'s validation and in ``evaluate``) fails on a batch that splits
    unevenly across replicas, and workers only train in lockstep when each
    gets an equal share.
    """
    if batch_size % parts:
        raise ConfigValueError(
            f"data.batch_size={batch_size} is invalid: allowed values are multiples of {parts}, "
            f"the number of {what}"
        )


def register_schema() -> None:
    """Registers :class:`TrainConfig` under :data:`SCHEMA_NAME` for
    ``conf/config.yaml``, and :class:`TrainerConfig` as the option
    ``trainer=default``, which has nothing to add to its defaults."""
    store = ConfigStore.instance()
    store.store(name=SCHEMA_NAME, node=TrainConfig)
    store.store(group="trainer", name="default", node=TrainerConfig)


def to_train_config(cfg: DictConfig) -> TrainConfig:
    """Turns a composed Hydra config into validated dataclasses.

    Raises :class:`ConfigValueError` naming the offending key and its allowed
    values.
    """
    return OmegaConf.to_object(cfg)
