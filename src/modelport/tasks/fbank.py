"""Kaldi-style log-mel filter bank features of an Audio Spectrogram Transformer, in numpy.

The steps of transformers' ``ASTFeatureExtractor`` on its numpy path (``audio_utils.spectrogram``
with Kaldi settings, the path it takes when torchaudio is not installed): frames of 25 ms every
10 ms without centering, per-frame DC removal, pre-emphasis 0.97, a symmetric Hann window,
512-point power spectrum, a Kaldi-scale mel bank triangular in mel space (20 Hz to Nyquist),
``log(max(mel, 1.19e-7))``; zero-padded or cut to ``max_length`` frames; then
``(x - mean) / (2 * std)``. Vectorized over frames (transformers loops), same float64 math, so
the two agree to float32 rounding (tests/tasks/test_audio_tasks.py bounds it at 1e-4 abs).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

FRAME_MS = 25.0
HOP_MS = 10.0
PREEMPHASIS = 0.97
MEL_FLOOR = 1.192092955078125e-07
LOW_HZ = 20.0


def _kaldi_mel(hz: np.ndarray | float) -> np.ndarray | float:
    return 1127.0 * np.log(1.0 + np.asarray(hz) / 700.0)


@lru_cache(maxsize=8)
def mel_bank(bins: int, fft_length: int, rate: int) -> np.ndarray:
    """[fft_length // 2 + 1, bins] triangular filters, triangular in Kaldi mel space."""
    mel_points = np.linspace(_kaldi_mel(LOW_HZ), _kaldi_mel(rate // 2), bins + 2)
    fft_bins = fft_length // 2 + 1
    width = rate / ((fft_bins - 1) * 2)
    fft_mels = _kaldi_mel(width * np.arange(fft_bins))
    diff = np.diff(mel_points)
    slopes = mel_points[None, :] - fft_mels[:, None]
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    return np.maximum(0.0, np.minimum(down, up))


def fbank_features(samples: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """One mono clip at ``params['sampling_rate']`` -> [max_length, num_mel_bins] float32."""
    rate = int(params["sampling_rate"])
    bins = int(params["num_mel_bins"])
    max_length = int(params["max_length"])
    frame = round(rate * FRAME_MS / 1000.0)
    hop = round(rate * HOP_MS / 1000.0)
    fft_length = 1 << (frame - 1).bit_length()
    wave = np.asarray(samples, dtype=np.float32).reshape(-1).astype(np.float64)
    count = int(1 + np.floor((wave.size - frame) / hop)) if wave.size >= frame else 0
    if count > 0:
        index = np.arange(frame)[None, :] + hop * np.arange(count)[:, None]
        frames = wave[index]
        frames = frames - frames.mean(axis=1, keepdims=True)
        emphasized = frames.copy()
        emphasized[:, 1:] -= PREEMPHASIS * frames[:, :-1]
        emphasized[:, 0] *= 1.0 - PREEMPHASIS
        emphasized *= np.hanning(frame)[None, :]
        # transformers keeps the spectrum as complex64: the same rounding here
        spectrum = np.fft.rfft(emphasized, n=fft_length, axis=1).astype(np.complex64)
        power = np.abs(spectrum, dtype=np.float64) ** 2
        mel = np.maximum(MEL_FLOOR, power @ mel_bank(bins, fft_length, rate))
        features = np.log(mel).astype(np.float32)
    else:
        features = np.zeros((0, bins), dtype=np.float32)
    if features.shape[0] < max_length:
        pad = np.zeros((max_length - features.shape[0], bins), dtype=np.float32)
        features = np.concatenate([features, pad], axis=0)
    features = features[:max_length]
    if params.get("do_normalize", True):
        mean, std = float(params.get("mean", -4.2677393)), float(params.get("std", 4.5689974))
        features = (features - mean) / (std * 2)
    return np.ascontiguousarray(features, dtype=np.float32)
