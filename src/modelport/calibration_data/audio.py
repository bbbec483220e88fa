"""A folder of audio files -> a CalibrationSet of ``input_values``, preprocessed with the
model's own parameters (the ones its bundle carries), so calibration sees what `run` feeds.

Each file is decoded, averaged to mono and resampled to the model's rate
(``modelport.tasks.audio``). Batching needs one shape, so waveform clips (wav2vec2, HuBERT)
are normalized on their own samples, then cut or zero-padded (the extractor's
``padding_value``) at the end to one length: the longest clip, at most ``MAX_SECONDS``. AST
features already have the extractor's fixed number of frames.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelport.calibration_data.dataset import CalibrationSet
from modelport.errors import CalibrationDataError, ModelportError
from modelport.specs import TensorSpec

#: calibration/evaluation clips are cut to at most this many seconds (each bundle stores up to
#: 64 of them as its benchmark samples: 64 x 4 s x 16 kHz float32 = 16 MB)
MAX_SECONDS = 4.0


def from_audio_dir(path: Path, specs: Mapping[str, TensorSpec],
                   audio: Mapping[str, Any] | None) -> CalibrationSet:
    from modelport.tasks.audio import audio_files, features, fit_length, read_audio

    files = audio_files(path)
    if audio is None:
        raise CalibrationDataError(
            f"'{path}' holds audio files, but this model takes {sorted(specs)}, not audio: give "
            "a folder of .npz feeds instead"
        )
    if len(specs) != 1:
        raise CalibrationDataError(f"'{path}': an audio folder feeds one input; the model "
                                   f"takes {sorted(specs)}")
    name = next(iter(specs))
    rate = int(audio["sampling_rate"])
    rows = []
    for file in files:
        try:
            rows.append(features(read_audio(file, rate), audio))
        except ModelportError as exc:
            raise CalibrationDataError(f"audio data: {exc}") from None
    if audio.get("kind", "waveform") == "waveform":
        length = min(max(r.shape[1] for r in rows), int(MAX_SECONDS * rate))
        pad = float(audio.get("padding_value", 0.0))
        rows = [fit_length(r, length, pad) for r in rows]
    return CalibrationSet([{name: np.ascontiguousarray(r)} for r in rows], source=str(path))
