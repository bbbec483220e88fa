"""Low-rank factorization: W (out x in) ~= U_r S_r V_r^T, one layer becomes two thinner ones.

Linear: x -> (V_r^T scaled) -> U_r. Conv2d (groups=1): a k x k conv to ``r`` channels, then a
1x1 conv to ``out`` (the SVD of the weight reshaped to out x (in*k*k)), so 1x1 convs are the
special case. The rank per layer comes from the retained spectral energy or from a global
parameter budget; a layer is skipped where two layers would not cost fewer FLOPs than one.
At full rank the factorization reproduces the layer (a test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from modelport.config_check import option
from modelport.errors import UsageError
from modelport.passes.contract import Pass, PassContext, prunable_layers
from modelport.passes.train import fit

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass
class LowRank(Pass):
    name: ClassVar[str] = "low-rank"
    energy: float | None = option(0.9, help="keep the smallest rank holding this fraction of "
                                            "sum(S^2)", above=0, maximum=1)
    param_ratio: float | None = option(None, help="or: keep this fraction of the factorized "
                                                  "layers' params", above=0, maximum=1)
    rank: int | None = option(None, help="or: one fixed rank for every layer (full rank = "
                                         "exact)", minimum=1)
    min_features: int = option(16, help="leave layers smaller than this alone", minimum=1)
    skip_last: bool = option(True, help="the output layer stays exact")
    finetune_epochs: int = option(0, help="fine-tuning epochs after factorizing", minimum=0)
    max_steps: int | None = option(None, help="a hard cap on optimizer steps", minimum=1)
    _structure: dict[str, Any] = field(default_factory=dict, repr=False)

    def apply(self, model: nn.Module, ctx: PassContext) -> nn.Module:
        import torch

        if sum(x is not None for x in (self.energy, self.param_ratio, self.rank)) == 0:
            raise UsageError("low-rank: give energy, param_ratio or rank")
        if self.energy is not None and not 0.0 < self.energy <= 1.0:
            raise UsageError(f"low-rank: energy must be in (0, 1], got {self.energy}")
        layers = [(n, m) for n, m in prunable_layers(model)
                  if not (hasattr(m, "groups") and m.groups != 1)
                  and min(_matrix_shape(m)) >= self.min_features]
        if self.skip_last and layers:
            last = [n for n, _ in prunable_layers(model)][-1]
            layers = [(n, m) for n, m in layers if n != last]
        svds = {}
        with torch.no_grad():
            for n, m in layers:
                svds[n] = torch.linalg.svd(_as_matrix(m.weight), full_matrices=False)
        ranks = self._ranks(layers, svds)
        chosen, skipped = {}, {}
        for n, m in layers:
            r = ranks[n]
            rows, cols = _matrix_shape(m)
            if r * (rows + cols) >= rows * cols:
                skipped[n] = f"rank {r} of {min(rows, cols)} saves no FLOPs"
                continue
            _replace(model, n, factorize(m, svds[n], r))
            chosen[n] = r
        if not chosen:
            self.notes.append("no layer was worth factorizing at these settings")
        history = None
        if self.finetune_epochs and chosen:
            settings = ctx.train.updated(epochs=self.finetune_epochs, max_steps=self.max_steps)
            history = fit(model, ctx, settings=settings, desc="fine-tuning low-rank")
        self._structure = {"op": "low-rank", "ranks": chosen}
        self.details = {"ranks": chosen, "skipped": skipped, "finetune": history}
        return model

    def _ranks(self, layers: list, svds: dict) -> dict[str, int]:
        import torch

        out = {}
        if self.rank is not None:
            return {n: min(self.rank, len(svds[n][1])) for n, _ in layers}
        if self.energy is not None and self.param_ratio is None:
            for n, _ in layers:
                s2 = svds[n][1].double() ** 2
                cum = torch.cumsum(s2, 0) / s2.sum()
                out[n] = int((cum < self.energy - 1e-12).sum()) + 1
            return out
        # global budget: drop singular values in order of smallest energy share first
        budget = self.param_ratio * sum(_matrix_shape(m)[0] * _matrix_shape(m)[1] for _, m in layers)
        cost = {n: sum(_matrix_shape(m)) for n, m in layers}
        candidates = []
        for n, _ in layers:
            s2 = svds[n][1].double() ** 2
            share = (s2 / s2.sum()).tolist()
            candidates += [(share[i], n, i) for i in range(len(share))]
        candidates.sort(reverse=True)
        used = 0.0
        for n, _ in layers:
            out[n] = 1
            used += cost[n]
        taken = set()
        for share, n, i in candidates:
            if i == 0 or (n, i) in taken:
                continue
            if used + cost[n] > budget:
                continue
            out[n] = max(out[n], i + 1)
            used += cost[n]
            taken.add((n, i))
        return out

    def structure(self) -> dict[str, Any] | None:
        return self._structure


def _matrix_shape(m: nn.Module) -> tuple[int, int]:
    w = m.weight
    return int(w.shape[0]), int(w[0].numel())


def _as_matrix(w: torch.Tensor) -> torch.Tensor:
    return w.detach().reshape(w.shape[0], -1).double()


def factorize(m: nn.Module, svd: Any, r: int) -> nn.Module:
    """Two layers whose product is the rank-``r`` truncation of ``m``'s weight."""
    import torch
    from torch import nn

    u, s, vh = svd
    root = s[:r].sqrt()
    first_w = (root[:, None] * vh[:r]).float()  # r x (in*k*k)
    second_w = (u[:, :r] * root[None, :]).float()  # out x r
    if isinstance(m, nn.Linear):
        first = nn.Linear(m.in_features, r, bias=False)
        second = nn.Linear(r, m.out_features, bias=m.bias is not None)
        first.weight.data.copy_(first_w)
        second.weight.data.copy_(second_w)
    else:
        first = nn.Conv2d(m.in_channels, r, m.kernel_size, stride=m.stride, padding=m.padding,
                          dilation=m.dilation, bias=False, padding_mode=m.padding_mode)
        second = nn.Conv2d(r, m.out_channels, 1, bias=m.bias is not None)
        first.weight.data.copy_(first_w.reshape(r, *m.weight.shape[1:]))
        second.weight.data.copy_(second_w[:, :, None, None])
    if m.bias is not None:
        with torch.no_grad():
            second.bias.copy_(m.bias)
    return nn.Sequential(first, second)


def empty_factorized(m: nn.Module, r: int) -> nn.Module:
    """The same two-layer shape with placeholder weights (filled from safetensors on load)."""
    import torch

    w = m.weight.detach()
    svd = (torch.zeros(w.shape[0], r, dtype=torch.float64), torch.ones(r, dtype=torch.float64),
           torch.zeros(r, w[0].numel(), dtype=torch.float64))
    return factorize(m, svd, r)


def replay(model: nn.Module, record: dict[str, Any]) -> None:
    """Redo the factorization's module surgery on a fresh base model (weights come after)."""
    modules = dict(model.named_modules())
    for name, r in record["ranks"].items():
        _replace(model, name, empty_factorized(modules[name], int(r)))


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if attr.isdigit():
        parent[int(attr)] = new
    else:
        setattr(parent, attr, new)
