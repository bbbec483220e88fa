"""Knowledge distillation: fine-tune the (compressed) model to match the teacher.

The teacher is the model as it was before the pipeline ran (``ctx.teacher``). Classifiers use
soft-target KL at temperature T (scaled by T^2) plus alpha * cross-entropy on labels; embedding
models use cosine (or MSE) on the output embedding, optionally plus hidden states of every
student block against the teacher block it came from (``hidden_weight``), and optionally on
augmented text (``augment``: extra rows made from the calibration sentences, text_augment.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from modelport.config_check import option
from modelport.errors import UsageError
from modelport.passes.contract import Pass, PassContext, holdout
from modelport.passes.train import default_loss, fit

if TYPE_CHECKING:
    from torch import nn


@dataclass
class Distill(Pass):
    name: ClassVar[str] = "distill"
    epochs: int | None = option(None, help="training epochs (default: the recipe's train)",
                                minimum=1)
    lr: float | None = option(None, help="learning rate (default: the recipe's train)", above=0)
    batch_size: int | None = option(None, help="rows per step", minimum=1)
    patience: int | None = option(None, help="epochs without a better validation score "
                                             "before stopping", minimum=1)
    max_steps: int | None = option(None, help="a hard cap on optimizer steps", minimum=1)
    temperature: float = option(4.0, help="softmax temperature of the KD loss", above=0)
    alpha: float = option(0.5, help="weight of cross-entropy on labels", minimum=0)
    loss: str = option("auto", help="distillation loss", choices=("auto", "kd", "cosine", "mse"))
    hidden_weight: float = option(0.0, help="> 0: also match each block's token states "
                                            "(masked cosine)", minimum=0)
    augment: int = option(0, help="text models: extra training rows made from the calib texts",
                          minimum=0)

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
        # the validation slice is carved before augmenting, so no row made from a validation
        # sentence is trained on
        held = holdout(ctx) if self.augment else ctx
        train_ctx = self._augmented(held) if self.augment else ctx
        try:
            self.details = fit(model, train_ctx, settings=settings, loss_fn=loss_fn,
                               desc=f"distilling ({self.loss})", extra_loss=extra)
        finally:
            for h in handles:
                h.remove()
        self.details["hidden_weight"] = self.hidden_weight
        self.details["augmented_rows"] = len(train_ctx.calib) - len(held.calib) if held.calib else 0
        self.details["loss"] = "kd" if task == "classification" else kind
        return model

    def _augmented(self, ctx: PassContext) -> PassContext:
        """The context with ``augment`` extra text rows appended to the training split."""
        import dataclasses

        from modelport.passes.text_augment import augment_texts

        if ctx.calib is None or not ctx.calib.texts or ctx.tokenize is None:
            raise UsageError("distill: augment needs text calibration data and the model's "
                             "tokenizer (a text model, e.g. builtin:minilm, or --calib FILE.txt)")
        texts = list(ctx.calib.texts)
        # tokenized together, the originals and the new rows share one padded length
        merged = ctx.tokenize(texts + augment_texts(texts, self.augment, seed=ctx.seed))
        merged.source = f"{ctx.calib.source} + {self.augment} augmented rows"
        return dataclasses.replace(ctx, calib=merged)

    def _hidden_loss(self, student: nn.Module, teacher: nn.Module):
        """Token-level cosine between every student block and the teacher block it started
        from (layer-drop keeps the mapping; same-depth models map 1:1): TinyBERT/DistilBERT
        use hidden states too, far more signal per sentence than one pooled vector."""
        import torch

        from modelport.passes.layer_drop import _get, find_blocks

        s_blocks = _get(student, find_blocks(student))
        t_blocks = _get(teacher, find_blocks(teacher))
        origin = getattr(student, "_modelport_kept_blocks", None) or list(range(len(s_blocks)))
        if len(origin) != len(s_blocks) or max(origin) >= len(t_blocks):
            origin = [round(i * (len(t_blocks) - 1) / max(len(s_blocks) - 1, 1))
                      for i in range(len(s_blocks))]
        seen: dict[str, torch.Tensor] = {}

        def hook(key: str):
            def fn(module, args, output):
                seen[key] = output[0] if isinstance(output, (tuple, list)) else output
            return fn

        handles = []
        for i, t in enumerate(origin):
            handles.append(s_blocks[i].register_forward_hook(hook(f"s{i}")))
            handles.append(t_blocks[t].register_forward_hook(hook(f"t{i}")))

        def extra(batch: dict) -> torch.Tensor:
            with torch.no_grad():
                teacher(**batch)
            mask = batch.get("attention_mask")
            total = 0.0
            for i in range(len(origin)):
                cos = torch.nn.functional.cosine_similarity(seen[f"s{i}"],
                                                            seen[f"t{i}"].detach(), dim=-1)
                if mask is None or mask.shape != cos.shape:
                    total = total + (1.0 - cos).mean()
                else:
                    m = mask.to(cos.dtype)
                    total = total + ((1.0 - cos) * m).sum() / m.sum().clamp(min=1)
            return self.hidden_weight * total / len(origin)

        return extra, handles

