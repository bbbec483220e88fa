"""Whisper's log-mel input features, in numpy (no torch): what ``WhisperFeatureExtractor`` gives.

The steps of transformers' extractor: the clip is zero-padded (``padding_value``) or cut to
``n_samples`` (``chunk_length`` seconds, 30 s); a centered STFT (reflect padding of
``n_fft // 2``, periodic Hann window of ``n_fft``, hop ``hop_length``), the power spectrum,
Slaney-style mel filters (Slaney mel scale, area-normalized, 0 Hz to 8 kHz as transformers
hard-codes), the last frame dropped, ``log10(max(mel, 1e-10))``, clamped to ``max - 8``, then
``(x + 4) / 4``. Vectorized over frames in float64, so the result agrees with transformers'
(torch or numpy path) to float32 rounding (tests/tasks/test_whisper_features.py: 1e-4 abs).

Functions (all take ``params``, the dict :func:`whisper_params` returns):

- ``whisper_params(source) -> dict``: ``source`` is a checkpoint folder (its
  ``preprocessor_config.json``) or that file's dict; keys ``kind`` ("whisper"),
  ``feature_size`` (mel bins: 80, or 128 for large-v3), ``sampling_rate``, ``n_fft``,
  ``hop_length``, ``chunk_length``, ``n_samples``, ``nb_max_frames``, ``padding_value``.
- ``mel_filters(n_fft, n_mels, rate) -> [n_fft // 2 + 1, n_mels]`` float64 (cached).
- ``log_mel(samples, params) -> [n_mels, nb_max_frames]`` float32: one mono clip at
  ``params['sampling_rate']``, padded or cut to 30 s.
- ``input_features(clips, params) -> [batch, n_mels, nb_max_frames]`` float32: the model's
  ``input_features`` for a list of clips (each padded/cut on its own).
- ``split_windows(samples, params) -> list[np.ndarray]``: a long clip in consecutive
  ``n_samples`` windows (the last one shorter; ``log_mel`` pads it), for audio past 30 s.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import ModelLoadError, UsageError

PREPROCESSOR = "preprocessor_config.json"
#: transformers' WhisperFeatureExtractor builds its filters up to 8 kHz whatever the rate
MAX_HZ = 8000.0
LOG_FLOOR = 1e-10
#: (preprocessor_config key, default) of WhisperFeatureExtractor's constructor
DEFAULTS: dict[str, Any] = {"feature_size": 80, "sampling_rate": 16000, "hop_length": 160,
                            "chunk_length": 30, "n_fft": 400, "padding_value": 0.0}


def whisper_params(source: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """A folder (or its preprocessor_config.json as a dict) -> the parameters the features need."""
    if isinstance(source, Mapping):
        raw: Mapping[str, Any] = source
    else:
        path = Path(source)
        path = path / PREPROCESSOR if path.is_dir() else path
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot read Whisper's feature settings in '{path}': "
                                 f"{exc}") from None
        if not isinstance(raw, dict):
            raise ModelLoadError(f"'{path}' is not a JSON object")
    params = {key: raw.get(key, default) for key, default in DEFAULTS.items()}
    try:
        for key in ("feature_size", "sampling_rate", "hop_length", "chunk_length", "n_fft"):
            params[key] = int(params[key])
        params["padding_value"] = float(params["padding_value"])
    except (TypeError, ValueError):
        raise ModelLoadError(f"Whisper feature settings are not numbers: {dict(raw)}") from None
    if min(params[k] for k in ("feature_size", "sampling_rate", "hop_length", "n_fft")) <= 0:
        raise ModelLoadError(f"Whisper feature settings must be positive: {params}")
    # transformers derives these from chunk_length (a stored n_samples is ignored there too)
    params["n_samples"] = params["chunk_length"] * params["sampling_rate"]
    params["nb_max_frames"] = params["n_samples"] // params["hop_length"]
    params["kind"] = "whisper"
    return params


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = 3.0 * hz / 200.0
    log_region = hz >= 1000.0
    return np.where(log_region, 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) * 27.0 / np.log(6.4),
                    mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    hz = 200.0 * mel / 3.0
    return np.where(mel >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (mel - 15.0)), hz)


@lru_cache(maxsize=8)
def mel_filters(n_fft: int, n_mels: int, rate: int) -> np.ndarray:
    """[n_fft // 2 + 1, n_mels] Slaney filters, triangular in Hz, area-normalized (float64)."""
    bins = n_fft // 2 + 1
    mel_points = np.linspace(_hz_to_mel(0.0), _hz_to_mel(MAX_HZ), n_mels + 2)
    hz_points = _mel_to_hz(mel_points)
    fft_hz = np.linspace(0, rate // 2, bins)
    diff = np.diff(hz_points)
    slopes = hz_points[None, :] - fft_hz[:, None]
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    bank = np.maximum(0.0, np.minimum(down, up))
    bank *= (2.0 / (hz_points[2 : n_mels + 2] - hz_points[:n_mels]))[None, :]
    bank.flags.writeable = False
    return bank


def _fit(samples: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    wave = np.asarray(samples, dtype=np.float32).reshape(-1)
    n = int(params["n_samples"])
    if wave.size >= n:
        return wave[:n]
    pad = np.full(n - wave.size, params.get("padding_value", 0.0), dtype=np.float32)
    return np.concatenate([wave, pad])


def log_mel(samples: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """One mono clip at the model's rate -> [n_mels, nb_max_frames] float32 (padded/cut to 30 s)."""
    n_fft, hop = int(params["n_fft"]), int(params["hop_length"])
    wave = np.pad(_fit(samples, params).astype(np.float64), n_fft // 2, mode="reflect")
    count = 1 + (wave.size - n_fft) // hop
    frames = np.lib.stride_tricks.sliding_window_view(wave, n_fft)[::hop][:count]
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    mel = power[:-1] @ mel_filters(n_fft, int(params["feature_size"]),
                                   int(params["sampling_rate"]))
    spec = np.log10(np.maximum(mel, LOG_FLOOR)).T
    spec = np.maximum(spec, spec.max() - 8.0)
    return np.ascontiguousarray((spec + 4.0) / 4.0, dtype=np.float32)


def input_features(clips: Sequence[np.ndarray], params: Mapping[str, Any]) -> np.ndarray:
    """Clips -> the model's ``input_features`` [batch, n_mels, nb_max_frames] float32."""
    if len(clips) == 0:
        raise UsageError("no audio clips to compute Whisper features for")
    return np.stack([log_mel(clip, params) for clip in clips])


def split_windows(samples: np.ndarray, params: Mapping[str, Any]) -> list[np.ndarray]:
    """A clip -> consecutive ``n_samples`` (30 s) windows; the last may be shorter."""
    wave = np.asarray(samples, dtype=np.float32).reshape(-1)
    if wave.size == 0:
        raise UsageError("the audio holds no samples")
    n = int(params["n_samples"])
    return [wave[start : start + n] for start in range(0, wave.size, n)]
