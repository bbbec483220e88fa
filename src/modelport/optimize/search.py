"""The recipe search of one target: build every candidate, check it against the budget, time the
ones within it in interleaved rounds, ship the fastest.

Stage 1 builds each recipe (``Proposal.recipes``: modelport's, the peers' plain ones, other INT8
forms) with the backend's default runtime settings; stage 2 loads the stage-1 winner with each
runtime setting (threads, streams, hints, graph level) and keeps one only when it beats the
defaults by ``SearchSettings.margin``. Between the two, static_stage.py tries the winner
static at ``--shape``'s dims, or (OpenVINO, no ``--shape``) with static fast paths beside its
dynamic model; a fast path that lost there is judged again after stage 2 with the setting
stage 2 chose, when it chose one. Last, the recipes that tied with the winner in stage 1 are
judged again with the settings chosen since (recipe_ties.py). Every candidate is recorded
(recipe, figures, fidelity, kept or dropped and why) in ``artifact.info["search"]``, which the
manifest stores; the chosen runtime settings go to ``artifact.info["runtime_settings"]`` and the
backend's ``load`` re-applies them. ``--max-time`` ends the search early: no new candidate
starts, and the best measured so far ships (a search cut short is not cached).
"""

from __future__ import annotations

import copy
import importlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from modelport.backends import static_shapes
from modelport.errors import BuildError, ModelportError
from modelport.metrics import budget_misses, judged_by
from modelport.optimize import batch_rules, cache, recipe_ties, static_stage
from modelport.optimize.candidates import Proposal, ProposalContext, Recipe, Runtime, proposer
from modelport.optimize.settings import SearchSettings

log = logging.getLogger("modelport")

#: shares of --max-time after which no new recipe is built / no runtime setting is tried: the
#: rest is for timing what was built (on MiniLM a build takes minutes, a timing round seconds)
BUILD_SHARE, RUNTIME_SHARE = 0.6, 0.8
#: ``SearchSettings.candidates_out``: build and check here, time on a sweep's devices (by name:
#: that module builds on ``_Run``)
PREBUILD = "modelport.optimize.prebuild:prebuild"
#: the fidelity figures a candidate's record keeps
_FIDELITY_KEYS = ("cosine_mean", "cosine_min", "top1_agreement", "accuracy", "accuracy_drop")


@dataclass
class Candidate:
    name: str
    stage: str  # "recipe" | "runtime"
    recipe: Recipe
    runtime: Runtime
    artifact: Any = None
    session: Any = None
    record: dict[str, Any] = field(default_factory=dict)


def build_or_search(ctx: Any, target: Any, backend: Any, calib: Any, workdir: Any, *,
                    check: Callable[[Any, Any, list], dict[str, Any]]) -> Any:
    """``backend.build``, or with ``ctx.options.search`` (``--optimize``) the artifact the
    search chose (``ctx``: the export's context; ``check(ctx, session, inputs)``: fidelity vs
    the reference on the evaluation split)."""
    settings: SearchSettings | None = ctx.options.search
    if settings is None:
        return backend.build(ctx.model, target, calib, workdir, ctx.options)
    propose = proposer(backend.name)
    why_not = ("language models are not searched (their timing is per token)"
               if ctx.lm is not None else None if propose is not None
               else f"no candidates for {backend.name} yet")
    if why_not:
        log.info("%s: --optimize: %s; built with its default recipe", target, why_not)
        artifact = backend.build(ctx.model, target, calib, workdir, ctx.options)
        artifact.info["search"] = {"objective": settings.objective, "skipped": why_not}
        return artifact
    pctx = proposal_context(ctx, target, settings)
    pctx.shapes = static_shapes.requested(ctx.model, ctx.options.of(backend))  # --shape
    proposal = propose(pctx)
    key = cache.search_key(_facts(ctx, target, backend, pctx, settings))
    hit = cache.lookup(key) if settings.cache else None
    if hit is not None:
        artifact = _from_cache(ctx, target, backend, calib, workdir, proposal, hit)
        if artifact is not None:
            return artifact
    run = _Run(ctx, target, backend, calib, workdir, lambda session, inputs: check(
        ctx, session, inputs), settings, pctx, proposal, key)
    if settings.candidates_out is not None:  # a sweep: built here, timed on its devices
        module, _, name = PREBUILD.partition(":")
        return getattr(importlib.import_module(module), name)(run)
    return run.go()


def proposal_context(ctx: Any, target: Any, settings: SearchSettings) -> ProposalContext:
    features = tuple(ctx.options.cpu_features) if ctx.options.cpu_features is not None \
        else host_features()
    kind, bf16, vnni = describe_cpu(features)
    return ProposalContext(target=target, onnx_path=ctx.model.onnx_artifact.path,
                           features=features, kind=kind, bf16=bf16, vnni=vnni,
                           objective=settings.objective, threads=ctx.threads,
                           cores=os.cpu_count() or 1)


def host_features() -> tuple[str, ...]:
    from modelport.bench.fingerprint import fingerprint

    return tuple(fingerprint()["cpu_flags"])


def describe_cpu(features: tuple[str, ...]) -> tuple[str, bool, bool]:
    """(CPU kind name, bf16 arithmetic, int8 dot products in one instruction)."""
    try:
        from modelport.backends.cpu_kinds import kind_of
    except ImportError:  # before the CPU kinds module: the INT8 recipe table's two kinds
        from modelport.backends.cpu_recipes import cpu_kind

        kind = cpu_kind(features)
        return kind, bool({"avx512_bf16", "amx_bf16"} & set(features)), kind == "vnni"
    k = kind_of(features)
    return k.name, k.bf16, k.int8_row == "vnni"


def _facts(ctx, target, backend, pctx: ProposalContext, settings: SearchSettings
           ) -> dict[str, Any]:
    from modelport.io import sha256_file

    return {"onnx": sha256_file(ctx.model.onnx_artifact.path), "target": str(target),
            "objective": settings.objective, "cpu_kind": pctx.kind,
            "features": sorted(pctx.features), "cores": pctx.cores, "threads": ctx.threads,
            "budget": ctx.budget.to_dict(), "task": ctx.model.task,
            "options": ctx.options.of(backend).changed(),
            "calib": ctx.calib.sha256() if ctx.calib is not None else None,
            "runtime": backend.runtime_version()}


class _Run:
    def __init__(self, ctx, target, backend, calib, workdir, check, settings: SearchSettings,
                 pctx: ProposalContext, proposal: Proposal, key: str) -> None:
        self.ctx, self.target, self.backend, self.calib = ctx, target, backend, calib
        self.workdir, self.check, self.settings = workdir, check, settings
        self.pctx, self.proposal, self.key = pctx, proposal, key
        self.start = time.perf_counter()
        self.deadline = self.start + settings.max_time
        self.cut_short = False
        from modelport.shapes import static_batch

        # --shape: every candidate is timed at the fixed shapes, so at their batch
        self.batch = static_batch(getattr(proposal, "shapes", None), settings.batch)

    # -- the two stages ---------------------------------------------------------------------
    def go(self) -> Any:
        recipes = [Candidate(r.name, "recipe", r, Runtime()) for r in self.proposal.recipes]
        total = len(recipes) + len(self.proposal.runtimes)
        log.info("%s: --optimize %s: up to %d candidates within %.0f s", self.target,
                 self.settings.objective, total, self.settings.max_time)
        for i, cand in enumerate(recipes, 1):
            if cand.recipe.same_as is None:
                self._try_recipe(cand, i, len(recipes), first=i == 1)
        kept = [c for c in recipes if c.session is not None]
        self._time(kept, "recipes", until=self.start + RUNTIME_SHARE * self.settings.max_time)
        for cand in recipes:  # a peer's recipe that is modelport's own on this CPU
            if cand.recipe.same_as is not None:
                same = next(c for c in recipes if c.name == cand.recipe.same_as)
                cand.record = {**same.record, "name": cand.name, "chosen": False,
                               "options": dict(cand.recipe.options), "same_as": same.name,
                               **({"peer": cand.recipe.peer} if cand.recipe.peer else {})}
        winner = self._best(kept)
        if winner is not None:  # recipes that tie at the search's batch: the other batch decides
            winner = batch_rules.other_batch_best(self, kept, winner) or winner
        candidates = [c for c in recipes]
        if winner is None:
            self._close(kept)
            return self._finish(None, None, candidates)
        for cand in kept:
            if cand is not winner:
                cand.session.close()
                cand.session = None
        shape_rows = static_stage.stage(self, winner, RUNTIME_SHARE)  # static? fast paths?
        runtimes = self._runtimes(winner)
        chosen = next((c for c in runtimes if c.record.get("chosen")), None)
        # a fast path that lost with the defaults, judged again with the chosen setting
        candidates += shape_rows + runtimes + static_stage.rejudge(
            self, winner, chosen, shape_rows, RUNTIME_SHARE)
        # recipes that tied in stage 1, judged again with the settings chosen since
        final = chosen if chosen is not None and chosen.session is not None else winner
        shipped, tie_rows = recipe_ties.rejudge(self, recipes, winner, final)
        candidates += tie_rows
        self._close(runtimes)
        winner.session.close()
        winner.session = None
        return self._finish(shipped, chosen, candidates)

    def _try_recipe(self, cand: Candidate, i: int, n: int, *, first: bool) -> None:
        cand.record = _describe(cand)
        if not first and self._out_of_time(BUILD_SHARE):
            return self._drop(cand, f"not tried: --max-time ({self.settings.max_time:.0f} s) "
                                    "reached")
        conflict = self._conflict(cand.recipe)
        if conflict:
            return self._drop(cand, conflict)
        tdir = self.workdir / f"candidate-{i}"
        tdir.mkdir()
        t0 = time.perf_counter()
        try:
            cand.artifact = self._build(cand.recipe, tdir)
        except Exception as exc:  # a candidate that fails is a row, not the end (re-raised: ours)
            shutil.rmtree(tdir, ignore_errors=True)
            if first and isinstance(exc, ModelportError):
                raise  # modelport's own recipe: the error the export gives without --optimize
            return self._drop(cand, f"build failed: {_one_line(exc)}")
        cand.record.update(build_s=round(time.perf_counter() - t0, 2),
                           size_mb=round(cand.artifact.size_bytes / 1e6, 3))
        if cand.artifact.info.get("fusions"):
            cand.record["fusions"] = cand.artifact.info["fusions"]
        self._open(cand)
        log.info("%s: candidate %d/%d '%s': %s", self.target, i, n, cand.name,
                 cand.record.get("why") or _fid_text(cand.record))

    def _runtimes(self, winner: Candidate) -> list[Candidate]:
        """Stage 2: the winner's artifact loaded with each runtime setting, timed against
        the same artifact with the defaults."""
        name = f"{winner.name}, " + ("" if winner.runtime == Runtime() else
                                     f"{winner.runtime.describe()}, ") + "runtime defaults"
        base = Candidate(name, "runtime", winner.recipe, winner.runtime, winner.artifact,
                         winner.session, {**winner.record, "name": name, "stage": "runtime",
                                          "runtime": winner.runtime.to_dict()})
        out = [base]
        if self._out_of_time(RUNTIME_SHARE):  # no stage 2: the winner ships with the defaults
            out = []
        for rt in self.proposal.runtimes:
            if rt == Runtime():
                continue
            rt = replace(rt, shapes=winner.runtime.shapes,  # the shape stage's choice
                         specialize=winner.runtime.specialize,
                         fast_path_precision=winner.runtime.fast_path_precision)
            cand = Candidate(f"{winner.name}, {rt.describe()}", "runtime", winner.recipe, rt,
                             winner.artifact)
            cand.record = _describe(cand)
            out.append(cand)
            if self._out_of_time(RUNTIME_SHARE):
                self._drop(cand, f"not tried: --max-time ({self.settings.max_time:.0f} s) "
                                 "reached")
                continue
            self._open(cand)
        kept = [c for c in out if c.session is not None]
        if not kept:
            base.session = None
            return out
        self._time(kept, "runtime settings", until=self.deadline)
        best = self._best(kept)
        # no setting wins (the defaults fastest, or a setting within the margin): ties are
        # judged at the other batch (batch_rules.other_batch_best)
        if best is not None and base.session is not None and (
                best is base or not self._beats(best, base)):
            if best is not base:
                best.record["why"] = (f"within {100 * self.settings.margin:.0f}% of the "
                                      "defaults: not worth a setting")
            best = batch_rules.other_batch_best(self, kept, base) or base
        if best is not None:
            best.record["chosen"] = True
        base.session = None  # the winner's own session: closed by the caller
        return out

    # -- one candidate ----------------------------------------------------------------------
    def _build(self, recipe: Recipe, tdir) -> Any:
        options = copy.copy(self.ctx.options)
        user = self.ctx.options.of(self.backend).changed()
        user.pop("shapes", None)  # built dynamic: --shape is applied at load (static_stage)
        options.backends = {**self.ctx.options.backends,
                            self.backend.name: {**user, **recipe.options}}
        if recipe.build is not None:
            return recipe.build(self.backend, self.ctx.model, self.target, self.calib, tdir,
                                options)
        return self.backend.build(self.ctx.model, self.target, self.calib, tdir, options)

    def _open(self, cand: Candidate) -> None:
        """Load, check against the budget; the session stays open when it is within."""
        try:
            cand.session = self._load(cand.artifact, cand.runtime)
            # the session's own inputs: static when it was loaded with --shape's dims
            metrics = self.check(cand.session, list(cand.session.inputs.values()))
        except Exception as exc:  # noqa: BLE001 - a setting the runtime refuses is a row
            if cand.session is not None:
                cand.session.close()
                cand.session = None
            return self._drop(cand, f"failed to run: {_one_line(exc)}")
        precision = getattr(cand.session, "inference_precision", None)
        if precision is not None:  # what the plugin runs (it may fall back from the hint)
            cand.record["inference_precision"] = precision
        cand.record["fidelity"] = {k: metrics[k] for k in _FIDELITY_KEYS if k in metrics}
        cand.record["judged_by"] = judged_by(metrics)
        misses = budget_misses(metrics, self.ctx.budget)
        if misses:
            cand.session.close()
            cand.session = None
            return self._drop(cand, "outside the accuracy budget: " + "; ".join(misses))
        cand.record["kept"] = True

    def _load(self, artifact: Any, runtime: Runtime) -> Any:
        options = dict(artifact.session_options)
        if runtime.inference_precision:
            options["inference_precision"] = runtime.inference_precision
        options["runtime_settings"] = runtime.to_dict()
        return self.backend.load(artifact.main_path, target=self.target,
                                 inputs=self._inputs(artifact), outputs=self._outputs(artifact),
                                 threads=runtime.threads or self.ctx.threads, **options)

    def _inputs(self, artifact: Any) -> list:
        return artifact.inputs or self.ctx.model.onnx_artifact.inputs

    def _outputs(self, artifact: Any) -> list:
        return artifact.outputs or self.ctx.model.onnx_artifact.outputs

    # -- timing and choosing ----------------------------------------------------------------
    def _time(self, cands: list[Candidate], what: str, *, until: float,
              batch: int | None = None) -> None:
        """Time ``cands`` interleaved at the search's batch (or ``batch``) until ``until``."""
        from modelport.bench.harness import BenchSettings
        from modelport.bench.interleaved import time_interleaved
        from modelport.shapes import fit_arrays, static_batch

        if not cands or (len(cands) == 1 and time.perf_counter() >= until):
            return
        left = max(until - time.perf_counter(), 0.0)
        rounds = batch_rules.spare_rounds(self.settings, left, len(cands))
        # what is left, shared; never below a tenth of a second per round (a few runs of a
        # real model), however late: a choice needs figures
        duration = max(min(self.settings.duration, left / (1.5 * rounds * len(cands))),
                       min(self.settings.duration, 0.1))
        sessions, settings, pools = {}, {}, {}
        for c in cands:  # at the shapes the user fixed, if any (static_stage.py)
            inputs = getattr(self.proposal, "shapes", None) or self._inputs(c.artifact)
            at = static_batch(inputs, batch or self.batch)
            streams = getattr(c.session, "streams", None)
            sessions[c.name] = c.session
            settings[c.name] = BenchSettings(batch_sizes=(at,), warmup=2, duration=duration,
                                             min_iters=3, streams=streams)
            pools[c.name] = fit_arrays(self.ctx.pool, inputs)
            c.record["batch"] = at
        timed = time_interleaved(
            sessions, self.ctx.pool, settings, rounds=rounds, pools=pools,
            deadline=until,
            on_round=lambda r, n: log.info("%s: timed %s, round %d of %d", self.target, what,
                                           r, n))
        for c in cands:
            t = timed[c.name]
            b = c.record["batch"]
            c.record.update(p50_ms=t.p50_ms.get(b), throughput=t.throughput.get(b),
                            rounds=t.rounds)

    def _score(self, cand: Candidate) -> float | None:
        """Lower is better: p50 latency, or seconds per sample for throughput."""
        r = cand.record
        if self.settings.objective == "latency":
            return r.get("p50_ms")
        return 1.0 / r["throughput"] if r.get("throughput") else None

    def _best(self, kept: list[Candidate]) -> Candidate | None:
        scored = [c for c in kept if self._score(c) is not None]
        if not scored:
            return kept[0] if kept else None  # one candidate, never timed (out of time)
        return min(scored, key=self._score)

    def _beats(self, cand: Candidate, base: Candidate) -> bool:
        a, b = self._score(cand), self._score(base)
        return a is not None and b is not None and a < b * (1 - self.settings.margin)

    def _out_of_time(self, share: float = 1.0) -> bool:
        """Past ``share`` of --max-time (builds stop early to leave time for timing)."""
        if time.perf_counter() >= self.start + share * self.settings.max_time:
            self.cut_short = True
            return True
        return False

    # -- the outcome ------------------------------------------------------------------------
    def _finish(self, winner: Candidate | None, chosen: Candidate | None,
                candidates: list[Candidate]) -> Any:
        if winner is None:  # nothing within budget: modelport's default goes on to be judged
            winner = next((c for c in candidates if c.artifact is not None), None)
            if winner is None:
                raise BuildError(f"{self.target}: no candidate of the recipe search could be "
                                 "built: " + "; ".join(f"{c.name}: {c.record.get('why')}"
                                                       for c in candidates))
            note = "no candidate within the accuracy budget: modelport's default is judged"
        else:
            note = ""
            winner.record["chosen"] = True
        runtime = chosen.runtime if chosen is not None else Runtime()
        for c in candidates:
            if c.artifact is not None and c.artifact is not winner.artifact:
                shutil.rmtree(c.artifact.workdir, ignore_errors=True)
        record = self.record(winner, runtime, candidates, note)
        artifact = winner.artifact
        apply_runtime(artifact, runtime, self.ctx.model)
        if chosen is not None and chosen.record.get("inference_precision"):
            artifact.info["inference_precision_effective"] = chosen.record["inference_precision"]
        artifact.info["search"] = record
        if not self.cut_short and not note:
            cache.store(self.key, record)
        log.info("%s: --optimize chose '%s' (%s) in %.0f s", self.target, winner.name,
                 runtime.describe(), record["seconds"])
        return artifact

    def record(self, winner: Candidate, runtime: Runtime, candidates: list[Candidate],
               note: str) -> dict[str, Any]:
        return {"objective": self.settings.objective, "batch": self.batch,
                "cpu_kind": self.pctx.kind, "cpu_features": list(self.pctx.features),
                "max_time_s": self.settings.max_time,
                "seconds": round(time.perf_counter() - self.start, 1),
                "cut_short": self.cut_short, "cached": False,
                "chosen": winner.name, "runtime_settings": runtime.to_dict(),
                **({"shapes": static_shapes.as_setting(self.proposal.shapes)}
                   if getattr(self.proposal, "shapes", None) else {}),
                "note": note, "candidates": [c.record for c in candidates]}

    def _conflict(self, recipe: Recipe) -> str | None:
        user = self.ctx.options.of(self.backend).changed()
        fixed = [k for k, v in recipe.options.items() if k in user and user[k] != v]
        return (f"not tried: your {self.backend.name} options fix {', '.join(fixed)}"
                if fixed else None)

    @staticmethod
    def _drop(cand: Candidate, why: str) -> None:
        cand.record.update(kept=False, why=why)

    @staticmethod
    def _close(cands: list[Candidate]) -> None:
        for c in cands:
            if c.session is not None:
                c.session.close()
                c.session = None


def apply_runtime(artifact: Any, runtime: Runtime, model: Any = None) -> None:
    """Store ``runtime`` in the artifact: its manifest facts and the load arguments (static
    shapes: the artifact's inputs and outputs too, from ``model``'s)."""
    artifact.info["runtime_settings"] = runtime.to_dict()
    artifact.session_options["runtime_settings"] = runtime.to_dict()
    if runtime.shapes and model is not None:
        static_shapes.specialize_artifact(artifact, model, runtime.to_dict()["shapes"])
    if runtime.inference_precision:
        artifact.session_options["inference_precision"] = runtime.inference_precision
        artifact.info["inference_precision_hint"] = runtime.inference_precision


def _from_cache(ctx, target, backend, calib, workdir, proposal: Proposal,
                hit: dict[str, Any]) -> Any:
    """Build the recipe a finished search chose (no timing); None when it is not proposed
    any more."""
    recipe = next((r for r in proposal.recipes if r.name == hit["chosen"]), None)
    if recipe is None:
        return None
    log.info("%s: --optimize: a search of this model on this kind of CPU is cached (%s); "
             "building '%s'", target, cache.cache_dir(), recipe.name)
    runner = _Run(ctx, target, backend, calib, workdir, None, ctx.options.search,
                  None, proposal, "")
    artifact = runner._build(recipe, workdir)
    runtime = Runtime(**(hit.get("runtime_settings") or {}))
    apply_runtime(artifact, runtime, ctx.model)
    artifact.info["search"] = {**hit, "cached": True}
    return artifact


def _describe(cand: Candidate) -> dict[str, Any]:
    out: dict[str, Any] = {"name": cand.name, "stage": cand.stage,
                           "options": dict(cand.recipe.options),
                           "runtime": cand.runtime.to_dict(), "kept": False, "chosen": False}
    if cand.recipe.peer:
        out["peer"] = cand.recipe.peer
    return out


def _fid_text(record: dict[str, Any]) -> str:
    f = record.get("fidelity") or {}
    return f"cos {f['cosine_mean']:.5f}, within budget" if "cosine_mean" in f else "kept"


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200] if lines else ''}"
