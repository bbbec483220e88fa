"""export() for encoder-decoder models (text2text-generation): two graphs per target.

plan -> export both graphs (exporters.seq2seq_export) -> torch's greedy outputs on the
evaluation texts -> for each target: build each graph at its precision (GRAPH_PRECISIONS:
int8wo / int4 pack the decoder's MatMuls; int8 is W+A INT8 of the encoder, calibrated on
texts apart from the evaluation ones, with the int8wo decoder) -> generate with both -> judge
(FP32: every sequence equal to transformers'; the others: chrF vs torch within budget) ->
time (bench.lm_harness) -> one bundle with both graphs (bundle.manifest_graphs).
export_steps.export dispatches here.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from modelport.bench import statuses
from modelport.errors import AccuracyBudgetExceeded
from modelport.specs import Precision

log = logging.getLogger("modelport")

TASK = "text2text-generation"
RUNTIMES = ("onnxruntime", "openvino")
#: target precision -> (encoder graph, decoder graph): the decoder runs once per token and
#: holds the LM head, so weight-only packing is what speeds it up; the encoder runs once per
#: input on a whole sentence, where W+A INT8 (ORT quantize_dynamic/static, NNCF) pays
GRAPH_PRECISIONS = {
    Precision.FP32: (Precision.FP32, Precision.FP32),
    Precision.INT8WO: (Precision.FP32, Precision.INT8WO),
    Precision.INT4: (Precision.FP32, Precision.INT4),
    Precision.INT8: (Precision.INT8, Precision.INT8WO),
}
PRECISIONS = tuple(GRAPH_PRECISIONS)
REFUSED = {
    "tflite": "TFLite takes static shapes; a decoder whose self-attention cache grows by one "
              "token per step needs a stateful or fixed-window graph that modelport does not "
              "make yet",
    "tensorrt": "the TensorRT path builds engines for fixed-I/O graphs; encoder-decoder "
                "engines with a KV cache (TensorRT-LLM) are not wired into modelport yet",
    "torch": "torch is the reference here, not a bundle target",
}
#: weight-only budget: the largest chrF drop vs torch (a fraction: 0.05 = 5 chrF points)
DEFAULT_MAX_CHRF_DROP = {Precision.INT8WO: 0.05, Precision.INT4: 0.15, Precision.INT8: 0.05}
EVAL_TEXTS = 12
#: the row every target is compared with (transformers' own generate)
REFERENCE = "torch:cpu:fp32"
#: calibration texts of the INT8 encoder (the shipped sentences before the evaluation ones)
CALIB_TEXTS = 64
EVAL_NEW_TOKENS = 20
BATCH = 4


def is_seq2seq(model: Any) -> bool:
    return getattr(model, "task", None) == TASK


def seq2seq_refusal(target: Any) -> str | None:
    """Why ``target`` cannot take an encoder-decoder (None: it can)."""
    if target.runtime in REFUSED:
        return (f"not supported on {target.runtime}: {REFUSED[target.runtime]}; use "
                "onnxruntime:cpu:* or openvino:cpu:*")
    if target.runtime not in RUNTIMES or target.precision not in PRECISIONS:
        return (f"built for {', '.join(RUNTIMES)} at fp32, int8wo or int4 (weight-only on the "
                "decoder's MatMuls) or int8 (W+A INT8 encoder, int8wo decoder)")
    return None


def check_targets(targets: list[Any]) -> None:
    from modelport.target_scope import refuse

    refuse(targets, seq2seq_refusal, "encoder-decoder targets are")


def eval_texts(model: Any, given: Any, default: list[str] | None = None,
               flag: str = "--eval") -> list[str]:
    """One input a line of ``given`` (a text file), else ``default`` (the last shipped
    sentences); lines longer than the encoder's limit are skipped."""
    from tokenizers import Tokenizer

    from modelport.errors import UsageError

    if given is not None:
        path = Path(given)
        if not path.is_file():
            raise UsageError(f"{flag} '{path}' is not a file: give a text file, one input a "
                             "line")
        lines = [ln.strip() for ln in path.read_text("utf-8").splitlines() if ln.strip()]
    elif default is not None:
        lines = default
    else:
        from modelport.models.data import sentences

        lines = sentences()[-EVAL_TEXTS:]
    tok = Tokenizer.from_file(str(model.tokenizer_json))
    tok.no_truncation()
    prefix = model.preprocessing.get("prefix") or ""
    limit = model.preprocessing.get("max_source_length")
    kept = [t for t in lines if limit is None or len(tok.encode(prefix + t).ids) <= limit]
    if not kept:
        raise UsageError(f"no {'calibration' if flag == '--calib' else 'evaluation'} text "
                         f"fits the encoder's {limit} positions: give shorter lines with "
                         f"{flag}")
    return kept


def budget_of(target: Any, budget: Any, defaults: dict | None = None) -> float:
    """The largest chrF drop (fraction; ``defaults``: another metric's, e.g. Whisper's WER)
    this target may have; --max-accuracy-drop overrides the int8 / weight-only defaults when
    given (FP32 must give transformers' tokens exactly)."""
    from modelport.metrics import Budget

    if target.precision == Precision.FP32:
        return 0.0
    given = getattr(budget, "max_accuracy_drop", None)
    if budget is not None and given != Budget().max_accuracy_drop:
        return float(given)
    return (defaults or DEFAULT_MAX_CHRF_DROP)[target.precision]


def export_seq2seq(model: Any, plan: list[tuple[Any, Any]], dest: Any, evalset: Any,
                   options: Any, bench: Any, opset: int | None, result_type: Any, *,
                   calib: Any = None) -> Any:
    """Every target of ``plan`` as a two-graph bundle (see the module docstring); returns
    ``result_type(rows, bundles, failures, task=...)`` (export_steps.ExportResult)."""
    from modelport.exporters.seq2seq_export import export_graphs

    check_targets([t for t, _ in plan])
    texts = eval_texts(model, evalset)
    calib = (calibration(model, calib, texts)
             if any(t.precision == Precision.INT8 for t, _ in plan) else None)
    workdir = Path(tempfile.mkdtemp(prefix="modelport-seq2seq-"))
    try:
        log.info("exporting %s to ONNX (encoder + decoder) ...", model.name)
        graphs = export_graphs(model, workdir / "onnx", opset=opset)
        model.onnx_artifact = graphs["decoder"]
        log.info("exported in %.1fs; ONNX Runtime vs torch: max abs err %.2e",
                 sum(a.seconds for a in graphs.values()),
                 graphs["decoder"].validation["max_abs_err"])
        ref = torch_reference(model, texts)
        rows = [{"target": REFERENCE, "precision": "fp32", "reference": True,
                 "status": statuses.REFERENCE,
                 "fidelity": {"chrf": 100.0, "token_match": 1.0, "accuracy": 1.0,
                              "accuracy_drop": 0.0}}]
        bundles: dict[str, Path] = {}
        for target, backend in plan:
            row, bundle = export_target(model, graphs, ref, target, backend, dest, options,
                                        bench, workdir, calib)
            rows.append(row)
            if bundle is not None:
                bundles[str(target)] = bundle
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    failures = [r["failure"] for r in rows if r.get("failure")]
    result = result_type(rows, bundles, failures, task=TASK)
    if failures:
        error = AccuracyBudgetExceeded("; ".join(failures))
        error.result = result
        raise error
    return result


def torch_reference(model: Any, texts: list[str]) -> dict[str, Any]:
    """transformers' greedy generate() on the texts: tokens per text and their decoded text."""
    import torch

    from modelport.tasks.text2text import decode_batch, encode_batch

    tok = _tokenizer(model)
    pad = _rules(model).pad
    hf = model.module.model
    tokens, decoded = [], []
    for start in range(0, len(texts), BATCH):
        ids, mask = encode_batch(tok, texts[start:start + BATCH], pad,
                                 model.preprocessing.get("prefix") or "")
        with torch.inference_mode():
            out = hf.generate(input_ids=torch.from_numpy(ids),
                              attention_mask=torch.from_numpy(mask), do_sample=False,
                              num_beams=1, max_new_tokens=EVAL_NEW_TOKENS).numpy()
        tokens += [row for row in out]
        decoded += decode_batch(tok, out)
    return {"texts": texts, "tokens": tokens, "decoded": decoded}


def _tokenizer(model: Any) -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model.tokenizer_json))
    tok.no_truncation()
    return tok


def _rules(model: Any) -> Any:
    import json

    from modelport.backends.seq2seq_logits import GenerationRules

    return GenerationRules.from_dict(json.loads(model.bundle_files["generation_config.json"]))


def calibration(model: Any, given: Any, texts: list[str]) -> Any:
    """The INT8 encoder's calibration feeds (batch 1 each): ``--calib`` (a text file, one input
    a line, or a CalibrationSet of encoder feeds), else the first CALIB_TEXTS shipped sentences
    that are not evaluation texts; lines over the encoder's limit are skipped."""
    from modelport.calibration_data import CalibrationSet
    from modelport.tasks.text2text import encode_batch

    if isinstance(given, CalibrationSet):
        return given
    if given is not None:
        lines, source = eval_texts(model, given, flag="--calib"), str(given)
    else:
        from modelport.models.data import sentences

        lines = [t for t in sentences()[:-EVAL_TEXTS] if t not in texts][:CALIB_TEXTS]
        lines = eval_texts(model, None, lines, flag="--calib")
        source = "shipped sentences (not the evaluation texts)"
    # one right-padded batch split in rows: every sample has the same width, so the float
    # fallback can stack the graph's outputs, and padding is calibrated as batches have it
    ids, mask = encode_batch(_tokenizer(model), lines, _rules(model).pad,
                             model.preprocessing.get("prefix") or "")
    return CalibrationSet([{"input_ids": ids[i:i + 1], "attention_mask": mask[i:i + 1]}
                           for i in range(len(lines))], texts=lines, source=source)


def build_graphs(model: Any, graphs: dict[str, Any], target: Any, backend: Any,
                 options: Any, tdir: Path, calib: Any = None) -> dict[str, Any]:
    """Each graph built by the target's backend at its precision (GRAPH_PRECISIONS); the
    precision is recorded in the graph's build facts (the manifest's ``graphs.*.precision``)."""
    from modelport.specs import Target

    built = {}
    for name, precision in zip(("encoder", "decoder"), GRAPH_PRECISIONS[target.precision],
                               strict=True):
        part = Target(target.runtime, target.device, precision)
        (tdir / name).mkdir(parents=True)
        # W+A INT8's float fallback judges the graph's outputs (the cross cache) by cosine,
        # as for features; the target's verdict is chrF on the generated text
        shim = SimpleNamespace(onnx_artifact=graphs[name], name=f"{model.name} {name}",
                               task="feature-extraction")
        int8 = precision == Precision.INT8
        built[name] = backend.build(shim, part, calib if int8 else None, tdir / name,
                                    _as_transformer(options, backend) if int8 else options)
        built[name].info["precision"] = str(precision)
    return built


def _as_transformer(options: Any, backend: Any) -> Any:
    """The encoder is a transformer: a quantizer that takes a model type (NNCF's) is told so
    unless the user chose one (OpenVINO reads the encoder's attention as one fused
    ScaledDotProductAttention op, which the MatMul-based attention test does not see)."""
    import dataclasses

    own = options.of(backend)
    if not hasattr(own, "model_type") or own.model_type is not None:
        return options
    return dataclasses.replace(options, backends={
        **options.backends, backend.name: dataclasses.replace(own, model_type="transformer")})


def load_session(model: Any, built: dict[str, Any], graphs: dict[str, Any], target: Any,
                 backend: Any, threads: int | None) -> Any:
    from modelport.backends.seq2seq_session import load_graphs

    return load_graphs(backend, target, {n: (built[n].main_path, graphs[n].inputs,
                                             graphs[n].outputs, built[n].session_options)
                                         for n in ("encoder", "decoder")},
                       _rules(model), model.preprocessing.get("max_source_length"), threads)


def check(model: Any, session: Any, ref: dict[str, Any]) -> dict[str, Any]:
    """Greedy tokens of ``session`` vs torch's: the share of texts with equal tokens, and chrF
    of the decoded outputs (as accuracy points: 1.0 = chrF 100)."""
    from modelport.tasks.base import as_points
    from modelport.tasks.chrf import chrf
    from modelport.tasks.text2text import decode_batch, encode_batch

    tok = _tokenizer(model)
    texts, decoded, equal = ref["texts"], [], 0
    for start in range(0, len(texts), BATCH):
        ids, mask = encode_batch(tok, texts[start:start + BATCH], session.rules.pad,
                                 model.preprocessing.get("prefix") or "")
        out = session.generate(ids, mask, max_new_tokens=EVAL_NEW_TOKENS, num_beams=1)
        decoded += decode_batch(tok, out)
        for k, row in enumerate(out):
            want = ref["tokens"][start + k]
            equal += int(np.array_equal(row[:len(want)], want[:len(row)])
                         and _strip(row, session.rules) == _strip(want, session.rules))
    score = chrf(decoded, ref["decoded"])
    return as_points(score / 100.0, chrf=score, token_match=equal / len(texts),
                     sequences=len(texts))


def _strip(row: np.ndarray, rules: Any) -> list[int]:
    """Tokens up to and including the first eos (what follows is padding)."""
    out = []
    for t in row.tolist()[1:]:
        out.append(t)
        if t in rules.eos_token_id:
            break
    return out


def time_generation(session: Any, model: Any, text: str) -> dict[str, Any]:
    """Batch-1 greedy generation of EVAL_NEW_TOKENS tokens (backends.seq2seq_session)."""
    from modelport.backends.seq2seq_session import time_generation as timed
    from modelport.tasks.text2text import encode_batch

    ids, mask = encode_batch(_tokenizer(model), [text], session.rules.pad,
                             model.preprocessing.get("prefix") or "")
    return timed(session, ids, mask, new_tokens=EVAL_NEW_TOKENS)


@dataclass(frozen=True)
class GraphTask:
    """What differs between the two-graph tasks (text2text, Whisper) when one target is built,
    judged, timed and written: the rest of ``export_target`` is shared."""

    metric: str  # "chrF" / "WER": how a quantized target is judged against torch
    limit_key: str  # the fidelity key the budget is recorded under
    defaults: dict  # precision -> default budget (fraction)
    load: Callable[..., Any]  # (model, built, graphs, target, backend, threads) -> session
    check: Callable[..., dict]  # (model, session, ref) -> metrics
    miss: Callable[[dict, float], str]  # (metrics, limit) -> why a target is over budget
    timing: Callable[..., dict]  # (session, model, ref) -> bench columns
    samples: Callable[..., dict | None] = lambda session, ref: None  # stored bundle samples


TEXT = GraphTask(
    "chrF", "max_chrf_drop", DEFAULT_MAX_CHRF_DROP,
    lambda *a: load_session(*a), lambda *a: check(*a),
    lambda m, limit: (f"chrF {m['chrf']:.2f} vs torch (drop {100 * m['accuracy_drop']:.2f} > "
                      f"{100 * limit:.2f} points)"),
    lambda session, model, ref: time_generation(session, model, ref["texts"][0]))


def export_target(model: Any, graphs: dict[str, Any], ref: dict[str, Any], target: Any,
                  backend: Any, dest: Any, options: Any, bench: Any, workdir: Path,
                  calib: Any = None, task: GraphTask = TEXT) -> tuple[dict[str, Any], Path | None]:
    tdir = workdir / target.slug
    log.info("building %s ...", target)
    start = time.perf_counter()
    built = build_graphs(model, graphs, target, backend, options, tdir, calib)
    size = sum((tdir / n / f).stat().st_size for n, a in built.items() for f in a.files)
    row: dict[str, Any] = {"target": str(target), "precision": str(target.precision),
                           "size_mb": size / 1e6, "build_s": time.perf_counter() - start,
                           "graphs": {n: a.info["precision"] for n, a in built.items()}}
    from modelport.bench.memory import reset_peak

    reset_peak()  # this target's load + generation peak (the row's peak_rss_mb)
    with task.load(model, built, graphs, target, backend, options.threads) as session:
        metrics = task.check(model, session, ref)
        limit = budget_of(target, options.budget_or_default(), task.defaults)
        metrics[task.limit_key] = limit
        row["fidelity"] = metrics
        row["judged_by"] = "tokens" if target.precision == Precision.FP32 else task.metric
        passed = (metrics["token_match"] == 1.0 if target.precision == Precision.FP32
                  else metrics["accuracy_drop"] <= limit + 1e-9)
        row["status"] = statuses.OK if passed else statuses.BELOW_BUDGET
        if not passed:
            why = (f"{metrics['token_match']:.0%} of greedy outputs equal transformers'"
                   if target.precision == Precision.FP32 else task.miss(metrics, limit))
            row["failure"] = f"{target}: {why}"
            log.warning(row["failure"])
            if not dest.allow_drop:
                return row, None
            row.pop("failure")  # kept with --allow-accuracy-drop, recorded as a miss
        if bench is not None:
            row.update(task.timing(session, model, ref))
        from modelport.bundle.manifest_graphs import write_graphs_bundle

        root = dest.below_budget if not passed and dest.below_budget is not None else dest.out
        bundle = write_graphs_bundle(root / target.slug, model, target, backend, built,
                                     graphs, ref, metrics, passed, row, dest, options, session,
                                     samples=task.samples(session, ref))
    row["bundle"] = str(bundle)
    log.info("wrote %s", bundle)
    return row, bundle
