"""Does the modelport harness agree with OpenVINO's own benchmark_app on the same IR?

Both run in one process tree, one after the other, with the same settings: device, inference
precision hint, performance hint, streams (and so infer requests), batch, duration, and the same
real input rows. The ratio ours / benchmark_app is reported for latency (p50 vs median) and
throughput.

Known differences, and the setting that controls each:
- Inputs. benchmark_app fills one tensor per infer request before the loop and sends the same
  one every iteration (with a dynamic-shape IR it re-sets that tensor every iteration: "full
  mode"). The harness cycles through ``--rotate`` distinct batches (default 8), so caches see
  fresh data. ``--rotate 1`` reproduces benchmark_app's reuse; both are measured.
- Latency. benchmark_app times each request inside the runtime; the harness times
  ``session.infer`` from Python (copying the feed in and the outputs out). At batch 1 on a
  small model that overhead is a visible share of the time.

    .venv/bin/python experiments/ov_benchmark_app.py bundles/minilm/openvino-cpu-int8 --duration 10
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

BENCHMARK_APP = Path(sys.executable).with_name("benchmark_app")


def run_benchmark_app(xml: Path, feeds: dict[str, np.ndarray], *, hint: str, streams: int | None,
                      duration: float, device: str = "CPU") -> dict[str, float]:
    """benchmark_app on ``xml`` with ``feeds`` (one batch, saved as .npy): its own numbers,
    throughput converted to samples/s."""
    with tempfile.TemporaryDirectory(prefix="modelport-bapp-") as tmp:
        files = []
        for name, array in feeds.items():
            np.save(Path(tmp) / f"{name}.npy", array)
            files.append(f"{name}:{Path(tmp) / f'{name}.npy'}")
        shapes = ",".join(f"{n}[{','.join(str(d) for d in a.shape)}]" for n, a in feeds.items())
        cmd = [str(BENCHMARK_APP), "-m", str(xml), "-d", device, "-infer_precision", hint,
               "-hint", "latency" if streams is None else "throughput",
               "-t", str(max(1, round(duration))), "-data_shape", shapes, "-i", *files,
               "-report_type", "no_counters", "-report_folder", tmp, "-json_stats"]
        if streams:
            cmd += ["-nstreams", str(streams)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"benchmark_app failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        report = json.loads((Path(tmp) / "benchmark_report.json").read_text())
    res = report["execution_results"]
    setup = report["configuration_setup"]
    # benchmark_app's FPS counts its own idea of the batch: with no layout on the inputs (text
    # models) it sees batch 1 and reports requests/s; the harness reports samples/s
    seen = str(setup.get("batch size", "1"))
    batch = len(next(iter(feeds.values())))
    per_sample = batch / int(seen) if seen.isdigit() and int(seen) > 0 else batch
    return {"median_ms": float(res["latency (ms)"]), "avg_ms": float(res["avg latency"]),
            "throughput": float(res["throughput"]) * per_sample, "app_batch_seen": seen,
            "iters": int(res["total number of iterations"]),
            "requests": int(setup["number of parallel infer requests"]),
            "inference_only": setup.get("inference_only")}


def run_harness(xml: Path, pool: dict[str, np.ndarray], inputs, outputs, *, hint: str,
                streams: int | None, batch: int, duration: float, rotate: int) -> dict[str, float]:
    from modelport.backends.openvino.backend import OpenVINOSession
    from modelport.bench.harness import BenchSettings, benchmark

    settings = BenchSettings(batch_sizes=(batch,), warmup=5, duration=duration, rotate=rotate,
                             streams=streams)
    with OpenVINOSession(xml, inputs, outputs, inference_precision=hint,
                         streams=streams) as session:
        stats = benchmark(session, pool, settings, progress=False).stats[0]
        requests = session.requests
    return {"p50_ms": stats.p50_ms, "mean_ms": stats.mean_ms, "throughput": stats.throughput,
            "iters": stats.iters, "requests": requests}


def agreement(xml: Path, pool: dict[str, np.ndarray], inputs, outputs, *, hint: str,
              batch: int, streams: int | None, duration: float,
              rotates: tuple[int, ...] = (1, 8)) -> list[dict[str, Any]]:
    """One row per harness ``rotate`` setting: ours / benchmark_app for latency and throughput."""
    from modelport.bench.harness import make_feeds

    app = run_benchmark_app(xml, make_feeds(pool, batch, 1)[0], hint=hint, streams=streams,
                            duration=duration)
    rows = []
    for rotate in rotates:
        ours = run_harness(xml, pool, inputs, outputs, hint=hint, streams=streams, batch=batch,
                           duration=duration, rotate=rotate)
        rows.append({
            "mode": "latency (sync, 1 request)" if streams is None
            else f"throughput ({ours['requests']} requests)",
            "batch": batch, "hint": hint, "rotate": rotate,
            "app_median_ms": app["median_ms"], "ours_p50_ms": ours["p50_ms"],
            "latency_ratio": ours["p50_ms"] / app["median_ms"],
            "app_throughput": app["throughput"], "ours_throughput": ours["throughput"],
            "throughput_ratio": ours["throughput"] / app["throughput"],
            "app_requests": app["requests"], "ours_requests": ours["requests"],
        })
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    head = ("| IR | mode | batch | rotate | benchmark_app median ms | harness p50 ms | latency "
            "ratio | benchmark_app /s | harness /s | throughput ratio |\n"
            "|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        lines.append(f"| {r.get('ir', '')} | {r['mode']} | {r['batch']} | {r['rotate']} | "
                     f"{r['app_median_ms']:.2f} | {r['ours_p50_ms']:.2f} | "
                     f"{r['latency_ratio']:.3f} | {r['app_throughput']:.1f} | "
                     f"{r['ours_throughput']:.1f} | {r['throughput_ratio']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle", type=Path, help="an OpenVINO bundle (model.xml + stored samples)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--streams", default=None,
                   help="throughput mode with N streams ('auto': THROUGHPUT hint); "
                        "default: latency mode")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    p.add_argument("--rotate", default="1,8", help="harness input rotations to compare")
    args = p.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    from modelport.bundle import open_bundle
    from modelport.shapes import fit_arrays

    bundle = open_bundle(args.bundle)
    if bundle.target.runtime != "openvino":
        raise SystemExit(f"{args.bundle} is a {bundle.target} bundle, not OpenVINO")
    pool, _ = bundle.samples()
    hint = bundle.manifest["build"]["inference_precision_hint"]
    streams = None if args.streams is None else (0 if args.streams == "auto" else int(args.streams))
    rows = agreement(bundle.artifact_path, fit_arrays(pool, bundle.inputs), bundle.inputs,
                     bundle.outputs, hint=hint, batch=args.batch, streams=streams,
                     duration=args.duration,
                     rotates=tuple(int(r) for r in args.rotate.split(",")))
    for row in rows:
        row["ir"] = bundle.manifest["target"]
    print(markdown(rows))


if __name__ == "__main__":
    main()
