"""A/B of two ORT int4 LM graphs of the same folder: one built at a base commit, one by this
checkout; decode tokens/s through ``LMSession.generate`` (lm_peers' workers and interleaved
rounds, onnxruntime-genai's int4 as the yardstick) and one decode step through plain
``session.run`` (no generation loop: the graph alone).

The base bundle is built from ``git archive BASE src`` on ``PYTHONPATH``; both bundles then
run with the modelport that this interpreter imports (set ``PYTHONPATH`` to run both on the
base's runtime code), so only the graph differs::

    .venv/bin/python experiments/lm_graph_ab.py --base 9f03324 --rounds 6 --steps 40
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
TARGET = "onnxruntime:cpu:int4"
BUILD = """
import sys; sys.path.insert(0, sys.argv[1])
from pathlib import Path
from lm_peers import build_modelport
build_modelport(Path(sys.argv[2]), Path(sys.argv[3]), [sys.argv[4]])
"""


def build_at(commit: str, folder: Path, work: Path) -> Path:
    """The int4 bundle of ``folder`` as the code at ``commit`` builds it."""
    out = work / f"base-{commit}"
    bundle = out / "modelport" / TARGET.replace(":", "-")
    if (bundle / "manifest.json").is_file():
        return bundle
    tree = Path(tempfile.mkdtemp(prefix="lm_graph_ab_"))
    archive = subprocess.run(["git", "archive", commit, "src", "experiments"], cwd=ROOT,
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    out.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run([sys.executable, "-c", BUILD, str(tree / "experiments"), str(folder),
                        str(out), TARGET], check=True,
                       env={**os.environ, "PYTHONPATH": str(tree / "src")})
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    return bundle


def step_times(paths: dict[str, Path], rounds: int) -> list[str]:
    """Median ms of one decode step (one new token on a random past), interleaved."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the bundles
    sessions = {k: ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
                for k, p in paths.items()}
    rng = np.random.default_rng(0)
    lines = []
    for past, batch in [(32, 1), (32, 4), (256, 1), (256, 4)]:
        feeds = {"input_ids": np.full((batch, 1), 7, np.int64),
                 "attention_mask": np.ones((batch, past + 1), np.int64),
                 "position_ids": np.full((batch, 1), past, np.int64)}
        for spec in next(iter(sessions.values())).get_inputs():
            if spec.name.startswith("past_key_values."):
                feeds[spec.name] = rng.standard_normal(
                    (batch, spec.shape[1], past, spec.shape[3])).astype(np.float32)
        times: dict[str, list[float]] = {k: [] for k in sessions}
        for _ in range(rounds):
            for k, s in sessions.items():
                f = {i.name: feeds[i.name] for i in s.get_inputs()}
                t0 = time.perf_counter()
                s.run(["logits"], f)
                times[k].append(time.perf_counter() - t0)
        med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
        lines.append(f"p{past} b{batch}: " + ", ".join(f"{k} {v:.2f} ms" for k, v in med.items()))
    return lines


def main() -> int:
    import lm_peers
    from stamp import stamp

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="commit whose build is the A side")
    p.add_argument("--work", default="/tmp/lmpeers/work", help="lm_peers' work folder")
    p.add_argument("--genai-venv", default="/tmp/lmpeers/genai")
    p.add_argument("--rounds", type=int, default=6, help="interleaved generate rounds (0: none)")
    p.add_argument("--steps", type=int, default=40, help="interleaved plain steps (0: none)")
    p.add_argument("--new", type=int, default=32)
    p.add_argument("--reuse-head", action="store_true",
                   help="time the B bundle of the last run again instead of rebuilding it")
    args = p.parse_args()
    args.prompts, args.batches = [32, 256], [1, 4]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    folder = lm_peers.make_folder(work / "llama-125m")
    base = build_at(args.base, folder, work)
    if not args.reuse_head:  # this checkout's build, unless told the last one still is
        shutil.rmtree(work / "ab-head", ignore_errors=True)
    (work / "ab-head").mkdir(exist_ok=True)
    head = lm_peers.build_modelport(folder, work / "ab-head", [TARGET])[TARGET]
    genai = Path(args.genai_venv)
    rows = [lm_peers.Row(f"A {args.base}", "modelport", sys.executable, base, False, "base"),
            lm_peers.Row("B this checkout", "modelport", sys.executable, head, False, "head")]
    if (genai / "bin" / "python").exists():
        rows.append(lm_peers.Row("genai-int4", "genai", str(genai / "bin" / "python"),
                                 lm_peers.build_genai(genai, folder, work, "int4"), True,
                                 "onnxruntime_genai.models.builder -p int4 -e cpu"))
    load = os.getloadavg()[0]
    if args.rounds:
        result = lm_peers.time_rows(rows, args)
        result["ratios"] = lm_peers.ratios(result)
        (work / "lm_graph_ab.json").write_text(json.dumps(result, indent=1))
        print(lm_peers.markdown(result, ""))
        for p_, b in result["configs"]:
            cell = {r["row"]: r["tokens_per_s"] for r in result["rows"]
                    if (r["prompt"], r["batch"]) == (p_, b)}
            a, bb = cell[rows[0].label], cell[rows[1].label]
            extra = f", B / genai {bb / cell['genai-int4']:.2f}x" if "genai-int4" in cell else ""
            print(f"- p{p_} b{b}: B / A tokens/s {bb / a:.2f}x{extra}")
    if args.steps:
        print("\none decode step, plain session.run, median of", args.steps, "interleaved:")
        paths = {"A": base / "model.onnx", "B": head / "model.onnx"}
        if len(rows) > 2:
            paths["genai"] = rows[2].path / "model.onnx"
        for line in step_times(paths, args.steps):
            print("-", line)
    print(f"\n`{stamp()}` · load average {load:.1f} before / {os.getloadavg()[0]:.1f} after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
