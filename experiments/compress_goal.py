"""The compression search on builtin:minilm, and minilm-5x timed side by side with its teacher.

    # 1. the search that minilm-5x records (the folder: the best student + search.json, pareto.png)
    .venv/bin/python experiments/compress_goal.py search --max-time 50m --out /tmp/minilm-search
    # 2. the shipped recipe applied, exported to the CPU INT8 targets, timed in one process
    #    against the torch FP32 teacher at batch 1, seq 128; proxy on the evaluation split
    .venv/bin/python experiments/compress_goal.py time --recipe minilm-5x

Writes experiments/compress_results/{goal_search.json, goal_search.md, goal_pareto.png,
minilm_5x.json, minilm_5x.md}.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "compress_results"
log = logging.getLogger("compress_goal")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("search")
    s.add_argument("--goal", type=float, default=5.0)
    s.add_argument("--keep", type=float, default=0.97)
    s.add_argument("--target", default="openvino:cpu:int8")
    s.add_argument("--max-time", default="50m")
    s.add_argument("--epochs", type=int, default=3)
    s.add_argument("--augment", type=int, default=6000)
    s.add_argument("--max-candidates", type=int, default=8)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--threads", type=int, default=None,
                   help="threads of every timed session, teacher and students alike")
    t = sub.add_parser("time")
    t.add_argument("--recipe", default="minilm-5x")
    t.add_argument("--dir", type=Path, default=None, help="a compressed folder (skip training)")
    t.add_argument("--targets", default="openvino:cpu:int8,onnxruntime:cpu:int8")
    t.add_argument("--duration", type=float, default=5.0)
    t.add_argument("--threads", type=int, default=None)
    sub.add_parser("table")
    args = parser.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("modelport").setLevel(logging.INFO)
    import warnings

    warnings.filterwarnings("ignore")
    for noisy in ("root", "onnx_ir", "nncf", "torch"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    RESULTS.mkdir(parents=True, exist_ok=True)
    command = "python experiments/compress_goal.py " + " ".join(argv or sys.argv[1:])
    if args.cmd == "table":  # redraw minilm_5x.md from minilm_5x.json
        md = _table(json.loads((RESULTS / "minilm_5x.json").read_text()))
        (RESULTS / "minilm_5x.md").write_text(md + "\n")
        print(md)
        return 0
    return run_search(args, command) if args.cmd == "search" else run_time(args, command)


def run_search(args: argparse.Namespace, command: str) -> int:
    from modelport.bench.fingerprint import fingerprint
    from modelport.cli.common import parse_duration
    from modelport.passes.goal_measure import Timing
    from modelport.passes.goal_report import markdown
    from modelport.passes.goal_search import SearchSettings, search

    settings = SearchSettings(epochs=args.epochs, augment=args.augment,
                              max_time=parse_duration(args.max_time),
                              max_candidates=args.max_candidates,
                              timing=Timing(threads=args.threads))
    report = search("builtin:minilm", speed=args.goal, keep=args.keep, target=args.target,
                    out=args.out, force=True, settings=settings, progress=False)
    report["command"], report["commit"] = command, _commit()
    report["machine"] = fingerprint()
    (RESULTS / "goal_search.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (RESULTS / "goal_search.md").write_text(markdown(report) + "\n")
    shutil.copy(args.out / "pareto.png", RESULTS / "goal_pareto.png")
    print(markdown(report))
    return 0


def run_time(args: argparse.Namespace, command: str) -> int:
    """Teacher torch FP32 and the student on each target, timed here in one process."""
    import modelport
    from modelport.bench.fingerprint import fingerprint
    from modelport.calibration_data.plan import bench_pool
    from modelport.metrics import run_session, similarity_spearman
    from modelport.models import resolve_model
    from modelport.passes import compress
    from modelport.passes.contract import predict
    from modelport.passes.goal_measure import TeacherClock, Timing
    from modelport.shapes import fit_arrays, fit_set

    work = Path(tempfile.mkdtemp(prefix="minilm-5x-"))
    teacher = resolve_model("builtin:minilm")
    _calib, evalset = teacher.default_data()
    pool = bench_pool(teacher, evalset)  # batch 1 at seq 128 (the bench length)
    timing = Timing(duration=args.duration, threads=args.threads)
    folder = args.dir
    started = time.time()
    if folder is None:
        folder = work / args.recipe
        compress("builtin:minilm", args.recipe, out=folder, progress=False)
    ref = predict(teacher.module, evalset)
    rows: list[dict[str, Any]] = []
    clock = TeacherClock(teacher, teacher.module, pool, timing)
    rows.append({"model": "teacher (all-MiniLM-L6-v2)", "runtime": "torch:cpu:fp32",
                 "b1_ms": clock.alone(), "speedup": 1.0, "proxy_eval": 1.0})
    manifest = json.loads((Path(folder) / "compressed.json").read_text())
    qat = any(r["op"] == "qat" for r in manifest["structure"])
    targets = [t.replace(":int8", ":fp32") if qat else t for t in args.targets.split(",")]
    for target in targets:
        res = modelport.export(str(folder), [target], out=work / "bundles", bench=None,
                               progress=False, allow_accuracy_drop=True, force=True,
                               threads=args.threads)
        with modelport.load(res.bundles[target], threads=args.threads) as session:
            specs = list(session.inputs.values())
            got = next(iter(run_session(session, fit_set(evalset, specs)).values()))
            timed = clock.against(session, fit_arrays(pool, specs))
        rows.append({"model": f"{manifest['recipe']['name']}" + (" (Q/DQ)" if qat else ""),
                     "runtime": target, "b1_ms": timed["latency_ms"], **timed,
                     "speedup": timed["teacher_ms"] / timed["latency_ms"],
                     "speedup_p50": timed["teacher_p50_ms"] / timed["p50_ms"],
                     "proxy_eval": similarity_spearman(got.astype("float64"),
                                                       ref.astype("float64"))})
    clock.close()
    doc = {"rows": rows, "command": command, "commit": _commit(), "machine": fingerprint(),
           "minutes": round((time.time() - started) / 60, 1), "folder": str(folder),
           "eval_sentences": len(evalset)}
    (RESULTS / "minilm_5x.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    md = _table(doc)
    (RESULTS / "minilm_5x.md").write_text(md + "\n")
    print(md)
    shutil.rmtree(work, ignore_errors=True)
    return 0


def _table(doc: dict[str, Any]) -> str:
    cpu = doc["machine"].get("cpu", {})
    lines = [(f"Command: `{doc['command']}` at commit {doc['commit']} ({doc['minutes']} min). "
             f"Machine: {cpu.get('model', cpu) if isinstance(cpu, dict) else cpu}, "
             f"{doc['machine'].get('logical_cores', '?')} cores, shared. Batch 1, seq 128, "
             f"one thread each, each student timed in rounds alternating with the teacher (speedup = "
             f"teacher / student of the same rounds); proxy = Spearman of all pairwise similarities vs the teacher's on the "
             f"{doc['eval_sentences']} evaluation sentences."), "",
             ("| model | runtime | b1 ms (fastest call) | × torch teacher | × by p50 | "
             "proxy (eval) |"),
             "|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        p50 = f"{r['speedup_p50']:.2f}x" if r.get("speedup_p50") else "-"
        lines.append(f"| {r['model']} | {r['runtime']} | {r['b1_ms']:.2f} | "
                     f"{r['speedup']:.2f}x | {p50} | {r['proxy_eval']:.3f} |")
    return "\n".join(lines)


def _commit() -> str:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


if __name__ == "__main__":
    sys.exit(main())
