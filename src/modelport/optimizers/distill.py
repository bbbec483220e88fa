"""Knowledge distillation: fine-tune the (compressed) model to match the teacher.

The teacher is the model as it was before the pipeline ran (``ctx.teacher``). Classifiers use
soft-target KL at temperature T (scaled by T^2) plus alpha * cross-entropy on labels; embedding
models use cosine (or MSE) on the output embedding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from modelport.errors import UsageError
from modelport.optimizers.base import Pass, PassContext
from modelport.optimizers.train import default_loss, fit

if TYPE_CHECKING:
    from torch import nn


@dataclass
class Distill(Pass):
    name: ClassVar[str] = "distill"
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    patience: int | None = None
    max_steps: int | None = None
    temperature: float = 4.0
    alpha: float = 0.5
    loss: str = "auto"  # auto | kd | cosine | mse
    hidden_weight: float = 0.0  # > 0: also match the last block's token states (masked cosine)

    def apply(self, model: nn.Module, ctx: PassContext) -> nn.Module:
        if ctx.teacher is None:
            raise UsageError("distill needs a teacher (the pipeline passes the original model)")
        if self.loss not in ("auto", "kd", "cosine", "mse"):
            raise UsageError(f"distill: loss must be auto, kd, cosine or mse, not '{self.loss}'")
        task = ctx.task
        if self.loss == "kd":
            task = "classification"
        kind = self.loss if self.loss in ("cosine", "mse") else "cosine"
        if self.loss in ("cosine", "mse"):
            task = "embedding"
        loss_fn = default_loss(task, temperature=self.temperature, alpha=self.alpha,
                               embedding=kind)
        settings = ctx.train.updated(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size,
                                     patience=self.patience, max_steps=self.max_steps)
        for p in model.parameters():
            p.requires_grad_(True)
        extra, handles = (self._hidden_loss(model, ctx.teacher) if self.hidden_weight > 0
                          else (None, []))
        try:
            self.details = fit(model, ctx, settings=settings, loss_fn=loss_fn,
                               desc=f"distilling ({self.loss})", extra_loss=extra)
        finally:
            for h in handles:
                h.remove()
        self.details["hidden_weight"] = self.hidden_weight
        self.details["loss"] = "kd" if task == "classification" else kind
        return model

    def _hidden_loss(self, student: nn.Module, teacher: nn.Module):
        """Token-level cosine between the last transformer block of student and teacher
        (TinyBERT/DistilBERT use hidden states too: far more signal per sentence)."""
        import torch

        from modelport.optimizers.layer_drop import _get, find_blocks

        s_blocks = _get(student, find_blocks(student))
        t_blocks = _get(teacher, find_blocks(teacher))
        seen: dict[str, torch.Tensor] = {}

        def hook(key: str):
            def fn(module, args, output):
                seen[key] = output[0] if isinstance(output, (tuple, list)) else output
            return fn

        handles = [s_blocks[-1].register_forward_hook(hook("student")),
                   t_blocks[-1].register_forward_hook(hook("teacher"))]

        def extra(batch: dict) -> torch.Tensor:
            with torch.no_grad():
                teacher(**batch)
            s, t = seen["student"], seen["teacher"].detach()
            cos = torch.nn.functional.cosine_similarity(s, t, dim=-1)
            mask = batch.get("attention_mask")
            if mask is None or mask.shape != cos.shape:
                return self.hidden_weight * (1.0 - cos).mean()
            mask = mask.to(cos.dtype)
            return self.hidden_weight * ((1.0 - cos) * mask).sum() / mask.sum().clamp(min=1)

        return extra, handles
