"""export(): model -> ONNX (validated) -> every target -> fidelity -> benchmark -> bundle.

The torch FP32 reference is measured in the same run as every target, so each speedup is a
ratio taken side by side, never against a number from another day.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from modelport import registry
from modelport.bench import BenchSettings, benchmark
from modelport.calibration_data import CalibrationSet, load_source
from modelport.calibration_data.dataset import overlap
from modelport.errors import (
    AccuracyBudgetExceeded,
    BundleExists,
    CalibrationDataError,
    MissingDependency,
    TargetUnavailable,
)
from modelport.evaluate import Budget, budget_misses, fidelity, run_session
from modelport.models import PreparedModel, resolve_model
from modelport.runtimes.base import BuildOptions, Session
from modelport.specs import Precision, Target, TensorSpec

log = logging.getLogger("modelport")

#: What `export` measures per target: batch-1 latency and batch-32 throughput.
EXPORT_BENCH = BenchSettings(batch_sizes=(1, 32), warmup=3, duration=2.0, min_iters=10)
POOL_ROWS = 64  # sample rows kept for benchmarking and stored in each bundle


@dataclass
class ExportResult:
    rows: list[dict[str, Any]]
    bundles: dict[str, Path]
    failures: list[str] = field(default_factory=list)
    report_path: Path | None = None

    def table(self) -> str:
        from modelport.bench.report import export_table

        return export_table(self.rows)


@dataclass
class _Context:
    model: PreparedModel
    calib: CalibrationSet | None
    evalset: CalibrationSet
    eval_reference: dict[str, np.ndarray]
    pool: dict[str, np.ndarray]
    pool_reference: dict[str, np.ndarray]
    reference_label: str
    budget: Budget
    bench: BenchSettings | None
    threads: int | None
    workdir: Path
    progress: bool


def export(
    model: str | Path | PreparedModel,
    targets: Sequence[str | Target],
    *,
    out: str | Path,
    calib: str | Path | CalibrationSet | None = None,
    eval: str | Path | CalibrationSet | None = None,
    force: bool = False,
    allow_accuracy_drop: bool = False,
    budget: Budget | None = None,
    bench: BenchSettings | None = EXPORT_BENCH,
    options: BuildOptions | None = None,
    threads: int | None = None,
    simplify: bool = False,
    opset: int | None = None,
    progress: bool = True,
    keep_going: bool = False,
) -> ExportResult:
    """Export ``model`` to every target, measure each against the reference, write bundles.

    Returns the rows of the results table. Targets that miss the accuracy budget get no bundle
    (unless ``allow_accuracy_drop``) and raise AccuracyBudgetExceeded after the others finish.
    """
    out = Path(out)
    parsed = _parse_targets(targets)
    if out.exists() and not out.is_dir():  # found now, not after minutes of export and build
        from modelport.errors import UsageError

        raise UsageError(f"--out '{out}' is a file: give a directory (one bundle per target)")
    backends = {t: registry.get_backend(t.runtime)() for t in parsed}
    for target, backend in backends.items():
        avail = backend.availability(target)
        if not avail.ok:
            kind = MissingDependency if "install" in avail.reason else TargetUnavailable
            raise kind(f"cannot build {target}: {avail.reason}")
        if backend.bundleable and (out / target.slug).exists() and not force:
            raise BundleExists(f"'{out / target.slug}' exists already: pass --force to replace it")
    # a copy: the pipeline sets onnx_artifact to files in its own temp dir
    prepared = replace(model) if isinstance(model, PreparedModel) else resolve_model(model)
    options = options or BuildOptions()
    options.extra.setdefault("budget", budget or Budget())  # builds that fall layers back use it
    needs_calib = any(t.precision == Precision.INT8 for t in parsed)
    calib_set, eval_set = _data(prepared, calib, eval, needs_calib)

    workdir = Path(tempfile.mkdtemp(prefix="modelport-export-"))
    try:
        ctx = _prepare(prepared, calib_set, eval_set, workdir, budget, bench, threads,
                       simplify, opset, progress)
        rows = [_reference_row(ctx)]
        bundles: dict[str, Path] = {}
        failures: list[str] = []
        for target, backend in backends.items():
            try:
                row, bundle = _one_target(ctx, target, backend, options, out, force,
                                          allow_accuracy_drop)
            except Exception as exc:  # keep_going: one broken target must not hide the others
                if not keep_going:
                    raise
                log.warning("%s failed: %s", target, exc)
                row, bundle = {"target": str(target), "precision": str(target.precision),
                               "status": f"failed: {type(exc).__name__}: {exc}"}, None
            rows.append(row)
            if bundle is not None:
                bundles[str(target)] = bundle
            if row.get("failure"):
                failures.append(row["failure"])
        _add_speedups(rows)
        result = ExportResult(rows, bundles, failures)
        result.report_path = _write_report(out, ctx, rows) if bundles else None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if failures:
        error = AccuracyBudgetExceeded("; ".join(failures))
        error.result = result  # the table is still worth printing
        raise error
    return result


# -- steps ----------------------------------------------------------------------------------
def _parse_targets(targets: Sequence[str | Target]) -> list[Target]:
    parsed: list[Target] = []
    for t in targets:
        target = t if isinstance(t, Target) else Target.parse(str(t))
        if target not in parsed:
            parsed.append(target)
    if not parsed:
        from modelport.errors import UsageError

        raise UsageError("give at least one --target (see 'modelport targets')")
    return parsed


def _data(model: PreparedModel, calib, evalset, needs_calib: bool):
    specs = model.input_specs

    def load(src) -> CalibrationSet | None:
        if src is None or isinstance(src, CalibrationSet):
            return src
        return load_source(src, specs, tokenizer_json=model.tokenizer_json,
                           max_length=model.max_length)

    calib_set, eval_set = load(calib), load(evalset)
    if calib_set is not None and eval_set is None:
        calib_set, eval_set = calib_set.split(0.3)
        log.info("split --calib into %d calibration and %d evaluation samples",
                 len(calib_set), len(eval_set))
    elif calib_set is None and model.default_data is not None:
        default_calib, default_eval = model.default_data()
        calib_set = default_calib
        eval_set = eval_set or default_eval
    if eval_set is None:
        if needs_calib and calib_set is None:
            raise CalibrationDataError(
                "INT8 targets need calibration data for this model: pass --calib "
                "(a folder of .npz feeds, or a text file for text models)"
            )
        # no data at all: fidelity on fresh synthetic inputs is still better than none
        eval_set = CalibrationSet.from_iterable([model.fresh_inputs(32)], source="synthetic")
    if needs_calib and calib_set is None:
        raise CalibrationDataError("INT8 targets need calibration data: pass --calib")
    for role, data in (("calibration", calib_set), ("evaluation", eval_set)):
        if data is not None:
            data.check(specs, role=role)
    if calib_set is not None:
        if needs_calib:
            calib_set.warn_if_small()
        shared = overlap(calib_set, eval_set)
        if shared:
            log.warning("%d evaluation sample(s) also appear in the calibration set: fidelity "
                        "will look better than it is", shared)
    return calib_set, eval_set


def _prepare(model, calib, evalset, workdir, budget, bench, threads, simplify, opset, progress):
    from modelport.exporters import export_onnx, validate

    log.info("exporting %s to ONNX ...", model.name)
    artifact = export_onnx(model, workdir / "model.onnx", opset=opset, simplify=simplify)
    artifact.validation = validate(model, artifact.path)
    if "max_abs_err" in artifact.validation:
        log.info("exported with %s (opset %d) in %.1fs; ONNX Runtime vs torch: max abs err %.2e",
                 artifact.exporter, artifact.opset, artifact.seconds,
                 artifact.validation["max_abs_err"])
    model.onnx_artifact = artifact
    reference, label = _reference_session(model, threads)
    with reference:
        eval_ref = run_session(reference, evalset)
        pool = _bench_pool(model, evalset)
        pool_ref = run_session(reference, CalibrationSet.from_iterable([pool], source="pool"))
    return _Context(model, calib, evalset, eval_ref, pool, pool_ref, label,
                    budget or Budget(), bench, threads, workdir, progress)


def _reference_session(model: PreparedModel, threads: int | None) -> tuple[Session, str]:
    if model.module is not None:
        from modelport.runtimes.torch import TorchSession

        return TorchSession(model.module, model.inputs, _outputs(model), threads=threads), \
            "torch:cpu:fp32"
    from modelport.runtimes.onnxruntime import OnnxRuntimeSession

    return OnnxRuntimeSession(model.onnx_artifact.path, model.onnx_artifact.inputs,
                              _outputs(model), threads=threads), "onnxruntime:cpu:fp32 (given ONNX)"


def _outputs(model: PreparedModel) -> list[TensorSpec]:
    return model.onnx_artifact.outputs


def _bench_pool(model: PreparedModel, evalset: CalibrationSet) -> dict[str, np.ndarray]:
    """Real evaluation samples at the benchmark shape (text padded to the bench length)."""
    subset = evalset.take(POOL_ROWS)
    seq = model.bench_dims.get("seq")
    if model.tokenizer_json is not None and subset.texts and seq:
        from modelport.calibration_data.text import TextTokenizer

        tok = TextTokenizer(model.tokenizer_json, max_length=seq)
        return tok.encode(subset.texts, model.input_specs, pad_to=seq)
    return subset.stacked()


def _reference_row(ctx: _Context) -> dict[str, Any]:
    session, label = _reference_session(ctx.model, ctx.threads)
    with session:
        row = {"target": label, "precision": "fp32", "reference": True,
               "size_mb": _model_size_mb(ctx.model), "fidelity": _fidelity_of(ctx, ctx.eval_reference)}
        row.update(_bench_fields(ctx, session, label))
    return row


def _one_target(ctx: _Context, target: Target, backend, options: BuildOptions, out: Path,
                force: bool, allow_drop: bool) -> tuple[dict[str, Any], Path | None]:
    from modelport.bundle import write_bundle

    tdir = ctx.workdir / target.slug
    tdir.mkdir()
    start = time.perf_counter()
    log.info("building %s ...", target)
    calib = ctx.calib if target.precision == Precision.INT8 else None
    artifact = backend.build(ctx.model, target, calib, tdir, options)
    build_s = time.perf_counter() - start
    row: dict[str, Any] = {"target": str(target), "precision": str(target.precision),
                           "size_mb": artifact.size_bytes / 1e6 if artifact.files else None,
                           "build_s": build_s}
    inputs = artifact.inputs or ctx.model.onnx_artifact.inputs
    outputs = artifact.outputs or ctx.model.onnx_artifact.outputs
    runnable = backend.runnable(target)
    metrics: dict[str, Any] | None = None
    bench_result = None
    if runnable.ok:
        t0 = time.perf_counter()
        session = backend.load(artifact.main_path, target=target, inputs=inputs, outputs=outputs,
                               threads=ctx.threads, **artifact.session_options)
        load_s = time.perf_counter() - t0
        with session:
            got = run_session(session, _fit(ctx.evalset, inputs), batch_size=_batch_of(inputs, 32))
            metrics = _fidelity_of(ctx, got)
            row["fidelity"] = metrics
            misses = budget_misses(metrics, ctx.budget)
            if misses and not allow_drop:
                hint = getattr(backend, "budget_hint", "try --int8-mode / --calib-method")
                row["failure"] = (f"{target} misses its accuracy budget: {'; '.join(misses)}; "
                                  "no bundle written (keep it with --allow-accuracy-drop, or "
                                  f"{hint})")
                row["status"] = "budget miss"
                log.warning(row["failure"])
                return row, None
            row["status"] = "budget miss (allowed)" if misses else "ok"
            fields = _bench_fields(ctx, session, str(target), load_s=load_s, inputs=inputs)
            bench_result = fields.pop("_result", None)
            row.update(fields)
    else:
        row["status"] = f"not run here: {runnable.reason}"
        log.info("%s: %s", target, row["status"])
        proxy = _proxy_fidelity(ctx, target, backend, artifact, inputs, outputs)
        if proxy is not None:  # the shipped graph, run here by another runtime (no timing)
            metrics, row["fidelity"], row["fidelity_by"] = proxy, proxy, proxy["checked_with"]
            misses = budget_misses(proxy, ctx.budget)
            if misses and not allow_drop:
                row["failure"] = (f"{target} misses its accuracy budget ({proxy['checked_with']}):"
                                  f" {'; '.join(misses)}; no bundle written (keep it with "
                                  "--allow-accuracy-drop, or try --calib-method)")
                row["status"] = "budget miss"
                log.warning(row["failure"])
                return row, None
    if not backend.bundleable:
        return row, None
    manifest = _manifest(ctx, target, backend, artifact, inputs, outputs, metrics, bench_result,
                         allow_drop)
    pool = _fit_arrays(ctx.pool, inputs)
    samples = {f"in.{k}": v for k, v in pool.items()}
    samples.update({f"ref.{k}": v for k, v in ctx.pool_reference.items()})
    bundle = write_bundle(out / target.slug, manifest=manifest, artifact_dir=tdir,
                          artifact_files=artifact.files, samples=samples,
                          tokenizer_json=ctx.model.tokenizer_json, force=force)
    row["bundle"] = str(bundle)
    log.info("wrote %s", bundle)
    return row, bundle


def _proxy_fidelity(ctx: _Context, target, backend, artifact, inputs, outputs):
    """Fidelity of a build-here/run-elsewhere artifact, from a runtime that can run its graph
    here (TensorRT's ONNX / Q/DQ ONNX in ONNX Runtime CPU); None when there is none."""
    make = getattr(backend, "proxy_session", None)
    session = make(artifact.main_path, inputs=inputs, outputs=outputs,
                   threads=ctx.threads) if make else None
    if session is None:
        return None
    with session:
        got = run_session(session, _fit(ctx.evalset, inputs), batch_size=_batch_of(inputs, 32))
    metrics = _fidelity_of(ctx, got)
    metrics["checked_with"] = f"{type(session).__name__} on this machine (the same graph)"
    log.info("%s: fidelity of the shipped graph checked here with %s", target,
             type(session).__name__)
    return metrics


def _bench_fields(ctx: _Context, session: Session, label: str, *, load_s: float | None = None,
                  inputs: list[TensorSpec] | None = None) -> dict[str, Any]:
    if ctx.bench is None:
        return {}
    settings = ctx.bench
    static = _batch_of(inputs, None) if inputs else None
    if static is not None:  # a static-shape artifact runs only its own batch size
        settings = BenchSettings(**{**settings.__dict__, "batch_sizes": (static,)})
    pool = _fit_arrays(ctx.pool, inputs) if inputs else ctx.pool
    result = benchmark(session, pool, settings, label=label, load_s=load_s,
                       progress=ctx.progress)
    fields: dict[str, Any] = {"_result": result, "load_s": load_s,
                              "stats": [vars(s).copy() for s in result.stats]}
    for stats in result.stats:
        if stats.batch == min(settings.batch_sizes):
            fields.update(p50_ms=stats.p50_ms, p90_ms=stats.p90_ms, p99_ms=stats.p99_ms,
                          latency_batch=stats.batch)
        if stats.batch == max(settings.batch_sizes):
            fields.update(throughput=stats.throughput, throughput_batch=stats.batch)
    return fields


def _add_speedups(rows: list[dict[str, Any]]) -> None:
    base = rows[0]
    for row in rows:
        row.pop("_result", None)
        if base.get("p50_ms") and row.get("p50_ms") and row.get("latency_batch") == base.get("latency_batch"):
            row["speedup_latency"] = base["p50_ms"] / row["p50_ms"]
        if base.get("throughput") and row.get("throughput") and row.get("throughput_batch") == base.get("throughput_batch"):
            row["speedup_throughput"] = row["throughput"] / base["throughput"]


def _fidelity_of(ctx: _Context, outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    return fidelity(outputs, ctx.eval_reference, task=ctx.model.task, labels=ctx.evalset.labels)


def _manifest(ctx, target, backend, artifact, inputs, outputs, metrics, bench_result, allow_drop):
    model = ctx.model
    ranges = ctx.calib.value_ranges() if ctx.calib is not None else ctx.evalset.value_ranges()
    in_specs = [TensorSpec(s.name, s.dtype, s.shape, ranges.get(s.name)).to_dict() for s in inputs]
    onnx = model.onnx_artifact
    from modelport.bundle.atomic import sha256_file

    def describe(data: CalibrationSet | None):
        if data is None:
            return None
        return {"sha256": data.sha256(), "samples": len(data), "source": data.source}

    info = {k: v for k, v in artifact.info.items() if _jsonable(v)}
    return {
        "model": {"name": model.name, "source": model.source, "task": model.task,
                  "onnx_sha256": sha256_file(onnx.path), "metadata": model.metadata},
        "target": str(target),
        "runtime": {"name": target.runtime, "version": backend.runtime_version(),
                    "extra": backend.extra},
        "artifact": {"file": artifact.main},
        "inputs": in_specs,
        "outputs": [s.to_dict() for s in outputs],
        "bench_dims": model.bench_dims,
        "preprocessing": {"max_length": model.max_length} if model.tokenizer_json else None,
        "passes": model.metadata.get("passes", []),
        "build": info,
        "export": {"exporter": onnx.exporter, "opset": onnx.opset, "seconds": onnx.seconds,
                   "validation": onnx.validation},
        "calibration": describe(ctx.calib) if target.precision == Precision.INT8 else None,
        "evaluation": describe(ctx.evalset),
        "accuracy": {"reference": ctx.reference_label, "metrics": metrics,
                     "budget": ctx.budget.to_dict(),
                     "passed": bool(metrics is not None and not budget_misses(metrics, ctx.budget)),
                     "allowed_drop": allow_drop},
        "benchmark": bench_result.to_dict() if bench_result is not None else None,
    }


def _write_report(out: Path, ctx: _Context, rows: list[dict[str, Any]]) -> Path:
    from modelport.bench.fingerprint import fingerprint
    from modelport.bundle.atomic import write_json_atomic

    path = out / "export-report.json"
    write_json_atomic(path, {"model": ctx.model.name, "reference": ctx.reference_label,
                             "rows": rows, "machine": fingerprint()})
    return path


# -- shape helpers for static-shape artifacts (TFLite, fixed TensorRT profiles) ----------------
def _batch_of(inputs: list[TensorSpec] | None, default):
    if not inputs:
        return default
    first = inputs[0].shape[0] if inputs[0].shape else None
    return first if isinstance(first, int) else default


def _fit(data: CalibrationSet, inputs: list[TensorSpec]) -> CalibrationSet:
    if all(isinstance(d, str) for s in inputs for d in s.shape[1:]):
        return data
    samples = [_fit_arrays(s, inputs) for s in data.samples]
    return CalibrationSet(samples, labels=data.labels, texts=data.texts, source=data.source)


def _fit_arrays(feeds: dict[str, np.ndarray], inputs: list[TensorSpec] | None) -> dict[str, np.ndarray]:
    """Zero-pad non-batch axes up to an artifact's static sizes (text: pad id 0, mask 0)."""
    if not inputs:
        return feeds
    out = dict(feeds)
    for spec in inputs:
        array = feeds[spec.name]
        pads = [(0, 0)]
        for axis, want in enumerate(spec.shape[1:], start=1):
            have = array.shape[axis]
            if isinstance(want, int) and have < want:
                pads.append((0, want - have))
            elif isinstance(want, int) and have > want:
                raise CalibrationDataError(
                    f"input '{spec.name}' axis {axis} is {have} in the data but the artifact is "
                    f"fixed at {want}; export with a larger --shape"
                )
            else:
                pads.append((0, 0))
        out[spec.name] = np.pad(array, pads) if any(p != (0, 0) for p in pads) else array
    return out


def _model_size_mb(model: PreparedModel) -> float | None:
    if model.module is None:
        return None
    return sum(p.numel() * p.element_size() for p in model.module.parameters()) / 1e6


def _jsonable(value: Any) -> bool:
    import json

    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
