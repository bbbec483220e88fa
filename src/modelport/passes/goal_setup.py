"""The compression search's fixed parts: model, data split, teacher references, and how one
shape is built (layer drop + structured pruning + distillation), quantized and saved.

Data: the calibration data is split once by content hash into a training part and a
validation slice (``contract.holdout``, the slice every epoch choice uses too); the search judges
candidates on that slice only. The evaluation split (``--eval``, or the part of ``--calib`` /
the model's own data that export would hold out) appears only in the pass reports, never in a
choice; the report records that the two do not overlap.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelport.errors import CalibrationDataError, UsageError


@dataclasses.dataclass
class SearchEnv:
    prepared: Any
    ctx: Any  # PassContext: calib = training part, validation = the slice, eval = report only
    teacher: Any
    target: str
    fp32_target: str
    metric: str
    teacher_ms: float
    teacher_value: float
    ref: Any  # the teacher's outputs on the validation slice
    pool: dict[str, Any]
    settings: Any
    blocks: int
    drop_order: list[int]
    dims: dict[str, int]
    data_record: dict[str, Any]
    clock: Any = None  # goal_measure.TeacherClock
    teacher_target_ms: float = 0.0
    progress: bool = True

    @property
    def teacher_record(self) -> dict[str, Any]:
        return {"model": self.base, "torch_fp32_b1_ms": self.teacher_ms,
                "metric": self.metric, "value": self.teacher_value,
                "params": self.params(self.teacher), "flops": self.flops_of(None),
                "blocks": self.blocks, "bench_dims": dict(self.prepared.bench_dims)}

    @property
    def base(self) -> str:
        from modelport.passes.compress_steps import _spec_of

        return _spec_of(self.prepared)

    # -- sizes ------------------------------------------------------------------------------
    def heads_kept(self, fraction: float) -> int:
        return max(1, round(self.dims["heads"] * (1.0 - fraction)))  # as prune-structured

    def flops_of(self, shape: Any, module: Any = None) -> int:
        """Counted for a built module; estimated from the block sizes for a shape not built."""
        from modelport.passes.contract import count_flops

        if module is not None:
            counted = count_flops(module, self.ctx.example)
            if counted:
                return counted
        d, s, inter, n = self.dims["hidden"], self.dims["seq"], self.dims["ffn"], self.blocks
        if shape is None:
            return self.dims["flops"]
        h = 1 - self.heads_kept(shape.heads) / self.dims["heads"]

        def block(h: float, r: float) -> float:
            return 2 * s * (4 * d * d * (1 - h) + 2 * d * inter * (1 - r)) + 4 * s * s * d * (1 - h)

        outside = max(0.0, self.dims["flops"] - n * block(0.0, 0.0))
        return int(outside + shape.layers * block(h, shape.ffn))

    @staticmethod
    def params(module: Any) -> int:
        return int(sum(p.numel() for p in module.parameters()))

    def quant_mode(self, target: str) -> str:
        return "ptq" if target.endswith(":int8") else "fp32"

    # -- building ----------------------------------------------------------------------------
    def build(self, shape: Any, epochs: int):
        """(student, pass reports, structure records, recipe passes) of one shape."""
        from modelport.passes.catalog import make_pass
        from modelport.passes.contract import run_pass

        st = self.settings
        student = copy.deepcopy(self.teacher)
        for p in student.parameters():
            p.requires_grad_(True)
        dropped = self.drop_order[: self.blocks - shape.layers]
        steps: list[tuple[str, dict[str, Any]]] = []
        if dropped:
            steps.append(("layer-drop", {"keep": [i for i in range(self.blocks)
                                                  if i not in dropped]}))
        if shape.heads or shape.ffn:
            steps.append(("prune-structured", {"ratio": shape.ffn, "heads": shape.heads,
                                               "importance": "taylor"}))
        distill = {"epochs": epochs, "lr": st.lr, "batch_size": st.batch_size,
                   "hidden_weight": st.hidden_weight, "attention_weight": st.attention_weight}
        if st.augment:
            distill["augment"] = st.augment
        if st.max_steps:
            distill["max_steps"] = st.max_steps
        steps.append(("distill", distill))
        reports, structure = [], []
        for name, options in steps:
            p = make_pass(name, options)
            student, report = run_pass(p, student, self.ctx)
            reports.append(report)
            if p.structure():
                structure.append(p.structure())
        return student, reports, structure, [{"pass": n, "options": o} for n, o in steps]

    def quantize_aware(self, student: Any):
        from modelport.passes.catalog import make_pass
        from modelport.passes.contract import run_pass

        options: dict[str, Any] = {"epochs": self.settings.qat_epochs, "lr": self.settings.qat_lr}
        if self.settings.max_steps:
            options["max_steps"] = self.settings.max_steps
        p = make_pass("qat", options)
        qstudent, report = run_pass(p, copy.deepcopy(student), self.ctx)
        return qstudent, report, p.structure(), {"pass": "qat", "options": options}

    def save(self, folder: Path, module: Any, reports: list, structure: list, *, name: str,
             passes: list | None = None) -> Path:
        from modelport.passes.compress_steps import CompressResult
        from modelport.passes.storage import save_compressed

        recipe = {"name": name, "description": "a candidate of modelport's compression search",
                  "model": self.base, "seed": self.settings.seed,
                  "train": {"batch_size": self.settings.batch_size}, "passes": passes or []}
        result = CompressResult(module, recipe, list(reports), list(structure), base=self.base)
        return save_compressed(folder, result, force=True)

    def measure(self, folder: Path, target: str, work: Path) -> dict[str, Any]:
        from modelport.passes.goal_measure import measure_bundle

        return measure_bundle(folder, target, work / "bundles", train=self.ctx.calib,
                              validation=self.ctx.validation, ref=self.ref, metric=self.metric,
                              pool=self.pool, clock=self.clock)


def prepare_search(model: Any, *, target: str, calib: Any, eval: Any, settings: Any,
                   progress: bool, should_stop: Callable[[], bool]) -> SearchEnv:
    from modelport import registry
    from modelport.calibration_data.dataset import overlap
    from modelport.calibration_data.plan import bench_pool, plan_data
    from modelport.models import PreparedModel, resolve_model
    from modelport.passes.compress_steps import flop_example, text_encoder
    from modelport.passes.contract import PassContext, TrainSettings, count_flops, holdout, predict
    from modelport.passes.goal_measure import TeacherClock, metric_name, metric_value
    from modelport.passes.layer_drop import find_blocks, greedy_keep
    from modelport.passes.prune_structured import attention_blocks, ffn_blocks
    from modelport.specs import Target

    parsed = Target.parse(target)
    backend = registry.get_backend(parsed.runtime)
    for t in {str(parsed), f"{parsed.runtime}:{parsed.device}:fp32"}:
        verdict = backend.availability(Target.parse(t))
        if not verdict.ok:
            raise UsageError(f"--target {t} is not available here: {verdict.reason}")
    prepared = model if isinstance(model, PreparedModel) else resolve_model(model)
    if prepared.module is None:
        raise UsageError(f"the compression search works on torch encoders; '{prepared.source}' "
                         "is ONNX: give the PyTorch model or the Hugging Face folder")
    teacher = copy.deepcopy(prepared.module).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    attentions, ffns = attention_blocks(teacher), ffn_blocks(teacher)
    if not attentions or not ffns:
        raise UsageError(f"'{prepared.source}' has no BERT-style blocks (query/key/value "
                         "attention, intermediate/output FFN): --goal searches encoders "
                         "(feature-extraction, text- and token-classification folders)")
    calib_set, eval_set = plan_data(prepared, calib, eval, needs_calib=False)
    if calib_set is None:
        raise CalibrationDataError("--goal needs training text: give --calib (a text file is "
                                   "enough: the teacher labels it)")
    ctx = PassContext(task=prepared.task, calib=calib_set, eval=eval_set, teacher=teacher,
                      train=TrainSettings(batch_size=settings.batch_size, lr=settings.lr,
                                          epochs=settings.epochs),
                      seed=settings.seed, progress=progress, example=flop_example(prepared),
                      tokenize=text_encoder(prepared), should_stop=should_stop)
    ctx = holdout(ctx)
    validation = ctx.validation
    metric = metric_name(prepared.task, validation)
    ref = predict(teacher, validation)
    pool = bench_pool(prepared, validation)
    clock = TeacherClock(prepared, teacher, pool, settings.timing)
    teacher_ms = clock.alone()
    _, trace = greedy_keep(teacher, find_blocks(teacher), 1, ctx, 256)
    attn = attentions[0][1]
    dims = {"hidden": attn.query.in_features, "heads": attn.query.out_features
            // attn.attention_head_size, "ffn": ffns[0][1].out_features,
            "seq": int(next(iter(ctx.example.values())).shape[-1]),
            "flops": count_flops(teacher, ctx.example) or 1}
    order = [t["dropped"] for t in trace]
    n = len(attentions)
    order += [i for i in range(n) if i not in order]  # the last block standing
    data = {"train_samples": len(ctx.calib), "validation_samples": len(validation),
            "evaluation_samples": len(eval_set) if eval_set is not None else 0,
            "validation_sha256": validation.sha256(), "train_source": ctx.calib.source,
            "evaluation_sha256": eval_set.sha256() if eval_set is not None else None,
            "validation_overlaps_evaluation": overlap(validation, eval_set)
            if eval_set is not None else 0,
            "augment": settings.augment}
    value = metric_value(metric, ref, ref, validation)
    env = SearchEnv(prepared=prepared, ctx=ctx, teacher=teacher, target=str(parsed),
                    fp32_target=f"{parsed.runtime}:{parsed.device}:fp32", metric=metric,
                    teacher_ms=teacher_ms, teacher_value=value, ref=ref, pool=pool,
                    settings=settings, blocks=n, drop_order=order, dims=dims,
                    data_record=data, progress=progress, clock=clock)
    return env
