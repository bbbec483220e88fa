"""TensorRT build recipe, engine cache and the engine build itself (on the device).

A TensorRT engine runs only on the GPU model and TensorRT version that built it, so a bundle
ships the validated ONNX plus this recipe, and the engine is built on the device on first load
(or ahead of time with ``modelport build BUNDLE``). Engines are cached beside the bundle, outside
its checksummed files, under ``<bundle>/engines/<key>.engine`` with a JSON record of what each
was built for; a record that does not match this device, this TensorRT, this ONNX and this
recipe means rebuild, never load.

Everything here but ``build_engine`` and ``device_identity`` is plain Python (tested on CPU).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from modelport.errors import BuildError, UsageError
from modelport.specs import TensorSpec

log = logging.getLogger("modelport")

ENGINES_DIR = "engines"
DEFAULT_WORKSPACE_MIB = 4096
#: min/opt/max for the usual dynamic axis names; anything else: 1 / its bench size / 2x that.
#: batch max 64: `modelport verify` runs a bundle's 64 stored samples in one batch
AXIS_DEFAULTS: dict[str, tuple[int, int, int]] = {
    "batch": (1, 8, 64),
    "seq": (1, 128, 256),
    "sequence": (1, 128, 256),
    "tokens": (1, 128, 256),
}


@dataclass(frozen=True)
class Recipe:
    """What the device needs to build the engine; stored in the manifest (``build.tensorrt``)."""

    precision: str  # fp32 | fp16 | int8: how the ONNX graph itself is typed
    onnx: str  # the file to parse, relative to the bundle
    profiles: dict[str, dict[str, list[int]]]  # input -> {"min": [...], "opt": [...], "max": [...]}
    axes: dict[str, list[int]] = field(default_factory=dict)  # axis name -> [min, opt, max]
    workspace_mib: int = DEFAULT_WORKSPACE_MIB
    strongly_typed: bool = True  # precision comes from the graph's types (TensorRT 11 requires it)
    tf32: bool = False  # fp32 engines keep full FP32 matmuls so they match the reference
    builder_optimization_level: int | None = None
    timing_cache: str | None = None  # a shipped timing cache, relative to the bundle

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Recipe:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


# -- optimization profiles from the target's shape spec --------------------------------------
def parse_axes(text: str | None) -> dict[str, tuple[int, int, int]]:
    """``"batch=1:8:32,seq=16:128:256"`` -> {"batch": (1, 8, 32), "seq": (16, 128, 256)}."""
    out: dict[str, tuple[int, int, int]] = {}
    if not text:
        return out
    for part in text.split(","):
        name, _, spec = part.strip().partition("=")
        values = spec.split(":")
        try:
            mn, opt, mx = (int(v) for v in values)
        except ValueError:
            raise UsageError(f"--trt-profile takes AXIS=MIN:OPT:MAX[,...] like "
                             f"batch=1:8:32,seq=16:128:256; got '{part.strip()}'") from None
        if not name or not 1 <= mn <= opt <= mx:
            raise UsageError(f"--trt-profile '{part.strip()}': need 1 <= MIN <= OPT <= MAX")
        out[name.strip()] = (mn, opt, mx)
    return out


def make_profiles(
    inputs: list[TensorSpec],
    *,
    bench_dims: Mapping[str, int] | None = None,
    overrides: Mapping[str, tuple[int, int, int]] | None = None,
) -> tuple[dict[str, dict[str, list[int]]], dict[str, list[int]]]:
    """One optimization profile: min/opt/max for every input, one range per named axis.

    Axes with one name (``batch`` on every input) get one range, so inputs stay consistent.
    """
    bench_dims = dict(bench_dims or {})
    overrides = dict(overrides or {})
    names = {d for s in inputs for d in s.shape if isinstance(d, str)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise UsageError(f"--trt-profile names axis {unknown[0]!r}, but the model's dynamic "
                         f"axes are {sorted(names) or 'none'}")
    axes: dict[str, list[int]] = {}
    for name in sorted(names):
        if name in overrides:
            rng = overrides[name]
        elif name in AXIS_DEFAULTS:
            mn, opt, mx = AXIS_DEFAULTS[name]
            if name in bench_dims:  # the benchmark shape is what the engine is tuned for
                opt = bench_dims[name]
                mx = max(mx, opt)
            rng = (mn, opt, mx)
        else:
            opt = int(bench_dims.get(name, 64))
            rng = (1, opt, 2 * opt)
        axes[name] = list(rng)
    profiles = {}
    for spec in inputs:
        profile = {"min": [], "opt": [], "max": []}
        for dim in spec.shape:
            for i, key in enumerate(("min", "opt", "max")):
                profile[key].append(axes[dim][i] if isinstance(dim, str) else int(dim))
        profiles[spec.name] = profile
    return profiles, axes


def check_in_profile(recipe: Recipe, shapes: Mapping[str, tuple[int, ...]]) -> str | None:
    """The reason a feed's shapes fall outside the engine's profile, or None."""
    for name, shape in shapes.items():
        profile = recipe.profiles.get(name)
        if profile is None:
            continue
        for axis, size in enumerate(shape):
            lo, hi = profile["min"][axis], profile["max"][axis]
            if not lo <= size <= hi:
                axis_name = next((a for a, r in recipe.axes.items()
                                  if r[0] == lo and r[2] == hi), f"axis {axis}")
                return (f"input '{name}' dimension {axis} ({axis_name}) is {size}, outside the "
                        f"engine's optimization profile [{lo}, {hi}]; export again with "
                        f"--trt-profile {axis_name}=MIN:OPT:MAX covering it")
    return None


# -- engine cache: key, record, decision ------------------------------------------------------
@dataclass(frozen=True)
class DeviceIdentity:
    """What a TensorRT engine is tied to."""

    gpu_name: str
    compute_capability: str  # "8.6"
    tensorrt_version: str

    def key(self, onnx_sha256: str, recipe_sha256: str) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.gpu_name.lower()).strip("-")
        digest = hashlib.sha256(f"{onnx_sha256}|{recipe_sha256}".encode()).hexdigest()[:12]
        return f"{slug}-sm{self.compute_capability.replace('.', '')}-trt{self.tensorrt_version}-{digest}"


def engine_paths(root: Path, key: str) -> tuple[Path, Path]:
    folder = root / ENGINES_DIR
    return folder / f"{key}.engine", folder / f"{key}.json"


def cache_decision(record: Mapping[str, Any] | None, engine: Path, *, device: DeviceIdentity,
                   onnx_sha256: str, recipe_sha256: str) -> tuple[bool, str]:
    """(reuse?, why): an engine is loaded only if every fact it was built for matches."""
    if record is None or not engine.is_file():
        return False, "no cached engine for this device"
    wanted = {"gpu_name": device.gpu_name, "compute_capability": device.compute_capability,
              "tensorrt_version": device.tensorrt_version, "onnx_sha256": onnx_sha256,
              "recipe_sha256": recipe_sha256}
    for key, value in wanted.items():
        if record.get(key) != value:
            return False, f"cached engine was built for {key}={record.get(key)!r}, this is {value!r}"
    if record.get("engine_sha256") != _sha256(engine):
        return False, "cached engine file does not match its record (modified or truncated)"
    return True, f"reusing engine built {record.get('built_at', '?')}"


def adopt_engine(src_root: Path, dst_root: Path, key: str, *, device: DeviceIdentity,
                 onnx_sha256: str, recipe_sha256: str) -> tuple[Path, dict[str, Any]] | None:
    """Copy the engine ``key`` (and its record) from ``src_root/engines`` into
    ``dst_root/engines`` when it is reusable here; None when it is not (nothing copied).

    Export builds the engine once to check fidelity on the GPU; its working folder is
    temporary, so the engine waits in the host cache and the bundle adopts it on first load
    instead of building it again.
    """
    src_engine, src_record = engine_paths(src_root, key)
    record = read_record(src_record)
    reuse, _ = cache_decision(record, src_engine, device=device, onnx_sha256=onnx_sha256,
                              recipe_sha256=recipe_sha256)
    if not reuse or record is None:
        return None
    dst_engine, dst_record = engine_paths(dst_root, key)
    if dst_engine.resolve() == src_engine.resolve():
        return src_engine, record
    kept = {k: v for k, v in record.items() if k not in ("engine_sha256", "engine_bytes")}
    write_engine(dst_engine, dst_record, src_engine.read_bytes(),
                 {**kept, "adopted_from": str(src_engine)})
    return dst_engine, read_record(dst_record) or record


def read_record(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_engine(engine_path: Path, record_path: Path, data: bytes, record: dict[str, Any]) -> None:
    """Engine first, record last, both atomically: a record always describes a whole engine."""
    from modelport.io import write_json_atomic

    engine_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = engine_path.with_name(f".{engine_path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(engine_path)
    record = {**record, "engine_sha256": hashlib.sha256(data).hexdigest(),
              "engine_bytes": len(data)}
    write_json_atomic(record_path, record)


def _sha256(path: Path) -> str:
    from modelport.io import sha256_file

    return sha256_file(path)


# -- on the device (tensorrt and a CUDA GPU) --------------------------------------------------
_LOGGER: Any = None


def trt_logger() -> Any:
    """The process's one TensorRT logger: TensorRT keeps a global logger and warns when
    builders and runtimes are made with different ones."""
    global _LOGGER
    if _LOGGER is None:
        import tensorrt as trt

        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


def device_identity() -> DeviceIdentity:
    """This GPU and this TensorRT (needs torch with CUDA and tensorrt)."""
    import tensorrt as trt
    import torch

    index = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(index)
    return DeviceIdentity(torch.cuda.get_device_name(index), f"{major}.{minor}", trt.__version__)


def ensure_engine(root: Path, recipe: Recipe, *, onnx_sha256: str, rebuild: bool = False,
                  work_root: Path | None = None, adopt_from: Path | None = None
                  ) -> tuple[Path, dict[str, Any], bool]:
    """The engine for this device: reused from ``root/engines``, adopted from ``adopt_from``
    (the host cache export built it into) or built now.

    ``work_root`` is where engines are written (defaults to ``root``; a read-only bundle can
    cache elsewhere). Returns (engine path, record, built_now).
    """
    device = device_identity()
    target_root = work_root or root
    key = device.key(onnx_sha256, recipe.sha256())
    engine, record_path = engine_paths(target_root, key)
    record = read_record(record_path)
    reuse, why = cache_decision(record, engine, device=device, onnx_sha256=onnx_sha256,
                                recipe_sha256=recipe.sha256())
    if reuse and not rebuild:
        log.info("TensorRT: %s", why)
        return engine, record or {}, False
    if adopt_from is not None and not rebuild:
        adopted = adopt_engine(adopt_from, target_root, key, device=device,
                               onnx_sha256=onnx_sha256, recipe_sha256=recipe.sha256())
        if adopted is not None:
            log.info("TensorRT: reusing the engine built during export (%s)", adopted[0])
            return adopted[0], adopted[1], False
    log.info("TensorRT: building the engine on %s (%s) ...", device.gpu_name, why)
    timing = target_root / ENGINES_DIR / f"timing-{key.rsplit('-', 1)[0]}.cache"
    if not timing.exists() and recipe.timing_cache and (root / recipe.timing_cache).is_file():
        timing = root / recipe.timing_cache
    start = time.perf_counter()
    data = build_engine(root / recipe.onnx, recipe, timing_cache=timing,
                        timing_cache_out=target_root / ENGINES_DIR / timing.name)
    record = {**asdict(device), "onnx_sha256": onnx_sha256, "recipe_sha256": recipe.sha256(),
              "recipe": recipe.to_dict(), "key": key, "build_s": time.perf_counter() - start,
              "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    write_engine(engine, record_path, data, record)
    return engine, read_record(record_path) or record, True


def build_engine(onnx_path: Path, recipe: Recipe, *, timing_cache: Path | None = None,
                 timing_cache_out: Path | None = None) -> bytes:
    """Parse the ONNX, configure the builder from the recipe, return the serialized engine."""
    import tensorrt as trt

    logger = trt_logger()
    builder = trt.Builder(logger)
    flags = 0
    if recipe.strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        # opt-in on TensorRT 10.x, always on (flag accepted) on 11.x
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # resolves <name>.onnx.data beside it
        raise BuildError(f"TensorRT cannot parse {onnx_path.name}: {parser_errors(parser)}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, recipe.workspace_mib << 20)
    if not recipe.tf32 and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    if recipe.builder_optimization_level is not None:
        config.builder_optimization_level = recipe.builder_optimization_level
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shapes = recipe.profiles.get(tensor.name)
        if shapes is None:
            raise BuildError(f"the recipe has no optimization profile for input '{tensor.name}'")
        profile.set_shape(tensor.name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    if (cache is None or not config.set_timing_cache(cache, ignore_mismatch=False)) and cache_bytes:
        # a cache from another TensorRT or GPU is refused; an empty one only costs build time
        log.warning("TensorRT refused the timing cache %s; building without it", timing_cache)
        cache = config.create_timing_cache(b"")
        if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
            raise BuildError("TensorRT could not attach an empty timing cache to the builder "
                             "config; see the TensorRT log above")
    elif cache is None:
        raise BuildError("TensorRT could not create a timing cache; see the TensorRT log above")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError(f"TensorRT failed to build an engine from {onnx_path.name} "
                         f"({recipe.precision}); see the TensorRT log above")
    if timing_cache_out is not None:
        timing_cache_out.parent.mkdir(parents=True, exist_ok=True)
        timing_cache_out.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def parser_errors(parser) -> str:
    """One line per ONNX parser error: which node, which op, what went wrong."""
    lines = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        where = []
        for label, method in (("node", "node_name"), ("op", "node_operator")):
            value = getattr(err, method, None)
            value = value() if callable(value) else value
            if value:
                where.append(f"{label} '{value}'")
        index = err.node() if callable(getattr(err, "node", None)) else -1
        if not where and index is not None and index >= 0:
            where.append(f"node #{index}")
        lines.append(f"{', '.join(where) or 'graph'}: {err.desc()}")
    return "; ".join(lines) or "no parser error reported"
