"""``modelport triton-repo``: bundles laid out as a Triton Inference Server model repository.

Each bundle is copied whole into ``<repo>/<name>/1/`` (so ``modelport verify <repo>/<name>/1``
still passes) and ``<repo>/<name>/config.pbtxt`` names its artifact with
``default_model_filename``. Which Triton backend runs a bundle is looked up by the bundle's
runtime in ``BACKENDS``; a runtime Triton cannot run is refused with the reason before anything
is written. The config is written as protobuf text by hand (no protobuf at run time); the tests
parse it with Triton's own ``model_config.proto``.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelport.errors import BundleError, UsageError

#: numpy dtype name -> Triton's DataType (model_config.proto)
TRITON_DTYPES = {
    "bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16",
    "uint32": "TYPE_UINT32", "uint64": "TYPE_UINT64", "int8": "TYPE_INT8", "int16": "TYPE_INT16",
    "int32": "TYPE_INT32", "int64": "TYPE_INT64", "float16": "TYPE_FP16", "float32": "TYPE_FP32",
    "float64": "TYPE_FP64", "bfloat16": "TYPE_BF16", "str": "TYPE_STRING", "object": "TYPE_STRING",
}
#: where a bundle's device runs an instance (Triton's instance_group kind)
INSTANCE_KINDS = {"cpu": "KIND_CPU", "cuda": "KIND_GPU"}
#: Triton model names: one folder name, and a URL path segment in the V2 protocol
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class RepoOptions:
    """How every model in the repository is configured (the CLI's flags)."""

    max_batch: int = 32  # Triton's max_batch_size where the bundle has a batch axis
    dynamic_batching: bool = True
    max_batch_delay_ms: float = 2.0  # dynamic_batching.max_queue_delay_microseconds / 1000
    instances: int = 1  # instance_group count


@dataclass
class ModelPlan:
    """One model of the repository, decided before anything is written."""

    name: str
    bundle: Any  # an opened modelport Bundle
    backend: dict[str, str]  # {"backend": ...} or {"platform": ...}
    model_file: str
    extra: dict[str, Any] = field(default_factory=dict)  # cc_model_filenames (TensorRT)
    note: str = ""


def served_name(manifest: Mapping[str, Any]) -> str:
    """``<model name>-<target>`` with the target as its folder slug (``:`` is not a safe
    character in a folder or URL segment): ``digits-cnn-onnxruntime-cpu-fp32``."""
    from modelport.specs import Target

    model = str((manifest.get("model") or {}).get("name") or "model")
    model = re.sub(r"[^A-Za-z0-9_.-]+", "-", model).strip("-.") or "model"
    return f"{model}-{Target.parse(manifest['target']).slug}"


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise UsageError(f"model name '{name}' is not usable in a Triton repository: use letters, "
                         "digits, '_', '.' and '-' (at most 128, not starting with '.' or '-')")
    return name


# -- backends: the bundle's runtime -> how Triton runs it ---------------------------------------
def _plain(backend: str) -> Callable[[Any], tuple[dict[str, str], str, dict[str, Any], str]]:
    def plan(bundle: Any) -> tuple[dict[str, str], str, dict[str, Any], str]:
        return {"backend": backend}, bundle.manifest["artifact"]["file"], {}, ""
    return plan


def _openvino(bundle: Any) -> tuple[dict[str, str], str, dict[str, Any], str]:
    hint = (bundle.manifest.get("build") or {}).get("inference_precision_hint")
    note = (f"the bundle runs with OpenVINO's {hint} precision hint; Triton's openvino backend "
            "compiles with OpenVINO's default (bf16 on CPUs with AMX/AVX512-BF16), so its "
            "numbers can differ from `modelport verify`'s") if hint else ""
    return {"backend": "openvino"}, bundle.manifest["artifact"]["file"], {}, note


def _refuse(reason: str) -> Callable[[Any], Any]:
    def plan(bundle: Any) -> Any:
        raise UsageError(f"{bundle.path}: {bundle.manifest['target']} cannot go into a Triton "
                         f"repository: {reason}")
    return plan


def _tensorrt(bundle: Any) -> tuple[dict[str, str], str, dict[str, Any], str]:
    """The engines ``modelport build`` made for this bundle's ONNX and recipe; one per compute
    capability goes into ``cc_model_filenames`` (the newest, where one GPU kind has several)."""
    from modelport.backends.tensorrt.engine import ENGINES_DIR, Recipe, read_record
    from modelport.io import sha256_file

    data = (bundle.manifest.get("build") or {}).get("tensorrt")
    if not data:
        raise BundleError(f"{bundle.path}: no TensorRT build recipe in the manifest "
                          "(build.tensorrt); re-export the bundle")
    recipe = Recipe.from_dict(data)
    onnx_sha = bundle.manifest["files"].get(recipe.onnx)
    newest: dict[str, dict[str, Any]] = {}
    for record_path in sorted((bundle.path / ENGINES_DIR).glob("*.json")):
        record = read_record(record_path)
        engine = record_path.with_suffix(".engine")
        if (not record or record.get("onnx_sha256") != onnx_sha
                or record.get("recipe_sha256") != recipe.sha256() or not engine.is_file()
                or record.get("engine_sha256") != sha256_file(engine)):
            continue  # another ONNX or recipe, or a damaged engine: Triton must not load it
        cc = str(record.get("compute_capability"))
        if cc not in newest or str(record.get("built_at", "")) > str(newest[cc].get("built_at", "")):
            newest[cc] = {**record, "file": f"{ENGINES_DIR}/{engine.name}"}
    if not newest:
        raise UsageError(
            f"{bundle.path}: a TensorRT bundle holds the ONNX and the build recipe, not an engine:"
            " run `modelport build BUNDLE` on the GPU Triton will use (with Triton's TensorRT "
            "version), then make the repository")
    latest = max(newest.values(), key=lambda r: str(r.get("built_at", "")))
    engines = ", ".join(f"{r['gpu_name']} (sm {cc}, TensorRT {r['tensorrt_version']})"
                        for cc, r in sorted(newest.items()))
    note = f"engines for {engines}: Triton's TensorRT must be the version that built them"
    return ({"platform": "tensorrt_plan"}, latest["file"],
            {"cc_model_filenames": {cc: r["file"] for cc, r in sorted(newest.items())}}, note)


BACKENDS: dict[str, Callable[[Any], tuple[dict[str, str], str, dict[str, Any], str]]] = {
    "onnxruntime": _plain("onnxruntime"),
    "openvino": _openvino,
    "tensorrt": _tensorrt,
    "tflite": _refuse("Triton has no TFLite backend; serve it with `modelport serve`, or export "
                      "an onnxruntime or openvino target for Triton"),
}


def plan_model(bundle: Any, name: str | None = None) -> ModelPlan:
    runtime = bundle.target.runtime
    if bundle.manifest.get("artifacts"):
        raise UsageError(f"{bundle.path}: a multi-graph bundle needs a Triton ensemble, which "
                         "triton-repo does not write; serve it with `modelport serve`")
    planner = BACKENDS.get(runtime) or _refuse(f"Triton has no backend for {runtime} artifacts")
    backend, model_file, extra, note = planner(bundle)
    return ModelPlan(check_name(name or served_name(bundle.manifest)), bundle, backend,
                     model_file, extra, note)


# -- config.pbtxt -------------------------------------------------------------------------------
def batch_axis(bundle: Any) -> str | None:
    """The dynamic axis every input and output leads with (Triton's implicit batch), or None."""
    specs = [*bundle.inputs, *bundle.outputs]
    firsts = {s.shape[0] if s.shape else None for s in specs}
    if len(firsts) == 1:
        (first,) = firsts
        return first if isinstance(first, str) else None
    return None


def max_batch_size(bundle: Any, options: RepoOptions) -> int:
    axis = batch_axis(bundle)
    if axis is None:
        return 0
    data = (bundle.manifest.get("build") or {}).get("tensorrt")
    if data and axis in (data.get("axes") or {}):  # an engine takes no more than its profile
        return min(options.max_batch, int(data["axes"][axis][2]))
    return options.max_batch


def config_text(plan: ModelPlan, options: RepoOptions) -> str:
    bundle = plan.bundle
    mbs = max_batch_size(bundle, options)
    origin = f"{bundle.manifest['target']} bundle '{bundle.path.name}'"
    lines = [f"# written by modelport triton-repo from {origin}", f"name: {_quote(plan.name)}"]
    lines += [f"{key}: {_quote(value)}" for key, value in plan.backend.items()]
    lines += [f"default_model_filename: {_quote(plan.model_file)}", f"max_batch_size: {mbs}"]
    for cc, file in (plan.extra.get("cc_model_filenames") or {}).items():
        lines.append(f"cc_model_filenames {{ key: {_quote(cc)} value: {_quote(file)} }}")
    for section, specs in (("input", bundle.inputs), ("output", bundle.outputs)):
        lines.append(f"{section} [")
        lines.append(",\n".join(_tensor(spec, batched=mbs > 0) for spec in specs))
        lines.append("]")
    if mbs > 0 and options.dynamic_batching:
        delay = round(options.max_batch_delay_ms * 1000)
        lines.append(f"dynamic_batching {{\n  max_queue_delay_microseconds: {delay}\n}}")
    kind = INSTANCE_KINDS.get(bundle.target.device, "KIND_AUTO")
    lines.append(f"instance_group [\n  {{\n    count: {options.instances}\n    kind: {kind}\n  }}\n]")
    return "\n".join(lines) + "\n"


def _tensor(spec: Any, *, batched: bool) -> str:
    dtype = TRITON_DTYPES.get(spec.dtype)
    if dtype is None:
        raise UsageError(f"tensor '{spec.name}' has dtype {spec.dtype}, which Triton has no "
                         "type for")
    shape = spec.shape[1:] if batched else spec.shape
    dims = [d if isinstance(d, int) else -1 for d in shape]
    body = [f"name: {_quote(spec.name)}", f"data_type: {dtype}"]
    if not dims:  # a [batch] tensor: Triton wants one dim per request, reshaped away
        body += ["dims: [ 1 ]", "reshape: { shape: [ ] }"]
    else:
        body.append(f"dims: [ {', '.join(str(d) for d in dims)} ]")
    return "  {\n" + "".join(f"    {b}\n" for b in body) + "  }"


def _quote(text: str) -> str:
    """A protobuf text-format string literal."""
    out = []
    for ch in str(text):
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif 32 <= ord(ch) < 127:
            out.append(ch)
        else:
            out.extend(f"\\{b:03o}" for b in ch.encode())
    return '"' + "".join(out) + '"'


# -- writing -------------------------------------------------------------------------------------
def write_repo(bundles: list[tuple[str | Path, str | None]], out: str | Path, *,
               options: RepoOptions | None = None, force: bool = False) -> list[ModelPlan]:
    """Plan every model (refusals first, nothing written), then publish each model folder by
    renaming a filled temp dir into place; a new repository is published whole."""
    from modelport.bundle import open_bundle
    from modelport.io import publish_dir

    options = options or RepoOptions()
    if options.max_batch < 1 or options.instances < 1 or options.max_batch_delay_ms < 0:
        raise UsageError("--max-batch and --instances must be at least 1, --max-batch-delay-ms "
                         "at least 0")
    if not bundles:
        raise UsageError("give at least one BUNDLE (or --name NAME=BUNDLE)")
    plans = [plan_model(open_bundle(path), name) for path, name in bundles]
    seen: dict[str, Any] = {}
    for plan in plans:
        if plan.name in seen:
            raise UsageError(f"two bundles would both be served as '{plan.name}' "
                             f"({seen[plan.name]} and {plan.bundle.path}): name one with "
                             "--name NAME=BUNDLE")
        seen[plan.name] = plan.bundle.path
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out '{out}' is a file, not a folder")
    if not out.exists():
        publish_dir(lambda tmp: [_fill(plan, tmp / plan.name, options) for plan in plans], out)
        return plans
    taken = [p.name for p in plans if (out / p.name).exists()]
    if taken and not force:
        raise UsageError(f"'{out / taken[0]}' exists already: pass --force to replace it")
    for plan in plans:
        publish_dir(lambda tmp, plan=plan: _fill(plan, tmp, options), out / plan.name, force=force)
    return plans


def _fill(plan: ModelPlan, folder: Path, options: RepoOptions) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text = config_text(plan, options)
    shutil.copytree(plan.bundle.path, folder / "1", symlinks=True)
    (folder / "config.pbtxt").write_text(text, encoding="utf-8")
