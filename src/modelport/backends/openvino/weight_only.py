"""Weight-only INT4 / INT8 for OpenVINO: ``nncf.compress_weights`` on the converted IR.

INT4 is INT4_SYM (or INT4_ASYM) in groups along the input channel; NNCF keeps the embedding
and the last projection in 8 bit unless ``ratio`` and ``all_layers`` say otherwise. AWQ and
scale estimation are data-aware: they run the calibration lines through the graph (prefill
feeds, empty past), so they are off unless asked for (slower builds).
"""

from __future__ import annotations

from typing import Any

from modelport.backends.openvino.nncf_output import quiet
from modelport.specs import Precision

DEFAULT_GROUP = 32


def compress_weights(ov_model: Any, precision: Precision, calib: Any, options: Any
                     ) -> tuple[Any, dict[str, Any]]:
    """The compressed model and the manifest's build facts."""
    import nncf

    info: dict[str, Any] = {"method": "nncf.compress_weights"}
    if precision == Precision.INT8WO:
        mode = nncf.CompressWeightsMode.INT8_ASYM
        kwargs: dict[str, Any] = {}
    else:
        mode = (nncf.CompressWeightsMode.INT4_ASYM if options.asymmetric
                else nncf.CompressWeightsMode.INT4_SYM)
        kwargs = {"group_size": options.group_size or DEFAULT_GROUP,
                  "ratio": options.ratio if options.ratio is not None else 1.0}
        data_aware = options.awq or options.scale_estimation
        if data_aware:
            if calib is None:
                from modelport.errors import CalibrationDataError

                raise CalibrationDataError("AWQ / scale estimation need calibration text: pass "
                                           "--calib FILE (one sequence a line)")
            kwargs.update(dataset=nncf.Dataset(list(prefill_samples(ov_model, calib))),
                          awq=bool(options.awq), scale_estimation=bool(options.scale_estimation),
                          subset_size=min(len(calib), 128))
            info["calibration_lines"] = min(len(calib), 128)
    compressed = quiet(nncf.compress_weights, ov_model, mode=mode, **kwargs)
    info.update(mode=str(mode.value), **{k: v for k, v in kwargs.items() if k != "dataset"})
    return compressed, info


def prefill_samples(ov_model: Any, calib: Any):
    """One prefill feed per calibration line, shaped for this graph's past inputs."""
    from modelport.backends.lm_session import prefill_feeds
    from modelport.specs import TensorSpec

    past = []
    for port in ov_model.inputs:
        name = port.get_any_name()
        if name.startswith("past_"):
            shape = port.get_partial_shape()
            past.append(TensorSpec(name, "float32", ("batch", shape[1].get_length(), "past",
                                                     shape[3].get_length())))
    for sample in calib:
        ids = sample["input_ids"]
        yield prefill_feeds(ids, (ids * 0 + 1), past)
