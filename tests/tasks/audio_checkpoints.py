"""Tiny random-init audio folders (wav2vec2 and AST classifiers, wav2vec2- and HuBERT-CTC),
written with save_pretrained as a user's fine-tuning script would, with their feature extractor
(and for CTC a Wav2Vec2CTCTokenizer from a small vocab.json); and audio files generated here
(tone sweeps with noise, written with soundfile at 16 kHz mono, 8 kHz and 44.1 kHz stereo).

A random classifier head gives near-tied logits, whose top label any rounding flips; so the
classifiers' last linear layer is refitted (ridge regression on its inputs for the test clips)
to put the clips in three classes by a clear margin, as a trained head would."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

RATE = 16000
LABELS = {0: "dog", 1: "rain", 2: "siren"}
VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", "a", "b", "c", "d", "e", "o", "t"]
#: wav2vec2/HuBERT at test size: 32 wide, 2 layers, a 20x-downsampling conv stack
SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
         "intermediate_size": 64, "conv_dim": (16, 16, 16), "conv_kernel": (10, 3, 3),
         "conv_stride": (5, 2, 2), "num_conv_pos_embeddings": 16,
         "num_conv_pos_embedding_groups": 2, "classifier_proj_size": 32}


def sweep(rate: int, seconds: float, seed: int, *, channels: int = 1) -> np.ndarray:
    """A tone sweep with a slow tremolo and a little noise; [samples] or [samples, channels]."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(rate * seconds)) / rate
    f0, f1 = rng.uniform(120, 500), rng.uniform(900, min(3500, rate / 2.5))
    wave = 0.4 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * seconds)))
    wave *= 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(2, 6) * t)
    wave = wave + 0.03 * rng.standard_normal(t.size)
    if channels > 1:
        wave = np.stack([wave * (1.0 - 0.3 * c) for c in range(channels)], axis=1)
    return wave.astype(np.float32)


def write_clips(folder: Path, count: int, *, seed: int, mixed: bool) -> Path:
    """``count`` 1-second clips; ``mixed``: every third at 8 kHz, every third at 44.1 kHz
    stereo (so reading them resamples and mixes down), the rest 16 kHz mono."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        rate, channels = (RATE, 1)
        if mixed:
            rate, channels = ((RATE, 1), (8000, 1), (44100, 2))[i % 3]
        sf.write(folder / f"clip{i:02d}.wav", sweep(rate, 1.0, seed * 1000 + i,
                                                    channels=channels), rate)
    return folder


def _waveform_extractor():
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=RATE, padding_value=0.0,
                                    do_normalize=True, return_attention_mask=False)


def _ctc_tokenizer(path: Path):
    from transformers import Wav2Vec2CTCTokenizer

    vocab = path / "vocab.json"
    vocab.write_text(json.dumps({tok: i for i, tok in enumerate(VOCAB)}))
    return Wav2Vec2CTCTokenizer(str(vocab), pad_token="<pad>", word_delimiter_token="|")


def _refit_head(model, linear, inputs: list[np.ndarray]) -> None:
    """Ridge-fit ``linear`` so the clips fall in three classes (terciles of the first principal
    component of its inputs) with logit margins of about 4."""
    import torch

    seen = []
    hook = linear.register_forward_hook(lambda _m, args, _o: seen.append(args[0].detach()))
    with torch.no_grad():
        for values in inputs:
            model(input_values=torch.from_numpy(values))
    hook.remove()
    x = torch.cat(seen).double()
    mean = x.mean(0)
    xc = x - mean
    score = xc @ torch.linalg.svd(xc, full_matrices=False).Vh[0]
    classes = torch.bucketize(score, torch.quantile(score, torch.tensor([1 / 3, 2 / 3],
                                                                        dtype=x.dtype)))
    y = 4.0 * (torch.nn.functional.one_hot(classes, 3).double() - 1 / 3)
    gram = xc.T @ xc
    w = torch.linalg.solve(gram + 1e-2 * gram.trace() / len(gram) * torch.eye(len(gram),
                                                                            dtype=x.dtype),
                           xc.T @ y)
    with torch.no_grad():
        linear.weight.copy_(w.T.float())
        linear.bias.copy_((-mean @ w).float())


def _inputs_of(clip_dirs: list[Path], params: dict) -> list[np.ndarray]:
    from modelport.tasks.audio import audio_files, features, read_audio

    return [features(read_audio(f, RATE), params)
            for d in clip_dirs for f in audio_files(d)]


def wav2vec2_classifier(path: Path, clip_dirs: list[Path]) -> Path:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

    torch.manual_seed(0)
    config = Wav2Vec2Config(**SMALL, num_labels=3, id2label=LABELS,
                            label2id={v: k for k, v in LABELS.items()})
    model = Wav2Vec2ForSequenceClassification(config).eval()
    _refit_head(model, model.classifier, _inputs_of(clip_dirs, {"kind": "waveform"}))
    model.save_pretrained(path)
    _waveform_extractor().save_pretrained(path)
    return path


def ast_classifier(path: Path, clip_dirs: list[Path]) -> Path:
    import torch
    from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

    torch.manual_seed(1)
    config = ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, num_mel_bins=32, max_length=100, patch_size=16,
                       frequency_stride=8, time_stride=8, num_labels=3, id2label=LABELS,
                       label2id={v: k for k, v in LABELS.items()})
    model = ASTForAudioClassification(config).eval()
    extractor = ASTFeatureExtractor(num_mel_bins=32, max_length=100, sampling_rate=RATE)
    params = {"kind": "fbank", "sampling_rate": RATE, "num_mel_bins": 32, "max_length": 100,
              "mean": extractor.mean, "std": extractor.std, "do_normalize": True}
    _refit_head(model, model.classifier.dense, _inputs_of(clip_dirs, params))
    model.save_pretrained(path)
    extractor.save_pretrained(path)
    return path


def wav2vec2_ctc(path: Path) -> Path:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    torch.manual_seed(2)
    model = Wav2Vec2ForCTC(Wav2Vec2Config(**SMALL, vocab_size=len(VOCAB), pad_token_id=0))
    model.eval().save_pretrained(path)
    _waveform_extractor().save_pretrained(path)
    _ctc_tokenizer(path).save_pretrained(path)
    return path


def hubert_ctc(path: Path) -> Path:
    import torch
    from transformers import HubertConfig, HubertForCTC

    torch.manual_seed(3)
    model = HubertForCTC(HubertConfig(**SMALL, vocab_size=len(VOCAB), pad_token_id=0))
    model.eval().save_pretrained(path)
    _waveform_extractor().save_pretrained(path)
    _ctc_tokenizer(path).save_pretrained(path)
    return path
