"""Pass, PassContext, PassReport: the contract every compression pass follows.

A pass takes an ``nn.Module`` and returns one with the same inputs and outputs. What it
changed (params, FLOPs, size, sparsity, ranks, the eval metric before and after) is measured
here, the same way for every pass, so a report can never flatter one pass over another.
"""

from __future__ import annotations

import gzip
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from modelport.config_check import check_fields, option
from modelport.metrics import row_cosines, similarity_spearman

if TYPE_CHECKING:
    from torch import nn

    from modelport.calibration_data import CalibrationSet

log = logging.getLogger("modelport")


@dataclass
class TrainSettings:
    """Fine-tuning knobs shared by every pass that trains (CPU-friendly defaults)."""

    epochs: int = option(5, help="passes over the training data", minimum=0)
    lr: float = option(1e-3, help="peak learning rate (AdamW, linear decay)", above=0)
    batch_size: int = option(32, help="rows per optimizer step", minimum=1)
    weight_decay: float = option(0.0, help="AdamW weight decay", minimum=0)
    patience: int | None = option(2, help="epochs without a better validation score before "
                                          "stopping (None: run every epoch)", minimum=1)
    max_steps: int | None = option(None, help="a hard cap, for tests and quick benches",
                                   minimum=1)

    def __post_init__(self) -> None:
        check_fields(self)

    def updated(self, **overrides: Any) -> TrainSettings:
        values = {**asdict(self), **{k: v for k, v in overrides.items() if v is not None}}
        return TrainSettings(**values)


@dataclass
class PassContext:
    """What a pass may use: data (calibration = training split, evaluation = held out), the
    teacher (the model before the pipeline ran), the task, train settings and a seed."""

    task: str  # "classification" | "embedding" | "generic"
    calib: CalibrationSet | None = None
    eval: CalibrationSet | None = None
    teacher: nn.Module | None = None
    train: TrainSettings = field(default_factory=TrainSettings)
    seed: int = 0
    progress: bool = True
    example: dict[str, np.ndarray] | None = None  # one feed (batch 1) for counting FLOPs
    #: texts -> CalibrationSet with the model's tokenizer (text models only; augmentation)
    tokenize: Callable[[list[str]], CalibrationSet] | None = None
    #: the validation slice carved from ``calib`` for model selection (set by ``holdout``)
    validation: CalibrationSet | None = None
    #: one entry per model selection (epoch choice) made on ``validation``; shared by copies
    #: made with ``dataclasses.replace`` so ``run_pass`` sees what a pass selected on
    selections: list[dict[str, Any]] = field(default_factory=list)
    #: True once a time budget is spent (the compression search's --max-time): training loops
    #: stop at the next step and keep their best epoch so far
    should_stop: Callable[[], bool] | None = None
    _teacher_eval: dict[str, np.ndarray] | None = None

    def teacher_eval_outputs(self) -> np.ndarray | None:
        """The teacher's first output on the eval split (computed once)."""
        if self._teacher_eval is None and self.teacher is not None and self.eval is not None:
            self._teacher_eval = {"out": predict(self.teacher, self.eval)}
        return None if self._teacher_eval is None else self._teacher_eval["out"]

    def evaluate(self, module: nn.Module) -> dict[str, float]:
        """The eval-split metric, for reports only: never used to choose anything."""
        if self.eval is None:
            return {}
        return self.metrics_on(module, self.eval, self.teacher_eval_outputs())

    def metrics_on(self, module: nn.Module, data: CalibrationSet,
                   ref: np.ndarray | None) -> dict[str, float]:
        """Accuracy for labelled classifiers, cosine (and agreement) to the teacher's ``ref``."""
        got = predict(module, data)
        out: dict[str, float] = {}
        if self.task == "classification" and data.labels is not None:
            out["accuracy"] = float((got.argmax(-1) == data.labels).mean())
        if ref is not None:
            a = got.reshape(len(got), -1).astype(np.float64)
            b = ref.reshape(len(ref), -1).astype(np.float64)
            out["cosine_to_teacher"] = float(row_cosines(a, b).mean())
            if self.task == "embedding" and len(a) > 2:
                out["similarity_spearman"] = similarity_spearman(a, b)
            if self.task == "classification":
                out["top1_agreement"] = float((got.argmax(-1) == ref.argmax(-1)).mean())
        return out


@dataclass
class PassReport:
    """What one pass did, measured: goes into compressed.json and every bundle manifest."""

    name: str
    config: dict[str, Any]
    params_before: int
    params_after: int
    flops_before: int | None
    flops_after: int | None
    size_bytes_before: int
    size_bytes_after: int
    gzip_bytes_before: int
    gzip_bytes_after: int
    sparsity_after: float
    metric_before: dict[str, float]
    metric_after: dict[str, float]
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: rows of the calibration split held out to pick the best epoch (None: nothing selected)
    validation_samples: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        def ratio(a: float | None, b: float | None) -> str:
            return f"{a / b:.2f}x" if a and b else "-"

        return (f"{self.name}: params {self.params_before:,} -> {self.params_after:,} "
                f"({ratio(self.params_before, self.params_after)} smaller), FLOPs "
                f"{ratio(self.flops_before, self.flops_after)} fewer, sparsity "
                f"{100 * self.sparsity_after:.1f}%, metric {_fmt(self.metric_before)} -> "
                f"{_fmt(self.metric_after)}")


class Pass:
    """A compression pass. Subclasses are dataclasses of their options and set ``details``
    (ranks, kept channels, ...) and ``notes`` (what the result does *not* buy) in ``apply``."""

    name: ClassVar[str] = ""

    def __init__(self) -> None:  # pragma: no cover - subclasses are dataclasses
        self.details: dict[str, Any] = {}
        self.notes: list[str] = []

    def __post_init__(self) -> None:
        """Every field declared with ``option(...)`` is checked (type, choices, range) on
        construction, so a recipe fails when it is loaded, not mid-pipeline."""
        check_fields(self)

    def apply(self, model: nn.Module, ctx: PassContext) -> nn.Module:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        try:
            return {k: v for k, v in asdict(self).items() if not k.startswith("_")}  # type: ignore[call-overload]
        except TypeError:
            return {}

    #: how to redo this pass's structural change on a fresh base module when loading a
    #: compressed directory (None: the pass changes only values, or only tensor shapes)
    def structure(self) -> dict[str, Any] | None:
        return None


def run_pass(p: Pass, model: nn.Module, ctx: PassContext) -> tuple[nn.Module, PassReport]:
    """Apply ``p`` and measure before/after the same way for every pass."""
    import torch

    p.details, p.notes = {}, []
    before = measure(model, ctx.example)
    metric_before = ctx.evaluate(model)
    start = time.perf_counter()
    torch.manual_seed(ctx.seed)
    selected_before = len(ctx.selections)
    out = p.apply(model, ctx)
    out.eval()
    seconds = time.perf_counter() - start
    after = measure(out, ctx.example)
    metric_after = ctx.evaluate(out)
    report = PassReport(
        name=p.name, config=p.config(),
        params_before=before["params"], params_after=after["params"],
        flops_before=before["flops"], flops_after=after["flops"],
        size_bytes_before=before["bytes"], size_bytes_after=after["bytes"],
        gzip_bytes_before=before["gzip_bytes"], gzip_bytes_after=after["gzip_bytes"],
        sparsity_after=after["sparsity"],
        metric_before=metric_before, metric_after=metric_after, seconds=seconds,
        details=dict(p.details), notes=list(p.notes),
        validation_samples=max((sel["validation_samples"]
                                for sel in ctx.selections[selected_before:]), default=None),
    )
    log.info("%s (%.1fs)", report.summary(), seconds)
    return out, report


VALIDATION_FRACTION = 0.2
#: below this, a 20% validation slice is a handful of rows and picks an epoch by noise
MIN_TRAIN_FOR_VALIDATION = 20
#: the calib split itself came from ``split(seed=s)``: hashing again with the same seed would put
#: every calib row on the same side, so the validation split hashes with its own salt
VALIDATION_SALT = 0x76616C6964  # "valid"


def holdout(ctx: PassContext, fraction: float = VALIDATION_FRACTION) -> PassContext:
    """``ctx`` with a validation slice carved out of ``calib`` (by content hash, so the same
    data always gives the same slice and duplicates never straddle it). Training uses the rest;
    the best epoch is chosen on the slice, so the eval split stays unseen until the report."""
    import dataclasses

    from modelport.errors import CalibrationDataError

    if ctx.validation is not None or ctx.calib is None:
        return ctx
    need = MIN_TRAIN_FOR_VALIDATION
    if len(ctx.calib) < need:
        raise CalibrationDataError(
            f"{ctx.calib.source}: fine-tuning needs at least {need} training samples (it holds "
            f"out {fraction:.0%} of them to pick the best epoch); got {len(ctx.calib)}")
    try:
        train, validation = ctx.calib.split(fraction, seed=VALIDATION_SALT + ctx.seed)
    except CalibrationDataError:
        raise CalibrationDataError(
            f"{ctx.calib.source}: {len(ctx.calib)} training samples hash to one side of the "
            f"validation split; give at least {need} distinct samples") from None
    train.source = ctx.calib.source
    validation.source = f"{ctx.calib.source}[validation]"
    return dataclasses.replace(ctx, calib=train, validation=validation)


# -- measuring --------------------------------------------------------------------------------
def measure(model: nn.Module, example: dict[str, np.ndarray] | None) -> dict[str, Any]:
    """Parameter count, dense bytes, gzip bytes, fraction of exact zeros, FLOPs at ``example``."""
    import torch

    tensors = [t.detach() for t in model.state_dict().values() if t.is_floating_point()]
    params = sum(p.numel() for p in model.parameters())
    weights = [p.detach() for n, p in model.named_parameters() if p.dim() > 1]
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    raw = b"".join(t.contiguous().cpu().numpy().tobytes() for t in tensors)
    return {
        "params": int(params),
        "bytes": len(raw),
        "gzip_bytes": len(gzip.compress(raw, compresslevel=1)),
        "sparsity": zeros / total if total else 0.0,
        "flops": count_flops(model, example) if example is not None else None,
        "torch": torch.__version__,
    }


def count_flops(model: nn.Module, example: dict[str, np.ndarray]) -> int | None:
    """Dense FLOPs of one forward pass (torch.utils.flop_counter: matmuls and convs)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    feeds = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in example.items()}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(**feeds)
    except Exception as exc:  # noqa: BLE001 - a model the counter cannot trace still compresses
        log.warning("FLOP counting failed (%s); reported as unknown", type(exc).__name__)
        return None
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def to_torch(feeds: dict[str, np.ndarray]) -> dict[str, Any]:
    """Feed dict -> tensors; trailing all-padding columns are cut (text batches train faster)."""
    import torch

    out = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in feeds.items()}
    mask = out.get("attention_mask")
    if mask is not None and mask.dim() == 2:
        used = int(mask.sum(0).nonzero().max()) + 1 if mask.any() else mask.shape[1]
        used = max(used, 2)  # exported graphs specialize length-1 axes; keep >= 2
        out = {k: (v[:, :used] if v.dim() == 2 and v.shape[1] == mask.shape[1] else v)
               for k, v in out.items()}
    return out


def first_output(out: Any) -> Any:
    if isinstance(out, dict):
        return next(iter(out.values()))
    if isinstance(out, (tuple, list)):
        return out[0]
    return out


def predict(module: nn.Module, data: CalibrationSet, batch_size: int = 64) -> np.ndarray:
    """The module's first output over a CalibrationSet, in sample order."""
    import torch

    was_training = module.training
    module.eval()
    chunks = []
    with torch.no_grad():
        for feeds in data.batches(batch_size):
            chunks.append(first_output(module(**to_torch(feeds))).float().numpy())
    module.train(was_training)
    return np.concatenate(chunks, axis=0)


def iterate_minibatches(data: CalibrationSet, batch_size: int, generator: Any
                        ) -> Iterator[tuple[list[int], dict[str, np.ndarray]]]:
    """Shuffled minibatches (indices + stacked feeds) with a seeded torch generator."""
    import torch

    order = torch.randperm(len(data), generator=generator).tolist()
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        chunk = [data.samples[i] for i in idx]
        yield idx, {k: np.concatenate([s[k] for s in chunk], axis=0) for k in chunk[0]}


def prunable_layers(model: nn.Module, kinds: tuple[type, ...] | None = None,
                    skip: Callable[[str], bool] | None = None) -> list[tuple[str, nn.Module]]:
    """(name, module) for every Linear/Conv2d (or ``kinds``), minus those ``skip`` rejects."""
    from torch import nn

    kinds = kinds or (nn.Linear, nn.Conv2d)
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, kinds) and not (skip and skip(n))]


def _fmt(metric: dict[str, float]) -> str:
    if not metric:
        return "-"
    return ", ".join(f"{k} {v:.4f}" for k, v in metric.items())
