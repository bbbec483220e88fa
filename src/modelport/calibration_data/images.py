"""A folder of PNG/JPEG images -> a CalibrationSet of ``pixel_values``, preprocessed with the
model's own parameters (the ones its bundle carries), so calibration sees what `run` feeds."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelport.calibration_data.dataset import CalibrationSet
from modelport.errors import CalibrationDataError
from modelport.specs import TensorSpec


def from_image_dir(path: Path, specs: Mapping[str, TensorSpec],
                   image: Mapping[str, Any] | None) -> CalibrationSet:
    from modelport.tasks.image import image_files, load_pixels

    files = image_files(path)
    if image is None:
        raise CalibrationDataError(
            f"'{path}' holds images, but this model takes {sorted(specs)}, not an image: give "
            "a folder of .npz feeds instead"
        )
    if len(specs) != 1:
        raise CalibrationDataError(f"'{path}': an image folder feeds one input; the model "
                                   f"takes {sorted(specs)}")
    name = next(iter(specs))
    samples = []
    for file in files:
        try:
            samples.append({name: load_pixels(file, image)})
        except Exception as exc:  # noqa: BLE001 - Pillow raises many types for a bad file
            raise CalibrationDataError(f"cannot use '{file}' as an image: {exc}") from None
    return CalibrationSet(samples, source=str(path))
