"""Whisper bundles (log-mel encoder + decoder with the self-attention cache) generate
transformers' tokens on ONNX Runtime and OpenVINO: greedy with the generation config's prompt
(language detected, --language, --task translate), suppress/begin-suppress tokens, beam search;
`run --audio` prints the transcript; 30 s windows; bad input is a one-line error."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from tests.seq2seq.whisper_checkpoint import RATE, clips, write_checkpoint, write_wav

SLUGS = ["onnxruntime-cpu-fp32", "openvino-cpu-fp32"]
NEW = 12


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    """(folder, bundles directory, export rows): fp32 on both runtimes, int8wo on ORT."""
    import modelport
    from modelport.errors import AccuracyBudgetExceeded

    root = tmp_path_factory.mktemp("whisper")
    folder = write_checkpoint(root / "tiny-whisper")
    out = root / "bundles"
    try:
        result = modelport.export(str(folder), ["onnxruntime:cpu:fp32", "openvino:cpu:fp32",
                                                "onnxruntime:cpu:int8wo", "onnxruntime:cpu:int8"],
                                  out=out, bench=None, progress=False)
    except AccuracyBudgetExceeded as exc:  # the weight-only target may miss its WER budget
        result = exc.result
    return folder, out, result.rows


@functools.cache
def hf_model(folder):
    import transformers

    return transformers.WhisperForConditionalGeneration.from_pretrained(str(folder)).eval()


def features(folder, waves):
    from modelport.tasks.whisper_features import input_features, whisper_params

    return input_features(waves, whisper_params(folder))


def hf_generate(folder, waves, **kwargs):
    """transformers' tokens: the generated ones (no prompt, no eos), right-padded."""
    key = (str(folder), tuple(w.tobytes() for w in waves), tuple(sorted(kwargs.items())))
    if key not in _GENERATED:
        import torch

        with torch.inference_mode():
            out = hf_model(folder).generate(torch.from_numpy(features(folder, waves)),
                                            do_sample=False, max_new_tokens=NEW, **kwargs)
        _GENERATED[key] = out.numpy()
    return _GENERATED[key]


#: transformers' outputs, shared by the tests of both runtimes
_GENERATED: dict[tuple, np.ndarray] = {}


def generated(rows, start, eos):
    return [[t for t in row[start:].tolist() if t != eos] for row in rows]


@pytest.mark.parametrize("slug", SLUGS)
def test_greedy_tokens_equal_transformers_with_the_prompt_rules(whisper, slug):
    import modelport

    folder, out, _ = whisper
    eos = json.loads((folder / "generation_config.json").read_text())["eos_token_id"]
    waves = clips(3)
    with modelport.load(out / slug) as session:
        for kwargs in ({}, {"language": "de"}, {"language": "en", "task": "translate"}):
            want = [[t for t in row if t != eos] for row in hf_generate(folder, waves,
                                                                        **kwargs).tolist()]
            got = session.generate(waves, max_new_tokens=NEW, num_beams=1, **kwargs)
            assert generated(got, session.prompt_length, eos) == want, (kwargs, got, want)
            assert min(len(w) for w in want) >= NEW - 2  # not an early eos: a real check
            assert len({tuple(w) for w in want}) > 1  # the transcript depends on the audio
    manifest = json.loads((out / slug / "manifest.json").read_text())
    assert sorted(manifest["graphs"]) == ["decoder", "encoder"]
    assert manifest["graphs"]["encoder"]["inputs"][0]["shape"] == ["batch", 80, 3000]
    assert manifest["accuracy"]["metrics"]["token_match"] == 1.0


def test_prompt_is_transformers_own(whisper):
    """Language given / detected, task tokens, <|notimestamps|>: the prompt transformers
    builds, read back from the session (first tokens of each row)."""
    import modelport

    folder, out, _ = whisper
    ids = json.loads((folder / "generation_config.json").read_text())
    sot, notime = ids["decoder_start_token_id"], ids["no_timestamps_token_id"]
    de, translate = ids["lang_to_id"]["<|de|>"], ids["task_to_id"]["translate"]
    with modelport.load(out / SLUGS[0]) as session:
        got = session.generate(clips(1), language="german", task="translate",
                               max_new_tokens=2)
        assert got[0, :4].tolist() == [sot, de, translate, notime]
        got = session.generate(clips(1), max_new_tokens=2)  # language detected, transcribe
        assert got[0, 0] == sot and got[0, 1] in ids["lang_to_id"].values()
        assert got[0, 2:4].tolist() == [ids["task_to_id"]["transcribe"], notime]


def test_beam_search_equals_transformers(whisper):
    import modelport

    folder, out, _ = whisper
    eos = json.loads((folder / "generation_config.json").read_text())["eos_token_id"]
    waves = clips(2, seed=3)
    want = [[t for t in row if t != eos]
            for row in hf_generate(folder, waves, num_beams=4, language="en").tolist()]
    with modelport.load(out / SLUGS[0]) as session:
        got = session.generate(waves, max_new_tokens=NEW, num_beams=4, language="en")
        assert generated(got, session.prompt_length, eos) == want


def test_long_audio_is_transcribed_in_30s_windows(whisper, monkeypatch):
    import modelport
    from modelport.backends import whisper_session

    monkeypatch.setattr(whisper_session, "WINDOW_BATCH", 2)  # the windows in two batches
    _, out, _ = whisper
    wave = np.concatenate([clips(3, seconds=25.0)[k] for k in (0, 1, 2)])  # 75 s: 3 windows
    with modelport.load(out / SLUGS[1]) as session:
        whole = session.transcribe([wave], language="en", max_new_tokens=6)
        parts = session.transcribe([wave[i:i + 30 * RATE] for i in (0, 30 * RATE, 60 * RATE)],
                                   language="en", max_new_tokens=6)
    assert whole == ["".join(parts)] and whole[0]


def test_run_audio_prints_the_transcript(whisper, tmp_path, capsys):
    from tokenizers import Tokenizer

    from modelport.cli import main

    folder, out, _ = whisper
    waves = clips(2)
    paths = [write_wav(tmp_path / f"{i}.wav", w) for i, w in enumerate(waves)]
    want = hf_generate(folder, waves, language="en")
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    texts = [tok.decode(row.tolist(), skip_special_tokens=True).strip() for row in want]
    capsys.readouterr()
    assert main(["run", str(out / SLUGS[0]), "--audio", str(paths[0]), "--audio",
                 str(paths[1]), "--language", "en", "--max-new-tokens", str(NEW)]) == 0
    printed = capsys.readouterr().out
    assert str(paths[0]) in printed and all(t and t in printed for t in texts)


@pytest.mark.parametrize("target", ["onnxruntime:cpu:int8wo", "onnxruntime:cpu:int8"])
def test_quantized_forms_are_judged_by_word_error_rate(whisper, target):
    """int8wo: weight-only decoder; int8: W+A INT8 encoder + int8wo decoder. A bundle exactly
    when the WER vs torch's transcripts is within the 5-point budget."""
    _, out, rows = whisper
    row = next(r for r in rows if r["target"] == target)
    fid = row["fidelity"]
    assert row["judged_by"] == "WER" and 0.0 <= fid["wer"] and fid["max_wer_increase"] == 0.05
    within = fid["wer"] <= 0.05 + 1e-9
    assert (row["status"] == "ok") == within
    slug = target.replace(":", "-")
    assert (out / slug / "manifest.json").is_file() == within
    if within and target.endswith("int8"):
        graphs = json.loads((out / slug / "manifest.json").read_text())["graphs"]
        assert [graphs[g]["precision"] for g in ("encoder", "decoder")] == ["int8", "int8wo"]
    from modelport.bench.export_table import columns_for, fidelity_text

    assert fidelity_text(fid).startswith("WER ")
    assert ("fidelity_text", "WER vs torch", str) in columns_for(rows)


@pytest.mark.parametrize("case", ["missing", "unreadable", "empty", "beams", "language"])
def test_bad_input_is_a_one_line_error(whisper, tmp_path, capsys, case):
    from modelport.cli import main

    _, out, _ = whisper
    audio = tmp_path / "x.wav"
    extra: list[str] = []
    if case == "unreadable":
        audio.write_text("not audio")
    elif case == "empty":
        write_wav(audio, np.zeros(0, np.float32))
    elif case != "missing":
        write_wav(audio, clips(1)[0])
    if case == "beams":
        extra = ["--num-beams", "0"]
    if case == "language":
        extra = ["--language", "klingon"]
    capsys.readouterr()
    assert main(["run", str(out / SLUGS[0]), "--audio", str(audio), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "Traceback" not in err


def test_bad_arrays_are_input_errors(whisper):
    import modelport
    from modelport.errors import InputError, UsageError

    _, out, _ = whisper
    with modelport.load(out / SLUGS[0]) as session:
        for bad in (np.zeros((1, 80, 100), np.float32), np.zeros((2, 2), np.float32),
                    np.zeros(0, np.float32), []):
            with pytest.raises((InputError, UsageError)):
                session.generate(bad)
        with pytest.raises(InputError, match="max_new_tokens"):
            session.generate(clips(1), max_new_tokens=64)  # + the prompt > 64 positions


def test_tflite_and_tensorrt_are_refused_with_the_reason(whisper):
    import modelport
    from modelport.errors import UnknownTarget

    folder, out, _ = whisper
    for target in ("tflite:cpu:fp32", "tensorrt:cuda:fp16"):
        with pytest.raises(UnknownTarget, match="not supported on"):
            modelport.export(str(folder), [target], out=out / "refused", bench=None,
                             progress=False)
    assert not (out / "refused").exists()


def test_english_only_prompt_and_flags():
    from modelport.backends.whisper_prompt import prompt_tokens
    from modelport.errors import UsageError

    config = {"decoder_start_token_id": 1, "no_timestamps_token_id": 9,
              "is_multilingual": False, "forced_decoder_ids": [[1, 9]]}
    assert prompt_tokens(config) == [1, 9]
    for kwargs in ({"language": "en"}, {"task": "translate"}):
        with pytest.raises(UsageError, match="English-only"):
            prompt_tokens(config, **kwargs)


def test_verify_generates_again_from_the_stored_features(whisper):
    from modelport.bundle.verify import verify_bundle

    _, out, _ = whisper
    report = verify_bundle(out / SLUGS[1])
    assert report["outputs_checked"] and report["metrics"]["tokens_equal"]
    assert report["graphs"] == ["decoder", "encoder"]


def test_bench_all_keeps_the_targets_that_apply_to_whisper():
    from types import SimpleNamespace

    from modelport.lm_steps import bench_lm_targets
    from modelport.specs import Target

    model = SimpleNamespace(task="automatic-speech-recognition",
                            preprocessing={"audio": {"kind": "whisper"},
                                           "generation_config": "generation_config.json"})
    wanted = [Target.parse(t) for t in ("onnxruntime:cpu:fp32", "openvino:cpu:int4",
                                        "tflite:cpu:fp32", "openvino:cpu:fp16")]
    kept, skipped = bench_lm_targets(model, "all", wanted)
    assert [str(t) for t in kept] == ["onnxruntime:cpu:fp32", "openvino:cpu:int4"]
    assert [r["target"] for r in skipped] == ["tflite:cpu:fp32", "openvino:cpu:fp16"]
    assert all(r["reason"].startswith("not for Whisper models") for r in skipped)


def test_detected_from_architectures_or_task_flag(whisper):
    from modelport.models.hf.folder import read_folder
    from modelport.models.hf.task import SPEECH_SEQ2SEQ_AUTO, choose_task

    folder = read_folder(whisper[0])
    for given in (None, "automatic-speech-recognition"):
        choice = choose_task(folder, given)
        assert (choice.task, choice.modality, choice.auto_class) == (
            "automatic-speech-recognition", "audio", SPEECH_SEQ2SEQ_AUTO)
