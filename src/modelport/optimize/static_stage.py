"""The recipe search's static-shape stage, run when the user fixed shapes (``--shape``) and the
backend can specialize to them (``Proposal.shapes``: ONNX Runtime, OpenVINO), or, without
``--shape``, when the backend can compile static fast paths beside its dynamic model
(``Proposal.specialize``: OpenVINO, where a static [1, 128] MiniLM compiled 1.16-1.40x faster
at batch 1 than the dynamic one, and a static [32, 128] used ~1.08x less CPU time per call;
docs/performance.md): one shape at the search's batch, then one at the other batch the bench
reports, each kept only when it wins at its own batch. Each shape is tried with the session's
precision hint and with each other hint stage 2 proposes (bf16 for INT8 on a bf16 CPU), for that
compile alone (``Runtime.fast_path_precision``): on MiniLM INT8 (Zen 5) a static [32, 128] with
bf16 ran ~7% faster than with f32, where neither bf16 for the dynamic model nor the f32
[32, 128] alone beat the dynamic f32 model at batch 32, so judged one at a time neither was kept.
They are judged with the runtime defaults otherwise (stage 2 comes after): when stage 2 then
chooses a setting (a thread count, the bf16 hint), each fast path that lost is judged again with
it (``rejudge``), since a setting can move a fast path past the margin (on MiniLM INT8 a static
[32, 128] lost with the f32 hint and won with the bf16 hint stage 2 chose).

Every candidate of the search is timed at the fixed shapes (the shape the user said the bundle
runs). Between stage 1 (recipes, built with dynamic axes) and stage 2 (runtime settings), the
stage-1 winner's artifact is loaded static at the fixed shapes (ONNX Runtime's free-dimension
overrides, OpenVINO's reshape before compile: backends/static_shapes.py), checked against the
budget and timed against the same artifact loaded dynamic in interleaved rounds. It is chosen
only when it beats the dynamic load by the search's margin; stage 2's settings then apply on
top of the choice. Both rows are recorded (stage ``shape``; a fast path judged again after
stage 2 has rows named ... ``REJUDGED``).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from modelport.optimize.candidates import Runtime

log = logging.getLogger("modelport")


def stage(run: Any, winner: Any, share: float) -> list[Any]:
    """``run``: the search (``search._Run``); ``winner``: the stage-1 winner (a
    ``search.Candidate``), its session open; ``share`` of --max-time after which the static
    load is not tried. Returns the stage's candidates; when the static load wins, ``winner``
    carries its session and runtime (the shapes) from here on."""
    fixed = getattr(run.proposal, "shapes", None)
    if fixed:
        from modelport.backends.static_shapes import as_setting

        return _try(run, winner, share,
                    [replace(winner.runtime, shapes=Runtime(shapes=as_setting(fixed)).shapes)])
    if getattr(run.proposal, "specialize", False):
        rows: list[Any] = []
        for batch in fast_path_batches(run.batch):  # each shape judged at its own batch
            timed = timed_shapes(run.ctx.pool, run._inputs(winner.artifact), batch)
            if not timed:
                break
            # the session's hint, and each other hint stage 2 proposes, for this compile alone
            rows += _try(run, winner, share, [winner.runtime.with_fast_path(timed, hint)
                                              for hint in (None, *_other_hints(run, winner))],
                         batch=batch)
        return rows
    return []


def stage_row(cand: Any, name: str, stage: str, runtime: Runtime, session: Any = None) -> Any:
    """A new row of a later stage: ``cand``'s recipe and artifact (a ``search.Candidate``)
    loaded with ``runtime``, recorded as not yet kept (``session``: one already open)."""
    return replace(cand, name=name, stage=stage, runtime=runtime, session=session, record={
        "name": name, "stage": stage, "options": dict(cand.recipe.options),
        "runtime": runtime.to_dict(), "kept": False, "chosen": False,
        **({"peer": cand.recipe.peer} if cand.recipe.peer else {})})


def _other_hints(run: Any, winner: Any) -> list[str]:
    """The precision hints stage 2 proposes (bf16 on a bf16 CPU for INT8) other than the
    winner's own: a fast path is tried with each too."""
    own = winner.runtime.inference_precision
    return list(dict.fromkeys(rt.inference_precision for rt in run.proposal.runtimes
                              if rt.inference_precision and rt.inference_precision != own))


def fast_path_batches(batch: int) -> tuple[int, ...]:
    """The batches a fast path is tried at: the search's own (1 for latency, 32 for
    throughput), then the other one the bench reports (batch 1 latency, batch 32 samples/s):
    a latency bundle is also run on batches, a throughput one also on single requests."""
    from modelport.optimize.settings import THROUGHPUT_BATCH

    other = THROUGHPUT_BATCH if batch == 1 else 1
    return (batch, other) if other != batch else (batch,)


def timed_shapes(pool: Any, inputs: list[Any], batch: int) -> dict[str, list[int]] | None:
    """The dims every input is timed at (the pool's rows at ``batch``); None when an input is
    not in the pool or already static (nothing to specialize)."""
    out = {}
    for spec in inputs:
        if spec.name not in pool or all(isinstance(d, int) for d in spec.shape):
            return None
        out[spec.name] = [int(batch), *(int(d) for d in pool[spec.name].shape[1:])]
    return out or None


#: the tail of the names of a fast path's rows judged again after stage 2 (``rejudge``)
REJUDGED = "re-judged after the runtime settings"


def rejudge(run: Any, winner: Any, chosen: Any, rows: list[Any], share: float) -> list[Any]:
    """Stage 2 chose a runtime setting the fast paths were not judged with: each fast path of
    ``rows`` (the stage's) that ran and matched but lost on speed, judged again at its own
    batch against ``chosen`` (stage 2's choice, its session open), in the stage's order. A
    setting can move a fast path past the margin: on MiniLM INT8 a static [32, 128] lost
    with the f32 hint and won with the bf16 hint that stage 2 then chose. No new load
    past ``share`` of --max-time, timed until the deadline (as stage 2). Returns the rows (stage
    ``shape``, named ... ``REJUDGED``); a kept one is in ``chosen``'s runtime and session."""
    if chosen is None or chosen.session is None or chosen.runtime == winner.runtime:
        return []
    kept = [shape for shape, _ in winner.runtime.fast_paths()]
    lost: dict[str, tuple[dict, list]] = {}  # shape -> (shape, hints of its loads that lost)
    for row in rows:
        tried = row.runtime.fast_paths()
        if not tried or tried[-1][0] in kept or not row.record.get("kept"):
            continue  # kept, or never ran (failed, differed, outside the budget, no time)
        shape, hint = tried[-1]
        if hint == chosen.runtime.inference_precision:
            hint = None  # the session's own now
        shape, hints = lost.setdefault(repr(shape), (shape, []))
        if hint not in hints:
            hints.append(hint)
    out: list[Any] = []
    for shape, hints in lost.values():  # each ran and lost on speed: again at its own batch
        batch = next(iter(shape.values()))[0]
        log.info("%s: fast path %s judged again with %s", run.target,
                 "x".join(map(str, next(iter(shape.values())))), chosen.runtime.describe())
        out += _try(run, chosen, share, [chosen.runtime.with_fast_path(shape, h) for h in hints],
                    batch=batch, name=chosen.recipe.name, note=REJUDGED, until=run.deadline)
    return out


def _try(run: Any, winner: Any, share: float, rts: list[Runtime], batch: int | None = None,
         *, name: str | None = None, note: str = "", until: float | None = None) -> list[Any]:
    """The winner loaded with each of ``rts`` (static shapes or a static fast path) against
    the same artifact loaded as it is (dynamic, or with the fast paths chosen so far), timed
    together at ``batch`` (default: the search's) until ``until`` (default: ``share`` of
    --max-time); all recorded (names: ``name``, default the winner's, and the settings, then
    ``note``), the fastest static one chosen past the margin."""
    prefix, tail = name or winner.name, f", {note}" if note else ""
    name = f"{prefix}, " + ("dynamic shapes" if winner.runtime == Runtime()
                            else winner.runtime.describe())
    if batch is not None and batch != run.batch:  # the same load as a row above, timed again
        name += f", timed at batch {batch}"
    name += tail
    own = {k: v for k, v in winner.record.items() if k not in ("why", "other_batch")}
    dynamic = replace(winner, name=name, stage="shape", record={
        **own, "name": name, "stage": "shape", "runtime": winner.runtime.to_dict(),
        "chosen": False})
    statics = [stage_row(winner, f"{prefix}, {rt.describe()}{tail}", "shape", rt)
               for rt in rts]
    for static in statics:
        if run._out_of_time(share):
            run._drop(static, f"not tried: --max-time ({run.settings.max_time:.0f} s) reached")
            continue
        run._open(static)  # loaded static, checked against the budget
        if static.runtime.specialize and static.session is not None:
            shape, hint = static.runtime.fast_paths()[-1]  # the one being tried
            why = check_fast_path(run, static, winner.session, shape, hint)
            if why:
                static.session.close()
                static.session = None
                run._drop(static, why)
    opened = [c for c in statics if c.session is not None]
    tried = [c for c in statics if not c.record.get("why", "").startswith("not tried")]
    if not tried:
        return statics  # the winner's row stands for the dynamic load
    if opened:
        run._time([dynamic, *opened], "static shapes" + tail, batch=batch,
                  until=until or run.start + share * run.settings.max_time)
    dynamic.session = None  # the winner's own session
    scored = [c for c in opened if run._score(c) is not None]
    best = min(scored, key=run._score) if scored else None
    if best is not None and run._beats(best, dynamic):
        winner.session.close()
        winner.session, winner.runtime = best.session, best.runtime
        best.record["chosen"] = True
    else:
        dynamic.record["chosen"] = True
    before = "fast paths before it" if dynamic.runtime.specialize else "dynamic graph"
    for static in opened:
        if static is not best or not best.record["chosen"]:
            static.session.close()
            static.record["why"] = ("another load of this stage was faster"
                                    if best.record["chosen"] else
                                    f"not {100 * run.settings.margin:.0f}% faster than the "
                                    f"{before}")
        static.session = None
    return [dynamic, *statics]


#: the fast path runs the same IR as the dynamic model: outputs this close, or it is judged
#: against the budget at its own shape (``check_fast_path``)
FAST_PATH_MIN_COSINE = 0.999


def check_fast_path(run: Any, cand: Any, dynamic: Any, shape: dict[str, list[int]],
                    hint: str | None) -> str | None:
    """None when ``cand``'s fast path for ``shape`` (compiled with ``hint``; None: the
    session's) may ship: its outputs equal ``dynamic``'s (an open session of the same IR) on
    the pool rows, or, where they differ (a bf16 compile against an f32 one, or a static bf16
    compile whose kernels round differently: cosine 0.9986 on MiniLM's symmetric INT8), the
    evaluation split run through a static load of that shape and hint keeps the budget. Else
    the reason."""
    from modelport.metrics import budget_misses
    from modelport.optimize.candidates import Runtime

    why = fast_path_differs(cand.session, dynamic, run.ctx.pool, shape)
    if why is None:
        return None
    static = run._load(cand.artifact, Runtime(
        threads=cand.runtime.threads, shapes=shape,
        inference_precision=hint or cand.runtime.inference_precision))
    try:
        metrics = run.check(static, list(static.inputs.values()))
    finally:
        static.close()
    misses = budget_misses(metrics, run.ctx.budget)
    return f"{why}, and outside the budget at its shape: {'; '.join(misses)}" if misses \
        else None


def fast_path_differs(fast: Any, dynamic: Any, pool: Any, shapes: dict[str, list[int]],
                      feeds: int = 3) -> str | None:
    """The budget check runs the evaluation batches, which may miss the fast path's shape:
    compare it with the dynamic model on pool rows at that shape (``shapes``: input name ->
    dims); a reason when it differs."""
    import numpy as np

    batch = next(iter(shapes.values()))[0]
    rows = len(next(iter(pool.values())))
    for i in range(max(1, min(feeds, rows // batch))):
        # a pool smaller than the batch: its rows repeated (the feed must have the shape)
        feed = {k: np.ascontiguousarray(np.resize(pool[k][i * batch:(i + 1) * batch],
                                                  (batch, *pool[k].shape[1:])))
                for k in shapes}
        got, want = fast.infer(feed), dynamic.infer(feed)
        for name, ref in want.items():
            a = np.asarray(got[name], np.float64).ravel()
            b = np.asarray(ref, np.float64).ravel()
            denom = float(np.linalg.norm(a) * np.linalg.norm(b))
            cos = float(a @ b) / denom if denom else float(np.array_equal(a, b))
            if cos < FAST_PATH_MIN_COSINE:
                return (f"the static fast path's '{name}' differs from the dynamic model's "
                        f"(cosine {cos:.5f} < {FAST_PATH_MIN_COSINE})")
    return None
