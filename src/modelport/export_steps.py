"""export(): plan -> reference -> for each target: build -> check -> bench -> bundle.

Each step is a function below, named for what it does. The torch FP32 reference is measured in
the same run as every target, so each speedup is a ratio taken side by side, never against a
number from another day.
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
from modelport.backends.base import Artifact, AvailabilityKind, Backend, BuildOptions, Session
from modelport.backends.onnx_qdq import shared_preprocessing
from modelport.bench import BenchSettings, benchmark, statuses
from modelport.bench.memory import reset_peak
from modelport.bench.speed_verdict import (
    NotFasterThanFP32,
    apply_verdict,
    backend_key,
    fastest,
    fastest_line,
    with_fp32_comparisons,
)
from modelport.calibration_data import CalibrationSet
from modelport.calibration_data.plan import bench_pool
from modelport.errors import (
    AccuracyBudgetExceeded,
    BundleExists,
    MissingDependency,
    TargetUnavailable,
    UnknownTarget,
    UsageError,
)
from modelport.judging import apply_output_kind, budget_verdict, revisit_guess
from modelport.lm_steps import is_lm, lm_bench, lm_check, lm_reference, plan_export_data
from modelport.metrics import Budget, fidelity, run_session
from modelport.models import PreparedModel, resolve_model
from modelport.optimize.search import build_or_search
from modelport.seq2seq_steps import export_seq2seq, is_seq2seq
from modelport.shapes import fit_arrays, fit_set, static_batch
from modelport.specs import WEIGHT_ONLY, Precision, Target, TensorSpec
from modelport.whisper_steps import export_whisper, is_whisper

log = logging.getLogger("modelport")

#: What `export` measures per target: batch-1 latency and batch-32 throughput.
EXPORT_BENCH = BenchSettings(batch_sizes=(1, 32), warmup=3, duration=2.0, min_iters=10)

#: the error each kind of unavailability becomes when a user asks for that target
_UNAVAILABLE_ERROR = {
    AvailabilityKind.MISSING_DEPENDENCY: MissingDependency,
    AvailabilityKind.NO_DEVICE: TargetUnavailable,
    AvailabilityKind.UNSUPPORTED: UnknownTarget,
}


@dataclass
class ExportResult:
    rows: list[dict[str, Any]]
    bundles: dict[str, Path]
    failures: list[str] = field(default_factory=list)
    report_path: Path | None = None
    #: the fastest target within budget on this machine (bench.speed_verdict.fastest)
    fastest: dict[str, Any] = field(default_factory=dict)
    #: the fidelity kind the targets were judged as (PreparedModel.task, after --output-kind)
    task: str | None = None

    def table(self) -> str:
        from modelport.bench.export_table import export_table
        from modelport.optimize.report import search_tables

        line = fastest_line(self.fastest)
        return export_table(self.rows) + (f"\n{line}" if line else "") + search_tables(self.rows)


@dataclass
class ExportContext:
    """What every target step shares: the model, its data and the reference outputs."""

    model: PreparedModel
    calib: CalibrationSet | None
    evalset: CalibrationSet
    eval_reference: dict[str, np.ndarray]
    pool: dict[str, np.ndarray]
    pool_reference: dict[str, np.ndarray]
    reference_label: str
    budget: Budget
    options: BuildOptions
    bench: BenchSettings | None
    threads: int | None
    workdir: Path
    progress: bool
    require_speedup: bool = False
    lm: Any = None  # lm_steps.LMReference for language models (perplexity, token latency)


@dataclass
class Destination:
    """Where bundles go: ready-to-ship ones to ``out``; allowed budget misses to
    ``below_budget`` (None: beside the others, recorded as a miss in the manifest)."""

    out: Path
    force: bool
    allow_drop: bool
    below_budget: Path | None = None


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
    options: BuildOptions | dict[str, Any] | None = None,
    threads: int | None = None,
    simplify: bool = False,
    opset: int | None = None,
    progress: bool = True,
    keep_going: bool = False,
    below_budget_out: str | Path | None = None,
    require_speedup: bool = False,
) -> ExportResult:
    """Export ``model`` to every target, measure each against the reference, write bundles.

    ``options``: a BuildOptions, or a dict of backend name -> that backend's options (a
    dataclass or a dict, checked against its declaration before any work starts). ``budget``:
    how targets are judged (metrics.Budget: its limits, and ``output_kind`` -- logits,
    embedding or regression -- when the model does not say what its output is). Targets that
    miss the accuracy budget get no bundle (unless ``allow_accuracy_drop``) and raise
    AccuracyBudgetExceeded after the others finish. An INT8/FP16 target slower than its
    backend's FP32 (timed in this run, built for the comparison when not asked for) gets status
    ``slower than fp32``; ``require_speedup`` refuses it the same way (NotFasterThanFP32).
    Returns the rows of the results table.
    """
    options = resolve_options(options, budget=budget, threads=threads)
    if require_speedup and bench is None:
        raise UsageError("--require-speedup compares timings: drop --no-bench")
    dest = Destination(Path(out), force, allow_accuracy_drop,
                       Path(below_budget_out) if below_budget_out is not None else None)
    plan, added = with_fp32_comparisons(plan_targets(targets, dest, options),
                                        timed=bench is not None)
    # a copy: the export sets onnx_artifact to files in its own temp dir
    prepared = replace(model) if isinstance(model, PreparedModel) else resolve_model(model)
    if is_whisper(prepared):  # log-mel encoder + decoder graphs, judged by WER: whisper_steps
        return export_whisper(prepared, [(t, b) for t, b in plan if t not in added], dest,
                              eval, options, bench, opset, ExportResult, calib=calib)
    if is_seq2seq(prepared):  # an encoder and a decoder graph: seq2seq_steps
        return export_seq2seq(prepared, [(t, b) for t, b in plan if t not in added], dest,
                              eval, options, bench, opset, ExportResult, calib=calib)
    apply_output_kind(prepared, options.budget_or_default())  # Budget.output_kind
    calib_set, eval_set = plan_export_data(prepared, [t for t, _ in plan], calib, eval)

    workdir = Path(tempfile.mkdtemp(prefix="modelport-export-"))
    try:
        ctx = prepare_reference(prepared, calib_set, eval_set, options, workdir, bench,
                                simplify, opset, progress)
        ctx.require_speedup = require_speedup
        rows = [reference_row(ctx)]
        bundles: dict[str, Path] = {}
        # torch:cpu:bf16 is judged against the reference row (torch's FP32, never rebuilt)
        fp32_rows: dict[str, dict[str, Any]] = {backend_key(rows[0]["target"]): rows[0]}
        for target, backend in plan:
            try:  # the INT8 targets of one graph over 2 GB share its pre-processing
                with shared_preprocessing(workdir / "preprocessed"):
                    row, bundle = export_target(ctx, target, backend, dest,
                                                fp32=fp32_rows.get(backend_key(str(target))),
                                                compare_only=target in added)
            except Exception as exc:  # keep_going: one broken target must not hide the others
                if not keep_going:
                    raise
                log.warning("%s failed: %s", target, exc)
                row, bundle = {"target": str(target), "precision": str(target.precision),
                               "status": statuses.FAILED,
                               "reason": f"{type(exc).__name__}: {exc}"}, None
            if target.precision == Precision.FP32:
                fp32_rows[backend_key(str(target))] = row
            if target in added:  # timed for the speed verdict only: never bundled or refused
                row.update(added_for_comparison=True)
                row.pop("failure", None)
            rows.append(row)
            if bundle is not None:
                bundles[str(target)] = bundle
        add_speedups(rows)
        failures = [r["failure"] for r in rows if r.get("failure")]
        result = ExportResult(rows, bundles, failures, fastest=fastest(rows), task=ctx.model.task)
        result.report_path = write_export_report(dest.out, ctx, rows) if bundles else None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if failures:
        budget_miss = any(r.get("failure") and r.get("status") != statuses.SLOWER_THAN_FP32
                          for r in rows)
        error = (AccuracyBudgetExceeded if budget_miss else NotFasterThanFP32)("; ".join(failures))
        error.result = result  # the table is still worth printing
        raise error
    return result


# -- plan ---------------------------------------------------------------------------------------
def resolve_options(options: BuildOptions | dict[str, Any] | None, *, budget: Budget | None,
                    threads: int | None) -> BuildOptions:
    """One BuildOptions with the budget and threads filled in; every backend's options are
    checked against their declarations now, not minutes later inside a build."""
    if options is None:
        options = BuildOptions()
    elif isinstance(options, dict):
        options = BuildOptions(backends=options)
    elif not isinstance(options, BuildOptions):
        raise UsageError(f"options must be a BuildOptions or a dict of backend -> options, got "
                         f"{type(options).__name__}")
    options = replace(options, budget=budget or options.budget or Budget(),
                      threads=threads if threads is not None else options.threads)
    for name in options.backends:
        if name not in registry.BACKENDS:
            raise UsageError(f"options for unknown backend '{name}': known backends are "
                             f"{', '.join(sorted(registry.BACKENDS))}")
        options.of(registry.get_backend(name))  # raises UsageError on a bad key or value
    return options


def plan_targets(targets: Sequence[str | Target], dest: Destination,
                 options: BuildOptions) -> list[tuple[Target, Backend]]:
    """Parse, de-duplicate and check every target before any work: unknown, unavailable or
    already-written targets fail now, with the error kind the availability says."""
    parsed: list[Target] = []
    for t in targets:
        target = t if isinstance(t, Target) else Target.parse(str(t))
        if target not in parsed:
            parsed.append(target)
    if not parsed:
        raise UsageError("give at least one --target (see 'modelport targets')")
    if dest.out.exists() and not dest.out.is_dir():  # found now, not after minutes of build
        raise UsageError(f"--out '{dest.out}' is a file: give a directory (one bundle per target)")
    plan = []
    for target in parsed:
        backend = registry.get_backend(target.runtime)()
        avail = backend.availability(target)
        if not avail.ok:
            error = _UNAVAILABLE_ERROR.get(avail.kind, TargetUnavailable)
            raise error(f"cannot build {target}: {avail.reason}")
        refusal = backend.build_refusal(target, options.cpu_features)
        if refusal:  # e.g. bf16 for a CPU without bf16 (this one, or --cpu-features)
            raise TargetUnavailable(f"cannot build {target}: {refusal}")
        if backend.bundleable and (dest.out / target.slug).exists() and not dest.force:
            raise BundleExists(f"'{dest.out / target.slug}' exists already: pass --force to "
                               "replace it")
        plan.append((target, backend))
    return plan


# -- the reference -------------------------------------------------------------------------------
def prepare_reference(model: PreparedModel, calib: CalibrationSet | None,
                      evalset: CalibrationSet, options: BuildOptions, workdir: Path,
                      bench: BenchSettings | None, simplify: bool, opset: int | None,
                      progress: bool) -> ExportContext:
    """Export and validate the ONNX, then run the reference on the evaluation split and on the
    sample pool that every bundle stores."""
    if is_lm(model):  # the KV-cache graph; torch's perplexity on the evaluation lines
        model.onnx_artifact, lm = lm_reference(model, evalset, workdir, opset=opset)
        return ExportContext(model, calib, evalset, {}, lm.pool, {}, "torch:cpu:fp32",
                             options.budget_or_default(), options, bench, options.threads,
                             workdir, progress, lm=lm)
    from modelport.exporters import export_validated

    log.info("exporting %s to ONNX ...", model.name)
    artifact = export_validated(model, workdir / "model.onnx", opset=opset, simplify=simplify)
    if "max_abs_err" in artifact.validation:
        log.info("exported with %s (opset %d) in %.1fs; ONNX Runtime vs torch: max abs err %.2e",
                 artifact.exporter, artifact.opset, artifact.seconds,
                 artifact.validation["max_abs_err"])
    model.onnx_artifact = artifact
    reference, label = reference_session(model, options.threads)
    with reference:
        eval_ref = run_session(reference, evalset)
        revisit_guess(model, eval_ref)  # unit-norm rows guessed as logits are embeddings
        pool = bench_pool(model, evalset)
        pool_ref = run_session(reference, CalibrationSet.from_iterable([pool], source="pool"))
    return ExportContext(model, calib, evalset, eval_ref, pool, pool_ref, label,
                         options.budget_or_default(), options, bench, options.threads, workdir,
                         progress)


def reference_session(model: PreparedModel, threads: int | None) -> tuple[Session, str]:
    """torch eager FP32 on the live module; ONNX Runtime FP32 on the graph for an .onnx."""
    outputs = model.onnx_artifact.outputs
    if model.module is not None:
        from modelport.backends.torch.backend import TorchSession

        return TorchSession(model.module, model.inputs, outputs, threads=threads), \
            "torch:cpu:fp32"
    from modelport.backends.onnxruntime.backend import OnnxRuntimeSession

    return OnnxRuntimeSession(model.onnx_artifact.path, model.onnx_artifact.inputs,
                              outputs, threads=threads), "onnxruntime:cpu:fp32 (given ONNX)"


def reference_row(ctx: ExportContext) -> dict[str, Any]:
    reset_peak()
    session, label = reference_session(ctx.model, ctx.threads)
    with session:
        row = {"target": label, "precision": "fp32", "reference": True,
               "status": statuses.REFERENCE, "size_mb": _model_size_mb(ctx.model),
               "fidelity": fidelity_of(ctx, ctx.eval_reference)}
        row.update(bench_step(ctx, session, label).fields)
    if ctx.lm is not None:
        row["perplexity"] = row["fidelity"]["perplexity"]
    return row


# -- one target ---------------------------------------------------------------------------------
def export_target(ctx: ExportContext, target: Target, backend: Backend, dest: Destination, *,
                  fp32: dict[str, Any] | None = None, compare_only: bool = False
                  ) -> tuple[dict[str, Any], Path | None]:
    """build -> check fidelity (here, or through a proxy runtime) -> budget verdict -> bench ->
    speed verdict (vs ``fp32``, this backend's FP32 row of this run) -> bundle."""
    artifact, row = build_step(ctx, target, backend)
    inputs = artifact.inputs or ctx.model.onnx_artifact.inputs
    outputs = artifact.outputs or ctx.model.onnx_artifact.outputs
    runnable = backend.runnable(target)
    bench = None
    if runnable.ok:
        reset_peak()  # this target's memory, not the largest of the ones before it
        t0 = time.perf_counter()
        session = backend.load(artifact.main_path, target=target, inputs=inputs, outputs=outputs,
                               threads=ctx.threads, **artifact.session_options)
        load_s = time.perf_counter() - t0
        with session:
            metrics = check_step(ctx, session, inputs)
            if not budget_verdict(row, target, backend, metrics, ctx.budget, dest.allow_drop):
                return row, None
            bench = bench_step(ctx, session, str(target), load_s=load_s, inputs=inputs)
            row.update(bench.fields)
        if not apply_verdict(row, fp32, require_speedup=ctx.require_speedup):
            log.warning(row["failure"])
            return row, None
    else:
        row.update(status=statuses.NOT_RUN_HERE, reason=runnable.reason)
        log.info("%s: built, not run here: %s", target, runnable.reason)
        metrics = proxy_check_step(ctx, target, backend, artifact, inputs, outputs)
        if metrics is not None:  # the shipped graph, run here by another runtime (no timing)
            row["fidelity_by"] = metrics["checked_with"]
            if not budget_verdict(row, target, backend, metrics, ctx.budget, dest.allow_drop,
                                  checked_with=metrics["checked_with"]):
                return row, None
            row["status"] = statuses.NOT_RUN_HERE  # the verdict passed; it still ran elsewhere
    if not backend.bundleable or compare_only:
        return row, None
    bundle = bundle_step(ctx, target, backend, artifact, inputs, outputs, metrics,
                         bench.result if bench else None, row, dest)
    return row, bundle


def build_step(ctx: ExportContext, target: Target, backend: Backend
               ) -> tuple[Artifact, dict[str, Any]]:
    tdir = ctx.workdir / target.slug
    tdir.mkdir()
    log.info("building %s ...", target)
    start = time.perf_counter()
    calib = ctx.calib if target.precision in (Precision.INT8, *WEIGHT_ONLY) else None
    # Backend.build, or with --optimize the fastest candidate within budget measured here
    artifact = build_or_search(ctx, target, backend, calib, tdir, check=check_step)
    row: dict[str, Any] = {"target": str(target), "precision": str(target.precision),
                           "size_mb": artifact.size_bytes / 1e6 if artifact.files else None,
                           "build_s": time.perf_counter() - start}
    row.update({"search": artifact.info["search"]} if "search" in artifact.info else {})
    return artifact, row


def check_step(ctx: ExportContext, session: Session, inputs: list[TensorSpec]) -> dict[str, Any]:
    """Fidelity of ``session`` vs the reference on the evaluation split (fitted to the
    artifact's static shapes, if any); perplexity on the evaluation lines for LMs."""
    if ctx.lm is not None:
        return lm_check(ctx.lm, session)
    got = run_session(session, fit_set(ctx.evalset, inputs), batch_size=static_batch(inputs, 32),
                      static=static_batch(inputs, None) is not None)
    return fidelity_of(ctx, got)


def proxy_check_step(ctx: ExportContext, target: Target, backend: Backend, artifact: Artifact,
                     inputs: list[TensorSpec], outputs: list[TensorSpec]) -> dict[str, Any] | None:
    """Fidelity of a build-here/run-elsewhere artifact, from a runtime that can run its graph
    here (TensorRT's ONNX / Q/DQ ONNX in ONNX Runtime CPU); None when there is none."""
    session = backend.proxy_session(artifact.main_path, inputs=inputs, outputs=outputs,
                                    threads=ctx.threads)
    if session is None:
        return None
    with session:
        metrics = check_step(ctx, session, inputs)
    metrics["checked_with"] = f"{type(session).__name__} on this machine (the same graph)"
    log.info("%s: fidelity of the shipped graph checked here with %s", target,
             type(session).__name__)
    return metrics


@dataclass
class BenchStep:
    fields: dict[str, Any]
    result: Any = None


def bench_step(ctx: ExportContext, session: Session, label: str, *, load_s: float | None = None,
               inputs: list[TensorSpec] | None = None) -> BenchStep:
    """Time ``session`` with the run's one BenchSettings on the stored sample pool."""
    if ctx.bench is None:
        return BenchStep({})
    if ctx.lm is not None:
        from modelport.bench.lm_harness import LMBenchSettings

        result = lm_bench(LMBenchSettings(), session, ctx.lm, label)
        return BenchStep({"load_s": load_s, **result.fields()}, result)
    settings = ctx.bench
    static = static_batch(inputs, None) if inputs else None
    if static is not None:  # a static-shape artifact runs only its own batch size
        settings = replace(settings, batch_sizes=(static,))
    pool = fit_arrays(ctx.pool, inputs) if inputs else ctx.pool
    result = benchmark(session, pool, settings, label=label, load_s=load_s,
                       progress=ctx.progress)
    fields: dict[str, Any] = {"load_s": load_s, "stats": [vars(s).copy() for s in result.stats],
                              "peak_rss_mb": result.peak_rss_mb}
    for stats in result.stats:
        if stats.batch == min(settings.batch_sizes):
            fields.update(p50_ms=stats.p50_ms, p90_ms=stats.p90_ms, p99_ms=stats.p99_ms,
                          latency_batch=stats.batch)
        if stats.batch == max(settings.batch_sizes):
            fields.update(throughput=stats.throughput, throughput_batch=stats.batch)
    return BenchStep(fields, result)


def bundle_step(ctx: ExportContext, target: Target, backend: Backend, artifact: Artifact,
                inputs: list[TensorSpec], outputs: list[TensorSpec],
                metrics: dict[str, Any] | None, bench_result: Any, row: dict[str, Any],
                dest: Destination) -> Path:
    from modelport.bundle import write_bundle
    from modelport.bundle.manifest_build import build_manifest

    below = row.get("status") == statuses.BELOW_BUDGET
    root = dest.below_budget if below and dest.below_budget is not None else dest.out
    manifest = build_manifest(ctx, target, backend, artifact, inputs, outputs, metrics,
                              bench_result, dest.allow_drop)
    pool = fit_arrays(ctx.pool, inputs)
    samples = {f"in.{k}": v for k, v in pool.items()}
    refs = ctx.lm.last_pool_outputs if ctx.lm is not None else ctx.pool_reference
    samples.update({f"ref.{k}": v for k, v in refs.items()})
    bundle = write_bundle(root / target.slug, manifest=manifest, artifact_dir=artifact.workdir,
                          artifact_files=artifact.files, samples=samples,
                          tokenizer_json=ctx.model.tokenizer_json,
                          extra_files=ctx.model.bundle_files, force=dest.force)
    row["bundle"] = str(bundle)
    log.info("wrote %s", bundle)
    return bundle


# -- the table ----------------------------------------------------------------------------------
def add_speedups(rows: list[dict[str, Any]]) -> None:
    """Every row's speedup vs the reference row, when both ran at the same batch size."""
    base = rows[0]
    for row in rows:
        if (base.get("p50_ms") and row.get("p50_ms")
                and row.get("latency_batch") == base.get("latency_batch")):
            row["speedup_latency"] = base["p50_ms"] / row["p50_ms"]
        if (base.get("throughput") and row.get("throughput")
                and row.get("throughput_batch") == base.get("throughput_batch")):
            row["speedup_throughput"] = row["throughput"] / base["throughput"]


def fidelity_of(ctx: ExportContext, outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    if ctx.lm is not None:
        return ctx.lm.reference_metrics()
    return fidelity(outputs, ctx.eval_reference, task=ctx.model.task, labels=ctx.evalset.labels,
                    feeds=ctx.evalset, preprocessing=ctx.model.preprocessing)


def write_export_report(out: Path, ctx: ExportContext, rows: list[dict[str, Any]]) -> Path:
    from modelport.bench.fingerprint import fingerprint
    from modelport.io import write_json_atomic

    path = out / "export-report.json"
    write_json_atomic(path, {"model": ctx.model.name, "reference": ctx.reference_label,
                             "rows": rows, "fastest": fastest(rows), "machine": fingerprint()})
    return path


def _model_size_mb(model: PreparedModel) -> float | None:
    if model.module is None:
        return None
    return sum(p.numel() * p.element_size() for p in model.module.parameters()) / 1e6
