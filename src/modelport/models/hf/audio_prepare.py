"""A loaded audio model -> PreparedModel: synthetic clips for export validation, no built-in
calibration data (INT8 needs ``--calib`` with a folder of audio files)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.models.prepared import PreparedModel

if TYPE_CHECKING:
    from modelport.models.hf.describe import FolderPlan

#: length of the synthetic clips that check the export (seconds)
SYNTHETIC_SECONDS = 1.0


def synthetic_clips(rate: int, count: int, *, seed: int,
                    seconds: float = SYNTHETIC_SECONDS) -> list[np.ndarray]:
    """Tone sweeps with a little noise: speech-like energy across the band, never real data."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    clips = []
    for _ in range(count):
        start, stop = rng.uniform(100, 600), rng.uniform(1000, rate / 2.5)
        phase = 2 * np.pi * (start * t + (stop - start) * t * t / (2 * seconds))
        wave = 0.4 * np.sin(phase) * (0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(2, 6) * t))
        clips.append((wave + 0.03 * rng.standard_normal(t.size)).astype(np.float32))
    return clips


def synthetic_inputs(params: dict[str, Any], batch: int, *, seed: int) -> dict[str, np.ndarray]:
    from modelport.tasks.audio import features

    rows = [features(c, params) for c in synthetic_clips(int(params["sampling_rate"]), batch,
                                                         seed=seed)]
    return {"input_values": np.concatenate(rows, axis=0)}


def audio_model(plan: FolderPlan, common: dict[str, Any]) -> PreparedModel:
    params = plan.preprocessing["audio"]
    return PreparedModel(
        example_inputs=synthetic_inputs(params, 2, seed=0),
        make_inputs=lambda batch: synthetic_inputs(params, batch, seed=batch), **common,
    )
