"""The recipe search's first half, for a sweep: every candidate built here and checked against
the accuracy budget, each one within it written as a bundle, none timed.

``modelport sweep --optimize`` builds on its build nodes and times on its devices
(``sweep/search_task.py``): with ``SearchSettings.candidates_out`` set, ``build_or_search``
comes here. The export ships modelport's default recipe for the target (what a device keeps
when its timing fails); its record (``artifact.info["search"]``) lists every candidate with its
build figures, fidelity and bundle folder, the runtime settings a device tries, and
``pending: true`` until a device has timed them. ``--max-time`` bounds the builds here (the
timing on the device has its own bound of the same length).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from modelport.errors import BuildError
from modelport.optimize.candidates import Runtime
from modelport.optimize.search import Candidate, _Run, apply_runtime

#: the record's note until a device has timed the candidates
PENDING = "built and checked on the build node; timed on the devices"


def prebuild(run: _Run) -> Any:
    """Build and bundle the candidates of ``run``'s target; return the default's artifact."""
    return _Prebuild.of(run).go()


class _Prebuild(_Run):
    metrics: dict[str, Any] | None = None

    @classmethod
    def of(cls, run: _Run) -> _Prebuild:
        self = cls.__new__(cls)
        self.__dict__.update(run.__dict__)
        check = run.check

        def checked(session: Any, inputs: list) -> dict[str, Any]:
            self.metrics = check(session, inputs)
            return self.metrics

        self.check = checked
        return self

    def _out_of_time(self, share: float = 1.0) -> bool:
        return super()._out_of_time(1.0)  # no timing here: builds may use all of --max-time

    def go(self) -> Any:
        out = Path(self.settings.candidates_out) / self.target.slug
        recipes = [Candidate(r.name, "recipe", r, Runtime()) for r in self.proposal.recipes]
        for i, cand in enumerate(recipes, 1):
            if cand.recipe.same_as is not None:
                continue
            self.metrics = None
            self._try_recipe(cand, i, len(recipes), first=i == 1)
            if cand.session is None:
                continue
            cand.session.close()
            cand.session = None
            cand.record["bundle"] = f"{i:02d}"
            self._bundle(cand, out / cand.record["bundle"])
        for cand in recipes:  # a peer's recipe that is modelport's own on this CPU
            if cand.recipe.same_as is not None:
                same = next(c for c in recipes if c.name == cand.recipe.same_as)
                cand.record = {**same.record, "name": cand.name, "chosen": False,
                               "options": dict(cand.recipe.options), "same_as": same.name,
                               **({"peer": cand.recipe.peer} if cand.recipe.peer else {})}
                cand.record.pop("bundle", None)
        main = next((c for c in recipes if c.artifact is not None), None)
        if main is None:
            raise BuildError(f"{self.target}: no candidate of the recipe search could be built: "
                             + "; ".join(f"{c.name}: {c.record.get('why')}" for c in recipes))
        for c in recipes:
            if c.artifact is not None and c is not main:
                shutil.rmtree(c.artifact.workdir, ignore_errors=True)
        apply_runtime(main.artifact, Runtime())
        main.artifact.info.pop("search_candidate", None)
        main.artifact.info["search"] = self.pending_record(main, recipes)
        return main.artifact

    def pending_record(self, main: Candidate, recipes: list[Candidate]) -> dict[str, Any]:
        record = self.record(main, Runtime(), recipes, PENDING)
        record.update(pending=True, key=self.key, rounds=self.settings.rounds,
                      duration=self.settings.duration, margin=self.settings.margin,
                      runtimes=[rt.to_dict() for rt in self.proposal.runtimes],
                      build_seconds=round(time.perf_counter() - self.start, 1))
        return record

    def _bundle(self, cand: Candidate, dest: Path) -> None:
        """The candidate as a bundle (manifest, samples, reference outputs), as the export
        writes one; ``build.search_candidate`` names it."""
        from modelport.bundle import write_bundle
        from modelport.bundle.manifest_build import build_manifest
        from modelport.shapes import fit_arrays

        artifact, ctx = cand.artifact, self.ctx
        inputs, outputs = self._inputs(artifact), self._outputs(artifact)
        artifact.info["search_candidate"] = cand.name
        artifact.info["runtime_settings"] = {}
        manifest = build_manifest(ctx, self.target, self.backend, artifact, inputs, outputs,
                                  self.metrics, None, False)
        samples = {f"in.{k}": v for k, v in fit_arrays(ctx.pool, inputs).items()}
        samples.update({f"ref.{k}": v for k, v in ctx.pool_reference.items()})
        write_bundle(dest, manifest=manifest, artifact_dir=artifact.workdir,
                     artifact_files=artifact.files, samples=samples,
                     tokenizer_json=ctx.model.tokenizer_json, extra_files=ctx.model.bundle_files,
                     force=True)
