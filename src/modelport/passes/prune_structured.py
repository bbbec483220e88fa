"""Structured pruning that really shrinks tensors.

CNNs: output channels of convolutions, with every dependent tensor (BatchNorm, the next layer's
input channels, flatten -> Linear) kept consistent by torch-pruning's DepGraph. Transformers
(BERT-style blocks): FFN neurons (rows of ``intermediate.dense`` = columns of ``output.dense``) and
attention heads (head-sized row blocks of query/key/value = column blocks of the attention's
``output.dense``), pruned by hand since those dependencies are that simple.
Importance: L2 (or L1) weight norm by default; Taylor (|gradient x weight|) when asked and data
is there. The last layer (the model's outputs) is never pruned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from modelport.config_check import option
from modelport.errors import MissingDependency, UsageError
from modelport.passes.contract import Pass, PassContext, first_output, iterate_minibatches, to_torch

if TYPE_CHECKING:
    from torch import nn


@dataclass
class StructuredPrune(Pass):
    name: ClassVar[str] = "prune-structured"
    ratio: float = option(0.5, help="fraction of channels / FFN neurons removed per layer",
                          minimum=0, below=1)
    heads: float = option(0.0, help="transformers: fraction of attention heads removed per "
                                    "block", minimum=0, below=1)
    importance: str = option("l2", help="channel importance", choices=("l1", "l2", "taylor"))
    taylor_batches: int = option(4, help="batches of gradients for taylor importance", minimum=1)
    round_to: int | None = option(None, help="keep channel counts multiples of this (e.g. 8 "
                                             "for tensor cores)", minimum=1)

    def apply(self, model: nn.Module, ctx: PassContext) -> nn.Module:
        if not 0.0 <= self.ratio < 1.0 or not 0.0 <= self.heads < 1.0:
            raise UsageError(f"prune-structured: ratio and heads must be in [0, 1), got ratio "
                             f"{self.ratio}, heads {self.heads}")
        if self.ratio == 0.0 and self.heads == 0.0:
            raise UsageError("prune-structured: nothing to prune: give ratio (channels / FFN "
                             "neurons) and/or heads (attention heads) above 0")
        if self.importance not in ("l1", "l2", "taylor"):
            raise UsageError("prune-structured: importance is l1, l2 or taylor")
        blocks, attentions = ffn_blocks(model), attention_blocks(model)
        if self.heads and not attentions:
            raise UsageError("prune-structured: heads needs BERT-style attention (query/key/value "
                             "Linears with attention_head_size); this model has none")
        if blocks or attentions:
            return self._prune_transformer(model, blocks, attentions, ctx)
        return self._prune_channels(model, ctx)

    # -- CNN channels with torch-pruning ----------------------------------------------------
    def _prune_channels(self, model: nn.Module, ctx: PassContext) -> nn.Module:
        import torch

        try:
            import torch_pruning as tp
        except ImportError:
            raise MissingDependency("structured pruning needs 'torch-pruning': pip install "
                                    "\"modelport[export]\"") from None
        from torch import nn

        if ctx.example is None:
            raise UsageError("prune-structured needs example inputs to trace the model")
        example = to_torch(ctx.example)
        layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        if not layers:
            raise UsageError("prune-structured found no Conv2d/Linear layers to prune")
        if self.importance == "taylor":
            imp = tp.importance.GroupTaylorImportance()
        else:
            imp = tp.importance.GroupMagnitudeImportance(p=1 if self.importance == "l1" else 2)
        before = {n: tuple(m.weight.shape) for n, m in model.named_modules()
                  if isinstance(m, (nn.Linear, nn.Conv2d))}
        pruner = tp.pruner.BasePruner(
            model, example, importance=imp, pruning_ratio=self.ratio,
            ignored_layers=[layers[-1]], round_to=self.round_to,
            forward_fn=lambda m, x: m(**x),
        )
        if self.importance == "taylor":
            self._taylor_grads(model, ctx)
        pruner.step()
        model.zero_grad(set_to_none=True)
        after = {n: tuple(m.weight.shape) for n, m in model.named_modules()
                 if isinstance(m, (nn.Linear, nn.Conv2d))}
        self.details = {"method": "torch-pruning DepGraph", "shapes": {
            n: {"before": list(before[n]), "after": list(after[n])} for n in after
            if before.get(n) != after[n]}}
        with torch.no_grad():
            model(**example)  # fail here, not in the exporter, if the graph broke
        return model

    def _taylor_grads(self, model: nn.Module, ctx: PassContext) -> None:
        """Accumulate gradients of the distillation/CE loss on a few calibration batches."""
        import torch

        from modelport.passes.contract import predict
        from modelport.passes.train import default_loss

        if ctx.calib is None:
            raise UsageError("Taylor importance needs data: give --calib or use importance l2")
        loss_fn = default_loss(ctx.task)
        teacher = torch.from_numpy(predict(ctx.teacher, ctx.calib)) if ctx.teacher else None
        labels = torch.from_numpy(ctx.calib.labels) if ctx.calib.labels is not None else None
        gen = torch.Generator().manual_seed(ctx.seed)
        model.zero_grad(set_to_none=True)
        for i, (idx, feeds) in enumerate(iterate_minibatches(ctx.calib, 32, gen)):
            if i >= self.taylor_batches:
                break
            out = first_output(model(**to_torch(feeds))).float()
            if teacher is not None:
                loss = loss_fn(out, teacher[idx], labels[idx] if labels is not None else None)
            else:
                loss = torch.nn.functional.cross_entropy(out, labels[idx])
            loss.backward()

    # -- transformers: FFN neurons and attention heads -----------------------------------------
    def _prune_transformer(self, model: nn.Module, blocks: list[tuple[str, Any, Any]],
                           attentions: list[tuple[str, Any, Any]], ctx: PassContext) -> nn.Module:
        if self.importance == "taylor":
            self._taylor_grads(model, ctx)  # one set of gradients scores heads and neurons
        self.details = {"method": "FFN neurons (intermediate.dense rows = output.dense columns)"
                                  + ("; attention heads (q/k/v row blocks = output.dense column "
                                     "blocks)" if self.heads else "")}
        if self.ratio:
            self.details["ffn_kept"] = self._prune_ffn(blocks)
        if self.heads:
            self.details["heads_kept"] = self._prune_heads(attentions)
        else:
            self.notes = ["attention heads kept (give heads: FRACTION to prune them)"]
        model.zero_grad(set_to_none=True)
        return model

    def _prune_heads(self, attentions: list[tuple[str, Any, Any]]) -> dict[str, list[int]]:
        """Drop the lowest-scoring heads of every attention block (at least one is kept)."""
        import torch

        kept: dict[str, list[int]] = {}
        for name, attn, out in attentions:
            size = attn.attention_head_size
            n_heads = attn.query.out_features // size
            score = torch.zeros(n_heads, dtype=torch.float64)
            for layer, dim in ((attn.query, 0), (attn.key, 0), (attn.value, 0), (out, 1)):
                w = layer.weight.detach()
                if self.importance == "taylor" and layer.weight.grad is not None:
                    w = (layer.weight.grad * w).abs()
                per_head = (w if dim == 0 else w.T).reshape(n_heads, size, -1)
                score += (per_head.abs().sum((1, 2)) if self.importance in ("l1", "taylor")
                          else per_head.pow(2).sum((1, 2)).sqrt()).double()
            keep_n = max(1, round(n_heads * (1.0 - self.heads)))
            heads = torch.topk(score, keep_n).indices.sort().values
            rows = (heads[:, None] * size + torch.arange(size)).reshape(-1)
            for layer in (attn.query, attn.key, attn.value):
                _shrink_linear(layer, rows, dim=0)
            _shrink_linear(out, rows, dim=1)
            if hasattr(attn, "num_attention_heads"):  # HF reads -1 heads from the shapes;
                attn.num_attention_heads = keep_n  # keep the descriptive attributes true too
            if hasattr(attn, "all_head_size"):
                attn.all_head_size = keep_n * size
            kept[name] = heads.tolist()
        return kept

    def _prune_ffn(self, blocks: list[tuple[str, Any, Any]]) -> dict[str, int]:
        import torch

        kept: dict[str, int] = {}
        for name, up, down in blocks:
            w_up, w_down = up.weight.detach(), down.weight.detach()
            if self.importance == "taylor" and up.weight.grad is not None:
                score = (up.weight.grad * w_up).abs().sum(1) + (down.weight.grad * w_down).abs().sum(0)
            else:
                p = 1 if self.importance == "l1" else 2
                score = w_up.norm(p=p, dim=1) * w_down.norm(p=p, dim=0)
            keep_n = max(1, round(up.out_features * (1.0 - self.ratio)))
            if self.round_to:
                keep_n = max(self.round_to, keep_n - keep_n % self.round_to)
            keep = torch.topk(score, keep_n).indices.sort().values
            _shrink_linear(up, keep, dim=0)
            _shrink_linear(down, keep, dim=1)
            kept[name] = int(keep_n)
        return kept


def ffn_blocks(model: nn.Module) -> list[tuple[str, Any, Any]]:
    """(name, up, down) for each BERT-style FFN: ``X.intermediate.dense`` and ``X.output.dense``."""
    from torch import nn

    out = []
    for name, module in model.named_modules():
        inter = getattr(module, "intermediate", None)
        output = getattr(module, "output", None)
        up = getattr(inter, "dense", None)
        down = getattr(output, "dense", None)
        if isinstance(up, nn.Linear) and isinstance(down, nn.Linear) \
                and up.out_features == down.in_features:
            out.append((name, up, down))
    return out


def attention_blocks(model: nn.Module) -> list[tuple[str, Any, Any]]:
    """(name, self-attention, output projection) for each BERT-style attention: a module with
    ``self.query/key/value`` Linears and ``attention_head_size``, and ``output.dense``.

    The forward must infer the head count from the tensor shapes (HF's ``view(..., -1, size)``),
    which is what lets the pruned weights alone describe the pruned model on reload.
    """
    from torch import nn

    out = []
    for name, module in model.named_modules():
        attn = getattr(module, "self", None)
        dense = getattr(getattr(module, "output", None), "dense", None)
        if isinstance(dense, nn.Linear) and isinstance(getattr(attn, "attention_head_size", None),
                                                       int) \
                and all(isinstance(getattr(attn, k, None), nn.Linear)
                        for k in ("query", "key", "value")):
            out.append((name, attn, dense))
    return out


def _shrink_linear(layer: Any, keep: Any, *, dim: int) -> None:
    """Keep only rows (dim 0, with the bias) or columns (dim 1) ``keep`` of a Linear, in place."""
    import torch

    with torch.no_grad():
        layer.weight = torch.nn.Parameter(layer.weight.index_select(dim, keep).clone())
        if dim == 0:
            if layer.bias is not None:
                layer.bias = torch.nn.Parameter(layer.bias.index_select(0, keep).clone())
            layer.out_features = len(keep)
        else:
            layer.in_features = len(keep)
