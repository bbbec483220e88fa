"""export() for Whisper (automatic-speech-recognition with an encoder-decoder): two graphs per
target, as for text2text-generation (seq2seq_steps), judged on transcripts.

plan -> export both graphs (exporters.seq2seq_export, checked against torch) -> transformers'
greedy ``generate`` on the evaluation audio (``--eval DIR`` of audio files, else synthetic
clips; each cut to its first 30 s window) -> for each target: build each graph at its
precision (seq2seq_steps.build_graphs: int8wo / int4 pack the decoder's MatMuls, the encoder
at FP32; int8 is W+A INT8 of the encoder, calibrated on ``--calib DIR`` or synthetic clips
apart from the evaluation ones, with the int8wo decoder) -> generate with the WhisperSession
-> judge (FP32: every token sequence equal to transformers'; the others: word error rate of
the transcripts vs torch's within budget) -> time -> one bundle with both graphs
(bundle.manifest_graphs).
export_steps.export dispatches here.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from modelport.bench import statuses
from modelport.errors import AccuracyBudgetExceeded, UsageError
from modelport.specs import Precision

log = logging.getLogger("modelport")

TASK = "automatic-speech-recognition"
RUNTIMES = ("onnxruntime", "openvino")
#: fp32, int8wo / int4 (weight-only decoder), int8 (W+A INT8 encoder + int8wo decoder):
#: the graphs' precisions are seq2seq_steps.GRAPH_PRECISIONS'
PRECISIONS = (Precision.FP32, Precision.INT8WO, Precision.INT4, Precision.INT8)
#: budget: the largest word-error-rate increase vs torch's transcripts (a fraction: 0.05 = 5
#: WER points); --max-accuracy-drop overrides it
DEFAULT_MAX_WER = {Precision.INT8WO: 0.05, Precision.INT4: 0.15, Precision.INT8: 0.05}
EVAL_CLIPS = 4
#: synthetic calibration clips of the INT8 encoder when no --calib folder is given
CALIB_CLIPS = 8
EVAL_NEW_TOKENS = 20
SAMPLE_CLIPS = 2


def is_whisper(model: Any) -> bool:
    pre = getattr(model, "preprocessing", None) or {}
    return (pre.get("audio") or {}).get("kind") == "whisper" and \
        pre.get("generation_config") is not None


def whisper_refusal(target: Any) -> str | None:
    """Why ``target`` cannot take a Whisper model (None: it can)."""
    from modelport.seq2seq_steps import REFUSED

    if target.runtime in REFUSED:
        return (f"not supported on {target.runtime}: {REFUSED[target.runtime]}; use "
                "onnxruntime:cpu:* or openvino:cpu:*")
    if target.runtime not in RUNTIMES or target.precision not in PRECISIONS:
        return (f"built for {', '.join(RUNTIMES)} at fp32, int8wo or int4 (weight-only on the "
                "decoder's MatMuls) or int8 (W+A INT8 encoder, int8wo decoder)")
    return None


def check_targets(targets: list[Any]) -> None:
    from modelport.target_scope import refuse

    refuse(targets, whisper_refusal, "Whisper (encoder-decoder) targets are")


def eval_audio(model: Any, given: Any, *, what: str = "--eval", count: int = EVAL_CLIPS,
               seed: int = 7) -> tuple[list[str], np.ndarray, str]:
    """(clip names, input_features of each clip's first 30 s window, source)."""
    from modelport.tasks.whisper_features import input_features

    params = model.preprocessing["audio"]
    rate = int(params["sampling_rate"])
    if given is not None:
        from modelport.tasks.audio import audio_files, read_audio

        path = Path(given)
        if not path.is_dir():
            raise UsageError(f"{what} '{path}' is not a folder: give a folder of audio files "
                             "(.wav, .flac, .ogg) for a Whisper model")
        files = audio_files(path)
        clips = [read_audio(f, rate) for f in files]
        names, source = [f.name for f in files], str(path)
    else:
        from modelport.models.hf.audio_prepare import synthetic_clips

        clips = synthetic_clips(rate, count, seed=seed, seconds=2.0)
        names = [f"synthetic {i}" for i in range(len(clips))]
        source = "synthetic clips (tone sweeps + noise; give --eval DIR for speech)"
    return names, input_features(clips, params), source


def calibration(model: Any, given: Any) -> Any:
    """The INT8 encoder's calibration feeds (one window each): ``--calib DIR`` of audio files,
    else CALIB_CLIPS synthetic clips apart from the evaluation ones (another seed)."""
    from modelport.calibration_data import CalibrationSet

    if isinstance(given, CalibrationSet):
        return given
    names, features, source = eval_audio(model, given, what="--calib", count=CALIB_CLIPS,
                                         seed=11)
    return CalibrationSet([{"input_features": f[None]} for f in features], texts=names,
                          source=source)


def generated(row: np.ndarray, start: int, rules: Any) -> list[int]:
    """The generated tokens of a row past the prompt, up to (without) eos / padding, as
    transformers' Whisper generate returns them."""
    out = []
    for t in row.tolist()[start:]:
        if t in rules.eos_token_id or t == rules.pad:
            break
        out.append(t)
    return out


def torch_reference(model: Any, names: list[str], features: np.ndarray) -> dict[str, Any]:
    """transformers' greedy generate on the features: generated tokens and their text."""
    import torch

    hf = model.module.model
    with torch.inference_mode():
        out = hf.generate(torch.from_numpy(features), do_sample=False, num_beams=1,
                          max_new_tokens=EVAL_NEW_TOKENS).numpy()
    rules = _rules(model)
    tokens = [[t for t in row.tolist() if t != rules.pad and t not in rules.eos_token_id]
              for row in out]
    decoded = [_tokenizer(model).decode(t, skip_special_tokens=True).strip() for t in tokens]
    digest = hashlib.sha256(features.tobytes()).hexdigest()
    return {"texts": names, "tokens": tokens, "decoded": decoded, "features": features,
            "source": "evaluation audio", "sha256": digest}


def _tokenizer(model: Any) -> Any:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(model.tokenizer_json))


def _generation(model: Any) -> dict[str, Any]:
    import json

    return json.loads(model.bundle_files["generation_config.json"])


def _rules(model: Any) -> Any:
    from modelport.backends.seq2seq_logits import GenerationRules

    return GenerationRules.from_dict(_generation(model))


def load_session(model: Any, built: dict[str, Any], graphs: dict[str, Any], target: Any,
                 backend: Any, threads: int | None) -> Any:
    from modelport.backends.seq2seq_session import load_graphs
    from modelport.backends.whisper_session import WhisperSession

    config, pre = _generation(model), model.preprocessing

    def make(encoder: Any, decoder: Any) -> WhisperSession:
        return WhisperSession(encoder, decoder, _rules(model), config, pre["audio"],
                              model.tokenizer_json, int(pre.get("max_target_positions") or 448))

    return load_graphs(backend, target, {n: (built[n].main_path, graphs[n].inputs,
                                             graphs[n].outputs, built[n].session_options)
                                         for n in ("encoder", "decoder")},
                       _rules(model), None, threads, make=make)


def check(session: Any, ref: dict[str, Any]) -> dict[str, Any]:
    """Greedy tokens of ``session`` vs torch's: the share of clips with equal tokens, and the
    word error rate of the transcripts against torch's (accuracy points: 1 - WER)."""
    from modelport.tasks.base import as_points
    from modelport.tasks.wer import word_error_rate

    out = session.generate_features(ref["features"], max_new_tokens=EVAL_NEW_TOKENS,
                                    num_beams=1)
    tokens = [generated(row, session.prompt_length, session.rules) for row in out]
    decoded = [session.tokenizer.decode(t, skip_special_tokens=True).strip() for t in tokens]
    equal = sum(int(a == b) for a, b in zip(tokens, ref["tokens"], strict=True))
    wer = word_error_rate(ref["decoded"], decoded)
    return as_points(1.0 - wer, wer=wer, token_match=equal / len(tokens),
                     sequences=len(tokens))


def export_whisper(model: Any, plan: list[tuple[Any, Any]], dest: Any, evalset: Any,
                   options: Any, bench: Any, opset: int | None, result_type: Any, *,
                   calib: Any = None) -> Any:
    """Every target of ``plan`` as a two-graph bundle (see the module docstring)."""
    from modelport.exporters.seq2seq_export import export_graphs
    from modelport.seq2seq_steps import export_target

    check_targets([t for t, _ in plan])
    names, features, source = eval_audio(model, evalset)
    calib = (calibration(model, calib)
             if any(t.precision == Precision.INT8 for t, _ in plan) else None)
    workdir = Path(tempfile.mkdtemp(prefix="modelport-whisper-"))
    try:
        log.info("exporting %s to ONNX (encoder + decoder) ...", model.name)
        graphs = export_graphs(model, workdir / "onnx", opset=opset)
        model.onnx_artifact = graphs["decoder"]
        ref = torch_reference(model, names, features)
        ref["source"] = source
        rows = [{"target": "torch:cpu:fp32", "precision": "fp32", "reference": True,
                 "status": statuses.REFERENCE,
                 "fidelity": {"wer": 0.0, "token_match": 1.0, "accuracy": 1.0,
                              "accuracy_drop": 0.0}}]
        bundles: dict[str, Path] = {}
        for target, backend in plan:
            row, bundle = export_target(model, graphs, ref, target, backend, dest, options,
                                        bench, workdir, calib, graph_task())
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


def _samples(session: Any, ref: dict[str, Any]) -> dict[str, Any]:
    """What the bundle stores for verify/bench: the first clips' features and greedy tokens."""
    features = ref["features"][:SAMPLE_CLIPS]
    return {"in.input_features": features,
            "ref.tokens": session.generate_features(features, num_beams=1,
                                                    max_new_tokens=EVAL_NEW_TOKENS)}


def _timing(session: Any, model: Any, ref: dict[str, Any]) -> dict[str, Any]:
    from modelport.backends.whisper_session import time_whisper

    return time_whisper(session, ref["features"][:1])


def graph_task() -> Any:
    """Whisper's pieces of the shared two-graph export (seq2seq_steps.export_target)."""
    from modelport.seq2seq_steps import GraphTask

    return GraphTask(
        "WER", "max_wer_increase", DEFAULT_MAX_WER, load_session,
        lambda model, session, ref: check(session, ref),
        lambda m, limit: (f"WER {100 * m['wer']:.2f} vs torch's transcripts (> "
                          f"{100 * limit:.2f} points)"),
        _timing, _samples)
