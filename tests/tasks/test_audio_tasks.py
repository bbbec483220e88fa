"""Audio tasks from Hugging Face folders: audio-classification (wav2vec2, AST) and CTC
automatic-speech-recognition (wav2vec2-CTC, HuBERT-CTC), on tiny random-init folders made here.

Bundles are checked against transformers (FP32 raw logits within 1e-4 on ONNX Runtime and
OpenVINO), `run --audio` against transformers' pipelines, every INT8 verdict against the metric
re-measured from the written bundle; plus the torch-free pieces (fbank and waveform features vs
transformers' extractors, decoding/resampling, CTC decoding vs the tokenizer, WER) and the
one-line errors of bad audio input."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.tasks import audio_checkpoints as ac

pytest.importorskip("soundfile")
pytest.importorskip("soxr")

FP32 = ("onnxruntime:cpu:fp32", "openvino:cpu:fp32")
#: per folder: the targets one export builds (every family gets both runtimes' FP32 and INT8
#: on at least one runtime; the classifiers both)
TARGETS = {
    "wav2vec2-cls": (*FP32, "onnxruntime:cpu:int8", "openvino:cpu:int8"),
    "ast-cls": (*FP32, "onnxruntime:cpu:int8", "openvino:cpu:int8"),
    "wav2vec2-ctc": (*FP32, "onnxruntime:cpu:int8"),
    "hubert-ctc": (*FP32, "openvino:cpu:int8"),
}
CLASSIFIERS = ("wav2vec2-cls", "ast-cls")
CTC = ("wav2vec2-ctc", "hubert-ctc")


# -- torch-free pieces (fast) ----------------------------------------------------------------
def test_fbank_features_match_transformers_ast_extractor():
    from transformers import ASTFeatureExtractor

    from modelport.tasks.fbank import fbank_features

    for bins, frames in ((128, 1024), (32, 100)):
        extractor = ASTFeatureExtractor(num_mel_bins=bins, max_length=frames)
        params = {"sampling_rate": 16000, "num_mel_bins": bins, "max_length": frames,
                  "mean": extractor.mean, "std": extractor.std, "do_normalize": True}
        for seconds in (0.02, 0.7, 12.0):  # shorter than a frame, padded, cut
            clip = ac.sweep(16000, seconds, seed=int(seconds * 100))
            ref = extractor(clip, sampling_rate=16000, return_tensors="np")["input_values"][0]
            got = fbank_features(clip, params)
            assert got.shape == ref.shape == (frames, bins)
            assert np.abs(got - ref).max() <= 1e-4


def test_waveform_features_match_wav2vec2_extractor():
    from transformers import Wav2Vec2FeatureExtractor

    from modelport.tasks.audio import waveform_features

    clip = ac.sweep(16000, 0.8, seed=5)
    for normalize in (True, False):
        extractor = Wav2Vec2FeatureExtractor(do_normalize=normalize)
        ref = extractor(clip, sampling_rate=16000, return_tensors="np")["input_values"]
        got = waveform_features(clip, {"do_normalize": normalize})
        assert got.shape == ref.shape and np.abs(got - ref).max() <= 1e-6


def test_read_audio_mixes_down_and_resamples(tmp_path):
    import soundfile as sf
    from scipy.signal import resample_poly

    from modelport.tasks.audio import read_audio

    t = np.arange(44100) / 44100
    left, right = np.sin(2 * np.pi * 1000 * t), 0.5 * np.sin(2 * np.pi * 1000 * t + 0.3)
    sf.write(tmp_path / "stereo.wav", np.stack([left, right], 1).astype(np.float32), 44100)
    sf.write(tmp_path / "low.flac", (0.5 * np.sin(2 * np.pi * 440 * t[:8000] * 44100 / 8000))
             .astype(np.float32), 8000)
    got = read_audio(tmp_path / "stereo.wav", 16000)
    assert got.dtype == np.float32 and got.shape == (16000,)
    expected = resample_poly((left + right) / 2, 160, 441)  # an independent resampler
    middle = slice(200, -200)  # away from the filters' edge effects
    assert np.abs(got[middle] - expected[middle]).max() < 5e-3
    spectrum = np.abs(np.fft.rfft(got))
    assert abs(int(np.argmax(spectrum)) - 1000) <= 1  # 1 Hz bins: the tone stays at 1 kHz
    low = read_audio(tmp_path / "low.flac", 16000)
    assert low.shape == (16000,) and abs(int(np.argmax(np.abs(np.fft.rfft(low)))) - 440) <= 1


def test_ctc_decoding_matches_wav2vec2_ctc_tokenizer(tmp_path):
    from transformers import Wav2Vec2CTCTokenizer

    from modelport.models.hf.ctc_vocab import ctc_vocab
    from modelport.tasks.ctc import decode_ids

    rng = np.random.default_rng(0)
    for lower in (False, True):
        folder = tmp_path / f"tok-{lower}"
        folder.mkdir()
        (folder / "vocab.json").write_text(json.dumps(
            {t.upper() if lower and len(t) == 1 else t: i for i, t in enumerate(ac.VOCAB)}))
        tok = Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), do_lower_case=lower)
        tok.save_pretrained(folder)
        ctc = ctc_vocab(folder, len(ac.VOCAB) + 2)  # ids past the vocabulary decode as <unk>
        for _ in range(200):
            ids = rng.integers(0, len(ac.VOCAB) + 2, size=int(rng.integers(0, 40))).tolist()
            ids = [i if rng.random() > 0.3 else 0 for i in ids]  # plenty of blanks
            assert decode_ids(ids, ctc) == tok.decode(ids)


def test_word_error_rate():
    from modelport.tasks.wer import word_error_rate

    assert word_error_rate(["the cat sat"], ["the cat sat"]) == 0.0
    assert word_error_rate(["the cat sat"], ["the bat sat"]) == pytest.approx(1 / 3)
    assert word_error_rate(["the cat sat"], ["the cat sat down"]) == pytest.approx(1 / 3)
    assert word_error_rate(["a b", "c d e f"], ["a", "c d e f"]) == pytest.approx(1 / 6)
    assert word_error_rate([""], [""]) == 0.0 and word_error_rate([""], ["x y"]) == 2.0
    assert word_error_rate([("ab",), ("cd",)], [("ab",), ("cx",)]) == 0.5


def test_unreadable_audio_is_a_one_line_usage_error(tmp_path):
    import soundfile as sf

    from modelport.errors import UsageError
    from modelport.tasks.audio import read_audio

    (tmp_path / "text.wav").write_text("not audio at all\n")
    (tmp_path / "empty.wav").write_bytes(b"")
    sf.write(tmp_path / "silent.wav", np.zeros((0, 1), np.float32), 16000)
    for name, fragment in (("text.wav", "cannot read"), ("empty.wav", "cannot read"),
                           ("silent.wav", "holds no audio samples"), ("missing.wav", "not found")):
        with pytest.raises(UsageError, match=fragment) as info:
            read_audio(tmp_path / name, 16000)
        assert "\n" not in str(info.value) and name in str(info.value)


# -- folders, detection, inspect ---------------------------------------------------------------
@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Calibration clips at mixed rates/channels; evaluation clips 1 s at 16 kHz mono (one
    length, so the export's evaluation feeds are exactly what `run` feeds one clip at a time)."""
    root = tmp_path_factory.mktemp("audio-clips")
    return {"calib": ac.write_clips(root / "calib", 30, seed=1, mixed=True),
            "eval": ac.write_clips(root / "eval", 10, seed=2, mixed=False)}


@pytest.fixture(scope="module")
def folders(clips, tmp_path_factory):
    root = tmp_path_factory.mktemp("audio-folders")
    dirs = [clips["calib"], clips["eval"]]
    return {"wav2vec2-cls": ac.wav2vec2_classifier(root / "wav2vec2-cls", dirs),
            "ast-cls": ac.ast_classifier(root / "ast-cls", dirs),
            "wav2vec2-ctc": ac.wav2vec2_ctc(root / "wav2vec2-ctc"),
            "hubert-ctc": ac.hubert_ctc(root / "hubert-ctc")}


@pytest.mark.parametrize(("name", "task", "input_shape", "output_shape"), [
    ("wav2vec2-cls", "audio-classification", ["batch", "samples"], ["batch", 3]),
    ("ast-cls", "audio-classification", ["batch", 100, 32], ["batch", 3]),
    ("wav2vec2-ctc", "automatic-speech-recognition", ["batch", "samples"],
     ["batch", "frames", len(ac.VOCAB)]),
    ("hubert-ctc", "automatic-speech-recognition", ["batch", "samples"],
     ["batch", "frames", len(ac.VOCAB)]),
])
def test_inspect_detects_the_audio_task_and_its_io(folders, name, task, input_shape,
                                                    output_shape):
    proc = run_cli("inspect", str(folders[name]), "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["task"] == task and plan["modality"] == "audio"
    assert plan["inputs"] == [{"name": "input_values", "dtype": "float32", "shape": input_shape}]
    assert plan["outputs"][0]["shape"] == output_shape
    audio = plan["preprocessing"]["audio"]
    assert audio["sampling_rate"] == 16000 and audio["do_normalize"] is True
    if task == "automatic-speech-recognition":
        ctc = plan["preprocessing"]["ctc"]
        assert ctc["vocab"] == ac.VOCAB and ctc["blank_id"] == 0
        assert ctc["word_delimiter_token"] == "|" and ctc["word_delimiter_id"] == 4
    else:
        assert plan["preprocessing"]["id2label"] == {str(k): v for k, v in ac.LABELS.items()}


def test_an_audio_base_model_is_refused_naming_the_audio_tasks(tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from modelport.errors import ModelLoadError
    from modelport.models.hf.describe import plan_folder

    Wav2Vec2Model(Wav2Vec2Config(**ac.SMALL)).save_pretrained(tmp_path)
    ac._waveform_extractor().save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="audio-classification, automatic-speech"):
        plan_folder(tmp_path)


def test_int8_without_audio_calibration_data_is_refused_naming_calib(folders, tmp_path):
    proc = run_cli("export", str(folders["wav2vec2-cls"]), "-t", "onnxruntime:cpu:int8",
                   "--out", str(tmp_path / "b"), "--no-bench")
    assert proc.returncode == 2
    assert "--calib" in proc.stderr and "audio files" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- bundles (one export per folder) -----------------------------------------------------------
@pytest.fixture(scope="module")
def bundles(folders, clips, tmp_path_factory):
    import modelport

    out = tmp_path_factory.mktemp("audio-bundles")
    result = {}
    for name, targets in TARGETS.items():
        exported = modelport.export(str(folders[name]), list(targets), out=out / name,
                                    calib=clips["calib"], eval=clips["eval"], bench=None,
                                    allow_accuracy_drop=True, progress=False)
        result[name] = {row["target"]: row for row in exported.rows}
    return result


@functools.cache
def _torch_model(folder, task: str):
    import transformers

    auto = (transformers.AutoModelForAudioClassification if task == "audio-classification"
            else transformers.AutoModelForCTC)
    return auto.from_pretrained(str(folder), local_files_only=True).eval()


def _torch_logits(folder, clip: np.ndarray, task: str) -> np.ndarray:
    import torch

    from modelport.models.hf.audio_config import audio_params
    from modelport.models.hf.folder import read_folder
    from modelport.tasks.audio import features

    values = features(clip, audio_params(read_folder(folder)))
    with torch.no_grad():
        return _torch_model(folder, task)(input_values=torch.from_numpy(values)).logits.numpy()


@pytest.mark.slow
@pytest.mark.onnxruntime
@pytest.mark.openvino
@pytest.mark.parametrize("name", list(TARGETS))
def test_fp32_bundles_match_transformers_within_1e4(bundles, folders, clips, name):
    import modelport
    from modelport.tasks.audio import audio_files, features, read_audio

    task = "audio-classification" if name in CLASSIFIERS else "automatic-speech-recognition"
    for target in FP32:
        row = bundles[name][target]
        assert row["status"] == "ok", row
        with modelport.load(row["bundle"]) as session:
            params = session.bundle.manifest["preprocessing"]["audio"]
            for file in audio_files(clips["eval"])[:3]:
                clip = read_audio(file, 16000)
                got = session.infer({"input_values": features(clip, params)})["logits"]
                ref = _torch_logits(folders[name], clip, task)
                assert got.shape == ref.shape
                assert np.abs(got - ref).max() <= 1e-4, (name, target)


def _clip_arrays(folder, count: int) -> list[tuple[str, np.ndarray]]:
    import soundfile as sf

    from modelport.tasks.audio import audio_files

    return [(str(f), sf.read(str(f), dtype="float32")[0]) for f in audio_files(folder)[:count]]


@pytest.mark.slow
@pytest.mark.onnxruntime
@pytest.mark.openvino
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_run_prints_the_labels_of_the_audio_classification_pipeline(bundles, folders, clips,
                                                                     name, tmp_path):
    from transformers import pipeline

    import modelport

    pipe = pipeline("audio-classification", model=str(folders[name]), device="cpu")
    files = _clip_arrays(clips["eval"], 2)
    expected = [pipe(samples, top_k=3) for _, samples in files]
    out = tmp_path / "run.json"
    args = [a for path, _ in files for a in ("--audio", path)]
    proc = run_cli("run", bundles[name]["onnxruntime:cpu:fp32"]["bundle"], *args,
                   "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert files[0][0] in proc.stdout and expected[0][0]["label"] in proc.stdout
    printed = json.loads(out.read_text())["predictions"]
    for answer, want in zip(printed, expected, strict=True):
        assert [s["label"] for s in answer["labels"]] == [w["label"] for w in want]
        assert np.allclose([s["score"] for s in answer["labels"]], [w["score"] for w in want],
                           atol=1e-4)
    with modelport.load(bundles[name]["openvino:cpu:fp32"]["bundle"]) as session:
        answer = session.predict(audio=[files[0][1]])  # samples already at 16 kHz
    assert [s.label for s in answer.labels[0]] == [w["label"] for w in expected[0]]


@pytest.mark.slow
@pytest.mark.onnxruntime
@pytest.mark.openvino
@pytest.mark.parametrize("name", CTC)
def test_run_prints_the_transcript_of_the_speech_recognition_pipeline(bundles, folders, clips,
                                                                       name, tmp_path):
    from transformers import pipeline

    import modelport

    pipe = pipeline("automatic-speech-recognition", model=str(folders[name]), device="cpu")
    files = _clip_arrays(clips["eval"], 2)
    expected = [pipe({"raw": samples, "sampling_rate": 16000})["text"] for _, samples in files]
    assert all(expected)  # random weights still emit characters and word breaks
    out = tmp_path / "run.json"
    args = [a for path, _ in files for a in ("--audio", path)]
    proc = run_cli("run", bundles[name]["onnxruntime:cpu:fp32"]["bundle"], *args,
                   "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert [p["text"] for p in json.loads(out.read_text())["predictions"]] == expected
    assert f"  {expected[0]}" in proc.stdout.splitlines()
    with modelport.load(bundles[name]["openvino:cpu:fp32"]["bundle"]) as session:
        assert session.predict(audio=[f for f, _ in files]).texts == expected


@pytest.mark.slow
@pytest.mark.onnxruntime
@pytest.mark.openvino
@pytest.mark.parametrize(("name", "target"), [(n, t) for n, ts in TARGETS.items() for t in ts
                                              if t.endswith("int8")])
def test_int8_verdict_is_the_task_metric_remeasured_from_the_bundle(bundles, folders, clips,
                                                                    name, target):
    """The manifest's top-1 agreement / WER is what the written bundle gives on the evaluation
    clips against transformers' pipeline; a bundle within the budget (1 point) is `ok`, one
    outside it is recorded as a miss. Re-measured on the clips batched together, as the export
    evaluates them: ONNX Runtime's dynamic INT8 (its recipe for attention graphs) scales
    activations per batch, so one clip alone can get another answer (measured: 70% vs 90%
    top-1). Random weights make CTC frames near-tied and WER fragile (see docs/tasks.md)."""
    from transformers import pipeline

    import modelport
    from modelport.bench import statuses
    from modelport.tasks.audio import features, read_audio
    from modelport.tasks.ctc import transcribe
    from modelport.tasks.postprocess import label_name
    from modelport.tasks.wer import word_error_rate

    row = bundles[name][target]
    manifest = json.loads((Path(row["bundle"]) / "manifest.json").read_text())
    metrics, budget = manifest["accuracy"]["metrics"], manifest["accuracy"]["budget"]
    pre = manifest["preprocessing"]
    files = _clip_arrays(clips["eval"], 10)
    values = np.concatenate([features(read_audio(f, 16000), pre["audio"]) for f, _ in files])
    with modelport.load(row["bundle"]) as session:
        logits = session.infer({"input_values": values})["logits"]
    if name in CLASSIFIERS:
        pipe = pipeline("audio-classification", model=str(folders[name]), device="cpu")
        ref = [pipe(samples, top_k=1)[0]["label"] for _, samples in files]
        got = [label_name(pre["id2label"], int(i)) for i in logits.argmax(-1)]
        measured = float(np.mean([g == r for g, r in zip(got, ref, strict=True)]))
        key, drop = "top1_agreement", 1.0 - measured
    else:
        pipe = pipeline("automatic-speech-recognition", model=str(folders[name]), device="cpu")
        ref = [pipe({"raw": s, "sampling_rate": 16000})["text"] for _, s in files]
        measured = word_error_rate(ref, transcribe(logits, pre["ctc"]))
        key, drop = "wer", measured
    assert metrics[key] == pytest.approx(measured, abs=1e-9)
    assert metrics["samples"] == len(files)
    within = drop <= budget["max_accuracy_drop"] + 1e-12
    assert row["status"] == (statuses.OK if within else statuses.BELOW_BUDGET), row
    if (name, target) == ("wav2vec2-cls", "openvino:cpu:int8"):  # a head with margins:
        assert within  # OpenVINO's INT8 keeps every decision (cosine 0.997 measured)


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.onnxruntime
def test_bad_audio_input_to_run_is_one_line(bundles, tmp_path):
    bundle = bundles["wav2vec2-ctc"]["onnxruntime:cpu:fp32"]["bundle"]
    (tmp_path / "notes.wav").write_text("meeting notes, not audio\n")
    (tmp_path / "empty.flac").write_bytes(b"")
    for args, fragment in (
        (("--audio", str(tmp_path / "notes.wav")), "cannot read"),
        (("--audio", str(tmp_path / "empty.flac")), "cannot read"),
        (("--audio", str(tmp_path / "nowhere.wav")), "not found"),
        (("--text", "hello"), "is not a text model"),
    ):
        proc = run_cli("run", bundle, *args)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0], proc.stderr


@pytest.mark.slow
@pytest.mark.onnxruntime
def test_runtime_only_install_transcribes(runtime_only_python, bundles, clips, tmp_path):
    """A device with modelport[onnxruntime,audio] (no torch, no transformers) prints the same
    transcript and labels as the build machine."""
    import subprocess

    from tests.conftest import ROOT

    install = subprocess.run(
        [str(runtime_only_python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
         "-c", str(ROOT / "constraints.txt"), "soundfile", "soxr"],
        check=False, capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    clip = str(min(clips["eval"].iterdir()))
    for name in ("hubert-ctc", "ast-cls"):
        bundle = bundles[name]["onnxruntime:cpu:fp32"]["bundle"]
        device = subprocess.run([str(runtime_only_python), "-m", "modelport.cli", "run", bundle,
                                 "--audio", clip], check=False, capture_output=True, text=True,
                                timeout=300, cwd=tmp_path)
        assert device.returncode == 0, device.stderr
        here = run_cli("run", bundle, "--audio", clip)
        assert device.stdout == here.stdout and device.stdout.strip()
