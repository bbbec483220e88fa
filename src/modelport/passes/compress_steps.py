"""compress(): MODEL + recipe -> passes in order -> a compressed-model directory.

The directory (weights in safetensors, ``compressed.json`` with the recipe, the structural
changes and every PassReport) is a model source like any other: ``modelport export DIR``.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelport.passes.catalog import make_pass
from modelport.passes.contract import PassContext, PassReport, TrainSettings, run_pass
from modelport.passes.recipes import load_recipe

log = logging.getLogger("modelport")


@dataclass
class CompressResult:
    module: Any
    recipe: dict[str, Any]
    reports: list[PassReport]
    structure: list[dict[str, Any]]
    base: str
    out: Path | None = None
    teacher: Any = None
    context: PassContext | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        from modelport.passes.pass_table import pass_table

        return pass_table(self.reports)


def run_pipeline(model: Any, recipe: str | Path | dict[str, Any], *, calib: Any = None,
                 eval: Any = None, progress: bool = True,
                 max_steps: int | None = None) -> CompressResult:
    """Apply the recipe's passes to ``model`` (a MODEL string or a PreparedModel) in memory.

    ``max_steps`` caps every training loop (tests, quick benchmarks).
    """
    from modelport.calibration_data.plan import plan_data
    from modelport.errors import UsageError
    from modelport.models import PreparedModel, resolve_model

    recipe = load_recipe(recipe)
    prepared = model if isinstance(model, PreparedModel) else resolve_model(model)
    if prepared.module is None:
        raise UsageError(f"compression works on torch models; '{prepared.source}' is ONNX: "
                         "give the PyTorch model (builtin:, file.py:factory or .pt2)")
    calib_set, eval_set = plan_data(prepared, calib, eval, needs_calib=False)
    if calib_set is None:
        log.warning("no calibration/training data: passes that train or calibrate will refuse")
    teacher = copy.deepcopy(prepared.module).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = prepared.module
    train = TrainSettings(**recipe["train"])
    if max_steps is not None:
        train = train.updated(max_steps=max_steps)
    ctx = PassContext(task=prepared.task, calib=calib_set, eval=eval_set, teacher=teacher,
                      train=train, seed=recipe["seed"], progress=progress,
                      example=flop_example(prepared), tokenize=text_encoder(prepared))
    reports, structure = [], []
    for step in recipe["passes"]:
        options = dict(step["options"])
        if max_steps is not None and "max_steps" in _fields(step["pass"]):
            options.setdefault("max_steps", max_steps)
        p = make_pass(step["pass"], options)
        student, report = run_pass(p, student, ctx)
        reports.append(report)
        record = p.structure()
        if record:
            structure.append(record)
    return CompressResult(student, recipe, reports, structure, base=_spec_of(prepared),
                          teacher=teacher, context=ctx)


def compress(model: Any, recipe: str | Path | dict[str, Any], *, out: str | Path,
             force: bool = False, calib: Any = None, eval: Any = None,
             progress: bool = True, max_steps: int | None = None) -> CompressResult:
    """Run the recipe and write the compressed-model directory to ``out`` (atomically)."""
    from modelport.errors import BundleExists
    from modelport.passes.storage import save_compressed

    out = Path(out)
    if out.exists() and not force:
        raise BundleExists(f"'{out}' exists already: pass --force to replace it")
    start = time.perf_counter()
    result = run_pipeline(model, recipe, calib=calib, eval=eval, progress=progress,
                          max_steps=max_steps)
    result.out = save_compressed(out, result, force=force,
                                 seconds=time.perf_counter() - start)
    return result


def text_encoder(prepared: Any):
    """texts -> CalibrationSet with the model's own tokenizer, or None for non-text models."""
    if prepared.tokenizer_json is None:
        return None
    from modelport.calibration_data.loaders import texts_to_set
    from modelport.calibration_data.text import TextTokenizer

    tokenizer = TextTokenizer(prepared.tokenizer_json, max_length=prepared.max_length or 128)
    specs = {s.name: s for s in prepared.inputs}
    return lambda texts: texts_to_set(texts, tokenizer, specs, source="augmented text")


def flop_example(prepared: Any) -> dict[str, np.ndarray]:
    """One batch-1 feed at the benchmark shape (text padded to the bench length)."""
    feeds = prepared.fresh_inputs(1)
    seq = prepared.bench_dims.get("seq")
    if seq:
        feeds = {k: np.pad(v, [(0, 0), (0, max(0, seq - v.shape[1]))]) if v.ndim == 2 else v
                 for k, v in feeds.items()}
    return feeds


def _spec_of(prepared: Any) -> str:
    """The MODEL string that re-creates the base model (built-ins carry a longer label; a
    compressed directory is named by its path, so pipelines chain: compress DIR --recipe ...)."""
    source = prepared.source
    if prepared.metadata.get("compressed_dir"):
        return str(prepared.metadata["compressed_dir"])
    if source.startswith("builtin:"):
        return source.split()[0]
    if prepared.metadata.get("hf_folder"):  # the source reads "DIR (Hugging Face folder, task)"
        return str(prepared.metadata["hf_folder"])
    return source


def _fields(name: str) -> set[str]:
    import dataclasses

    from modelport.passes.catalog import get_pass

    return {f.name for f in dataclasses.fields(get_pass(name))}
