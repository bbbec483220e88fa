"""Magnitude pruning, unstructured: global L1 over every Linear/Conv2d weight.

Honest about what it buys: the zeros make the weights compress (gzip) but tensors keep their
shape, so dense runtimes (ONNX Runtime, OpenVINO, TensorRT on CPU/GPU without sparse kernels)
run exactly as many FLOPs as before. Iterative mode prunes in steps with fine-tuning between.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from modelport.config_check import option
from modelport.errors import UsageError
from modelport.passes.contract import Pass, PassContext, prunable_layers
from modelport.passes.train import fit

if TYPE_CHECKING:
    from torch import nn

NO_SPEEDUP = ("unstructured sparsity: tensors keep their shape, so dense runtimes get no "
              "speedup; only the gzip size shrinks")


@dataclass
class MagnitudePrune(Pass):
    name: ClassVar[str] = "prune-unstructured"
    amount: float = option(0.5, help="final fraction of zeroed weights, over all pruned "
                                     "layers together", above=0, below=1)
    steps: int = option(1, help="1 = one-shot; more = iterative, fine-tuning between steps",
                        minimum=1)
    finetune_epochs: int = option(0, help="per step (needs data and a teacher or labels)",
                                  minimum=0)
    max_steps: int | None = option(None, help="a hard cap on optimizer steps", minimum=1)

    def apply(self, model: nn.Module, ctx: PassContext) -> nn.Module:
        from torch import nn
        from torch.nn.utils import prune

        if not 0.0 < self.amount < 1.0:
            raise UsageError(f"prune-unstructured: amount must be in (0, 1), got {self.amount}")
        if self.steps < 1:
            raise UsageError("prune-unstructured: steps must be >= 1")
        layers = prunable_layers(model, (nn.Linear, nn.Conv2d))
        params = [(m, "weight") for _, m in layers]
        history = []
        for step in range(1, self.steps + 1):
            # cumulative target after this step; the prune container keeps the old mask, so
            # each call removes the given fraction of the weights still alive
            target = self.amount * step / self.steps
            alive = 1.0 - self.amount * (step - 1) / self.steps
            prune.global_unstructured(params, pruning_method=prune.L1Unstructured,
                                      amount=float(min(1.0, (target - (1.0 - alive)) / alive)))
            if self.finetune_epochs and ctx.calib is not None and step <= self.steps:
                settings = ctx.train.updated(epochs=self.finetune_epochs, patience=None,
                                             max_steps=self.max_steps)
                history.append(fit(model, ctx, settings=settings,
                                   desc=f"fine-tuning after prune step {step}"))
        for module, attr in params:
            prune.remove(module, attr)  # make the zeros permanent: plain weights, no masks
        self.details = {"layers": len(params), "steps": self.steps, "finetune": history}
        self.notes = [NO_SPEEDUP]
        return model
