"""What a sweep does: one build per (model, recipe, CPU kind), one bench per (device, bundle).

What gets built depends on the CPU's kind (backends/cpu_kinds.py): the int8 dot product (VNNI,
AMX; dot product on Arm) picks the INT8 recipe, bf16 arithmetic (AVX512_BF16, AMX) decides
whether bf16 targets are built. Two devices share builds only when their kinds match; every
other flag (model name, core count) does not change what gets built.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from modelport.sweep.payload import Payload


def cpu_kind(fingerprint: dict[str, Any]) -> str:
    """``x86_64:avx512-vnni-bf16``: the architecture plus the kind of CPU (cpu_kinds.kind_name)."""
    from modelport.backends.cpu_kinds import kind_name

    return f"{fingerprint.get('machine') or '?'}:{kind_name(fingerprint.get('cpu_flags') or ())}"


def kind_features(kind: str) -> tuple[str, ...]:
    """The CPU features a kind stands for (``x86_64:avx2`` -> avx2, fma): what a build for that
    kind assumes, so its INT8 recipe and bf16 targets are the ones for those devices."""
    from modelport.backends.cpu_kinds import KINDS

    name = kind.partition(":")[2]
    if name in KINDS:
        return KINDS[name].features
    return () if name in ("", "baseline") else tuple(name.split("+"))  # an older sweep's kind


@dataclass(frozen=True)
class SweepSpec:
    """Everything the user asked for, with every file already packed."""

    models: tuple[Payload, ...]
    recipes: tuple[Payload | None, ...]  # None: the model as given
    targets: tuple[str, ...]
    calib: Payload | None = None
    eval: Payload | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # BenchSettings fields
    output_kind: str | None = None  # --output-kind: how the models' outputs are judged
    #: FP32 targets built only so each INT8/FP16/BF16 row has its runtime's FP32 to be judged
    #: against on every device (speed_verdict.comparison_targets); included in ``targets``
    compare_only: tuple[str, ...] = ()
    #: --optimize: SearchSettings fields (objective, max_time, cache); None: no search
    search: dict[str, Any] | None = None


@dataclass(frozen=True)
class BuildJob:
    """One export of one (model, recipe) to every target, for one CPU kind."""

    model: Payload
    recipe: Payload | None
    targets: tuple[str, ...]
    cpu_kind: str
    calib: Payload | None
    eval: Payload | None
    key: str  # content hash of everything above + versions: the build cache key
    output_kind: str | None = None  # metrics.Budget.output_kind (part of the key when set)
    search: dict[str, Any] | None = None  # --optimize (part of the key when set)

    @property
    def label(self) -> str:
        return self.model.spec + (f" + {self.recipe.spec}" if self.recipe else "")


def plan_builds(spec: SweepSpec, kinds: list[str]) -> list[BuildJob]:
    """Every (model, recipe) once per distinct CPU kind among the chosen devices."""
    jobs = []
    for model in spec.models:
        for recipe in spec.recipes:
            for kind in sorted(set(kinds)):
                jobs.append(BuildJob(model, recipe, spec.targets, kind, spec.calib, spec.eval,
                                     build_key(model, recipe, spec, kind), spec.output_kind,
                                     spec.search))
    return jobs


def build_key(model: Payload, recipe: Payload | None, spec: SweepSpec, kind: str) -> str:
    """Unchanged inputs, same key: a resumed sweep skips the build."""
    from modelport._version import SCHEMA_VERSION, __version__

    inputs = {"modelport": __version__, "schema": SCHEMA_VERSION, "model": model.digest,
              "recipe": recipe.digest if recipe else None, "targets": sorted(spec.targets),
              "calib": spec.calib.digest if spec.calib else None,
              "eval": spec.eval.digest if spec.eval else None, "cpu_kind": kind}
    if spec.output_kind is not None:  # the verdict (and so the rows) depend on it
        inputs["output_kind"] = spec.output_kind
    if spec.search is not None:  # candidates timed on the devices, the winners shipped
        inputs["search"] = spec.search
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:24]
