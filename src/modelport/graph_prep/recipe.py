"""The CNN INT8 recipe: BatchNorm folding, cross-layer equalization and bias correction on the
ONNX graph, run before each backend's own quantizer (ONNX Runtime, OpenVINO/NNCF, the TFLite
converter, TensorRT's Q/DQ graph), so every backend quantizes the same prepared graph.

Each step is recorded with what it changed and the FP32 metric after it (the prepared float
graph vs the original on the first calibration samples: mean/min cosine and top-1 agreement), so a
manifest shows when a step changed the float function (``relu6-to-relu``) and by how much.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from modelport.graph_prep.options import CnnRecipe, parse_recipe

log = logging.getLogger("modelport")

#: calibration samples the statistics use (the first ones of the set)
SAMPLES = 128
#: of those, the ones each step's FP32 check (and bias correction's before/after) runs on
METRIC_SAMPLES = 32
PREPARED = "cnn_recipe.onnx"
#: beside the prepared graph: the bias shifts bias correction made (``bias_shifts``)
SHIFTS = ".bias_shifts.npz"


def applies(onnx_path: Path) -> tuple[bool, str]:
    """(True, why) for a convolutional graph: Conv nodes and no attention (a MatMul of two
    activations); the recipe's rewrites are about conv weights and their ranges."""
    import onnx

    from modelport.backends.onnx_qdq import activation_matmuls, is_large

    if is_large(onnx_path):
        return False, "graph over 1.8 GB (not a CNN this recipe is for)"
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    convs = sum(1 for n in graph.node if n.op_type == "Conv")
    if not convs:
        return False, "no Conv in the graph"
    if activation_matmuls(onnx_path):
        return False, "attention graph (MatMul of two activations)"
    return True, f"{convs} Conv node(s), no attention"


def prepare_for_int8(onnx_path: Path, calib, workdir: Path,
                     options: CnnRecipe | str | None = None, *, weight_qmax: int = 127,
                     skip: Sequence[str] = ()) -> tuple[Path, dict[str, Any]]:
    """Write the prepared graph into ``workdir``; return (path to quantize, record).

    Returns ``onnx_path`` itself with ``record["applied"] = False`` when the recipe is off, the
    graph is not convolutional, or there is no calibration data. ``weight_qmax``: the backend's
    int8 weight range (127; 64 for ONNX Runtime's 7-bit weights), which bias correction
    simulates. ``skip``: steps of ``auto`` a backend leaves to its own quantizer.
    """
    recipe = parse_recipe(options)
    record: dict[str, Any] = {"recipe": recipe.describe(), "applied": False}
    if recipe.off:
        return onnx_path, {**record, "reason": "switched off (--cnn-recipe off)"}
    ok, why = applies(onnx_path)
    if not ok:
        return onnx_path, {**record, "reason": why}
    if calib is None or len(calib) == 0:
        return onnx_path, {**record, "reason": "no calibration data"}
    steps = [s for s in recipe.steps if not (recipe.auto and s in skip)]
    skipped = [s for s in recipe.steps if s not in steps]
    start = time.perf_counter()
    try:
        path, steps_record = run_steps(onnx_path, calib.samples[:SAMPLES], workdir, steps,
                                       weight_qmax=weight_qmax)
    except Exception as exc:  # noqa: BLE001 - the recipe is an improvement, never a blocker
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        log.warning("CNN INT8 recipe skipped: %s: %s", type(exc).__name__, first)
        return onnx_path, {**record, "reason": f"failed ({type(exc).__name__}: {first}); the "
                                               "backend quantized the graph as exported"}
    record.update(applied=True, graph=why, samples=min(len(calib), SAMPLES),
                  fp32_check_samples=min(len(calib), METRIC_SAMPLES),
                  steps=steps_record, seconds=round(time.perf_counter() - start, 2))
    if skipped:
        record["left_to_the_backend"] = skipped
    log.info("CNN INT8 recipe: %s", "; ".join(summary(s) for s in steps_record) or "nothing")
    return path, record


def run_steps(onnx_path: Path, samples: list[dict[str, np.ndarray]], workdir: Path,
              steps: Sequence[str], *, weight_qmax: int = 127) -> tuple[Path, list[dict]]:
    """Apply ``steps`` in order to a copy of the graph; each recorded with the FP32 metric."""
    import onnx

    from modelport.graph_prep import run

    model = onnx.load(str(onnx_path))
    checks = samples[:METRIC_SAMPLES]
    reference = run.outputs(model, checks)
    shifts: dict[str, np.ndarray] = {}
    actions = step_actions(samples, weight_qmax, shifts)
    records = []
    for name in steps:
        if name == "relu6-to-relu":
            continue  # a choice of equalize, recorded there
        relu6 = "relu" if "relu6-to-relu" in steps else "keep"
        changed = actions[name](model, relu6)
        records.append({"name": name, "changed": changed,
                        "fp32_vs_original": fp32_metric(run.outputs(model, checks), reference)})
    workdir.mkdir(parents=True, exist_ok=True)
    dst = workdir / PREPARED
    onnx.save(model, str(dst))
    if shifts:
        names = sorted(shifts)
        np.savez(dst.with_suffix(SHIFTS), names=np.array(names),
                 **{f"s{i}": shifts[n] for i, n in enumerate(names)})
    return dst, records


def bias_shifts(prepared: Path) -> dict[str, np.ndarray]:
    """Node name -> the shift bias correction subtracted from its bias, for the graph
    ``prepared`` (what ``prepare_for_int8`` returned); {} when no bias was corrected. A backend
    that keeps a layer float gives it its bias back (``bias_correction.undo``)."""
    path = Path(prepared).with_suffix(SHIFTS)
    if not path.exists():
        return {}
    with np.load(path) as data:
        return {str(n): data[f"s{i}"] for i, n in enumerate(data["names"])}


def step_actions(samples, weight_qmax: int, shifts: dict[str, np.ndarray] | None = None
                 ) -> dict[str, Callable[[Any, str], dict]]:
    """Step name -> fn(model, relu6 choice) -> what changed (the registry of steps);
    ``shifts`` collects bias correction's per-layer shifts."""
    from modelport.graph_prep.bias_correction import correct_biases, mean_output_error
    from modelport.graph_prep.bn_fold import fold_batchnorms
    from modelport.graph_prep.equalize import equalize

    def bias_correct(model, _relu6):
        from modelport.graph_prep import run

        checks = samples[:METRIC_SAMPLES]
        reference = run.outputs(model, checks)[0]
        before = mean_output_error(reference, model, checks, qmax=weight_qmax)
        changed = correct_biases(model, samples, qmax=weight_qmax, shifts=shifts)
        after = mean_output_error(reference, model, checks, qmax=weight_qmax)
        # the systematic error of the weight-quantized graph's first output, before and after
        return {**changed, "mean_output_error_before": round(before, 6),
                "mean_output_error_after": round(after, 6)}

    return {
        "bn-fold": lambda model, _relu6: fold_batchnorms(model),
        "equalize": lambda model, relu6: equalize(model, samples, relu6=relu6),
        "bias-correct": bias_correct,
    }


def fp32_metric(got: list[np.ndarray], ref: list[np.ndarray]) -> dict[str, float]:
    """The prepared float graph vs the original, first output: cosine per sample (mean, min)
    and, for [batch, classes] outputs, top-1 agreement."""
    a = got[0].reshape(got[0].shape[0], -1).astype(np.float64)
    b = ref[0].reshape(ref[0].shape[0], -1).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = np.where(norms > 0, np.sum(a * b, axis=1) / np.maximum(norms, 1e-30), 1.0)
    out = {"cosine_mean": round(float(cos.mean()), 7), "cosine_min": round(float(cos.min()), 7),
           "max_abs_err": float(np.abs(a - b).max(initial=0.0))}
    if ref[0].ndim == 2 and ref[0].shape[1] > 1:
        out["top1_agreement"] = float(np.mean(a.argmax(1) == b.argmax(1)))
    return out


def summary(step: dict[str, Any]) -> str:
    metric = step["fp32_vs_original"]
    return f"{step['name']} (FP32 cosine {metric['cosine_min']:.6f} min)"


@contextmanager
def int8_graph(onnx_path: Path, calib, recipe: CnnRecipe | str | None, *,
               weight_qmax: int = 127, skip: Sequence[str] = (),
               when: bool = True) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The one call a backend makes: ``with int8_graph(...) as (src, info):`` quantize
    ``src`` (the prepared graph, alive inside the block) and add ``info`` (``{"graph_prep":
    record}``) to the build's manifest facts. ``when=False``: this build quantizes no conv
    weights with activations (e.g. dynamic INT8), so the graph is passed through."""
    if not when:
        yield Path(onnx_path), {}
        return
    with tempfile.TemporaryDirectory(prefix="modelport-cnn-recipe-") as tmp:
        path, record = prepare_for_int8(Path(onnx_path), calib, Path(tmp), recipe,
                                        weight_qmax=weight_qmax, skip=skip)
        yield path, {"graph_prep": record}


def with_onnx(model: Any, path: Path) -> Any:
    """``model`` itself, or a shallow copy whose ONNX artifact is the graph at ``path``."""
    import dataclasses

    if Path(path) == Path(model.onnx_artifact.path):
        return model
    return dataclasses.replace(model, onnx_artifact=dataclasses.replace(model.onnx_artifact,
                                                                        path=Path(path)))


__all__ = ["CnnRecipe", "applies", "bias_shifts", "int8_graph", "prepare_for_int8", "with_onnx"]
