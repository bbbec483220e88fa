"""Which data an export uses: calibration and evaluation sets, and the benchmark sample pool.

One place decides, so export, compress and the experiments split data the same way: a user's
``--calib`` alone is split by content hash, a model's own data comes next, and a model with no
data at all is checked on synthetic inputs (INT8 then needs ``--calib``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from modelport.calibration_data.dataset import CalibrationSet, overlap
from modelport.calibration_data.loaders import load_source
from modelport.errors import CalibrationDataError

if TYPE_CHECKING:
    from modelport.models import PreparedModel

log = logging.getLogger("modelport")

POOL_ROWS = 64  # sample rows kept for benchmarking and stored in each bundle


def plan_data(model: PreparedModel, calib, evalset, needs_calib: bool):
    """(calibration, evaluation) sets for a model: user sources, else the model's own data,
    else synthetic evaluation inputs; checked against the model's inputs, never overlapping
    silently."""
    specs = model.input_specs

    def load(src) -> CalibrationSet | None:
        if src is None or isinstance(src, CalibrationSet):
            return src
        return load_source(src, specs, tokenizer_json=model.tokenizer_json,
                           max_length=model.max_length,
                           image=(model.preprocessing or {}).get("image"),
                           audio=(model.preprocessing or {}).get("audio"),
                           preprocessing=model.preprocessing)

    calib_set, eval_set = load(calib), load(evalset)
    if calib_set is not None and eval_set is None:
        calib_set, eval_set = calib_set.split(0.3)
        log.info("split --calib into %d calibration and %d evaluation samples",
                 len(calib_set), len(eval_set))
    elif calib_set is None and model.default_data is not None:
        default_calib, default_eval = model.default_data()
        calib_set = default_calib
        eval_set = eval_set or default_eval
    if eval_set is None:
        if needs_calib and calib_set is None:
            raise CalibrationDataError(
                "INT8 targets need calibration data for this model: pass --calib "
                "(a folder of .npz feeds, a folder of PNG/JPEG images for image models, a "
                "folder of audio files for audio models, a JSONL of {\"question\", "
                "\"context\"} for question answering, or a text file for text models)"
            )
        # no data at all: fidelity on fresh synthetic inputs is still better than none
        eval_set = CalibrationSet.from_iterable([model.fresh_inputs(32)], source="synthetic")
    if needs_calib and calib_set is None:
        raise CalibrationDataError("INT8 targets need calibration data: pass --calib")
    for role, data in (("calibration", calib_set), ("evaluation", eval_set)):
        if data is not None:
            data.check(specs, role=role)
    if calib_set is not None:
        if needs_calib:
            calib_set.warn_if_small()
        shared = overlap(calib_set, eval_set)
        if shared:
            log.warning("%d evaluation sample(s) also appear in the calibration set: fidelity "
                        "will look better than it is", shared)
    return calib_set, eval_set




def bench_pool(model: PreparedModel, evalset: CalibrationSet,
               rows: int = POOL_ROWS) -> dict[str, np.ndarray]:
    """Real evaluation samples at the benchmark shape (text padded to the bench length)."""
    subset = evalset.take(rows)
    seq = model.bench_dims.get("seq")
    if model.tokenizer_json is not None and subset.texts and seq:
        from modelport.calibration_data.text import TextTokenizer

        tok = TextTokenizer(model.tokenizer_json, max_length=seq)
        return tok.encode(subset.texts, model.input_specs, pad_to=seq)
    return subset.stacked()
