"""OpenVINO: the validated ONNX converted to IR (.xml + .bin), FP32 / FP16 / INT8 (NNCF).

Precision is what the target says, set explicitly: the CPU plugin's default inference precision
on a CPU with AVX512_BF16 / AMX is bf16, so an "fp32" IR left alone runs in bf16 (~1e-3 error
on MiniLM instead of ~1e-6). Every target therefore sets INFERENCE_PRECISION_HINT, records it in
the manifest (``build.inference_precision_hint``) and re-applies it when the bundle is loaded.

Per target (PRECISION_POLICY):
- fp32: weights stored f32 (``save_model`` compresses to f16 by default: turned off), hint f32.
- fp16: weights stored f16 (half the file), hint f16. The plugin may run another precision where
  the CPU has no FP16 arithmetic (AVX512_FP16 / AMX-FP16): on AMD Zen 4 it runs bf16. The
  effective precision the plugin chose is recorded next to the hint, never hidden.
- bf16: weights stored f32, hint bf16: the plugin runs matrix products in bf16 on AVX512_BF16
  and AMX. Built only for a CPU with bf16 arithmetic (backends/cpu_kinds.py; this machine's
  features or ``--cpu-features``), refused with the reason otherwise. MiniLM: 1.5-1.9x the
  f32 build at cosine 0.99999 on a Zen 5 (avx512-vnni-bf16), 2.8x on an AMX Xeon
  (docs/performance.md).
- int8: NNCF-quantized IR (see quantize.py), hint f32 for the layers left in float: bf16 for
  them moved MiniLM INT8 by 0.87x-1.43x on the Zen 5, inside that machine's noise (the recipe
  search tries it per machine). The form follows the CPU recipe
  (backends/cpu_recipes.py): weights and activations in int8 on a VNNI CPU; for attention
  graphs on a CPU without VNNI, int8 weights with float activations.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelport.backends.base import (
    Artifact,
    Availability,
    Backend,
    BuildOptions,
    Session,
    check_feeds,
    has_module,
    require,
)
from modelport.backends.openvino.options import OpenVINOOptions
from modelport.errors import BuildError, UsageError
from modelport.specs import WEIGHT_ONLY, Precision, Target, TensorSpec

log = logging.getLogger("modelport")

#: steps of the CNN INT8 recipe's ``auto`` left to NNCF, which has its own bias correction: ours
#: before it lowered the INT8 cosine on every CNN measured (docs/cnn-int8.md; digits 0.9964 ->
#: 0.9958, widened ReLU6 CNN 0.999995 -> 0.99994), equalization alone did not
NNCF_DOES = ("bias-correct",)

HINTS = ("f32", "f16", "bf16")


@dataclass(frozen=True)
class PrecisionPolicy:
    weights_fp16: bool  # ov.save_model(compress_to_fp16=...)
    hint: str  # INFERENCE_PRECISION_HINT


PRECISION_POLICY: dict[Precision, PrecisionPolicy] = {
    Precision.FP32: PrecisionPolicy(weights_fp16=False, hint="f32"),
    Precision.FP16: PrecisionPolicy(weights_fp16=True, hint="f16"),
    Precision.BF16: PrecisionPolicy(weights_fp16=False, hint="bf16"),
    Precision.INT8: PrecisionPolicy(weights_fp16=False, hint="f32"),
    # weight-only (weight_only.py): compressed weights, f32 activations
    Precision.INT4: PrecisionPolicy(weights_fp16=False, hint="f32"),
    Precision.INT8WO: PrecisionPolicy(weights_fp16=False, hint="f32"),
}

def ov_device(target: Target) -> str:
    """modelport's device name -> OpenVINO's (cpu -> CPU; gpu / npu passed through)."""
    return target.device.upper()


class OpenVINOBackend(Backend):
    name = "openvino"
    extra = "openvino"
    Options = OpenVINOOptions
    budget_hint = "try --accuracy-control, or more --calib data"

    @classmethod
    def availability(cls, target: Target) -> Availability:
        """Building: openvino, and nncf for INT8."""
        if target.precision in (Precision.INT8, *WEIGHT_ONLY) and not has_module("nncf"):
            return Availability.missing(f'{target.precision} needs nncf: pip install '
                                        '"modelport[openvino]"')
        return cls._installed(target)  # bf16: build_refusal checks the CPU built for

    @classmethod
    def build_refusal(cls, target: Target, cpu_features: Sequence[str] | None) -> str | None:
        from modelport.backends.cpu_kinds import refuse_bf16

        return refuse_bf16(target, cpu_features)

    @classmethod
    def runnable(cls, target: Target) -> Availability:
        """Running a bundle: openvino alone (no nncf, no torch), the device, and bf16
        arithmetic for a bf16 CPU target."""
        from modelport.backends.cpu_kinds import runnable_here

        return runnable_here(target, cls._installed(target))

    @classmethod
    def _installed(cls, target: Target) -> Availability:
        if not has_module("openvino"):
            return Availability.missing('openvino not installed: pip install "modelport[openvino]"')
        if target.precision not in PRECISION_POLICY:
            return Availability.unsupported(f"no {target.precision} for OpenVINO here")
        if target.device == "cpu":
            return Availability.yes()
        import openvino as ov

        devices = ov.Core().available_devices
        if not any(d.split(".")[0] == ov_device(target) for d in devices):
            return Availability.no_device(f"no OpenVINO {ov_device(target)} device here "
                                       f"(available: {', '.join(devices)})")
        return Availability.yes()

    @classmethod
    def runtime_version(cls) -> str:
        return importlib.metadata.version("openvino")

    def build(self, model, target: Target, calib, workdir: Path, options: BuildOptions) -> Artifact:
        """The IR for ``target``; with ``--shape``, static at those shapes (reshaped at load:
        backends/static_shapes.py)."""
        from modelport.backends import static_shapes

        fixed = static_shapes.requested(model, options.of(self))  # a bad --shape: before work
        artifact = self._build(model, target, calib, workdir, options)
        return static_shapes.specialize_artifact(artifact, model, static_shapes.as_setting(
            fixed)) if fixed else artifact

    def _build(self, model, target: Target, calib, workdir: Path, options: BuildOptions
               ) -> Artifact:
        require("openvino", extra=self.extra, what="building OpenVINO IR")
        import openvino as ov

        policy = PRECISION_POLICY[target.precision]
        opts = options.of(self)
        hint = _check_hint(opts.inference_precision or policy.hint)
        onnx_path: Path = model.onnx_artifact.path
        from modelport.graph_prep.recipe import int8_graph

        # the CNN recipe before NNCF (an inline ONNX: the converted model does not read it later)
        with int8_graph(onnx_path, calib, options.cnn_recipe, skip=NNCF_DOES,
                        when=target.precision == Precision.INT8
                        and opts.int8_scope != "weights-only") as (src, prep):
            try:
                ov_model = ov.convert_model(str(src))
            except Exception as exc:  # noqa: BLE001 - the converter's error, said in one line
                raise BuildError(f"OpenVINO cannot convert {onnx_path.name}: {_first_line(exc)}; "
                                 "try another --opset or --simplify") from None
        info: dict[str, Any] = {"precision": str(target.precision), "device": ov_device(target),
                                "converter": f"openvino.convert_model {self.runtime_version()}",
                                **prep}
        if target.precision == Precision.INT8:
            require("nncf", extra=self.extra, what="OpenVINO INT8")
            from modelport.backends.cpu_recipes import apply_recipe
            from modelport.backends.openvino.quantize import has_attention, quantize_int8

            opts, cpu = apply_recipe(self.name, opts, options.cpu_features,
                                     attention=has_attention(ov_model))
            ov_model, qinfo = quantize_int8(ov_model, calib, model, opts, device=info["device"],
                                          budget=options.budget_or_default())
            info.update(qinfo, **cpu)
        elif target.precision == Precision.BF16:
            from modelport.backends.cpu_kinds import bf16_assumed

            info.update(bf16_assumed(options.cpu_features))
        elif target.precision in WEIGHT_ONLY:
            from modelport.backends.openvino.weight_only import compress_weights

            ov_model, qinfo = compress_weights(ov_model, target.precision, calib, opts)
            info.update(qinfo)
        ov.save_model(ov_model, str(workdir / "model.xml"), compress_to_fp16=policy.weights_fp16)
        effective = effective_precision(workdir / "model.xml", info["device"], hint,
                                        threads=options.threads)
        weights = {Precision.INT8: "int8+f32", Precision.INT4: "int4+int8",
                   Precision.INT8WO: "int8"}.get(target.precision, "f32")
        info.update(weights="f16" if policy.weights_fp16 else weights,
                    inference_precision_hint=hint, inference_precision_effective=effective)
        if effective != hint:
            log.info("%s: the %s plugin runs inference precision %s here (asked for %s: this "
                     "device has no native %s arithmetic)", target, info["device"], effective,
                     hint, hint)
        return Artifact(workdir, "model.xml", ["model.xml", "model.bin"], info,
                        session_options={"inference_precision": hint})

    def load(self, path: Path, *, target: Target, inputs: list[TensorSpec],
             outputs: list[TensorSpec], threads: int | None = None, **options: Any) -> Session:
        require("openvino", extra=self.extra, what="OpenVINO")
        hint = options.get("inference_precision")
        bundle = options.get("bundle")
        if hint is None and bundle is not None:
            hint = (bundle.manifest.get("build") or {}).get("inference_precision_hint")
        if hint is None:
            hint = PRECISION_POLICY[target.precision].hint
        from modelport.backends.runtime_settings import runtime_settings

        saved = runtime_settings(options)  # what --optimize chose, re-applied
        return OpenVINOSession(path, inputs, outputs, device=ov_device(target),
                               inference_precision=_check_hint(hint),
                               threads=threads or saved.get("threads"),
                               streams=options.get("streams", saved.get("streams")),
                               shapes=saved.get("shapes"), specialize=saved.get("specialize"),
                               fast_path_precision=saved.get("fast_path_precision"))


class OpenVINOSession(Session):
    """Sync infer for latency; a pool of ``requests`` async infer requests for throughput.

    ``streams=None`` compiles with the LATENCY hint (one stream); ``streams=0`` with the
    THROUGHPUT hint (the plugin picks streams); ``streams=N`` with THROUGHPUT and N streams.
    """

    def __init__(self, path: Path, inputs: list[TensorSpec], outputs: list[TensorSpec], *,
                 device: str = "CPU", inference_precision: str = "f32",
                 threads: int | None = None, streams: int | None = None,
                 shapes: Mapping[str, Any] | None = None,
                 specialize: Mapping[str, Any] | None = None,
                 fast_path_precision: Sequence[str | None] | None = None) -> None:
        import openvino as ov

        from modelport.backends.static_shapes import (
            reshaped_ov_model,
            specialized_shapes,
            static_inputs,
        )

        super().__init__(static_inputs(inputs, shapes), outputs)
        self.threads = threads
        self.streams = streams
        #: --shape: input name -> dims, the IR reshaped to them before compiling (None: dynamic)
        self.static_shapes = dict(shapes) if shapes else None
        self._compiled = ov.Core().compile_model(
            reshaped_ov_model(path, shapes) if shapes else str(path), device,
            compile_config(inference_precision, threads=threads, streams=streams)
        )
        self.inference_precision = _type_name(
            self._compiled.get_property("INFERENCE_PRECISION_HINT"))
        self.requests = int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")) \
            if streams is not None else 1
        self._request = self._compiled.create_infer_request()
        self._ports = {name: self._compiled.output(name) for name in self.outputs}
        self._pool: list | None = None  # async infer requests, made on first use
        #: static fast paths (runtime setting ``specialize``, one shape or a list): feeds of
        #: exactly those dims run a copy compiled static, any other shape the dynamic model above
        self.specialized = specialized_shapes(specialize) if specialize and not shapes else None
        self._fast = None
        if self.specialized:
            from modelport.backends.openvino.fast_path import FastPath

            self._fast = FastPath(path, self.specialized, device, compile_config(
                inference_precision, threads=threads), list(self.outputs),
                hints=[_check_hint(h) if h else None for h in fast_path_precision or ()])

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._fast is not None and self._fast.takes(feeds):
            return self._fast.infer(feeds)
        result = self._request.infer(dict(feeds))  # copies outputs (share_outputs=False)
        return {name: result[port] for name, port in self._ports.items()}

    def infer_pipelined(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[int]:
        """Keep ``requests`` async infer requests busy, round robin; latency per request as the
        runtime measured it (InferRequest.latency, what benchmark_app reports).

        No Python completion callback (AsyncInferQueue.set_callback): a callback makes the
        runtime's stream threads take the GIL, and freeing the compiled model then deadlocked
        (the destructor joins those threads while Python holds the GIL)."""
        for feed in feeds:
            check_feeds(self.inputs, feed)
        if self._pool is None:
            self._pool = [self._compiled.create_infer_request() for _ in range(self.requests)]
        latencies: list[int] = []
        busy = [False] * len(self._pool)
        for index, feed in enumerate(feeds):
            slot = index % len(self._pool)
            request = self._pool[slot]
            if busy[slot]:
                request.wait()
                latencies.append(int(request.latency * 1e6))
            request.start_async(dict(feed))
            busy[slot] = True
        for slot, request in enumerate(self._pool):
            if busy[slot]:
                request.wait()
                latencies.append(int(request.latency * 1e6))
        return latencies

    def close(self) -> None:
        for request in self._pool or []:
            request.wait()
        self._pool = self._request = self._compiled = None
        self._ports = {}
        if self._fast is not None:
            self._fast.close()
            self._fast = None


def compile_config(hint: str, *, threads: int | None = None,
                   streams: int | None = None) -> dict[str, Any]:
    """The CPU plugin settings modelport uses; bench/ passes the same ones to benchmark_app."""
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": hint,
                              "PERFORMANCE_HINT": "LATENCY" if streams is None else "THROUGHPUT"}
    if streams:
        config["NUM_STREAMS"] = int(streams)
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return config


def effective_precision(xml: Path, device: str, hint: str, *, threads: int | None = None) -> str:
    """The inference precision the plugin really uses for ``hint`` (it falls back silently)."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(xml), device, compile_config(hint, threads=threads))
    return _type_name(compiled.get_property("INFERENCE_PRECISION_HINT"))


def _type_name(value: Any) -> str:
    """openvino Type (f32 / bf16 / f16) -> its short name."""
    name = getattr(value, "to_string", lambda: str(value))()
    return {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}.get(name, name)


def _check_hint(hint: Any) -> str:
    if hint not in HINTS:
        raise UsageError(f"unknown OpenVINO inference precision '{hint}': use one of "
                         f"{', '.join(HINTS)}")
    return str(hint)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
