"""Compression benchmark: size x speed x fidelity of every recipe on every installed backend.

For each built-in model: the teacher and each compression recipe are exported to every
target (the real pipeline: ONNX export + validation + backend build), then every artifact and
the teacher's PyTorch eager FP32 are timed in this one run with the common harness, on the same
evaluation rows. Fidelity is always against the *teacher* on the held-out eval split (accuracy
on labels for digits-cnn, mean cosine to the teacher's embedding for MiniLM), so a compressed
model cannot look good by being compared with itself.

    .venv/bin/python experiments/compress_bench.py                  # full settings (tens of minutes)
    .venv/bin/python experiments/compress_bench.py --quick          # short training and timing
    .venv/bin/python experiments/compress_bench.py --update-results # also rewrite the section in
                                                              # experiments/RESULTS.md

Writes experiments/compress_results/{compress.json, compress.md, compress_pareto.png}.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
START, END = "<!-- compress-bench:start -->", "<!-- compress-bench:end -->"

RECIPES = {
    "digits-cnn": ["digits-cnn-slim", "digits-cnn-lowrank", "digits-cnn-sparse",
                   "digits-cnn-ptq", "digits-cnn-qat"],
    "minilm": ["minilm-l3-distill", "minilm-l3-qat", "minilm-prune-half"],
}
TARGETS = ["onnxruntime:cpu:fp32", "onnxruntime:cpu:int8", "openvino:cpu:fp32",
           "openvino:cpu:int8"]
QDQ_RECIPES = ("qat", "ptq")  # their graphs carry INT8 already: fp32 targets only
#: recipes applied to another recipe's output (pipelines chain through directories)
CHAINED = {"minilm-l3-qat": "minilm-l3-distill"}

log = logging.getLogger("compress_bench")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="digits-cnn,minilm")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--quick", action="store_true",
                        help="cap training at --max-steps and time for --duration seconds")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--duration", type=float, default=None, help="seconds per timing")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "compress_results")
    parser.add_argument("--update-results", action="store_true")
    parser.add_argument("--compressed", type=Path, default=None,
                        help="keep the compressed-model directories here and reuse those "
                             "present (train once, time later on a quiet machine)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("modelport",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore")

    max_steps = args.max_steps if args.max_steps is not None else (60 if args.quick else None)
    duration = args.duration if args.duration is not None else (1.0 if args.quick else 3.0)
    targets = _available(args.targets.split(","))
    log.info("targets here: %s", ", ".join(targets))
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="compress-bench-"))
    started = time.time()
    rows: list[dict[str, Any]] = []
    try:
        for model in args.models.split(","):
            rows += bench_model(model, targets, work, max_steps=max_steps, duration=duration,
                                threads=args.threads, keep=args.compressed)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    from modelport.bench.fingerprint import fingerprint

    settings = {"max_steps": max_steps, "duration_s": duration, "threads": args.threads,
                "quick": args.quick, "minutes": round((time.time() - started) / 60, 1),
                "command": "python experiments/compress_bench.py " + " ".join(argv or sys.argv[1:])}
    doc = {"rows": rows, "settings": settings, "machine": fingerprint()}
    (args.out / "compress.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    plot = args.out / "compress_pareto.png"
    plotted = plot_pareto(rows, plot)
    md = markdown(rows, settings, doc["machine"], plot if plotted else None)
    (args.out / "compress.md").write_text(md + "\n")
    print(md)
    if args.update_results:
        update_results(md)
    return 0


# -- one model ---------------------------------------------------------------------------------
def bench_model(name: str, targets: list[str], work: Path, *, max_steps: int | None,
                duration: float, threads: int | None,
                keep: Path | None = None) -> list[dict[str, Any]]:
    import modelport
    from modelport.backends.torch.backend import TorchSession
    from modelport.bench import BenchSettings
    from modelport.calibration_data.plan import bench_pool
    from modelport.models import resolve_model
    from modelport.passes.compress_steps import flop_example
    from modelport.passes.contract import count_flops

    teacher = resolve_model(f"builtin:{name}")
    _calib, evalset = teacher.default_data()
    example = flop_example(teacher)
    pool = bench_pool(teacher, evalset)
    settings = BenchSettings(batch_sizes=(1, 32), warmup=3, duration=duration, min_iters=10,
                             threads=threads)
    variants: list[dict[str, Any]] = [{
        "variant": "teacher", "dir": f"builtin:{name}", "module": teacher.module,
        "params": sum(p.numel() for p in teacher.module.parameters()),
        "flops": count_flops(teacher.module, example), "reports": []}]
    for recipe in RECIPES[name]:
        parent = CHAINED.get(recipe)
        base = str((keep or work) / parent) if parent else f"builtin:{name}"
        variants.append(_compressed_variant(name, recipe, (keep or work) / recipe, base=base,
                                            max_steps=max_steps, reuse=keep is not None))

    teacher_eval = _torch_outputs(teacher, teacher.module, evalset)
    rows = []
    with TorchSession(teacher.module, teacher.inputs, teacher.onnx_artifact.outputs
                      if teacher.onnx_artifact else _out_specs(teacher), threads=threads) as s:
        base = modelport.benchmark(s, pool, label="teacher torch", **_kw(settings))
    for v in variants:
        # the student's own torch eager row, then every backend
        rows.append(_row(name, v, "torch:cpu:fp32", None, teacher, teacher_eval, evalset, base,
                         _torch_outputs(teacher, v["module"], evalset),
                         _time_torch(teacher, v["module"], pool, settings)))
        for target in targets:
            if any(k in v["variant"] for k in QDQ_RECIPES) and target.endswith(":int8"):
                continue
            out = work / "bundles" / v["variant"]
            log.info("[%s] %s -> %s", name, v["variant"], target)
            try:
                res = modelport.export(v["dir"], [target], out=out, bench=None, progress=False,
                                       allow_accuracy_drop=True, force=True, threads=threads)
            except Exception as exc:  # noqa: BLE001 - a failing cell is a result, not a crash
                rows.append({"model": name, "variant": v["variant"], "target": target,
                             "status": f"failed: {type(exc).__name__}: {str(exc)[:160]}"})
                continue
            bundle_path = res.bundles[target]
            with modelport.load(bundle_path, threads=threads) as session:
                got = _session_outputs(session, evalset)
                timing = modelport.benchmark(session, _fit(pool, session), label=target,
                                             **_kw(settings))
            rows.append(_row(name, v, target, bundle_path, teacher, teacher_eval, evalset, base,
                             got, timing))
    # speedup of each variant over the teacher on the same target, measured in this run
    by_target = {r["target"]: r for r in rows if r.get("variant") == "teacher" and "p50_ms" in r}
    for r in rows:
        ref = by_target.get(r.get("target"))
        if ref and r.get("p50_ms"):
            r["speedup_same_target"] = ref["p50_ms"] / r["p50_ms"]
            r["thru_gain_same_target"] = r["throughput"] / ref["throughput"]
    return rows


def _compressed_variant(name: str, recipe: str, out: Path, *, base: str, max_steps: int | None,
                        reuse: bool) -> dict[str, Any]:
    """Compress (or reload a directory an earlier run kept): module, counts, pass reports."""
    from modelport.models import resolve_model
    from modelport.passes import compress

    saved = out / "compressed.json"
    if reuse and saved.is_file():
        log.info("[%s] reusing %s", name, out)
        manifest = json.loads(saved.read_text())
        reports = manifest["passes"]
        module = resolve_model(str(out)).module
        compress_s = manifest.get("seconds")
    else:
        log.info("[%s] compressing with %s ...", name, recipe)
        t0 = time.perf_counter()
        result = compress(base, recipe, out=out, progress=False, max_steps=max_steps,
                          force=True)
        reports, module = [r.to_dict() for r in result.reports], result.module
        compress_s = time.perf_counter() - t0
    if CHAINED.get(recipe):  # the parent's passes first: the whole road from the teacher
        parent = json.loads((out.parent / CHAINED[recipe] / "compressed.json").read_text())
        reports = parent["passes"] + reports
    last = reports[-1]
    return {"variant": recipe, "dir": str(out), "module": module,
            "params": last["params_after"], "flops": last["flops_after"],
            "sparsity": last["sparsity_after"], "compress_s": compress_s, "reports": reports}


def _row(name, v, target, bundle_path, teacher, teacher_eval, evalset, base, got, timing):
    row: dict[str, Any] = {"model": name, "variant": v["variant"], "target": target,
                           "params": v["params"], "flops": v["flops"],
                           "sparsity": v.get("sparsity", 0.0), "status": "ok"}
    if bundle_path is not None:
        manifest = json.loads((Path(bundle_path) / "manifest.json").read_text())
        files = [p for p in Path(bundle_path).iterdir()
                 if p.name not in ("manifest.json", "README.md", "samples.npz", "tokenizer.json")]
        raw = b"".join(p.read_bytes() for p in sorted(files) if p.is_file())
        row["size_mb"] = len(raw) / 1e6
        row["gzip_mb"] = len(gzip.compress(raw, compresslevel=6)) / 1e6
        row["passes"] = [p["name"] for p in manifest.get("passes", [])]
    else:
        module = v["module"]
        row["size_mb"] = sum(t.numel() * t.element_size() for t in module.state_dict().values()) / 1e6
    row.update(_fidelity(teacher, got, teacher_eval, evalset))
    b1, b32 = timing.at(1), timing.at(32)
    row.update(p50_ms=b1.p50_ms, p90_ms=b1.p90_ms, throughput=b32.throughput)
    row["speedup_vs_torch_teacher"] = base.at(1).p50_ms / b1.p50_ms
    row["thru_vs_torch_teacher"] = b32.throughput / base.at(32).throughput
    return row


def _fidelity(teacher, got, ref, evalset) -> dict[str, float]:
    from modelport.metrics import row_cosines

    a = got.reshape(len(got), -1).astype(np.float64)
    b = ref.reshape(len(ref), -1).astype(np.float64)
    cos = row_cosines(a, b)
    out = {"cosine_to_teacher": float(cos.mean()), "cosine_min": float(cos.min())}
    if teacher.task == "classification" and evalset.labels is not None:
        out["accuracy"] = float((got.argmax(-1) == evalset.labels).mean())
        out["teacher_accuracy"] = float((ref.argmax(-1) == evalset.labels).mean())
        out["fidelity"] = out["accuracy"]
    else:
        from modelport.metrics import similarity_spearman

        out["fidelity"] = out["cosine_to_teacher"]
        out["similarity_spearman"] = similarity_spearman(a, b)
    return out


def _torch_outputs(teacher, module, evalset) -> np.ndarray:
    from modelport.passes.contract import predict

    return predict(module, evalset)


def _time_torch(teacher, module, pool, settings):
    import modelport
    from modelport.backends.torch.backend import TorchSession

    with TorchSession(module, teacher.inputs, _out_specs(teacher), threads=settings.threads) as s:
        return modelport.benchmark(s, pool, label="torch", **_kw(settings))


def _session_outputs(session, evalset) -> np.ndarray:
    from modelport.metrics import run_session
    from modelport.shapes import fit_set

    data = fit_set(evalset, list(session.inputs.values())) if isinstance(session.inputs, dict) \
        else evalset
    return next(iter(run_session(session, data).values()))


def _fit(pool, session):
    from modelport.shapes import fit_arrays

    inputs = session.inputs
    return fit_arrays(pool, list(inputs.values()) if isinstance(inputs, dict) else inputs)


def _out_specs(model):
    from modelport.specs import TensorSpec

    return [TensorSpec(n, "float32", ("batch", "?")) for n in model.output_names]


def _kw(settings) -> dict[str, Any]:
    return {"batch_sizes": settings.batch_sizes, "warmup": settings.warmup,
            "duration": settings.duration, "min_iters": settings.min_iters,
            "threads": settings.threads}


def _available(names: list[str]) -> list[str]:
    from modelport import registry
    from modelport.specs import Target

    out = []
    for name in names:
        target = Target.parse(name)
        backend = registry.get_backend(target.runtime)
        if backend.availability(target).ok and backend.runnable(target).ok:
            out.append(name)
        else:
            log.info("skipping %s: %s", name, backend.availability(target).reason)
    return out


# -- reporting ---------------------------------------------------------------------------------
def markdown(rows, settings, machine, plot: Path | None) -> str:
    from modelport.bench.table import render_markdown

    def num(d, suffix=""):
        return lambda v: "-" if v is None else f"{v:.{d}f}{suffix}"

    def fid(r):
        if "accuracy" in r:
            return f"acc {100 * r['accuracy']:.2f}% (teacher {100 * r['teacher_accuracy']:.2f}%)"
        if "cosine_to_teacher" not in r:
            return "-"
        rho = r.get("similarity_spearman")
        return f"cos {r['cosine_to_teacher']:.4f}" + (f", ρ {rho:.3f}" if rho is not None else "")

    for r in rows:
        r["fid_text"] = fid(r)
        r["params_text"] = f"{r['params'] / 1e6:.3f}M" if r.get("params") else "-"
        r["flops_text"] = f"{r['flops'] / 1e6:.1f}M" if r.get("flops") else "-"
        r["sparsity_text"] = f"{100 * r.get('sparsity', 0):.0f}%"
    cols = [("model", "model", str), ("variant", "variant", str), ("target", "target", str),
            ("params_text", "params", str), ("flops_text", "FLOPs b1", str),
            ("sparsity_text", "zeros", str), ("size_mb", "size MB", num(2)),
            ("gzip_mb", "gzip MB", num(2)), ("fid_text", "fidelity vs teacher (eval split)", str),
            ("p50_ms", "p50 b1 ms", num(2)), ("speedup_same_target", "b1 × vs teacher same target",
                                             num(2, "x")),
            ("thru_gain_same_target", "b32 thru × same target", num(2, "x")),
            ("speedup_vs_torch_teacher", "b1 × vs torch teacher", num(2, "x")),
            ("status", "status", str)]
    cpu = machine.get("cpu", {}) if isinstance(machine, dict) else {}
    lines = [
        "## Compression: size × speed × fidelity",
        "",
        (f"Command: `{settings['command'].strip()}` ({settings['minutes']} min). Every ratio is "
        "measured in this one run, side by side on the same inputs."),
        (f"Machine: {cpu.get('model', '?') if isinstance(cpu, dict) else cpu}, "
         f"{machine.get('logical_cores', '?')} cores, flags {machine.get('cpu_flags', [])}."
         if machine else ""),
        ("Fidelity is against the teacher on the held-out eval split (digits: accuracy on labels; "
        "MiniLM: mean cosine of the sentence embedding to the 6-layer teacher's, and ρ = Spearman "
        "correlation of all pairwise sentence similarities with the teacher's). "
        "`b1 × vs teacher same target` is the speedup the compression buys on that backend; "
        "unstructured sparsity (digits-cnn-sparse) buys none on these dense runtimes, only gzip "
        "size. QAT/PTQ rows are Q/DQ graphs, run by fp32 targets (they carry their own INT8)."),
        "",
        render_markdown(rows, cols),
    ]
    if plot is not None:
        lines += ["", f"![Pareto front: latency vs fidelity]({plot.relative_to(ROOT)})"
                  if plot.is_relative_to(ROOT) else f"![pareto]({plot})"]
    return "\n".join(lines)


def plot_pareto(rows, path: Path) -> bool:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        log.info("matplotlib missing: no plot (pip install 'modelport[plot]')")
        return False
    models = sorted({r["model"] for r in rows})
    fig = Figure(figsize=(6.5 * len(models), 5.2), dpi=110, layout="constrained")
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    for ax, model in zip(axes, models, strict=True):
        pts = [r for r in rows if r["model"] == model and r.get("p50_ms") and "fidelity" in r]
        targets = sorted({p["target"] for p in pts})
        markers = dict(zip(targets, "os^Dv<>p*", strict=False))
        variants = sorted({p["variant"] for p in pts})
        colors = dict(zip(variants, [f"C{i}" for i in range(10)], strict=False))
        for p in pts:
            ax.scatter(p["p50_ms"], p["fidelity"], marker=markers[p["target"]],
                       color=colors[p["variant"]], s=50, alpha=0.85)
        front, best = [], -np.inf
        for p in sorted(pts, key=lambda p: (p["p50_ms"], -p["fidelity"])):
            if p["fidelity"] > best:
                front.append(p)
                best = p["fidelity"]
        ax.plot([p["p50_ms"] for p in front], [p["fidelity"] for p in front], "k--", lw=1,
                label="Pareto front")
        for v in variants:
            ax.scatter([], [], color=colors[v], label=v)
        for t in targets:
            ax.scatter([], [], marker=markers[t], color="gray", label=t)
        ax.set_xscale("log")
        ax.set_xlabel("p50 latency at batch 1, ms (log)")
        ax.set_ylabel("accuracy (eval)" if model == "digits-cnn" else "cosine to teacher (eval)")
        ax.set_title(model)
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
    fig.savefig(path)
    return True


def update_results(md: str) -> None:
    text = RESULTS.read_text("utf-8") if RESULTS.exists() else "# Benchmark results\n"
    block = f"{START}\n{md}\n{END}"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    RESULTS.write_text(text, "utf-8")


if __name__ == "__main__":
    sys.exit(main())
