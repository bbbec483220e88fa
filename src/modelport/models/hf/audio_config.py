"""An audio model's preprocessing, read from the folder's ``preprocessor_config.json``.

Turned into the plain parameters ``modelport.tasks.audio`` applies (soundfile + soxr + numpy),
which go into the bundle's ``preprocessing.audio``, so a device decodes, resamples and
normalizes exactly as the checkpoint's feature extractor does. Feature extractors are mapped
by class name (one line each); one modelport cannot compute is refused with the reason.
"""

from __future__ import annotations

from typing import Any

from modelport.errors import ModelLoadError
from modelport.models.hf.folder import Folder, read_json

PREPROCESSOR = "preprocessor_config.json"

#: feature_extractor_type -> the feature kind modelport.tasks.audio computes
FEATURE_KINDS: dict[str, str] = {
    "Wav2Vec2FeatureExtractor": "waveform",
    "ASTFeatureExtractor": "fbank",
}
#: model types whose graph takes the raw waveform (a folder without preprocessor_config.json)
WAVEFORM_MODEL_TYPES = frozenset({"wav2vec2", "hubert", "wavlm", "unispeech", "unispeech-sat",
                                  "data2vec-audio", "sew", "sew-d", "wav2vec2-conformer"})


def preprocessor(folder: Folder) -> dict[str, Any] | None:
    path = folder.path / PREPROCESSOR
    raw = read_json(path) if path.is_file() else None
    return raw if isinstance(raw, dict) else None


def is_audio_folder(folder: Folder) -> bool:
    """The folder's processor is a feature extractor with a sampling rate (not an image one)."""
    raw = preprocessor(folder)
    if raw is not None:
        kind = str(raw.get("feature_extractor_type") or "")
        return "sampling_rate" in raw and not raw.get("image_processor_type") and bool(kind)
    return folder.model_type in WAVEFORM_MODEL_TYPES


def audio_params(folder: Folder) -> dict[str, Any]:
    """kind, sampling_rate, normalization (and the fbank settings for an AST)."""
    raw = preprocessor(folder)
    if raw is None:
        raise ModelLoadError(
            f"'{folder.path}' has no {PREPROCESSOR}: an audio model needs its feature "
            "extractor's settings (sampling rate, normalization); save it there with "
            "feature_extractor.save_pretrained(DIR)"
        )
    name = str(raw.get("feature_extractor_type") or "")
    kind = FEATURE_KINDS.get(name)
    if kind is None:
        raise ModelLoadError(
            f"'{folder.path / PREPROCESSOR}': feature extractor '{name or 'unnamed'}' is not one "
            f"modelport computes on a device ({', '.join(FEATURE_KINDS)}); export it with a "
            "file.py:factory and feed --input feeds.npz"
        )
    params: dict[str, Any] = {
        "kind": kind, "feature_extractor": name,
        "sampling_rate": int(raw.get("sampling_rate", 16000)),
        "do_normalize": bool(raw.get("do_normalize", True)),
        "padding_value": float(raw.get("padding_value", 0.0)),
    }
    if kind == "fbank":
        params.update(num_mel_bins=int(raw.get("num_mel_bins", 128)),
                      max_length=int(raw.get("max_length", 1024)),
                      mean=float(raw.get("mean", -4.2677393)),
                      std=float(raw.get("std", 4.5689974)))
        config = folder.config
        for key in ("num_mel_bins", "max_length"):
            if key in config and int(config[key]) != params[key]:
                raise ModelLoadError(
                    f"'{folder.path}': {PREPROCESSOR} has {key} {params[key]} but config.json "
                    f"{config[key]}: the features would not fit the model; re-save the pair"
                )
    return params
