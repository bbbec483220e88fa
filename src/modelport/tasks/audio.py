"""Audio file -> the graph's ``input_values``, with the parameters stored in a bundle.

Decoding is ``soundfile`` (libsndfile from its wheel: WAV, FLAC, OGG/Vorbis, ...), several
channels are averaged to mono, and any sampling rate is resampled to the model's with ``soxr``
(high quality). Then the features the checkpoint's own feature extractor computes, in numpy:

- ``waveform`` (Wav2Vec2FeatureExtractor: wav2vec2, HuBERT, ...): the samples themselves,
  zero-mean unit-variance per clip when ``do_normalize``; ``input_values`` [batch, samples].
- ``fbank`` (ASTFeatureExtractor): Kaldi-style log-mel filter bank (25 ms Hann frames every
  10 ms, DC removal, pre-emphasis 0.97, 512-point FFT, Kaldi mel scale), padded or cut to the
  extractor's ``max_length`` frames, then ``(x - mean) / (2 * std)``;
  ``input_values`` [batch, frames, mel bins]. These are the steps of transformers' own numpy
  path (the one it takes without torchaudio); see ``modelport.tasks.fbank``.

The parameters come from the folder's ``preprocessor_config.json``
(``modelport.models.hf.audio_config``) and travel in the manifest's ``preprocessing.audio``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import MissingDependency, UsageError

#: suffixes an audio folder (--calib/--eval) is read for; soundfile reads each of them
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au", ".mp3")
#: zero-mean unit-variance epsilon of Wav2Vec2FeatureExtractor
NORM_EPS = 1e-7


def _soundfile():
    try:
        import soundfile
    except (ImportError, OSError):
        raise MissingDependency(
            "reading audio files needs soundfile and soxr: pip install \"modelport[audio]\""
        ) from None
    return soundfile


def read_audio(path: str | Path, rate: int) -> np.ndarray:
    """Mono float32 samples of an audio file at ``rate`` Hz; one-line UsageError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"audio file '{path}' not found")
    soundfile = _soundfile()
    try:
        data, source_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, TypeError, ValueError, OSError) as exc:  # LibsndfileError: RuntimeError
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot read '{path}' as audio (WAV, FLAC or OGG): {reason}") from None
    if data.shape[0] == 0:
        raise UsageError(f"'{path}' holds no audio samples")
    return resample(data.mean(axis=1, dtype=np.float32), int(source_rate), rate)


def resample(samples: np.ndarray, source_rate: int, rate: int) -> np.ndarray:
    """``samples`` (mono) from ``source_rate`` to ``rate`` Hz with soxr's high-quality filter."""
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if source_rate == rate:
        return samples
    try:
        import soxr
    except ImportError:
        raise MissingDependency(
            f"resampling {source_rate} Hz audio to the model's {rate} Hz needs soxr: "
            "pip install \"modelport[audio]\""
        ) from None
    return np.ascontiguousarray(soxr.resample(samples, source_rate, rate, quality="HQ"),
                                dtype=np.float32)


def waveform_features(samples: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """One clip -> [1, samples] float32, normalized as Wav2Vec2FeatureExtractor does."""
    x = np.asarray(samples, dtype=np.float32)
    if params.get("do_normalize", True):
        x = (x - x.mean()) / np.sqrt(x.var() + np.float32(NORM_EPS))
    return np.ascontiguousarray(x[None], dtype=np.float32)


def fbank_input(samples: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """One clip -> [1, frames, mel bins] float32, as ASTFeatureExtractor computes it."""
    from modelport.tasks.fbank import fbank_features

    return fbank_features(samples, params)[None]


#: feature kind (preprocessing.audio.kind) -> one clip's graph input
FEATURES: dict[str, Callable[[np.ndarray, Mapping[str, Any]], np.ndarray]] = {
    "waveform": waveform_features,
    "fbank": fbank_input,
}


def features(samples: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """One mono clip at the model's rate -> the graph's ``input_values`` (batch of 1)."""
    kind = str(params.get("kind", "waveform"))
    if kind not in FEATURES:
        raise UsageError(f"unknown audio feature kind '{kind}' in the bundle's preprocessing "
                         f"(known: {', '.join(FEATURES)})")
    return FEATURES[kind](samples, params)


def load_input_values(path: str | Path, params: Mapping[str, Any]) -> np.ndarray:
    """An audio file (or a .npy of ready ``input_values``) -> ``input_values`` for one clip."""
    path = Path(path)
    if path.suffix.lower() == ".npy" and path.is_file():
        try:
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise UsageError(f"cannot read '{path}' as numpy data: {exc}") from None
        return np.ascontiguousarray(array if array.ndim >= 2 else array[None], dtype=np.float32)
    return features(read_audio(path, int(params["sampling_rate"])), params)


def fit_length(values: np.ndarray, length: int, pad_value: float = 0.0) -> np.ndarray:
    """Cut or pad (at the end, with ``pad_value``) a [1, samples] row to ``length`` samples."""
    if values.shape[1] >= length:
        return np.ascontiguousarray(values[:, :length])
    pad = np.full((values.shape[0], length - values.shape[1], *values.shape[2:]), pad_value,
                  dtype=values.dtype)
    return np.concatenate([values, pad], axis=1)


def audio_files(folder: Path) -> list[Path]:
    """The audio files of a folder, sorted (so a calibration set's hash is stable)."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def describe_audio(pre: Mapping[str, Any]) -> list[str]:
    """`modelport inspect` lines for an audio model's preprocessing (and CTC vocabulary)."""
    audio = pre["audio"]
    steps = [f"mono, resampled to {audio['sampling_rate']} Hz"]
    if audio.get("kind") == "whisper":
        steps.append(f"log-mel {audio['feature_size']} bins x {audio['nb_max_frames']} frames "
                     f"({audio['chunk_length']} s windows; longer audio in consecutive windows)")
    elif audio.get("kind") == "fbank":
        steps.append(f"log-mel fbank {audio['num_mel_bins']} bins x {audio['max_length']} frames")
        if audio.get("do_normalize"):
            steps.append(f"(x - {audio['mean']:g}) / (2 * {audio['std']:g})")
    elif audio.get("do_normalize"):
        steps.append("zero mean, unit variance per clip")
    source = audio.get("feature_extractor") or ("WhisperFeatureExtractor"
                                                if audio.get("kind") == "whisper" else "")
    lines = [f"audio        {', '.join(steps)} ({source})"]
    ctc = pre.get("ctc")
    if ctc:
        lines.append(f"ctc          greedy: {len(ctc['vocab'])} tokens, blank "
                     f"'{ctc['pad_token']}' (id {ctc['blank_id']}), word delimiter "
                     f"'{ctc['word_delimiter_token']}' -> space")
    return lines
