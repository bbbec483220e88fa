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
        self.details = fit(model, ctx, settings=settings, loss_fn=loss_fn,
                           desc=f"distilling ({self.loss})")
        self.details["loss"] = "kd" if task == "classification" else kind
        return model
