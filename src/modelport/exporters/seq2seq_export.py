"""Export the two graphs of an encoder-decoder model (models.hf.seq2seq) and check them.

The TorchScript exporter traces each step module once with named dynamic axes (batch, src,
past): the encoder-decoder attention masks and caches trace cleanly there and the export takes
seconds, where the dynamo exporter takes minutes per graph. The check runs the encoder graph,
the first decoder step (empty past, a size the graph was not traced with) and two more in ONNX
Runtime against the torch modules on a right-padded batch.
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
from modelport.terminal import exception_line

log = logging.getLogger("modelport")

TOLERANCE = 1e-3
OPSET = 17


def _axes(specs: list[Any]) -> dict[str, dict[int, str]]:
    return {s.name: {i: d for i, d in enumerate(s.shape) if isinstance(d, str)} for s in specs}


def export_graphs(model: Any, workdir: Path, *, opset: int | None = None
                  ) -> dict[str, OnnxArtifact]:
    """``model.module`` (Seq2SeqModules) -> {"encoder": ..., "decoder": ...} ONNX artifacts."""
    import torch

    from modelport.exporters.onnx_io import read_io_specs

    modules = model.module
    feeds = {k: torch.from_numpy(v) for k, v in model.example_inputs.items()}
    with torch.no_grad():
        cross = list(modules.encoder(**feeds))
        heads, dim = cross[0].shape[1], cross[0].shape[3]
        # a past of 2 tokens: the exporter must see a non-empty past it could specialize on
        past = [torch.randn(cross[0].shape[0], heads, 2, dim) for _ in modules.decoder.past]
    start = torch.zeros((cross[0].shape[0], 1), dtype=torch.long)
    # the decoder's inputs between the token and the caches (text models: attention_mask)
    middle = tuple(feeds[n] for n in modules.decoder.fixed[1:])
    args = {"encoder": tuple(feeds[s.name] for s in modules.specs["encoder"][0]),
            "decoder": (start, *middle, past, cross)}
    external = sum(p.numel() * p.element_size()
                   for p in modules.model.parameters()) > EXTERNAL_DATA_THRESHOLD
    artifacts = {}
    for name in ("encoder", "decoder"):
        inputs, outputs = modules.specs[name]
        path = workdir / name / "model.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(getattr(modules, name).inner, args[name], str(path),
                                  dynamo=False, input_names=[s.name for s in inputs],
                                  output_names=[s.name for s in outputs],
                                  dynamic_axes=_axes(inputs + outputs),
                                  opset_version=opset or OPSET)
        except Exception as exc:  # noqa: BLE001 - the exporter raises many types; one line
            raise ExportError(f"ONNX export of {model.name}'s {name} failed: "
                              f"{exception_line(exc)}") from None
        ins, outs = read_io_specs(path)
        artifacts[name] = OnnxArtifact(path, ins, outs, "torchscript", _opset_of(path),
                                       external, seconds=time.perf_counter() - start)
    check = validate_graphs(model, artifacts)
    for artifact in artifacts.values():
        artifact.validation = check
    return artifacts


def validate_graphs(model: Any, artifacts: dict[str, OnnxArtifact]) -> dict[str, Any]:
    """Encoder + first step + 2 decoder steps, ONNX Runtime vs torch: the largest absolute
    difference."""
    import torch

    from modelport.backends.onnxruntime.backend import OnnxRuntimeSession
    from modelport.backends.seq2seq_logits import GenerationRules
    from modelport.backends.seq2seq_session import Seq2SeqSession
    from modelport.backends.torch.backend import TorchSession

    modules = model.module
    rules = GenerationRules(decoder_start_token_id=int(modules.encoder.inner.start))
    onnx = Seq2SeqSession(*(OnnxRuntimeSession(a.path, a.inputs, a.outputs)
                            for a in artifacts.values()), rules)
    ref = Seq2SeqSession(*(TorchSession(getattr(modules, n), *modules.specs[n])
                           for n in ("encoder", "decoder")), rules)
    feeds = model.example_inputs
    batch = next(iter(feeds.values())).shape[0]
    mask = feeds.get("attention_mask", np.ones((batch, 1), np.int64))
    worst = 0.0
    with torch.inference_mode():
        got, want = onnx.start(feeds, mask), ref.start(feeds, mask)
        for _ in range(3):
            worst = max(worst, float(np.abs(got[0] - want[0]).max()),
                        *(float(np.abs(got[1][k] - want[1][k]).max()) for k in got[1]),
                        *(float(np.abs(got[2][k] - want[2][k]).max()) for k in got[2]))
            token = want[0].argmax(-1)
            got = (*onnx.step(token, mask, got[1], got[2]), got[2])
            want = (*ref.step(token, mask, want[1], want[2]), want[2])
    if worst > TOLERANCE:
        raise ValidationError(f"the encoder/decoder ONNX of {model.name} disagrees with torch: "
                              f"max abs error {worst:.3g} > {TOLERANCE} over the encoder and "
                              "three decoder steps")
    return {"max_abs_err": worst, "checked": "encoder, first step (empty past), 2 more steps"}
