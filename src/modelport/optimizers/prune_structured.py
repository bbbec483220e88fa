"""Structured pruning that really shrinks tensors.

CNNs: output channels of convolutions, with every dependent tensor (BatchNorm, the next layer's
input channels, flatten -> Linear) kept consistent by torch-pruning's DepGraph. Transformers
(BERT-style blocks with ``intermediate.dense`` / ``output.dense``): FFN neurons, pruned by hand
since the dependency is just "rows of one Linear = columns of the next".
Importance: L2 (or L1) weight norm by default; Taylor (|gradient x weight|) when asked and data
is there. The last layer (the model's outputs) is never pruned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from modelport.errors import MissingDependency, UsageError
from modelport.optimizers.base import Pass, PassContext, first_output, iterate_minibatches, to_torch

if TYPE_CHECKING:
    from torch import nn


@dataclass
class StructuredPrune(Pass):
    name: ClassVar[str] = "prune-structured"
    ratio: float = 0.5  # fraction of channels / FFN neurons removed per layer
    importance: str = "l2"  # l1 | l2 | taylor
    taylor_batches: int = 4
    round_to: int | None = None  # keep channel counts multiples of this (e.g. 8 for tensor cores)

    def apply(self, model: nn.Module, ctx: PassContext) -> nn.Module:
        if not 0.0 < self.ratio < 1.0:
            raise UsageError(f"prune-structured: ratio must be in (0, 1), got {self.ratio}")
        if self.importance not in ("l1", "l2", "taylor"):
            raise UsageError("prune-structured: importance is l1, l2 or taylor")
        blocks = ffn_blocks(model)
        if blocks:
            return self._prune_ffn(model, blocks, ctx)
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

        from modelport.optimizers.base import predict
        from modelport.optimizers.train import default_loss

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

    # -- transformer FFN neurons --------------------------------------------------------------
    def _prune_ffn(self, model: nn.Module, blocks: list[tuple[str, Any, Any]], ctx: PassContext
                   ) -> nn.Module:
        import torch

        grads = {}
        if self.importance == "taylor":
            self._taylor_grads(model, ctx)
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
            grads[name] = None
        model.zero_grad(set_to_none=True)
        self.details = {"method": "FFN neurons (intermediate.dense rows = output.dense columns)",
                        "ffn_kept": kept}
        self.notes = ["attention heads are not pruned (FFN neurons only)"]
        return model


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
