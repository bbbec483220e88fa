"""The manifest and files of a multi-graph bundle (schema 2): an encoder and a decoder.

``graphs`` names each graph with its file and its inputs/outputs; ``artifact``/``inputs``/
``outputs`` describe the main graph (the decoder), so a reader of single-graph bundles finds
the fields it expects. Every graph file is in ``files`` with its sha256 like any other file.
The samples are the first evaluation inputs (``in.input_ids``, ``in.attention_mask``) and the
target's own greedy tokens on them (``ref.tokens``): `verify` generates again and compares.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from modelport.io import sha256_file

SAMPLE_TEXTS = 4


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def write_graphs_bundle(out: Path, model: Any, target: Any, backend: Any,
                        built: dict[str, Any], graphs: dict[str, Any], ref: dict[str, Any],
                        metrics: dict[str, Any], passed: bool, row: dict[str, Any],
                        dest: Any, options: Any, session: Any,
                        samples: dict[str, np.ndarray] | None = None) -> Path:
    """``samples``: the stored inputs and tokens (default: the first evaluation texts and the
    session's greedy tokens on them)."""
    import shutil
    import tempfile

    from modelport.bundle import write_bundle
    from modelport.tasks.text2text import encode_batch

    staging = Path(tempfile.mkdtemp(prefix="modelport-graphs-"))
    try:
        files, entries = [], {}
        for name, art in built.items():
            for f in art.files:
                (staging / name).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(art.workdir / f, staging / name / f)
                files.append(f"{name}/{f}")
            entries[name] = {
                "file": f"{name}/{art.main}",
                # seq2seq_steps.GRAPH_PRECISIONS: int8 = W+A INT8 encoder + int8wo decoder
                "precision": art.info.get("precision"),
                "inputs": [s.to_dict() for s in graphs[name].inputs],
                "outputs": [s.to_dict() for s in graphs[name].outputs],
                "build": {k: v for k, v in art.info.items() if _jsonable(v)},
                "session_options": {k: v for k, v in art.session_options.items()
                                    if _jsonable(v)},
            }
        if samples is None:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(model.tokenizer_json))
            tok.no_truncation()
            ids, mask = encode_batch(tok, ref["texts"][:SAMPLE_TEXTS], session.rules.pad,
                                     model.preprocessing.get("prefix") or "")
            tokens = session.generate(ids, mask, max_new_tokens=20, num_beams=1)
            samples = {"in.input_ids": ids, "in.attention_mask": mask, "ref.tokens": tokens}
        manifest = graphs_manifest(model, target, backend, entries, graphs, ref, metrics,
                                   passed, row, dest, options)
        return write_bundle(out, manifest=manifest, artifact_dir=staging, artifact_files=files,
                            samples=samples, tokenizer_json=model.tokenizer_json,
                            extra_files=model.bundle_files, force=dest.force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def graphs_manifest(model: Any, target: Any, backend: Any, entries: dict[str, Any],
                    graphs: dict[str, Any], ref: dict[str, Any], metrics: dict[str, Any],
                    passed: bool, row: dict[str, Any], dest: Any, options: Any
                    ) -> dict[str, Any]:
    import hashlib

    decoder = graphs["decoder"]
    preprocessing = dict(model.preprocessing)
    preprocessing.setdefault("max_length", model.max_length)
    texts = "\n".join(ref["texts"]).encode()
    timing = {k: row[k] for k in ("encoder_ms", "ttft_ms", "decode_ms_p50", "decode_ms_p99",
                                  "tokens_per_s", "peak_rss_mb") if k in row}
    return {
        "model": {"name": model.name, "source": model.source, "task": model.task,
                  "output_kind": None, "task_from": "declared",
                  "onnx_sha256": sha256_file(decoder.path), "metadata": model.metadata},
        "target": str(target),
        "runtime": {"name": target.runtime, "version": backend.runtime_version(),
                    "extra": backend.extra},
        "artifact": {"file": entries["decoder"]["file"]},
        "graphs": entries,
        "inputs": entries["decoder"]["inputs"],
        "outputs": entries["decoder"]["outputs"],
        "bench_dims": {},
        "preprocessing": preprocessing,
        "passes": [],
        "build": {**entries["decoder"]["build"], "encoder": entries["encoder"]["build"]},
        "export": {"exporter": decoder.exporter, "opset": decoder.opset,
                   "seconds": sum(g.seconds for g in graphs.values()), "from_cache": False,
                   "validation": decoder.validation},
        "calibration": None,
        "evaluation": {"sha256": hashlib.sha256(texts).hexdigest(), "samples": len(ref["texts"]),
                       "source": ref.get("source", "evaluation texts (one input a line)")},
        "accuracy": {"reference": "torch:cpu:fp32 (transformers generate, greedy)",
                     "metrics": metrics, "budget": options.budget_or_default().to_dict(),
                     "judged_by": row.get("judged_by"), "passed": passed,
                     "allowed_drop": dest.allow_drop},
        "benchmark": timing or None,
    }


def verify_graphs(bundle: Any, threads: int | None = None) -> dict[str, Any]:
    """Generate again from the stored inputs; the tokens must give the stored text back within
    the bundle's chrF budget (FP32: 1 point, for kernels that differ between CPUs)."""
    from modelport.errors import ValidationError
    from modelport.tasks.chrf import chrf
    from modelport.tasks.text2text import decode_batch, tokenizer_of

    feeds, refs = bundle.samples()
    report: dict[str, Any] = {"bundle": str(bundle.archive or bundle.path),
                              "target": bundle.manifest["target"],
                              "files_checked": len(bundle.manifest["files"]),
                              "graphs": sorted(bundle.manifest["graphs"])}
    if "tokens" not in refs:
        report["outputs_checked"] = False
        return report
    with bundle.session(threads=threads) as session:
        if "input_features" in feeds:  # Whisper: the stored windows' features
            got = session.generate_features(feeds["input_features"], max_new_tokens=max(
                int(refs["tokens"].shape[1]) - session.default_prompt_length(), 1),
                num_beams=1)
        else:
            got = session.generate(feeds["input_ids"], feeds["attention_mask"],
                                   max_new_tokens=max(int(refs["tokens"].shape[1]) - 1, 1),
                                   num_beams=1)
    tok = tokenizer_of(bundle)
    score = chrf(decode_batch(tok, got), decode_batch(tok, refs["tokens"]))
    metrics = (bundle.manifest.get("accuracy") or {}).get("metrics") or {}
    limit = max(float(metrics.get("max_chrf_drop") or metrics.get("max_wer_increase") or 0.0),
                0.01)
    same = got.shape == refs["tokens"].shape and bool(np.array_equal(got, refs["tokens"]))
    report.update(outputs_checked=True, metrics={"chrf": score, "tokens_equal": same})
    if score < 100.0 * (1.0 - limit) - 1e-9:
        raise ValidationError(f"{bundle.path}: generated text on this machine differs from the "
                              f"stored outputs: chrF {score:.2f} < {100 * (1 - limit):.2f}")
    return report


def bench_graphs(bundle: Any, pool: dict[str, np.ndarray], threads: int | None
                 ) -> dict[str, Any]:
    """`bench BUNDLE` on an encoder-decoder: greedy generation of the first stored input."""
    import time

    from modelport.backends.seq2seq_session import time_generation
    from modelport.bench.memory import reset_peak

    mask = pool.get("attention_mask", np.ones((1, 1), np.int64))[:1]
    width = int(mask.sum())
    reset_peak()  # this bundle's load + generation peak
    t0 = time.perf_counter()
    with bundle.session(threads=threads) as session:
        load_s = time.perf_counter() - t0
        if "input_features" in pool:  # Whisper: one 30 s window
            from modelport.backends.whisper_session import time_whisper

            timing = time_whisper(session, pool["input_features"][:1])
        else:
            timing = time_generation(session, pool["input_ids"][:1, :width], mask[:, :width])
    return {"status": "ok", "load_s": load_s, **timing}
