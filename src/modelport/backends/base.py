"""The backend contract and the Session base class that checks every feed once.

A backend only talks to its runtime; input validation, error wording and the context-manager
protocol live here so every backend behaves the same (Polygraphy's BaseRunner idea).
"""

from __future__ import annotations

import importlib.util
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from modelport.backends.options import BackendOptions
from modelport.errors import (
    InputError,
    MissingDependency,
    ModelportError,
    RuntimeFailure,
    UsageError,
)
from modelport.metrics import Budget
from modelport.specs import TensorSpec

if TYPE_CHECKING:
    from modelport.calibration_data import CalibrationSet
    from modelport.models import PreparedModel
    from modelport.specs import Target


class AvailabilityKind(StrEnum):
    """Why a target cannot be built or run here; export maps each to its error type."""

    OK = "ok"
    MISSING_DEPENDENCY = "missing dependency"  # pip install an extra
    NO_DEVICE = "no device"  # installed, but the hardware is not here
    UNSUPPORTED = "unsupported"  # this backend cannot do this target or model


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str = ""
    kind: AvailabilityKind = AvailabilityKind.OK

    @classmethod
    def yes(cls) -> Availability:
        return cls(True)

    @classmethod
    def missing(cls, reason: str) -> Availability:
        return cls(False, reason, AvailabilityKind.MISSING_DEPENDENCY)

    @classmethod
    def no_device(cls, reason: str) -> Availability:
        return cls(False, reason, AvailabilityKind.NO_DEVICE)

    @classmethod
    def unsupported(cls, reason: str) -> Availability:
        return cls(False, reason, AvailabilityKind.UNSUPPORTED)


@dataclass
class BuildOptions:
    """What every build may use: threads, the accuracy budget, and each backend's typed
    options (``backends={"onnxruntime": OnnxRuntimeOptions(...)}`` or a plain dict per
    backend, checked against the backend's declaration by ``of``)."""

    threads: int | None = None
    budget: Budget | None = None
    backends: Mapping[str, Any] = field(default_factory=dict)
    #: CPU features the INT8 recipe is chosen for (backends/cpu_recipes.py); None: this
    #: machine's. For a bundle built here to run on another kind of CPU.
    cpu_features: tuple[str, ...] | None = None
    #: the CNN INT8 recipe run on the graph before every backend's INT8 quantizer
    #: (graph_prep/): "auto" (None), "off", or a comma list / tuple of its steps
    cnn_recipe: Any = None
    #: --optimize: an optimize.SearchSettings (each target's recipe measured here), or None
    search: Any = None

    def __post_init__(self) -> None:
        if self.cpu_features is not None:  # checked now, not inside a build minutes later
            from modelport.backends.cpu_recipes import parse_features

            self.cpu_features = parse_features(self.cpu_features)
        from modelport.graph_prep.options import parse_recipe

        self.cnn_recipe = parse_recipe(self.cnn_recipe)

    def of(self, backend: type[Backend] | Backend) -> Any:
        """This backend's options: the given dataclass, a dict checked against it, or defaults."""
        cls = backend.Options
        given = self.backends.get(backend.name)
        if given is None:
            return cls()
        if isinstance(given, cls):
            return given
        if isinstance(given, Mapping):
            return cls.from_mapping(given, where=f"{backend.name} options")
        raise UsageError(f"{backend.name} options must be a {cls.__name__} or a dict, got "
                         f"{type(given).__name__}")

    def budget_or_default(self) -> Budget:
        return self.budget or Budget()


@dataclass
class Artifact:
    """What a build produced: files inside ``workdir`` plus manifest facts about them."""

    workdir: Path
    main: str  # the file the runtime loads, relative to workdir
    files: list[str]
    info: dict[str, Any] = field(default_factory=dict)
    #: the artifact's own I/O when it differs from the ONNX (e.g. TFLite's static shapes)
    inputs: list[TensorSpec] | None = None
    outputs: list[TensorSpec] | None = None
    #: extra keyword arguments for Backend.load when loading this artifact right after build
    session_options: dict[str, Any] = field(default_factory=dict)

    @property
    def main_path(self) -> Path:
        return self.workdir / self.main

    @property
    def size_bytes(self) -> int:
        return sum((self.workdir / f).stat().st_size for f in self.files)


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, *, extra: str, what: str) -> None:
    """Raise MissingDependency naming the extra when ``module`` is not importable."""
    if not has_module(module):
        raise MissingDependency(
            f"{what} needs '{module}': pip install \"modelport[{extra}]\""
        )


class Backend:
    """Build an artifact for a target and load it into a Session."""

    name: ClassVar[str]
    extra: ClassVar[str]
    #: False for reference runtimes (torch) that are measured but not shipped as bundles.
    bundleable: ClassVar[bool] = True
    #: the typed options this backend reads (its fields become CLI flags)
    Options: ClassVar[type[BackendOptions]] = BackendOptions
    #: what to suggest when a build misses its accuracy budget
    budget_hint: ClassVar[str] = "try another --calib-method or more --calib data"

    @classmethod
    def availability(cls, target: Target) -> Availability:
        raise NotImplementedError

    @classmethod
    def runnable(cls, target: Target) -> Availability:
        """Can an artifact for ``target`` run on this machine? (A TensorRT bundle can be
        built on a CPU-only machine but runs only on the GPU.) Defaults to availability()."""
        return cls.availability(target)

    @classmethod
    def build_refusal(cls, target: Target, cpu_features: Sequence[str] | None) -> str | None:
        """Why ``target`` must not be built for a CPU with ``cpu_features`` (None: this
        machine's), e.g. bf16 for a CPU without bf16 arithmetic; None: build it."""
        return None

    @classmethod
    def runtime_version(cls) -> str:
        raise NotImplementedError

    def build(
        self,
        model: PreparedModel,
        target: Target,
        calib: CalibrationSet | None,
        workdir: Path,
        options: BuildOptions,
    ) -> Artifact:
        raise NotImplementedError

    def load(
        self, path: Path, *, target: Target, inputs: list[TensorSpec],
        outputs: list[TensorSpec], threads: int | None = None, **options: Any,
    ) -> Session:
        raise NotImplementedError

    # -- optional abilities (defaults: the backend does not have them) ------------------
    def proxy_session(self, path: Path, *, inputs: list[TensorSpec], outputs: list[TensorSpec],
                      threads: int | None = None) -> Session | None:
        """A session that runs a build-here/run-elsewhere artifact's graph on this machine, for
        fidelity only (TensorRT's ONNX in ONNX Runtime); None when there is none."""
        return None

    def build_on_device(self, bundle: Any, *, rebuild: bool = False) -> dict[str, Any]:
        """Build the device artifact from a bundle on the device (TensorRT engines)."""
        raise UsageError(f"{self.name} bundles run as shipped; only backends that build on the "
                         "device (TensorRT) have a `modelport build` step")


#: runtime messages that point at the feed's values or sizes
_INPUT_FAILURE = re.compile(r"out of (data )?bounds|out of range|index|indices|shape|dimension|"
                            r"broadcast|incompatible|mismatch|invalid (input|rank)", re.IGNORECASE)
#: runtime messages of exhausted resources
_RESOURCE_FAILURE = re.compile(r"out of memory|bad_alloc|failed to allocate|cannot allocate",
                               re.IGNORECASE)


class Session:
    """A loaded artifact. ``infer`` checks the feed, then calls the runtime (``_infer``)."""

    def __init__(self, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> None:
        self.inputs: dict[str, TensorSpec] = {s.name: s for s in inputs}
        self.outputs: dict[str, TensorSpec] = {s.name: s for s in outputs}

    # -- public API ---------------------------------------------------------------------
    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._check(feeds)
        try:
            return self._infer(feeds)
        except ModelportError:
            raise
        except Exception as exc:  # noqa: BLE001 - a runtime's own error, said in one line
            raise self._failure(exc) from None

    def _check(self, feeds: Mapping[str, np.ndarray]) -> None:
        """check_feeds once per distinct (name, dtype, shape) signature: a benchmark loop pays
        one dict lookup per call, not the full check and its message building."""
        try:
            key = tuple((name, value.dtype.str, value.shape) for name, value in feeds.items())
        except AttributeError:  # not arrays: the full check says what is wrong
            key = None
        seen = self.__dict__.setdefault("_checked", set())
        if key is not None and key in seen:
            return
        check_feeds(self.inputs, feeds)
        if key is not None and len(seen) < 256:
            seen.add(key)

    def _failure(self, exc: Exception) -> ModelportError:
        """A runtime error on a feed that passed check_feeds: the user's input when the runtime
        names an index or a shape it could not take (a dynamic size beyond what the model was
        exported for), otherwise the runtime's own failure (exit 1, not the user's fault)."""
        described = self._describe_failure(exc)
        if isinstance(exc, MemoryError) or _RESOURCE_FAILURE.search(str(exc)):
            return RuntimeFailure(f"{described} (the runtime ran out of a resource; try a "
                                  "smaller batch or fewer threads)")
        if _INPUT_FAILURE.search(str(exc)):
            return InputError(
                f"{described}; check that every dimension and index is within what the model "
                f"was exported for (it takes "
                f"{', '.join(s.describe() for s in self.inputs.values())})")
        return RuntimeFailure(f"{described}; this is a failure of the runtime, not of the "
                              "input: report it with the bundle's manifest.json")

    def predict(self, **inputs: Any) -> Any:
        """The answer `modelport run` prints, for a session opened from a bundle
        (``modelport.load(B).predict(text=[...])``, ``image=``, ``audio=``, ``question=`` +
        ``context=``, ``prompt=``, ``feeds=``; options ``labels``, ``threshold``, ``top_k``...).
        Returns the task's answer: ``str()`` prints it, ``to_dict()`` is its JSON."""
        bundle = getattr(self, "bundle", None)
        if bundle is None:
            raise UsageError("predict() needs a session opened from a bundle (modelport.load); "
                             "use infer(feeds) on this one")
        from modelport.tasks import task_of
        from modelport.tasks.base import RunInputs

        task = task_of(bundle)
        given = RunInputs.of(**inputs)
        task.check(bundle, given)
        return task.predict(bundle, self, given)

    def synchronize(self) -> None:
        """Wait for queued device work; a no-op for synchronous CPU runtimes."""

    #: requests an async runtime keeps in flight in ``infer_pipelined`` (1: one after another)
    requests: int = 1

    def infer_pipelined(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> list[int]:
        """Run every feed for throughput and return each request's latency in ns (outputs are
        dropped). The base class runs them one after another, so ``bench --streams`` works on
        every backend; async runtimes (OpenVINO's infer-request pool) override it."""
        latencies = []
        for feed in feeds:
            t0 = time.perf_counter_ns()
            self.infer(feed)
            self.synchronize()
            latencies.append(time.perf_counter_ns() - t0)
        return latencies

    def close(self) -> None:
        """Release runtime resources."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- for subclasses -----------------------------------------------------------------
    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _describe_failure(self, exc: Exception) -> str:
        """One line for a runtime error on a feed that passed check_feeds (backends refine it)."""
        lines = str(exc).strip().splitlines()
        return f"the runtime failed on this feed: {type(exc).__name__}: {lines[0] if lines else ''}"


def check_feeds(specs: Mapping[str, TensorSpec], feeds: Mapping[str, Any]) -> None:
    """One check, one wording for every backend: names, types, dtypes, ranks, static dims."""
    if not isinstance(feeds, Mapping):
        raise InputError(
            f"feeds must be a dict of input name -> numpy array, got {type(feeds).__name__}"
        )
    expected = ", ".join(s.describe() for s in specs.values())
    missing = [n for n in specs if n not in feeds]
    extra = [str(n) for n in feeds if n not in specs]
    if extra:  # a misspelt name is both: say the unknown one first, it is the typo
        also = f" and missing input(s) {missing}" if missing else ""
        raise InputError(f"unknown input(s) {extra}{also}; the model takes {expected}")
    if missing:
        raise InputError(f"missing input(s) {missing}; the model takes {expected}")
    dynamic_sizes: dict[str, tuple[str, int]] = {}
    for name, spec in specs.items():
        value = feeds[name]
        problem = spec.problem_with(value)
        if problem:
            raise InputError(problem)
        for axis, (want, got) in enumerate(zip(spec.shape, value.shape, strict=True)):
            if isinstance(want, str):
                if got < 1:
                    raise InputError(f"input '{name}' dimension {axis} ('{want}') is empty")
                seen = dynamic_sizes.setdefault(want, (name, got))
                if seen[1] != got:
                    raise InputError(
                        f"inputs '{seen[0]}' and '{name}' disagree on '{want}': "
                        f"{seen[1]} vs {got}"
                    )
