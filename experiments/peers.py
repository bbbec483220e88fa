"""Every modelport artifact beside the peers' plain tools on MiniLM, in one process, on this CPU.

MiniLM (all-MiniLM-L6-v2) at seq 128, one ONNX export. modelport rows: ORT INT8 and OpenVINO
INT8 with their default recipes, and the ``--optimize latency`` artifacts of both (the recipe
search, loaded from their bundles so the chosen runtime settings apply). Peer rows, each what a
user gets from the tool's documented one call: ORT ``quantize_dynamic(src, dst)``; NNCF
``quantize`` with ``model_type=TRANSFORMER`` (hint f32, and the plugin's default precision);
NNCF ``quantize`` with nothing else; the FP32 IR compiled with the plugin's default precision
(bf16 on a bf16 CPU); with ``--optimum-intel-venv``, optimum-intel's ``OVSentenceTransformer``
export + ``OVQuantizer`` defaults, made in its own venv (its pins differ from ours;
peer_envs/optimum_intel_minilm.py) from the same calibration feeds, and compiled here as
optimum-intel compiles it (the LATENCY hint, the plugin's default precision). The venv:

    python -m venv /tmp/oi-venv && /tmp/oi-venv/bin/pip install torch==2.13.0 \
        "optimum-intel[openvino]==2.2.0" "sentence-transformers<5.2"
    /tmp/oi-venv/bin/pip uninstall -y torchvision  # pulled in, built for another torch

Fidelity = mean cosine vs torch FP32 on the held-out evaluation sentences (padded to 128).
Speed = p50 at batch 1 and 32, medians over interleaved rounds (bench/interleaved.py), as
ratios to torch FP32 eager. Each artifact is loaded ``--loads`` times (each load its own
compile, timed as its own session) and its figure is the mean over the loads: two compiles of
one IR ran up to ~9% apart at batch 1 on a 2-core Zen 5, steadily over rounds, so one load per
row would let a lucky compile decide which peer is fastest. "Best modelport / best peer"
compares the fastest modelport row with the fastest peer row whose fidelity is not higher than
it.

    .venv/bin/python experiments/peers.py --update-docs      # writes docs/performance.md
    .venv/bin/python experiments/peers.py --duration 1 --rounds 1 --max-time 3m
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

log = logging.getLogger("peers")
ORT_INT8, OV_INT8 = "onnxruntime:cpu:int8", "openvino:cpu:int8"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=6.0, help="seconds per artifact and batch")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (duration split)")
    p.add_argument("--max-time", type=float, default=600.0,
                   help="seconds of recipe search per modelport target (--optimize)")
    p.add_argument("--loads", type=int, default=2,
                   help="times each artifact is loaded (compiled); each load is timed as its own "
                        "session and the row's figure is their mean (default 2): one compile can "
                        "run several percent faster or slower than another of the same file")
    p.add_argument("--calib", type=int, default=128,
                   help="calibration sentences, the same for every INT8 artifact (default 128)")
    p.add_argument("--optimum-intel-venv", type=Path, default=None,
                   help="a venv with optimum-intel (see the docstring): its INT8 IR is a peer row")
    p.add_argument("--json", type=Path, default=None,
                   help="also write every row's figures (each load's too) to this JSON file")
    p.add_argument("--update-docs", action="store_true",
                   help="write the table into docs/performance.md (block peers)")
    args = p.parse_args()
    if args.loads < 1:
        p.error(f"--loads must be at least 1, got {args.loads}")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    log.setLevel(logging.INFO)
    logging.getLogger("modelport").setLevel(logging.INFO)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="modelport-peers-") as tmp:
        result = run(Path(tmp), args)
    from stamp import stamp

    result["load_avg"] = [load, os.getloadavg()[0]]
    result["stamp"] = stamp()
    text = report(result) + (f"\n\n({result['stamp']} · load average {load:.1f} before / "
                             f"{result['load_avg'][1]:.1f} after)")
    print(text)
    if args.json:
        import json

        args.json.write_text(json.dumps(result, indent=1, default=str))
    if args.update_docs:
        from results_md import DOCS, update_doc_block

        update_doc_block(DOCS / "performance.md", "peers", text)


def run(tmp: Path, args) -> dict[str, Any]:
    from modelport.backends.torch.backend import TorchSession
    from modelport.bench.harness import BenchSettings
    from modelport.bench.interleaved import time_interleaved
    from modelport.calibration_data.plan import bench_pool
    from modelport.exporters import export_onnx
    from modelport.metrics import fidelity, run_session
    from modelport.models import resolve_model
    from modelport.shapes import fit_set
    from modelport.specs import TensorSpec

    model = resolve_model("builtin:minilm")
    model.onnx_artifact = export_onnx(model, tmp / "model.onnx")
    calib, evalset = model.default_data()
    calib = calib.take(min(args.calib, len(calib)))
    held_out = evalset
    inputs, outputs = model.onnx_artifact.inputs, model.onnx_artifact.outputs
    pool = bench_pool(model, evalset)
    seq = int(pool["input_ids"].shape[1])
    evalset = fit_set(evalset, [TensorSpec(s.name, s.dtype, (1, seq)) for s in inputs])
    rows: dict[str, dict[str, Any]] = {}
    sessions: dict[str, Any] = {}

    loads: dict[str, list[str]] = {}  # row label -> the labels of its loads

    def add(label: str, open_session, kind: str, recipe: str, times: int = args.loads) -> None:
        """``open_session()`` loads the artifact (a compile): called ``times`` times, each load
        timed as its own session, the row's figure the mean over them."""
        rows[label] = {"kind": kind, "recipe": recipe}
        loads[label] = [label if i == 0 else f"{label} (load {i + 1})" for i in range(times)]
        for name in loads[label]:
            sessions[name] = open_session()
        log.info("built %s (%d load%s)", label, times, "s" if times > 1 else "")

    add("torch FP32 eager", lambda: TorchSession(model.module, inputs, outputs), "reference", "",
        times=1)
    for target, label in ((ORT_INT8, "modelport ORT INT8"), (OV_INT8, "modelport OpenVINO INT8")):
        open_session, art = _modelport_loader(target, model, calib, tmp, inputs, outputs)
        add(label, open_session, "modelport", "default recipe, " + str(art.info.get("cpu_kind")))
    for target, open_session, search in optimized(model, calib, held_out, tmp, args.max_time):
        label = f"modelport {target} --optimize latency"
        add(label, open_session, "modelport",
            f"{search.get('chosen')} ({_settings(search.get('runtime_settings'))})")
        rows[label]["search"] = search  # every candidate's figures, for --json
    for label, open_session, recipe in peers(model, calib, tmp, inputs, outputs,
                                             args.optimum_intel_venv):
        add(label, open_session, "peer", recipe)
    reference = run_session(sessions["torch FP32 eager"], evalset)
    for label, row in rows.items():
        got = run_session(sessions[label], evalset, batch_size=32)
        row["cosine"] = fidelity(got, reference, task=model.task)["cosine_mean"]
    settings = BenchSettings(batch_sizes=(1, 32), warmup=3, duration=args.duration / args.rounds,
                             min_iters=3)
    timed = time_interleaved(sessions, pool, settings, rounds=args.rounds,
                             on_round=lambda r, n: log.info("round %d of %d timed", r, n))
    for label, names in loads.items():
        rows[label]["p50_ms"] = {b: statistics.fmean(timed[n].p50_ms[b] for n in names)
                                 for b in (1, 32)}
        rows[label]["p50_ms_per_load"] = {b: [timed[n].p50_ms[b] for n in names] for b in (1, 32)}
    for session in sessions.values():
        session.close()
    return {"seq": seq, "eval": len(evalset), "calib": len(calib), "loads": args.loads,
            "rows": rows}


def _modelport_loader(target: str, model, calib, tmp: Path, inputs, outputs):
    """A modelport build of ``target`` (default recipe) and a function that loads it: the
    session the build opened first, a new load on every later call."""
    from int8_recipes import _modelport, load_artifact

    from modelport.specs import Target

    session, art = _modelport(target.split(":")[0], target, model, calib, tmp, inputs, outputs)
    opened = [session]

    def open_session():
        return opened.pop() if opened else load_artifact(art, Target.parse(target), inputs,
                                                         outputs)

    return open_session, art


def optimized(model, calib, evalset, tmp: Path, max_time: float):
    """The --optimize latency bundles of both INT8 targets, each with a function that loads it
    as a user would."""
    import modelport
    from modelport.backends.base import BuildOptions
    from modelport.bundle import open_bundle
    from modelport.optimize import SearchSettings

    out = tmp / "optimized"
    result = modelport.export(model, [ORT_INT8, OV_INT8], out=out, bench=None, progress=False,
                              calib=calib, eval=evalset,
                              options=BuildOptions(search=SearchSettings(
                                  objective="latency", max_time=max_time, cache=False)))
    for target, bundle in result.bundles.items():
        # the manifest only: every load below verifies the bundle's checksums
        search = open_bundle(bundle, verify=False).manifest["build"].get("search") or {}
        yield target, (lambda b=bundle: modelport.load(b)), search


def peers(model, calib, tmp: Path, inputs, outputs, optimum_venv: Path | None = None):
    """Each peer artifact: (label, a function that loads it, the call that made it)."""
    import nncf
    import openvino as ov
    from onnxruntime.quantization import quantize_dynamic

    from modelport.backends.onnxruntime.backend import OnnxRuntimeSession
    from modelport.backends.openvino.backend import OpenVINOSession

    src = str(model.onnx_artifact.path)
    quantize_dynamic(src, str(tmp / "ort-plain.onnx"))
    yield ("ORT quantize_dynamic defaults",
           lambda: OnnxRuntimeSession(tmp / "ort-plain.onnx", inputs, outputs),
           "quantize_dynamic(src, dst)")
    fp32 = tmp / "ov-fp32.xml"
    ov.save_model(ov.convert_model(src), str(fp32), compress_to_fp16=False)
    yield ("OpenVINO FP32 IR, plugin default precision",
           lambda: PluginDefault(fp32, inputs, outputs), "compile_model(ir, 'CPU')")
    dataset = nncf.Dataset(calib.samples)
    for preset, kwargs in (("transformer preset", {"model_type": nncf.ModelType.TRANSFORMER}),
                           ("defaults", {})):
        q = nncf.quantize(ov.convert_model(src), dataset, subset_size=len(calib), **kwargs)
        xml = tmp / f"nncf-{preset.split()[0]}.xml"
        ov.save_model(q, str(xml), compress_to_fp16=False)
        call = "nncf.quantize(model, data" + (", model_type=TRANSFORMER)" if kwargs else ")")
        yield (f"NNCF {preset}, hint f32",
               lambda x=xml: OpenVINOSession(x, inputs, outputs, inference_precision="f32"), call)
        yield (f"NNCF {preset}, plugin default precision",
               lambda x=xml: PluginDefault(x, inputs, outputs), call)
    if optimum_venv is not None:
        xml, versions = optimum_intel(optimum_venv, calib, tmp)
        yield ("optimum-intel OVQuantizer defaults", lambda: PluginDefault(xml, inputs, outputs),
               f"OVSentenceTransformer export + OVQuantizer(OVQuantizationConfig()) ({versions})")


def optimum_intel(venv: Path, calib, tmp: Path) -> tuple[Path, str]:
    """optimum-intel's INT8 IR of MiniLM, made in ``venv`` from the same calibration feeds."""
    import json
    import subprocess

    import numpy as np

    from modelport.models.minilm import model_dir

    npz = tmp / "oi-calib.npz"
    np.savez(npz, **{f"{k}:{i}": v for i, s in enumerate(calib.samples) for k, v in s.items()})
    proc = subprocess.run([str(venv / "bin" / "python"),
                           str(Path(__file__).parent / "peer_envs" / "optimum_intel_minilm.py"),
                           str(model_dir()), str(npz), str(tmp / "optimum-intel")],
                          check=False, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        sys.exit(f"optimum-intel failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    versions = ", ".join(f"{k} {v}" for k, v in out["versions"].items())
    return Path(out["xml"]), versions


class PluginDefault:
    """An IR compiled as ``core.compile_model(xml, "CPU")`` with the LATENCY hint and nothing
    else: the plugin picks the inference precision (bf16 on a bf16 CPU)."""

    def __init__(self, xml: Path, inputs, outputs) -> None:
        import openvino as ov

        self._compiled = ov.Core().compile_model(str(xml), "CPU",
                                                 {"PERFORMANCE_HINT": "LATENCY"})
        self._request = self._compiled.create_infer_request()
        self._names = [s.name for s in outputs]
        self.precision = str(self._compiled.get_property("INFERENCE_PRECISION_HINT"))

    def infer(self, feeds):
        result = self._request.infer(dict(feeds))
        return {n: result[self._compiled.output(n)] for n in self._names}

    def synchronize(self) -> None:
        pass

    def close(self) -> None:
        self._request = self._compiled = None


def _settings(settings: dict | None) -> str:
    from modelport.optimize.candidates import Runtime

    return Runtime(**settings).describe() if settings else "runtime defaults"


def report(result: dict[str, Any]) -> str:
    rows = result["rows"]
    torch = rows["torch FP32 eager"]["p50_ms"]
    lines = [(f"MiniLM (all-MiniLM-L6-v2), seq {result['seq']}; fidelity = mean cosine vs torch "
              f"FP32 on {result['eval']} held-out sentences; INT8 calibrated on "
              f"{result['calib']}. Speed: p50 ratios to torch FP32 eager, medians over "
              f"interleaved rounds, mean over {result.get('loads', 1)} load(s) of each "
              "artifact."), "",
             "| artifact | kind | recipe | mean cos | b1 vs torch | b32 vs torch |",
             "|---|---|---|---|---|---|"]
    for label, r in rows.items():
        cells = [f"{torch[b] / r['p50_ms'][b]:.2f}x" for b in (1, 32)]
        lines.append(f"| {label} | {r['kind']} | {r['recipe']} | {r['cosine']:.4f} | "
                     + " | ".join(cells) + " |")
    lines += ["", ratio_line(rows)]
    return "\n".join(lines)


def ratio_line(rows: dict[str, dict[str, Any]], budget: float = 0.99) -> str:
    """At each batch: the fastest peer artifact within the default budget (mean cosine >= 0.99:
    a broken peer is no competitor), and the fastest modelport artifact whose fidelity is no
    lower than that peer's; their speed ratio (> 1: modelport faster)."""
    parts = []
    for b in (1, 32):
        peers = [(k, r) for k, r in rows.items() if r["kind"] == "peer" and r["cosine"] >= budget]
        if not peers:
            parts.append(f"b{b}: no peer within budget")
            continue
        peer_name, peer = min(peers, key=lambda kr, b=b: kr[1]["p50_ms"][b])
        ours = [(k, r) for k, r in rows.items() if r["kind"] == "modelport"
                and r["cosine"] >= peer["cosine"] - 1e-4]
        if not ours:
            parts.append(f"b{b}: no modelport artifact at {peer_name}'s fidelity")
            continue
        name, best = min(ours, key=lambda kr, b=b: kr[1]["p50_ms"][b])
        parts.append(f"b{b} {peer['p50_ms'][b] / best['p50_ms'][b]:.2f}x ({name}, cos "
                     f"{best['cosine']:.4f}, vs {peer_name}, cos {peer['cosine']:.4f})")
    return ("Fastest modelport artifact at a fidelity no lower than the fastest peer's (peers "
            f"within mean cosine {budget}) / that peer: " + "; ".join(parts) + ".")


if __name__ == "__main__":
    main()
