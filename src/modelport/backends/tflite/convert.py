"""ONNX -> .tflite: onnx2tf builds a Keras graph, TensorFlow's TFLiteConverter writes the file.

Path (measured in ../shared/FINDINGS.md and bench/RESULTS.md):
1. The validated ONNX is made static at the target shape and cleaned for onnx2tf
   (tflite_onnx_prep.py).
2. onnx2tf turns it into a Keras model. Inputs keep the ONNX layout (onnx2tf would make
   NCHW inputs NHWC otherwise); outputs that onnx2tf made channels-last are transposed back,
   chosen by comparing with ONNX Runtime on a real example.
3. TFLiteConverter writes FP32, FP16 (weights) or full-integer INT8 calibrated on the shared
   CalibrationSet (tflite_quantize.py), builtin ops only, so the LiteRT interpreter runs it as is.

When onnx2tf cannot convert the graph and ``litert-torch`` is importable, the torch module is
converted directly (tflite_litert_torch.py); the manifest records which path made the file.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.backends.base import Artifact, has_module
from modelport.backends.tflite.options import IO_CHOICES, TFLiteOptions
from modelport.backends.tflite.signature import SIGNATURE_KEY, TOOLCHAIN_MODULES, signature_name
from modelport.errors import BuildError, MissingDependency, UsageError
from modelport.shapes import crop_or_pad
from modelport.specs import Precision, Target, TensorSpec

log = logging.getLogger("modelport")

#: FP32 conversion must match ONNX Runtime to this (relative to the output's magnitude)
CONVERSION_RTOL = 1e-3


# -- static shapes ----------------------------------------------------------------------------
def static_specs(model, options: TFLiteOptions) -> list[TensorSpec]:
    """The ONNX inputs with every dynamic axis fixed: ``--shape`` first, then batch 1 and the
    model's benchmark dims (text: seq = bench_dims['seq'], 128 for the built-in MiniLM)."""
    from modelport.shapes import fix_shapes

    defaults = {"batch": 1, **{k: int(v) for k, v in (model.bench_dims or {}).items()}}
    if "seq" not in defaults and model.tokenizer_json is not None:
        defaults["seq"] = model.max_length
    return fix_shapes(model.onnx_artifact.inputs, dict(options.shapes or {}), defaults,
                      needs="TFLite needs static shapes")


def static_output_specs(model, batch: int | None, reference: list[np.ndarray]) -> list[TensorSpec]:
    return [TensorSpec(s.name, s.dtype, tuple(int(d) for d in ref.shape))
            for s, ref in zip(model.onnx_artifact.outputs, reference, strict=True)]


# -- the build ---------------------------------------------------------------------------------
def convert(model, target: Target, calib, workdir: Path, options: TFLiteOptions, *,
            min_cosine: float = 0.99, budget=None) -> Artifact:
    """Build ``model.tflite`` in ``workdir`` for ``target``; the Artifact carries static I/O.
    ``min_cosine``: the budget the INT8 mode trial aims for (int8_modes.py)."""
    io = options.io or "float"
    if io not in IO_CHOICES:
        raise UsageError(f"--io takes {' or '.join(IO_CHOICES)}, got '{io}'")
    if target.precision != Precision.INT8:
        io = "float"  # --io concerns INT8 files only; fp32/fp16 files always take floats
    specs = static_specs(model, options)
    example = crop_or_pad(model.fresh_inputs(specs[0].shape[0]), specs)
    reference = _onnx_reference(model, example)
    out_specs = static_output_specs(model, specs[0].shape[0], reference)
    start = time.perf_counter()
    try:
        info = _via_onnx2tf(model, target, calib, workdir, options, specs, example, reference, io,
                            out_specs, min_cosine, budget)
    except _ConversionFailed as exc:
        info = _fallback(model, target, calib, workdir, options, specs, example, reference, io,
                         exc)
    info["seconds"] = round(time.perf_counter() - start, 2)
    info.update(_describe_file(workdir / "model.tflite", specs, out_specs))
    if target.precision == Precision.INT8:  # what the file really takes, whatever was asked
        actual = "int8" if any(info["io_quantization"].values()) else "float"
        if actual != io:
            log.warning("the %s path made %s I/O (asked: %s); the session converts for you",
                        info["conversion_path"], actual, io)
        info["io"] = actual
    return Artifact(workdir, "model.tflite", ["model.tflite"], info, inputs=specs,
                    outputs=out_specs)


@dataclass
class _Graph:
    """One onnx2tf conversion, saved once as a SavedModel with the serving signature.

    Why saved: ``TFLiteConverter.from_concrete_functions`` re-saves the Keras model to a
    temporary SavedModel inside every ``convert()`` (minutes for MiniLM on 2 cores); every
    precision and INT8 mode converts from this one directory instead."""

    keras_model: Any
    layouts: list
    err: float
    saved_model: Path
    input_dtypes: list[np.dtype]


#: the last onnx2tf graph, keyed by the ONNX's content and static shapes (one entry: MiniLM is
#: ~100 MB): every precision and INT8 mode of one model shares one conversion, across exports
_GRAPHS: dict[tuple, _Graph] = {}
#: onnx2tf conversions run in this process (tests check that modes share one)
CONVERSIONS = 0


def _evict() -> None:
    """Drop the cached graph and its SavedModel directory."""
    for graph in _GRAPHS.values():
        shutil.rmtree(graph.saved_model.parent, ignore_errors=True)
    _GRAPHS.clear()


atexit.register(_evict)


def _content_key(src: Path) -> str:
    """The ONNX file and its external data, hashed: a re-export of the same model hits."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(src.parent.glob(src.name + "*")):
        digest.update(path.name.removeprefix(src.name).encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


class _ConversionFailed(Exception):
    """onnx2tf could not produce a graph that matches the ONNX; the fallback may."""


def _via_onnx2tf(model, target, calib, workdir, options, specs, example, reference, io,
                 out_specs, min_cosine, budget=None):
    missing = [m for m in TOOLCHAIN_MODULES if not has_module(m)]
    if missing:
        raise _ConversionFailed(f"its toolchain is not installed here: {', '.join(missing)}")
    from modelport.backends.tflite.onnx_prep import prepare_for_onnx2tf

    src = Path(model.onnx_artifact.path)
    global CONVERSIONS
    key = (_content_key(src), tuple((s.name, s.shape) for s in specs))
    if key not in _GRAPHS:  # fp32, fp16 and every int8 mode share one onnx2tf run
        _evict()
        CONVERSIONS += 1
        with tempfile.TemporaryDirectory(prefix="modelport-tflite-") as tmp:
            onnx_path = prepare_for_onnx2tf(src, specs, Path(tmp))
            keras_model = _onnx2tf(onnx_path, specs, Path(tmp))
        layouts, err = _match_outputs(keras_model, specs, example, reference, model)
        _GRAPHS[key] = _save_graph(keras_model, layouts, err, specs, model.onnx_artifact.outputs)
    graph = _GRAPHS[key]
    info = _int8_trials(model, graph, target, calib, specs, out_specs, options, io,
                        workdir / "model.tflite", example, reference, min_cosine, budget)
    keras_model, layouts, err = graph.keras_model, graph.layouts, graph.err
    info.update(conversion_path="onnx2tf", onnx2tf_version=_version("onnx2tf"),
                tensorflow_version=_version("tensorflow"),
                keras_vs_onnxruntime_max_abs_err=err,
                output_layout={s.name: ("transposed back from channels-last" if p else "as ONNX")
                               for s, p in zip(model.onnx_artifact.outputs, layouts, strict=True)})
    return info


def _save_graph(keras_model, layouts, err, specs, onnx_outputs) -> _Graph:
    """Trace the serving function once and save it with the model as a SavedModel."""
    import tensorflow as tf

    serve = _serving_function(keras_model, specs, onnx_outputs, layouts)
    dtypes = [np.dtype(t.dtype.as_numpy_dtype) for t in serve.inputs[:len(specs)]]
    saved = Path(tempfile.mkdtemp(prefix="modelport-savedmodel-")) / "saved_model"
    log.info("saving the TensorFlow graph once for every TFLite precision and mode ...")
    # a bare tf.Module holding the weights, not the Keras model: Keras serializes every layer's
    # config (deep copies, quadratic in layers: minutes for MiniLM's ~1500 onnx2tf layers)
    root = tf.Module()
    root.weights = list(keras_model.variables)
    root.serve = serve
    try:
        tf.saved_model.save(root, str(saved), signatures={SIGNATURE_KEY: serve},
                            options=tf.saved_model.SaveOptions(save_debug_info=True))
    except (AssertionError, ValueError, TypeError) as exc:  # e.g. wav2vec2's conv stack:
        # "Tried to export a function which references an 'untracked' resource"
        first = str(exc).strip().splitlines()
        raise _ConversionFailed(f"TensorFlow cannot save onnx2tf's graph "
                                f"({first[0][:160] if first else type(exc).__name__})") from None
    return _Graph(keras_model, layouts, err, saved, dtypes)


def _int8_trials(model, graph: _Graph, target, calib, specs, out_specs, options, io, dst,
                 example, reference, min_cosine, budget=None) -> dict[str, Any]:
    """Build the INT8 mode(s) the graph kind calls for (int8_modes.py), first within budget."""
    from modelport.backends.tflite.int8_modes import candidate_modes, trial_cosine
    from modelport.backends.tflite.quantize import to_tflite

    def build(mode: str = "full-integer") -> dict[str, Any]:
        return to_tflite(graph.saved_model, graph.input_dtypes, target, calib, specs, options,
                         io, dst, mode=mode)

    if target.precision != Precision.INT8:
        return build()
    modes, why = candidate_modes(Path(model.onnx_artifact.path), options)
    if len(modes) == 1 and modes[0] == "full-integer" and not options.int8_mode \
            and not options.float_ops and budget is not None and calib is not None:
        from modelport.backends.fallback import PROBE_SAMPLES
        from modelport.backends.tflite.int16_retry import full_integer_or_16x8

        fp32 = Target(target.runtime, target.device, Precision.FP32)
        probe = [crop_or_pad(f, specs) for f in calib.take(PROBE_SAMPLES).batches(specs[0].shape[0])]
        references = onnx_references(model, probe)
        info = full_integer_or_16x8(
            build, lambda path: to_tflite(graph.saved_model, graph.input_dtypes, fp32, None, specs,
                                          options, "float", path),
            dst, specs, out_specs, probe, references, model.task, budget,
            float_fallback=_float_fallback(graph, calib, specs, out_specs, options, io, dst, probe,
                                           references, model.task, budget))
        return {**info, "int8_mode_chosen_by": why}
    if len(modes) == 1:
        return {**build(modes[0]), "int8_mode_chosen_by": why}
    feeds, refs = [example], [reference]
    if calib is not None:
        more = [crop_or_pad(feed, specs) for feed in
                calib.take(min(len(calib), TRIAL_FEEDS_MAX)).batches(specs[0].shape[0])]
        feeds += more
        refs += onnx_references(model, more)
    trials = []
    for mode in modes:
        try:
            info = build(mode)
        except BuildError as exc:
            trials.append({"mode": mode, "error": str(exc)[:200]})
            continue
        trials.append({"mode": mode, "cosine": round(trial_cosine(dst, specs, out_specs, feeds,
                                                                    refs), 5)})
        log.info("TFLite INT8 %s: cosine %.4f on %d trial feeds", mode, trials[-1]["cosine"],
                 len(feeds))
        if trials[-1]["cosine"] >= min_cosine:
            return {**info, "int8_mode_chosen_by": why, "int8_mode_trials": trials}
    best = max((t for t in trials if "cosine" in t), key=lambda t: t["cosine"], default=None)
    if best is None:
        raise BuildError(f"no TFLite INT8 mode converted: {trials}")
    return {**build(best["mode"]), "int8_mode_trials": trials,
            "int8_mode_chosen_by": why + "; none within budget: the most faithful"}


def _float_fallback(graph, calib, specs, out_specs, options, io, dst, probe, references, task,
                    budget):
    """The float-fallback search for full-integer INT8 (float_fallback.py), or None when
    ``--tflite-max-fallback 0`` keeps every op int8."""
    from modelport.backends import fallback

    most = fallback.DEFAULT_MAX_FALLBACK if options.max_fallback is None else options.max_fallback
    if most <= 0:
        return None

    def search() -> dict[str, Any]:
        from modelport.backends.tflite.float_fallback import keep_fewest_float
        from modelport.backends.tflite.quantize import full_integer_converter

        converter, dataset = full_integer_converter(graph.saved_model, graph.input_dtypes, calib,
                                                    specs, options, io)
        return keep_fewest_float(converter, dataset, dst, specs, out_specs, probe, references,
                                 task, budget, most, fully_quantize=io == "int8")

    return search


#: calibration feeds the INT8 mode trial adds to the example
TRIAL_FEEDS_MAX = 7


def _onnx2tf(onnx_path: Path, specs: list[TensorSpec], tmp: Path):
    import onnx2tf

    log.info("converting ONNX to a TensorFlow graph with onnx2tf %s ...", _version("onnx2tf"))
    try:
        return onnx2tf.convert(
            input_onnx_file_path=str(onnx_path),
            output_folder_path=str(tmp / "onnx2tf"),
            disable_model_save=True,  # we only want the Keras model; the converter is ours
            not_use_onnxsim=True,  # tflite_onnx_prep already made the graph static and folded
            # keep the user's layout: onnx2tf would turn NCHW/NCW/NCDHW inputs channels-last
            keep_ncw_or_nchw_or_ncdhw_input_names=[s.name for s in specs if len(s.shape) >= 3]
            or None,
            overwrite_input_shape=[f"{s.name}:{','.join(map(str, s.shape))}" for s in specs],
            non_verbose=True,
            verbosity="error",
        )
    except (Exception, SystemExit) as exc:  # onnx2tf calls sys.exit(1) on some failures
        raise _ConversionFailed(f"onnx2tf: {type(exc).__name__}: {_short(exc)}") from exc


def _match_outputs(keras_model, specs, example, reference, model) -> tuple[list[tuple | None], float]:
    """Per output: None (same layout as ONNX) or the permutation that undoes onnx2tf's
    channels-last, whichever matches ONNX Runtime; and the max abs error after that."""
    got = keras_model([example[s.name] for s in specs] if len(specs) > 1 else example[specs[0].name])
    got = [np.asarray(g) for g in (got if isinstance(got, list | tuple) else [got])]
    if len(got) != len(reference):
        raise _ConversionFailed(f"onnx2tf made {len(got)} outputs, the ONNX has {len(reference)}")
    layouts: list[tuple | None] = []
    worst = 0.0
    for spec, out, ref in zip(model.onnx_artifact.outputs, got, reference, strict=True):
        candidates: list[tuple | None] = [None]
        if out.ndim >= 3:
            candidates.append((0, out.ndim - 1, *range(1, out.ndim - 1)))  # NHWC -> NCHW
        best = None
        for perm in candidates:
            value = out if perm is None else np.transpose(out, perm)
            if value.shape != ref.shape:
                continue
            err = float(np.abs(value.astype(np.float64) - ref).max(initial=0.0))
            if best is None or err < best[1]:
                best = (perm, err)
        if best is None:
            raise _ConversionFailed(f"onnx2tf output '{spec.name}' has shape {list(out.shape)}, "
                                    f"ONNX Runtime gives {list(ref.shape)}")
        scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
        if best[1] > CONVERSION_RTOL * scale:
            raise _ConversionFailed(f"onnx2tf output '{spec.name}' differs from ONNX Runtime by "
                                    f"{best[1]:.3g} (max abs)")
        layouts.append(best[0])
        worst = max(worst, best[1])
    return layouts, worst


def _serving_function(keras_model, specs, onnx_outputs, layouts):
    """A tf.function with the ONNX input names/layout/static shapes and ONNX-named outputs."""
    import tensorflow as tf

    dtypes = [inp.dtype for inp in keras_model.inputs]
    signature = [tf.TensorSpec(s.shape, dtype, name=signature_name(s.name, i, "input"))
                 for i, (s, dtype) in enumerate(zip(specs, dtypes, strict=True))]
    out_names = [signature_name(s.name, i, "output") for i, s in enumerate(onnx_outputs)]

    @tf.function(input_signature=signature)
    def serve(*args):
        outs = keras_model(list(args) if len(args) > 1 else args[0])
        outs = outs if isinstance(outs, list | tuple) else [outs]
        return {name: (out if perm is None else tf.transpose(out, perm))
                for name, out, perm in zip(out_names, outs, layouts, strict=True)}

    return serve.get_concrete_function()


def _fallback(model, target, calib, workdir, options, specs, example, reference, io, exc):
    from modelport.backends.tflite.litert_torch import available, convert_with_litert_torch

    reason = str(exc)
    if model.module is None:
        raise BuildError(f"TFLite conversion of {model.name} failed ({reason}); the litert-torch "
                         "fallback needs a torch model, this one was given as ONNX") from exc
    if not available():
        raise BuildError(
            f"TFLite conversion of {model.name} failed ({reason}). Fallback: install litert-torch "
            "(PyTorch -> TFLite, no TensorFlow; ~2 GB, keep it in its own environment: "
            "pip install litert-torch) and export again"
        ) from exc
    log.warning("ONNX -> TFLite with onnx2tf failed for %s (%s); falling back to litert-torch "
                "(PyTorch -> TFLite directly)", model.name, reason)
    info = convert_with_litert_torch(model, target, calib, specs, options, io,
                                     workdir / "model.tflite")
    info["onnx2tf_failure"] = reason
    return info


# -- helpers -----------------------------------------------------------------------------------
def _onnx_reference(model, example: dict[str, np.ndarray]) -> list[np.ndarray]:
    """ONNX Runtime on the validated ONNX at the static shape: what the .tflite must match."""
    return onnx_references(model, [example])[0]


def onnx_references(model, examples: list[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
    """``_onnx_reference`` of each example, from one ONNX Runtime session."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependency('building TFLite needs onnxruntime to check the conversion: '
                                'pip install "modelport[tflite]"') from None
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(model.onnx_artifact.path), opts,
                                   providers=["CPUExecutionProvider"])
    names = [s.name for s in model.onnx_artifact.outputs]
    return [[np.asarray(v) for v in session.run(names, example)] for example in examples]


def _describe_file(path: Path, specs: list[TensorSpec], out_specs: list[TensorSpec]) -> dict[str, Any]:
    """What a device needs to know about the file: static shapes, I/O dtypes, scales."""
    from modelport.backends.tflite.session import TFLiteSession

    session = TFLiteSession(path, specs, out_specs, threads=1)
    try:
        interpreter = session._interpreter
        runner = interpreter.get_signature_runner(SIGNATURE_KEY)
        file_io = {
            kind: {name: {"dtype": np.dtype(d["dtype"]).name, "shape": [int(x) for x in d["shape"]]}
                   for name, d in details.items()}
            for kind, details in (("inputs", runner.get_input_details()),
                                  ("outputs", runner.get_output_details()))
        }
        return {"static_shapes": True,
                "shapes": {s.name: list(s.shape) for s in specs},
                "signature": SIGNATURE_KEY,
                "file_io": file_io,
                "io_quantization": session.io_quantization,
                "op_dtypes": _op_dtypes(path),
                "tflite_size_bytes": path.stat().st_size}
    finally:
        session.close()


_OP_DTYPES_SCRIPT = """
import json, sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType
it = Interpreter(model_path=sys.argv[1],
                 experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
tensors = {t["index"]: np.dtype(t["dtype"]).name for t in it.get_tensor_details()}
out = {}
for op in it._get_ops_details():  # no public op listing in the interpreter API
    out.setdefault(op["op_name"], set()).update(tensors.get(i, "?") for i in op["outputs"] if i >= 0)
print(json.dumps({k: sorted(v) for k, v in sorted(out.items())}))
"""


def _op_dtypes(path: Path) -> dict[str, list[str]]:
    """Op type -> output dtypes in the file: shows which ops run int8 and which stayed float.

    Read in a child process: the interpreter's private op listing aborted the whole process on
    a full-int8 MiniLM here, and this summary is optional."""
    import json
    import subprocess
    import sys

    try:
        proc = subprocess.run([sys.executable, "-c", _OP_DTYPES_SCRIPT, str(path)],
                              capture_output=True, text=True, timeout=120, check=False)
        return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else {}
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return {}


def _version(dist: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("..." if len(text) > 300 else "")
