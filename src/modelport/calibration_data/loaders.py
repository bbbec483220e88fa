"""Where calibration/evaluation data comes from: .npy/.npz folders and text files."""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelport.calibration_data.dataset import CalibrationSet
from modelport.errors import CalibrationDataError
from modelport.specs import TensorSpec

log = logging.getLogger("modelport")

LABEL_KEYS = ("label", "labels")
#: text tasks whose data file is read by calibration_data.text_tasks (``preprocessing``: the
#: model's): a JSONL of question/context pairs, text lines with masked tokens
TEXT_TASK_DATA = ("question-answering", "fill-mask")
#: images paired with sentences for the two towers: calibration_data.zero_shot
ZERO_SHOT = "zero-shot-image-classification"


def load_source(
    path: str | Path,
    specs: Mapping[str, TensorSpec],
    *,
    tokenizer_json: Path | None = None,
    max_length: int = 128,
    image: Mapping[str, Any] | None = None,
    audio: Mapping[str, Any] | None = None,
    preprocessing: Mapping[str, Any] | None = None,
) -> CalibrationSet:
    """A folder of .npy/.npz feeds, a folder of PNG/JPEG images for image models (resized and
    normalized with ``image``, the model's own parameters), a folder of audio files for audio
    models (``audio``: decoded, resampled and normalized likewise), or a text file (one
    sentence a line) for text models."""
    path = Path(path)
    if not path.exists():
        raise CalibrationDataError(f"data source '{path}' does not exist")
    if tokenizer_json is not None and (preprocessing or {}).get("task") == ZERO_SHOT:
        from modelport.calibration_data.zero_shot import load_zero_shot

        found = load_zero_shot(path, specs, preprocessing or {}, tokenizer_json, max_length)
        if found is not None:  # None: a folder of .npz feeds, read below as for any model
            return found
    if path.is_dir():
        from modelport.tasks.image import image_files

        if image_files(path) and not any(p.suffix in (".npz", ".npy") for p in path.iterdir()):
            from modelport.calibration_data.images import from_image_dir

            return from_image_dir(path, specs, image)
        from modelport.tasks.audio import audio_files

        if audio_files(path) and not any(p.suffix in (".npz", ".npy") for p in path.iterdir()):
            from modelport.calibration_data.audio import from_audio_dir

            return from_audio_dir(path, specs, audio)
        return from_npz_dir(path, specs)
    if path.suffix in (".npz", ".npy"):
        return _from_array_files([path], specs, source=str(path))
    if tokenizer_json is not None and (preprocessing or {}).get("task") in TEXT_TASK_DATA:
        from modelport.calibration_data.text_tasks import load_text_task

        return load_text_task(path, preprocessing or {}, tokenizer_json, specs)
    if tokenizer_json is None:
        raise CalibrationDataError(
            f"'{path}' looks like a text file, but this model has no tokenizer: "
            "give a folder of .npz feed files instead"
        )
    from modelport.calibration_data.text import TextTokenizer

    return from_text_file(path, TextTokenizer(tokenizer_json, max_length=max_length), specs)


def from_npz_dir(path: str | Path, specs: Mapping[str, TensorSpec]) -> CalibrationSet:
    """Every ``*.npz`` (input name -> array, optional ``label``) or ``*.npy`` (single-input) file.

    Arrays may carry the batch dimension (split into samples) or not (one sample).
    Files are read with ``allow_pickle=False``: data never executes code.
    """
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.suffix in (".npz", ".npy"))
    if not files:
        raise CalibrationDataError(f"'{path}' has no .npz or .npy files")
    return _from_array_files(files, specs, source=str(path))


def _from_array_files(
    files: list[Path], specs: Mapping[str, TensorSpec], *, source: str
) -> CalibrationSet:
    samples: list[dict[str, np.ndarray]] = []
    labels: list[np.ndarray] = []
    for file in files:
        arrays = read_arrays(file, specs)
        label = next((arrays.pop(k) for k in LABEL_KEYS if k in arrays), None)
        feed: dict[str, np.ndarray] = {}
        for name, array in arrays.items():
            spec = specs.get(name)
            if spec is not None and array.ndim == len(spec.shape) - 1:
                array = array[None]  # one sample stored without its batch dimension
            feed[name] = array
        rows = {a.shape[0] for a in feed.values() if a.ndim}
        if len(rows) != 1:
            raise CalibrationDataError(
                f"'{file}': inputs have different batch sizes {sorted(rows)}"
            )
        n = rows.pop()
        for row in range(n):
            samples.append({k: a[row : row + 1] for k, a in feed.items()})
        if label is not None:
            label = np.atleast_1d(label)
            if label.shape[0] != n:
                raise CalibrationDataError(
                    f"'{file}': {label.shape[0]} labels for {n} samples; give one label per row"
                )
            labels.append(label)
    if labels and len(labels) != len(files):
        raise CalibrationDataError(f"{source}: some files have a 'label' array and some do not")
    return CalibrationSet(
        samples, labels=np.concatenate(labels) if labels else None, source=source
    )


def read_arrays(file: Path, specs: Mapping[str, TensorSpec]) -> dict[str, np.ndarray]:
    try:
        if file.suffix == ".npy":
            array = np.load(file, allow_pickle=False)
            if len(specs) != 1:
                raise CalibrationDataError(
                    f"'{file}' is a .npy (one array) but the model takes {len(specs)} inputs "
                    f"{sorted(specs)}: save feeds as .npz with one array per input name"
                )
            return {next(iter(specs)): array}
        with np.load(file, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except CalibrationDataError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise CalibrationDataError(f"cannot read '{file}' as numpy data: {exc}") from None


def from_text_file(path: str | Path, tokenizer, specs: Mapping[str, TensorSpec]) -> CalibrationSet:
    """One sentence a line; blank lines skipped (and counted); padded to the longest line.

    One length for every sample keeps batching simple and ORT's histogram calibrators happy
    (they fail on samples of different sequence lengths); the attention mask stays exact.
    """
    path = Path(path)
    try:
        raw = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise CalibrationDataError(
            f"'{path}' is not valid UTF-8 (line {line}); re-save it as UTF-8"
        ) from None
    lines = raw.splitlines()
    texts = [t.strip() for t in lines if t.strip()]
    blank = len(lines) - len(texts)
    if blank:
        log.warning("%s: skipped %d blank line(s)", path, blank)
    if not texts:
        raise CalibrationDataError(f"'{path}' has no non-blank lines")
    return texts_to_set(texts, tokenizer, specs, source=str(path))


def texts_to_set(texts: list[str], tokenizer, specs: Mapping[str, TensorSpec], *, source: str) -> CalibrationSet:
    encoded = tokenizer.encode(texts, specs)
    samples = [{k: v[i : i + 1] for k, v in encoded.items()} for i in range(len(texts))]
    return CalibrationSet(samples, texts=texts, source=source)
