"""Quantization-aware training: fake-quant fine-tuning, exported as Q/DQ ONNX.

torch 2.13 has no PT2E quantizer in-tree (it moved to torchao, not a dependency here), and the
exporter cannot trace ``fake_quantize_*`` (their ``cachemask`` variants have no fake-tensor
kernel). So the fake-quant is ours, and small: every Linear/Conv2d input is quantized u8
asymmetric per tensor and its weight s8 symmetric per output channel (the layout ONNX Runtime
runs fastest on x86, see FINDINGS), with the straight-through estimator from
``torch.fake_quantize_*`` in eager mode. During ONNX export the same math is emitted as real
``QuantizeLinear``/``DequantizeLinear`` nodes (``torch.onnx.ops.symbolic``), so every backend
that reads Q/DQ ONNX gets the trained scales. With ``epochs: 0`` this is plain PTQ (calibrate
ranges only) of the same layers: the fair comparison for QAT.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from modelport.config_check import option
from modelport.errors import UsageError
from modelport.passes.contract import Pass, PassContext, prunable_layers, to_torch
from modelport.passes.train import fit

if TYPE_CHECKING:
    import torch
    from torch import nn


def qdq(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
        axis: int | None = None, qmax: int = 127) -> torch.Tensor:
    """Quantize-dequantize: fake-quant in eager (STE gradients), Q/DQ nodes in ONNX export."""
    import torch

    if torch.onnx.is_in_onnx_export():
        attrs = {} if axis is None else {"axis": axis}
        q = torch.onnx.ops.symbolic("QuantizeLinear", [x, scale, zero_point], attrs,
                                    dtype=zero_point.dtype, shape=x.shape)
        return torch.onnx.ops.symbolic("DequantizeLinear", [q, scale, zero_point], attrs,
                                       dtype=x.dtype, shape=x.shape)
    if axis is None:
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point.int(), 0, 255)
    return torch.fake_quantize_per_channel_affine(x, scale, zero_point.int(), axis, -qmax - 1,
                                                  qmax)


def _make_quant_module():
    import torch
    from torch import nn

    class QuantWrapper(nn.Module):
        """Fake-quantizes the input (u8, per tensor) and weight (s8, per channel) of ``inner``."""

        def __init__(self, inner: nn.Module, weight_bits: int = 8) -> None:
            super().__init__()
            self.inner = inner
            self.weight_qmax = 2 ** (weight_bits - 1) - 1  # 127 (8 bits) or 63 (7 bits)
            out = inner.weight.shape[0]
            self.register_buffer("act_scale", torch.tensor(1.0))
            self.register_buffer("act_zero_point", torch.tensor(0, dtype=torch.uint8))
            self.register_buffer("weight_scale", torch.ones(out))
            self.register_buffer("weight_zero_point", torch.zeros(out, dtype=torch.int8))
            self.observing = False
            self._lo: list[float] = []
            self._hi: list[float] = []

        def observe(self, on: bool) -> None:
            self.observing = on
            if not on and self._lo:
                lo = min(0.0, sum(self._lo) / len(self._lo))  # the range must hold 0 exactly
                hi = max(0.0, sum(self._hi) / len(self._hi))
                scale = max((hi - lo) / 255.0, 1e-8)
                self.act_scale.fill_(scale)
                self.act_zero_point.fill_(int(min(255, max(0, round(-lo / scale)))))
                self._lo, self._hi = [], []

        def refresh_weight_scale(self) -> None:
            with torch.no_grad():
                w = self.inner.weight.detach().reshape(self.inner.weight.shape[0], -1)
                self.weight_scale.copy_(w.abs().amax(1).clamp(min=1e-8) / self.weight_qmax)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.observing:
                self._lo.append(float(x.detach().min()))
                self._hi.append(float(x.detach().max()))
                return self.inner(x)
            if self.training:
                self.refresh_weight_scale()  # weights move while training; scales follow
            xq = qdq(x, self.act_scale, self.act_zero_point)
            wq = qdq(self.inner.weight, self.weight_scale, self.weight_zero_point, axis=0,
                     qmax=self.weight_qmax)
            if isinstance(self.inner, nn.Linear):
                return nn.functional.linear(xq, wq, self.inner.bias)
            c = self.inner
            return nn.functional.conv2d(xq, wq, c.bias, c.stride, c.padding, c.dilation, c.groups)

    return QuantWrapper


_QUANT = None


def quant_wrapper_class():
    global _QUANT
    if _QUANT is None:
        _QUANT = _make_quant_module()
    return _QUANT


@dataclass
class QuantizeAware(Pass):
    name: ClassVar[str] = "qat"
    epochs: int | None = option(2, help="0 = PTQ: calibrate the ranges, no training", minimum=0)
    lr: float | None = option(1e-4, help="learning rate", above=0)
    batch_size: int | None = option(None, help="rows per step", minimum=1)
    max_steps: int | None = option(None, help="a hard cap on optimizer steps", minimum=1)
    calib_batches: int = option(16, help="batches that calibrate activation ranges", minimum=1)
    skip_last: bool = option(False, help="keep the output layer in float")
    # 7: no int16 saturation in ORT's u8s8 kernels on non-VNNI x86
    weight_bits: int = option(7, help="weight bits", choices=(7, 8))
    _structure: dict[str, Any] = field(default_factory=dict, repr=False)

    def apply(self, model: nn.Module, ctx: PassContext) -> nn.Module:
        import torch

        if ctx.calib is None:
            raise UsageError("qat needs calibration data (give --calib or use a built-in model)")
        if self.weight_bits not in (7, 8):
            raise UsageError(f"qat: weight_bits is 7 or 8, not {self.weight_bits}")
        folded = fold_batchnorm(model)
        names = [n for n, m in prunable_layers(model) if m.weight.dim() in (2, 4)
                 and getattr(m, "groups", 1) == 1]
        if self.skip_last and names:
            names = names[:-1]
        wrap(model, names, self.weight_bits)
        wrappers = [m for m in model.modules() if isinstance(m, quant_wrapper_class())]
        for w in wrappers:
            w.refresh_weight_scale()
            w.observe(True)
        model.eval()
        with torch.no_grad():
            for i, feeds in enumerate(ctx.calib.batches(ctx.train.batch_size)):
                if i >= self.calib_batches:
                    break
                model(**to_torch(feeds))
        for w in wrappers:
            w.observe(False)
        history = None
        if self.epochs:
            settings = ctx.train.updated(epochs=self.epochs, lr=self.lr,
                                         batch_size=self.batch_size, max_steps=self.max_steps)
            history = fit(model, ctx, settings=settings, desc="quantization-aware training")
        for w in wrappers:
            w.refresh_weight_scale()
        self._structure = {"op": "qat", "fold_bn": folded, "layers": names,
                           "weight_bits": self.weight_bits}
        self.details = {"mode": "qat" if self.epochs else "ptq", "quantized_layers": len(names),
                        "folded_batchnorm": len(folded), "finetune": history,
                        "format": "Q/DQ ONNX: u8 asymmetric activations per tensor, "
                                  f"s8 symmetric weights per channel ({self.weight_bits} bits)"}
        self.notes = [("export with an fp32 target: the Q/DQ graph carries its own INT8 scales; "
                      "an int8 target would quantize it a second time")]
        return model

    def structure(self) -> dict[str, Any] | None:
        return self._structure


def wrap(model: nn.Module, names: list[str], weight_bits: int = 8) -> None:
    from modelport.passes.lowrank import _replace

    cls = quant_wrapper_class()
    modules = dict(model.named_modules())
    for name in names:
        _replace(model, name, cls(modules[name], weight_bits))


def fold_batchnorm(model: nn.Module) -> list[list[str]]:
    """Fold eval-mode BatchNorm2d into the Conv2d right before it (inside nn.Sequential)."""
    import torch
    from torch import nn

    pairs = []
    for parent_name, parent in model.named_modules():
        if not isinstance(parent, nn.Sequential):
            continue
        children = list(parent.named_children())
        for (cname, conv), (bname, bn) in itertools.pairwise(children):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) \
                    and bn.track_running_stats:
                with torch.no_grad():
                    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
                    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.bias)
                    new_bias = (bias - bn.running_mean) * scale + bn.bias
                    conv.bias = nn.Parameter(new_bias.detach().clone())
                parent._modules[bname] = nn.Identity()
                prefix = f"{parent_name}." if parent_name else ""
                pairs.append([prefix + cname, prefix + bname])
    return pairs


def replay(model: nn.Module, record: dict[str, Any]) -> None:
    """Redo BN folding (shapes only; values come from safetensors) and the wrapping."""
    import torch
    from torch import nn

    for conv_name, bn_name in record.get("fold_bn", []):
        conv = model.get_submodule(conv_name)
        if conv.bias is None:
            conv.bias = nn.Parameter(torch.zeros(conv.out_channels))
        from modelport.passes.lowrank import _replace

        _replace(model, bn_name, nn.Identity())
    wrap(model, record["layers"], int(record.get("weight_bits", 8)))
