"""TFLite (LiteRT) comparison: one-layer batch-1 models per implementation.

Each implementation's layer (same weights) is wrapped in a one-layer Keras
model, exported with a fully static ``(1, H, W, C)`` signature (a dynamic
batch turns Keras's layer into SHAPE/STRIDED_SLICE/PACK/TRANSPOSE_CONV,
which XNNPACK does not take) under ``lowering_target("litert")`` (or
``"litert_int8"`` for full-integer models), so that ``auto`` chooses for
LiteRT, and converted with ``TFLiteConverter``. The
models run in ai-edge-litert's interpreter with its default XNNPACK delegate
and a fixed thread count, timed interleaved like the TensorFlow cases.
Implementations that fail to convert are reported with the error instead.

ai-edge-litert comes with the ``bench`` extra and is imported only when a
model runs, so that the rest of the benchmark works on the base install.
:func:`subgraph_ops` lists a converted model's ops from its flatbuffer, for
the report and the tests.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import tempfile
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema

from keras_tconv import lowering_target
from keras_tconv.benchmark import BENCH_EXTRA, impls
from keras_tconv.benchmark.suites import Shape
from keras_tconv.native_stderr import native_stderr_discarded
from keras_tconv.timing import Timing, measure

if TYPE_CHECKING:
    from ai_edge_litert.interpreter import Interpreter

LITERT_MISSING = f"--tflite needs LiteRT (ai-edge-litert), which the base install lacks: {BENCH_EXTRA}"

_BUILTIN_NAMES = {
    code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")
}


def litert_available() -> bool:
    """Whether ai-edge-litert is installed (the ``bench`` extra)."""
    return importlib.util.find_spec("ai_edge_litert") is not None


def subgraph_ops(model: bytes) -> list[tuple[str, ...]]:
    """The op names of every subgraph of a TFLite flatbuffer, in execution
    order, the main subgraph first.

    Read from the flatbuffer with TensorFlow's schema, because the
    interpreter's op listing (``_get_ops_details``) covers the main subgraph
    only: the branches of an ``IF`` and the bodies of a ``WHILE`` are further
    subgraphs. Builtin ops are named as in TFLite's ``BuiltinOperator``,
    custom ops by their custom code.
    """
    parsed = schema.Model.GetRootAs(model, 0)
    names = []
    for index in range(parsed.OperatorCodesLength()):
        code = parsed.OperatorCodes(index)
        # Codes above 127 live in builtin_code only; older files keep small codes in the deprecated field.
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = builtin == schema.BuiltinOperator.CUSTOM
        names.append(code.CustomCode().decode() if custom else _BUILTIN_NAMES[builtin])
    subgraphs = (parsed.Subgraphs(index) for index in range(parsed.SubgraphsLength()))
    return [
        tuple(names[subgraph.Operators(op).OpcodeIndex()] for op in range(subgraph.OperatorsLength()))
        for subgraph in subgraphs
    ]


def model_ops(model: bytes) -> tuple[str, ...]:
    """The op names of all subgraphs of a TFLite flatbuffer, one after the other."""
    return tuple(op for ops in subgraph_ops(model) for op in ops)


@dataclasses.dataclass(frozen=True)
class TfliteResult:
    """One implementation's converted model: its ops, timing and error vs Keras in TF."""

    impl: str
    ops: tuple[str, ...]
    delegated: bool
    timing: Timing | None
    max_rel_err: float | None
    error: str = ""


def convert(
    layer: keras.layers.Layer, input_shape: tuple[int, ...], calibration: np.ndarray | None = None
) -> bytes:
    """A TFLite flatbuffer of ``layer`` alone, for a fixed ``input_shape``.

    The layer is traced under ``lowering_target("litert")``, or with
    ``calibration`` (inputs of ``input_shape``, stacked on a new first axis)
    under ``lowering_target("litert_int8")`` and quantized to full integer:
    int8 weights and activations, every op an int8 builtin, calibrated on
    those samples (float input and output, quantized at the model's edges).
    What the converter prints to standard error itself (MLIR dumps, for
    failures too, which the caller reports anyway) is discarded.
    """
    model = keras.Sequential([keras.Input(input_shape[1:], batch_size=input_shape[0]), layer])
    target = "litert" if calibration is None else "litert_int8"
    with tempfile.TemporaryDirectory() as directory, native_stderr_discarded(), lowering_target(target):
        model.export(
            directory,
            format="tf_saved_model",
            verbose=False,
            input_signature=[tf.TensorSpec(input_shape, tf.float32)],
        )
        converter = tf.lite.TFLiteConverter.from_saved_model(directory)
        if calibration is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([sample] for sample in calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        return converter.convert()


def _summarize(error: Exception) -> str:
    """One line: the converter's "TF Select ops: ..." line when there is one."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [""]
    select = [line for line in lines if line.startswith("TF Select ops")]
    return f"{type(error).__name__}: {(select or lines)[0][:200]}"


def _empty_model(input_shape: tuple[int, ...]) -> bytes:
    """A TFLite model that returns its input: invoking it costs what invoking
    any model of that input costs before it computes."""
    module = tf.Module()
    module.identity = tf.function(tf.identity, input_signature=[tf.TensorSpec(input_shape, tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.identity.get_concrete_function()], module
    )
    with native_stderr_discarded():
        return converter.convert()


def _interpreter(model: bytes, threads: int, x: np.ndarray) -> Interpreter:
    from ai_edge_litert.interpreter import Interpreter  # the bench extra; see litert_available

    interpreter = Interpreter(model_content=model, num_threads=threads)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    return interpreter


def _output(interpreter: Interpreter) -> np.ndarray:
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def run_shape(
    shape: Shape,
    implementations: tuple[str, ...],
    threads: int,
    rounds: int,
    warmup: int,
    min_sample_s: float,
    seed: int = 0,
    int8: bool = False,
) -> tuple[list[TfliteResult], Timing]:
    """Convert, check and time every implementation on ``shape`` at batch 1.

    With ``int8``, every model is quantized to full integer, calibrated on
    16 random inputs (:func:`convert`); its error is still taken against
    Keras's float layer. Returns the results and the time of invoking an
    empty model (:data:`impls.EMPTY_CALL`), timed with them.
    """
    shape = shape.with_batch(1)
    layers = impls.build_layers(shape, implementations, seed)
    rng = np.random.default_rng(seed + 3)
    x = rng.standard_normal(shape.input_shape, dtype=np.float32)
    calibration = rng.standard_normal((16, *shape.input_shape), dtype=np.float32) if int8 else None
    reference = layers["keras"](x).numpy()
    interpreters, ops, failures = {}, {}, {}
    for impl, layer in layers.items():
        try:
            model = convert(layer, shape.input_shape, calibration)
            interpreters[impl] = _interpreter(model, threads, x)
        except Exception as error:  # noqa: BLE001 - a failed conversion is a result, not a crash
            failures[impl] = _summarize(error)
            continue
        ops[impl] = model_ops(model)
    empty = _interpreter(_empty_model(shape.input_shape), threads, x)
    timings = measure(
        {
            **{impl: interpreter.invoke for impl, interpreter in interpreters.items()},
            impls.EMPTY_CALL: empty.invoke,
        },
        sync=lambda _: None,
        rounds=rounds,
        warmup=warmup,
        min_sample_s=min_sample_s,
    )
    results = []
    for impl in implementations:
        if impl in failures:
            results.append(TfliteResult(impl, (), False, None, None, failures[impl]))
            continue
        interpreter = interpreters[impl]
        # The delegate replaces nodes of the main subgraph, which is all the interpreter lists.
        delegated = any(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())
        err = impls.max_relative_error(_output(interpreter), reference)
        results.append(TfliteResult(impl, ops[impl], delegated, timings[impl], err))
    return results, timings[impls.EMPTY_CALL]
