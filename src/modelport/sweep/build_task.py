"""The build task: (model, recipe) -> bundles for every target, packed as bytes.

Runs on the driver's node or on a node offering ``modelport-build`` (it needs torch and the
converters). A target that fails or misses its budget is a row with its reason, not an
exception: the export runs with ``keep_going`` and ``allow_accuracy_drop``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from modelport.sweep.outcomes import BuildOutcome, BundleBlob
from modelport.sweep.payload import file_payload, sha256
from modelport.sweep.plan import BuildJob, kind_features


def run_build(job: BuildJob, *, node_id: str | None = None, cpu_kind: str | None = None,
              progress: bool = False) -> BuildOutcome:
    """Unpack the inputs, (compress,) export without timing, pack each bundle."""
    import modelport
    from modelport.backends.base import BuildOptions
    from modelport.bundle import pack_bundle
    from modelport.metrics import Budget
    from modelport.sweep.device_tasks import node_id as current_node

    node_id = node_id or current_node()

    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="modelport-sweep-build-"))
    try:
        model = job.model.materialize(work / "model")
        calib = job.calib.materialize(work / "calib") if job.calib else None
        evalset = job.eval.materialize(work / "eval") if job.eval else None
        reference = None
        if job.recipe is not None:
            model = _compress(job, model, work, calib, evalset, progress)
            reference = file_payload(model, Path(model))
        buildable, skipped = split_buildable(job.targets, kind_features(job.cpu_kind))
        if not buildable:
            return BuildOutcome(job.key, skipped, {}, reference, node_id, cpu_kind,
                                seconds=time.perf_counter() - start)
        # built for the devices' CPU kind, not the build node's: the INT8 recipe follows it
        options = BuildOptions(cpu_features=kind_features(job.cpu_kind),
                               budget=Budget(output_kind=job.output_kind),
                               search=_search(job, work / "candidates"))
        result = modelport.export(model, buildable, out=work / "bundles", calib=calib,
                                  eval=evalset, bench=None, progress=progress, keep_going=True,
                                  allow_accuracy_drop=True, options=options)
        blobs = {}
        for target, path in result.bundles.items():
            archive = pack_bundle(path, work / "packed" / f"{path.name}.tar.gz")
            data = archive.read_bytes()
            blobs[target] = BundleBlob(target, archive.name, sha256(data), data)
        return BuildOutcome(job.key, [_plain(r) for r in result.rows] + skipped, blobs, reference,
                            node_id, cpu_kind, seconds=time.perf_counter() - start,
                            candidates=_candidates(result.bundles, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def split_buildable(targets: tuple[str, ...], cpu_features: tuple[str, ...] | None = None
                    ) -> tuple[list[str], list[dict[str, Any]]]:
    """Targets this node can build for a CPU with ``cpu_features`` (the devices' kind), and a
    row for each it cannot (export would refuse them all): bf16 for a kind without bf16 is one
    such row, the other targets still build."""
    from modelport import registry
    from modelport.bench import statuses
    from modelport.specs import Target

    buildable, skipped = [], []
    for text in targets:
        target = Target.parse(text)
        backend = registry.get_backend(target.runtime)
        avail = backend.availability(target)
        refusal = backend.build_refusal(target, cpu_features) if avail.ok else None
        if avail.ok and not refusal:
            buildable.append(text)
        elif refusal:
            skipped.append({"target": text, "precision": str(target.precision),
                            "status": statuses.UNAVAILABLE, "available": False,
                            "reason": f"not built for this CPU kind: {refusal}"})
        else:
            skipped.append({"target": text, "precision": str(target.precision),
                            "status": statuses.UNAVAILABLE, "available": False,
                            "reason": f"cannot be built on the build node: {avail.reason}"})
    return buildable, skipped


def _search(job: BuildJob, out: Path):
    """--optimize: the candidates are built and checked here, bundled, timed on the devices."""
    if not job.search:
        return None
    from modelport.optimize import SearchSettings

    return SearchSettings(**job.search, candidates_out=str(out))


def _candidates(bundles: dict[str, Path], work: Path) -> dict[str, list[BundleBlob]]:
    """Each searched target's candidate bundles within budget, packed (none for a target
    whose search came from the search cache: it is built with the cached choice)."""
    from modelport.bundle import pack_bundle

    out: dict[str, list[BundleBlob]] = {}
    for target, path in bundles.items():
        folder = work / "candidates" / Path(path).name
        for cand in sorted(folder.iterdir()) if folder.is_dir() else ():
            archive = pack_bundle(cand, work / "packed" / f"{path.name}-{cand.name}.tar.gz")
            data = archive.read_bytes()
            out.setdefault(target, []).append(BundleBlob(target, archive.name, sha256(data), data))
    return out


def _compress(job: BuildJob, model: str, work: Path, calib: str | None, evalset: str | None,
              progress: bool) -> str:
    from modelport.passes.compress_steps import compress
    from modelport.passes.recipes import BUILTIN_RECIPES

    recipe = job.recipe.spec if job.recipe.spec in BUILTIN_RECIPES and job.recipe.data is None \
        else job.recipe.materialize(work / "recipe")
    out = work / "compressed"
    compress(model, recipe, out=out, calib=calib, eval=evalset, progress=progress)
    return str(out)


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """Rows without private objects (harness results, local bundle paths)."""
    return {k: v for k, v in row.items() if not k.startswith("_") and k != "bundle"}
