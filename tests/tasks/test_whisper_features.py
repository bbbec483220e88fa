"""The numpy Whisper log-mel features (modelport.tasks.whisper_features) against transformers'
WhisperFeatureExtractor: 80- and 128-mel settings, clips shorter than, near and past 30 s."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelport.errors import UsageError
from modelport.tasks.whisper_features import (
    input_features,
    log_mel,
    split_windows,
    whisper_params,
)

RATE = 16000


@pytest.mark.parametrize("mels", [80, 128])
def test_log_mel_matches_transformers_whisper_extractor(tmp_path, mels):
    from transformers import WhisperFeatureExtractor

    reference = WhisperFeatureExtractor(feature_size=mels)
    reference.save_pretrained(tmp_path)  # the folder's preprocessor_config.json, as a user has
    params = whisper_params(tmp_path)
    assert params["feature_size"] == mels and params["nb_max_frames"] == 3000
    rng = np.random.default_rng(mels)
    clips = [(0.3 * rng.standard_normal(round(RATE * s))).astype(np.float32)
             for s in (0.7, 12.34, 31.0)]
    clips[1][: RATE * 2] = 0.0  # a silent stretch: the max - 8 clamp comes into play
    got = input_features(clips, params)
    ref = reference(clips, sampling_rate=RATE, return_tensors="np")["input_features"]
    assert got.shape == ref.shape == (3, mels, 3000) and got.dtype == np.float32
    assert np.abs(got - ref).max() <= 1e-4
    np.testing.assert_array_equal(got[0], log_mel(clips[0], params))


def test_split_windows_and_params_from_a_dict():
    params = whisper_params({"feature_size": 80, "chunk_length": 30, "sampling_rate": RATE})
    wave = np.arange(RATE * 65, dtype=np.float32)
    windows = split_windows(wave, params)
    assert [w.size for w in windows] == [RATE * 30, RATE * 30, RATE * 5]
    np.testing.assert_array_equal(np.concatenate(windows), wave)
    assert [w.size for w in split_windows(wave[: RATE * 30], params)] == [RATE * 30]
    with pytest.raises(UsageError):
        split_windows(np.zeros(0, np.float32), params)


def test_unreadable_settings_are_a_load_error(tmp_path):
    from modelport.errors import ModelLoadError

    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"n_fft": "big"}))
    with pytest.raises(ModelLoadError):
        whisper_params(tmp_path)
