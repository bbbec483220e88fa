"""The one fine-tuning loop every pass uses: distillation losses, seeded, early stopping.

Losses are plain functions so tests can check them against a hand computation: the soft
target term is KL(teacher_T || student_T) * T^2 (Hinton et al.; the T^2 keeps its gradient
scale independent of T), computed from *log*-probabilities of both sides.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.errors import CalibrationDataError
from modelport.passes.contract import (
    PassContext,
    TrainSettings,
    first_output,
    holdout,
    iterate_minibatches,
    predict,
    to_torch,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger("modelport")


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, temperature: float = 4.0,
            alpha: float = 0.5, labels: torch.Tensor | None = None) -> torch.Tensor:
    """T^2 * KL(softmax(t/T) || softmax(s/T)) + alpha * CE(s, labels) (when labels exist)."""
    import torch.nn.functional as F

    t = temperature
    soft = F.kl_div(F.log_softmax(student_logits / t, dim=-1),
                    F.log_softmax(teacher_logits.detach() / t, dim=-1),
                    reduction="batchmean", log_target=True) * (t * t)
    if labels is None or alpha == 0:
        return soft
    return soft + alpha * F.cross_entropy(student_logits, labels)


def embedding_loss(student: torch.Tensor, teacher: torch.Tensor, *, kind: str = "cosine"
                   ) -> torch.Tensor:
    """1 - cosine (direction is what retrieval uses) or MSE between output embeddings."""
    import torch.nn.functional as F

    teacher = teacher.detach()
    if kind == "mse":
        return F.mse_loss(student, teacher)
    return (1.0 - F.cosine_similarity(student, teacher, dim=-1)).mean()


def default_loss(task: str, *, temperature: float = 4.0, alpha: float = 0.5,
                 embedding: str = "cosine") -> Callable[..., torch.Tensor]:
    """The loss for a task: KD for classifiers, cosine for embedders, MSE otherwise."""
    if task == "classification":
        return lambda s, t, y: kd_loss(s, t, temperature=temperature, alpha=alpha, labels=y)
    kind = embedding if task == "embedding" else "mse"
    return lambda s, t, y: embedding_loss(s, t, kind=kind)


def score(metric: dict[str, float]) -> float:
    """Higher is better: accuracy when there are labels, else cosine to the teacher."""
    return metric.get("accuracy", metric.get("cosine_to_teacher", 0.0))


def fit(student: nn.Module, ctx: PassContext, *, settings: TrainSettings | None = None,
        loss_fn: Callable[..., torch.Tensor] | None = None, teacher: nn.Module | None = None,
        desc: str = "fine-tuning",
        extra_loss: Callable[[dict[str, Any]], torch.Tensor] | None = None) -> dict[str, Any]:
    """Train ``student`` on ``ctx.calib`` to match ``teacher`` (default ``ctx.teacher``).

    Teacher outputs are computed once (the data is fixed, so that is exact and saves a
    forward per step). A validation slice is held out of ``ctx.calib`` (``holdout``); early
    stopping watches its metric and restores the best epoch. The eval split is never looked at
    here: it only reports the result, so the reported metric is not the one that was maximised.
    ``extra_loss(feeds)`` is added after each student forward (hidden-state distillation).
    Returns a history for the PassReport.
    """
    import torch
    from tqdm import tqdm

    settings = settings or ctx.train
    teacher = teacher if teacher is not None else ctx.teacher
    if ctx.calib is None:
        raise CalibrationDataError("fine-tuning needs training data: give --calib (or use a "
                                   "built-in model, which brings its own)")
    if teacher is None and ctx.calib.labels is None:
        raise CalibrationDataError("fine-tuning needs a teacher or labelled data")
    ctx = holdout(ctx)
    validation = ctx.validation
    loss_fn = loss_fn or default_loss(ctx.task)
    val_ref = predict(teacher, validation) if teacher is not None and validation is not None \
        else None
    targets = torch.from_numpy(predict(teacher, ctx.calib)) if teacher is not None else None
    labels = torch.from_numpy(ctx.calib.labels) if ctx.calib.labels is not None else None
    torch.manual_seed(ctx.seed)
    generator = torch.Generator().manual_seed(ctx.seed)
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = -(-len(ctx.calib) // settings.batch_size)
    total = settings.epochs * steps_per_epoch
    if settings.max_steps:
        total = min(total, settings.max_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: max(0.0, 1.0 - step / max(total, 1)))
    best_state, best_score, best_epoch, bad = None, -np.inf, -1, 0
    history: list[dict[str, Any]] = []
    step = 0
    bar = tqdm(total=total, desc=desc, unit="step", leave=False, disable=not ctx.progress)
    for epoch in range(settings.epochs):
        student.train()
        running = 0.0
        seen = 0
        for idx, feeds in iterate_minibatches(ctx.calib, settings.batch_size, generator):
            batch = to_torch(feeds)
            out = first_output(student(**batch)).float()
            t = targets[idx] if targets is not None else None
            y = labels[idx] if labels is not None else None
            loss = loss_fn(out, t, y) if t is not None else \
                torch.nn.functional.cross_entropy(out, y)
            if extra_loss is not None:
                loss = loss + extra_loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += float(loss.detach()) * len(idx)
            seen += len(idx)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
            if step >= total or (ctx.should_stop is not None and ctx.should_stop()):
                break
        student.eval()
        metric = ctx.metrics_on(student, validation, val_ref) if validation is not None else {}
        history.append({"epoch": epoch + 1, "loss": running / max(seen, 1), "validation": metric})
        current = score(metric) if metric else -running
        if current > best_score + 1e-6:
            best_score, best_epoch, bad = current, epoch + 1, 0
            best_state = copy.deepcopy(student.state_dict())
        else:
            bad += 1
            if settings.patience is not None and bad >= settings.patience:
                break
        if step >= total or (ctx.should_stop is not None and ctx.should_stop()):
            break
    bar.close()
    if best_state is not None:
        student.load_state_dict(best_state)
    student.eval()
    n_val = len(validation) if validation is not None else 0
    ctx.selections.append({"validation_samples": n_val, "best_epoch": best_epoch})
    return {"history": history, "best_epoch": best_epoch, "steps": step,
            "train_samples": len(ctx.calib), "validation_samples": n_val,
            "selected_on": "validation slice of the calibration split (content hash)"}
