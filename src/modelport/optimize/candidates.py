"""The shape of a candidate: a build recipe (backend options, or a peer tool's own call) and the
runtime settings its session is loaded with; and which module proposes them per backend.

A backend takes part in the search by one line in ``PROPOSERS`` (name -> "module:function",
imported when used); the function returns the build recipes of stage 1 and the runtime
settings of stage 2 for a target on this CPU. Backends without a proposer are built as today.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from modelport.backends.static_shapes import specialized_shapes

#: backend name -> "module:function(ProposalContext) -> Proposal"
PROPOSERS: dict[str, str] = {
    "onnxruntime": "modelport.optimize.ort:propose",
    "openvino": "modelport.optimize.ov:propose",
}


@dataclass(frozen=True)
class Runtime:
    """Settings a session is loaded with; stored in the bundle (``build.runtime_settings``) and
    re-applied by the backend's ``load``. None: the backend's default."""

    threads: int | None = None
    #: OpenVINO: None = LATENCY hint; 0 = THROUGHPUT hint, the plugin picks; N = N streams
    streams: int | None = None
    #: OpenVINO INFERENCE_PRECISION_HINT (None: the target's)
    inference_precision: str | None = None
    #: ONNX Runtime graph optimization level: all / extended / basic (None: all)
    graph_optimization_level: str | None = None
    #: ``--shape``: inputs fixed at these dims before the runtime optimizes the graph, as
    #: (name, dims) pairs (a mapping is accepted; ``to_dict`` gives name -> dims); None: dynamic
    shapes: tuple | None = None
    #: OpenVINO: static fast paths compiled beside the dynamic model, one per shape, for feeds
    #: of exactly those dims (the shapes the search timed); any other shape runs the dynamic
    #: model. A tuple of shapes, each of the same form as ``shapes`` (a mapping, or a list of
    #: mappings, is accepted; ``to_dict`` gives one mapping for one shape, else a list)
    specialize: tuple | None = None
    #: OpenVINO: the inference precision hint of each fast path in ``specialize``, in its
    #: order (None: the session's); None when every one is the session's. A static [32, 128]
    #: MiniLM INT8 ran ~7% faster with bf16 than with f32, where the dynamic model with bf16
    #: did not: a fast path judged with its own hint need not wait for the whole session's
    fast_path_precision: tuple | None = None

    def __post_init__(self) -> None:
        if isinstance(self.shapes, Mapping):
            object.__setattr__(self, "shapes", _pairs(self.shapes))
        if self.specialize:  # one mapping, a list of them, or this field of another Runtime
            object.__setattr__(self, "specialize", tuple(
                _pairs(v) for v in specialized_shapes(self.specialize)))
        hints = tuple(self.fast_path_precision or ())
        if hints and len(hints) != len(self.specialize or ()):
            raise ValueError("fast_path_precision needs one hint per fast path in specialize")
        object.__setattr__(self, "fast_path_precision",
                           hints if any(h is not None for h in hints) else None)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in vars(self).items() if v is not None}
        if self.shapes:
            out["shapes"] = {k: list(v) for k, v in self.shapes}
        if self.specialize:
            many = [{k: list(v) for k, v in shape} for shape in self.specialize]
            out["specialize"] = many[0] if len(many) == 1 else many
        if self.fast_path_precision:
            out["fast_path_precision"] = list(self.fast_path_precision)
        return out

    def fast_paths(self) -> list[tuple[dict[str, list[int]], str | None]]:
        """(shape, hint) of each fast path in order (hint None: the session's)."""
        shapes = specialized_shapes(self.to_dict().get("specialize"))
        return list(zip(shapes, self.fast_path_precision or [None] * len(shapes)))

    def with_fast_path(self, shape: Mapping[str, Any], hint: str | None = None) -> Runtime:
        """These settings with one more static fast path (``shape``), compiled with ``hint``
        (None: the session's)."""
        have = self.fast_paths()
        return replace(self, specialize=[*(s for s, _ in have), dict(shape)],
                       fast_path_precision=(*(h for _, h in have), hint))

    def describe(self) -> str:
        parts = {"threads": "threads {}", "streams": "streams {}",
                 "inference_precision": "hint {}", "graph_optimization_level": "graph {}",
                 "shapes": "static {}", "specialize": "static fast path {}"}
        text = ", ".join(parts[k].format("auto" if (k == "streams" and v == 0) else
                                         _dims(v) if k == "shapes" else
                                         ", ".join(_dims(shape) + (f" {h}" if h else "")
                                                   for shape, h in self.fast_paths())
                                         if k == "specialize" else v)
                         for k, v in self.to_dict().items() if k in parts)
        return text or "defaults"


def _pairs(shape: Mapping[str, Any]) -> tuple:
    return tuple((str(k), tuple(int(d) for d in v)) for k, v in shape.items())


def _dims(shapes: Mapping[str, list[int]]) -> str:
    """{"input_ids": [1, 128], "attention_mask": [1, 128]} -> "1x128" (one shape for all),
    else "input_ids=1x128 pixel_values=1x3x224x224"."""
    texts = {k: "x".join(map(str, v)) for k, v in shapes.items()}
    if len(set(texts.values())) == 1:
        return next(iter(texts.values()))
    return " ".join(f"{k}={v}" for k, v in texts.items())


#: a peer tool's build: (backend, model, target, calib, workdir, options) -> Artifact
BuildFn = Callable[..., Any]


@dataclass(frozen=True)
class Recipe:
    """One way to build the target's artifact. ``options``: backend option overrides (built by
    ``Backend.build``); ``build``: a build of its own (a peer's plain recipe, a graph rewrite
    before modelport's build). ``peer``: the tool whose plain recipe this is."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    build: BuildFn | None = None
    peer: str | None = None
    #: the name of an earlier recipe that builds the same artifact here (timed once, both
    #: recorded: a peer's plain recipe that is also modelport's recipe on this CPU)
    same_as: str | None = None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "options": dict(self.options)}
        if self.peer:
            out["peer"] = self.peer
        return out


@dataclass
class ProposalContext:
    """What a proposer may look at: the target, the graph, this CPU and the objective."""

    target: Any
    onnx_path: Any
    features: tuple[str, ...]
    kind: str
    bf16: bool
    vnni: bool
    objective: str
    #: the user's --threads (then threads are not searched)
    threads: int | None
    cores: int
    #: the inputs at the shapes the user fixed (``--shape``), None when none was given: a
    #: backend that can specialize to them returns them in ``Proposal.shapes``
    shapes: list | None = None


@dataclass
class Proposal:
    recipes: list[Recipe]
    runtimes: list[Runtime]
    #: static input specs: the stage-1 winner loaded static at them is a candidate beside
    #: the dynamic one (optimize/static_stage.py); None: no such stage
    shapes: list | None = None
    #: without ``shapes``: the backend can compile a static fast path for the timed shape
    #: beside the dynamic model (``Runtime.specialize``), a candidate of the same stage
    specialize: bool = False


def proposer(backend: str) -> Callable[[ProposalContext], Proposal] | None:
    spec = PROPOSERS.get(backend)
    if spec is None:
        return None
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def thread_counts(ctx: ProposalContext) -> list[int | None]:
    """None (the runtime's default: every core) and fewer threads: on a shared or small model
    one or half the cores can beat all of them (less synchronisation)."""
    return thread_choices(ctx.threads, ctx.cores)


def thread_choices(threads: int | None, cores: int) -> list[int | None]:
    """``thread_counts`` for a machine with ``cores`` (a sweep's device re-derives them for its
    own core count: the candidates were proposed on the build node)."""
    if threads:  # the user's --threads: loaded with it, not searched
        return [None]
    counts: list[int | None] = [None]
    for n in (cores // 2, 1):
        if n >= 1 and n not in counts and n != cores:
            counts.append(n)
    return counts
