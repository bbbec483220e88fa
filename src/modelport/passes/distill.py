"""Knowledge distillation: fine-tune the (compressed) model to match the teacher.

The teacher is the model as it was before the pipeline ran (``ctx.teacher``). Classifiers use
soft-target KL at temperature T (scaled by T^2) plus alpha * cross-entropy on labels; embedding
models use cosine (or MSE) on the output embedding. Either can add, for every student block
against the teacher block it came from, the hidden states (``hidden_weight``) and the
head-averaged attention maps (``attention_weight``), and train on augmented text (``augment``:
extra rows made from the calibration sentences, text_augment.py).
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
    attention_weight: float = option(0.0, help="> 0: also match each block's attention map "
                                               "(head-averaged, KL; BERT-style attention)",
                                     minimum=0)
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
        extra, handles = (self._layer_losses(model, ctx.teacher)
                          if self.hidden_weight > 0 or self.attention_weight > 0 else (None, []))
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
        self.details["attention_weight"] = self.attention_weight
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

    def _layer_losses(self, student: nn.Module, teacher: nn.Module):
        """Per-block losses against the teacher block each student block started from
        (layer-drop keeps the mapping; same-depth models map 1:1): token-level cosine of the
        hidden states (``hidden_weight``) and KL of the head-averaged attention maps
        (``attention_weight``; head-averaging makes it indifferent to pruned heads). TinyBERT
        and MiniLM distil both: far more signal per sentence than one pooled vector."""
        import torch

        from modelport.passes.layer_drop import _get, find_blocks
        from modelport.passes.prune_structured import attention_blocks

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
        s_attn, t_attn = attention_blocks(student), attention_blocks(teacher)
        use_attention = self.attention_weight > 0
        if use_attention and (len(s_attn) != len(s_blocks) or len(t_attn) != len(t_blocks)):
            raise UsageError("distill: attention_weight needs BERT-style attention (query/key "
                             "Linears with attention_head_size) in every block")
        for i, t in enumerate(origin):
            handles.append(s_blocks[i].register_forward_hook(hook(f"s{i}")))
            handles.append(t_blocks[t].register_forward_hook(hook(f"t{i}")))
            if use_attention:
                for side, attn in (("s", s_attn[i][1]), ("t", t_attn[t][1])):
                    handles.append(attn.query.register_forward_hook(hook(f"{side}q{i}")))
                    handles.append(attn.key.register_forward_hook(hook(f"{side}k{i}")))
        s_size = [a.attention_head_size for _, a, _ in s_attn]
        t_size = [a.attention_head_size for _, a, _ in t_attn]

        def extra(batch: dict) -> torch.Tensor:
            with torch.no_grad():
                teacher(**batch)
            mask = batch.get("attention_mask")
            hidden, attention = 0.0, 0.0
            for i, t in enumerate(origin):
                if self.hidden_weight > 0:
                    cos = torch.nn.functional.cosine_similarity(seen[f"s{i}"],
                                                                seen[f"t{i}"].detach(), dim=-1)
                    hidden = hidden + _masked_mean(1.0 - cos, mask)
                if use_attention:
                    p_s = attention_map(seen[f"sq{i}"], seen[f"sk{i}"], s_size[i], mask)
                    with torch.no_grad():
                        p_t = attention_map(seen[f"tq{i}"], seen[f"tk{i}"], t_size[t], mask)
                    kl = (p_t * (p_t.clamp_min(1e-9).log() - p_s.clamp_min(1e-9).log())).sum(-1)
                    attention = attention + _masked_mean(kl, mask)
            return (self.hidden_weight * hidden + self.attention_weight * attention) / len(origin)

        return extra, handles


def attention_map(q, k, head_size: int, mask):
    """Softmax(q k^T / sqrt(d)) of every head, averaged over heads: [batch, seq, seq]. Padding
    keys get no weight, as in the model's own attention."""
    import math

    import torch

    b, s, _ = q.shape
    q = q.view(b, s, -1, head_size).transpose(1, 2)
    k = k.view(b, s, -1, head_size).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(head_size)
    if mask is not None and mask.shape == (b, s):
        scores = scores.masked_fill(mask[:, None, None, :] == 0, torch.finfo(scores.dtype).min)
    return scores.softmax(-1).mean(1)


def _masked_mean(values, mask):
    """Mean over the real tokens (a [batch, seq] attention mask), else over everything."""
    if mask is None or mask.shape != values.shape:
        return values.mean()
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp(min=1)
