"""Export a decoder LM with its KV cache as graph inputs/outputs, then check it against torch.

The dynamo exporter traces ``KVCacheLM`` (models.hf.causal_lm) with every dynamic size >= 2
(it specializes 0 and 1) and names four dynamic axes: batch, seq, past and the mask's total.
The check runs a prefill (past = 0, the size the graph was not traced with) and a decode step
in ONNX Runtime against torch, because a graph that only works at the traced sizes is the
usual failure of KV-cache exports.
"""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from modelport.errors import ExportError, ValidationError
from modelport.exporters.onnx_export import EXTERNAL_DATA_THRESHOLD, OnnxArtifact, _opset_of
from modelport.models import PreparedModel
from modelport.terminal import exception_line

log = logging.getLogger("modelport")

#: fp32 ORT vs torch on a random-init decoder: ~1e-5; a wrong cache or mask is O(1)
TOLERANCE = 1e-3


def export_kv_onnx(model: PreparedModel, path: Path, *, opset: int | None = None
                   ) -> OnnxArtifact:
    """``model.module`` (a NamedKV) -> one ONNX graph for prefill and decode."""
    import torch

    from modelport.exporters.onnx_io import read_io_specs
    from modelport.models.hf.causal_lm import example_feeds

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    start = time.perf_counter()
    named = model.module
    feeds = {k: torch.from_numpy(v) for k, v in example_feeds(model.inputs).items()}
    past_names = [s.name for s in model.inputs[3:]]
    args = (feeds["input_ids"], feeds["attention_mask"], feeds["position_ids"],
            [feeds[n] for n in past_names])
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    past, total = torch.export.Dim("past"), torch.export.Dim("total")
    dynamic = ({0: batch, 1: seq}, {0: batch, 1: total}, {0: batch, 1: seq},
               [{0: batch, 2: past}] * len(past_names))
    external = sum(p.numel() * p.element_size()
                   for p in named.parameters()) > EXTERNAL_DATA_THRESHOLD
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(named.inner, args, str(path), dynamo=True, dynamic_shapes=dynamic,
                              input_names=[s.name for s in model.inputs],
                              output_names=model.output_names, opset_version=opset,
                              external_data=external, verbose=False)
    except Exception as exc:  # noqa: BLE001 - the exporter raises many types; one line says it
        raise ExportError(f"KV-cache ONNX export of {model.name} failed: "
                          f"{exception_line(exc)}") from None
    inputs, outputs = read_io_specs(path)
    return OnnxArtifact(path, inputs, outputs, "dynamo", _opset_of(path), external,
                        seconds=time.perf_counter() - start)


def validate_kv(model: PreparedModel, path: Path) -> dict[str, Any]:
    """Prefill of 5 tokens then one decode step, ONNX Runtime vs torch: max abs error of the
    logits and presents; over TOLERANCE is a ValidationError."""
    from modelport.backends.lm_session import decode_feeds, prefill_feeds
    from modelport.backends.onnxruntime.backend import create_session

    session = create_session(path)
    names = [o.name for o in session.get_outputs()]
    specs = model.inputs[3:]
    vocab = int(model.module.inner.model.config.vocab_size)
    ids = np.array([[1, 5, 7, 2, 9]], np.int64) % vocab
    worst = 0.0
    feeds = prefill_feeds(ids, np.ones_like(ids), specs)
    for _step in range(2):
        got = dict(zip(names, session.run(names, feeds), strict=True))
        want = _torch_run(model, feeds)
        for name in names:
            worst = max(worst, float(np.abs(got[name] - want[name]).max(initial=0.0)))
        next_id = got["logits"][:, -1].argmax(-1)[:, None].astype(np.int64)
        feeds = decode_feeds(next_id, feeds["attention_mask"], feeds["position_ids"][:, -1:],
                             {s.name: got[s.name.replace("past_key_values", "present")]
                              for s in specs})
    if worst > TOLERANCE:
        raise ValidationError(f"the KV-cache ONNX of {model.name} disagrees with torch: max abs "
                              f"error {worst:.3g} > {TOLERANCE} over a prefill and a decode step")
    return {"max_abs_err": worst, "checked": "prefill (past 0) + 1 decode step"}


def _torch_run(model: PreparedModel, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import torch

    with torch.inference_mode():
        out = model.module(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    return {n: t.numpy() for n, t in zip(model.output_names, out, strict=True)}
